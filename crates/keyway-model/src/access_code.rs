//! Managed and unmanaged access codes, with their errors and warnings.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessCodeType {
    Ongoing,
    TimeBound,
}

impl AccessCodeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessCodeType::Ongoing => "ongoing",
            AccessCodeType::TimeBound => "time_bound",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ongoing" => Some(AccessCodeType::Ongoing),
            "time_bound" => Some(AccessCodeType::TimeBound),
            _ => None,
        }
    }
}

/// Where a code stands on its lock. `set` is only ever written after a driver confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessCodeStatus {
    Setting,
    Set,
    Unset,
    Removing,
    Unknown,
}

impl AccessCodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessCodeStatus::Setting => "setting",
            AccessCodeStatus::Set => "set",
            AccessCodeStatus::Unset => "unset",
            AccessCodeStatus::Removing => "removing",
            AccessCodeStatus::Unknown => "unknown",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "setting" => Some(AccessCodeStatus::Setting),
            "set" => Some(AccessCodeStatus::Set),
            "unset" => Some(AccessCodeStatus::Unset),
            "removing" => Some(AccessCodeStatus::Removing),
            "unknown" => Some(AccessCodeStatus::Unknown),
            _ => None,
        }
    }
}

/// An entry of `errors[]` on an access code: either the code's own error
/// (`is_access_code_error`) or a device / connected-account error bubbled onto it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCodeError {
    pub error_code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_access_code_error: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_device_error: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_connected_account_error: Option<bool>,
}

impl AccessCodeError {
    pub fn access_code(code: &str, message: impl Into<String>, at: Timestamp) -> Self {
        AccessCodeError {
            error_code: code.to_owned(),
            message: message.into(),
            created_at: Some(at),
            is_access_code_error: Some(true),
            is_device_error: None,
            is_connected_account_error: None,
        }
    }

    pub fn device(code: &str, message: impl Into<String>, at: Timestamp) -> Self {
        AccessCodeError {
            error_code: code.to_owned(),
            message: message.into(),
            created_at: Some(at),
            is_access_code_error: None,
            is_device_error: Some(true),
            is_connected_account_error: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCodeWarning {
    pub warning_code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

/// A code managed through the API (`is_managed: true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessCode {
    pub access_code_id: String,
    pub device_id: String,
    pub workspace_id: String,
    pub name: Option<String>,
    pub code: Option<String>,
    pub common_code_key: Option<String>,
    #[serde(rename = "type")]
    pub kind: AccessCodeType,
    pub status: AccessCodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub errors: Vec<AccessCodeError>,
    pub warnings: Vec<AccessCodeWarning>,
    pub is_managed: bool,
    /// Not in every server's answer (Seam's fake omits it); absent reads as `false`.
    #[serde(default)]
    pub is_backup: bool,
    pub is_backup_access_code_available: bool,
    pub pulled_backup_access_code_id: Option<String>,
    pub is_external_modification_allowed: bool,
    pub is_one_time_use: bool,
    pub is_offline_access_code: bool,
    #[serde(default)]
    pub is_scheduled_on_device: bool,
    #[serde(default)]
    pub is_waiting_for_code_assignment: bool,
}

/// A code found on a lock that Keyway did not put there (`is_managed: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmanagedAccessCode {
    pub access_code_id: String,
    pub device_id: String,
    pub workspace_id: String,
    pub name: Option<String>,
    pub code: Option<String>,
    #[serde(rename = "type")]
    pub kind: AccessCodeType,
    pub status: AccessCodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub errors: Vec<AccessCodeError>,
    pub warnings: Vec<AccessCodeWarning>,
    pub is_managed: bool,
    /// Not part of the unmanaged schema; absent reads as `false`.
    #[serde(default)]
    pub is_backup_access_code_available: bool,
    pub pulled_backup_access_code_id: Option<String>,
}

/// The answer of `access_codes/generate_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedCode {
    pub device_id: String,
    pub code: String,
}
