//! Action attempts: the handle a client polls for an asynchronous operation.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionType {
    CreateAccessCode,
    UpdateAccessCode,
    DeleteAccessCode,
    SyncAccessCodes,
    LockDoor,
    UnlockDoor,
    SimulateKeypadCodeEntry,
}

impl ActionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::CreateAccessCode => "CREATE_ACCESS_CODE",
            ActionType::UpdateAccessCode => "UPDATE_ACCESS_CODE",
            ActionType::DeleteAccessCode => "DELETE_ACCESS_CODE",
            ActionType::SyncAccessCodes => "SYNC_ACCESS_CODES",
            ActionType::LockDoor => "LOCK_DOOR",
            ActionType::UnlockDoor => "UNLOCK_DOOR",
            ActionType::SimulateKeypadCodeEntry => "SIMULATE_KEYPAD_CODE_ENTRY",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            ActionType::CreateAccessCode,
            ActionType::UpdateAccessCode,
            ActionType::DeleteAccessCode,
            ActionType::SyncAccessCodes,
            ActionType::LockDoor,
            ActionType::UnlockDoor,
            ActionType::SimulateKeypadCodeEntry,
        ]
        .into_iter()
        .find(|t| t.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionAttemptStatus {
    Pending,
    Success,
    Error,
}

impl ActionAttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionAttemptStatus::Pending => "pending",
            ActionAttemptStatus::Success => "success",
            ActionAttemptStatus::Error => "error",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(ActionAttemptStatus::Pending),
            "success" => Some(ActionAttemptStatus::Success),
            "error" => Some(ActionAttemptStatus::Error),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionAttemptError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionAttempt {
    pub action_attempt_id: String,
    pub action_type: ActionType,
    pub status: ActionAttemptStatus,
    pub result: Option<serde_json::Value>,
    pub error: Option<ActionAttemptError>,
}
