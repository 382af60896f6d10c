//! Rows as stored, and their conversion to wire types.

use keyway_model::{
    AccessCode, AccessCodeError, AccessCodeStatus, AccessCodeType, AccessCodeWarning,
    ActionAttempt, ActionAttemptError, ActionAttemptStatus, ActionType, Event, EventType,
    Timestamp, UnmanagedAccessCode,
};

use crate::{Result, StoreError};

/// A boolean written by SQLite's JSON functions (0/1), or a JSON boolean.
pub(crate) fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct Flag;
    impl serde::de::Visitor<'_> for Flag {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a boolean or 0/1")
        }
        fn visit_bool<E>(self, value: bool) -> Result<bool, E> {
            Ok(value)
        }
        fn visit_i64<E>(self, value: i64) -> Result<bool, E> {
            Ok(value != 0)
        }
        fn visit_u64<E>(self, value: u64) -> Result<bool, E> {
            Ok(value != 0)
        }
    }
    deserializer.deserialize_any(Flag)
}

pub(crate) fn ts(millis: i64) -> Result<Timestamp> {
    Timestamp::from_millis(millis).ok_or_else(|| StoreError::Corrupt(format!("time {millis}")))
}

pub(crate) fn opt_ts(millis: Option<i64>) -> Result<Option<Timestamp>> {
    millis.map(ts).transpose()
}

/// An access code as stored. Also read from JSON (`serde`), for SQLite lists fetched as one
/// aggregated row; SQLite's JSON writes booleans as 0/1, hence `flag`.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct AccessCodeRow {
    pub seq: i64,
    pub access_code_id: String,
    pub workspace_id: String,
    pub device_id: String,
    #[serde(deserialize_with = "flag")]
    pub is_managed: bool,
    pub name: Option<String>,
    pub code: Option<String>,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub status: String,
    #[serde(deserialize_with = "flag")]
    pub deleted: bool,
    pub slot: Option<i64>,
    pub confirmed_code: Option<String>,
    pub errors: String,
    pub warnings: String,
    #[serde(deserialize_with = "flag")]
    pub is_external_modification_allowed: bool,
    #[serde(deserialize_with = "flag")]
    pub is_one_time_use: bool,
    #[serde(deserialize_with = "flag")]
    pub is_offline_access_code: bool,
    pub common_code_key: Option<String>,
    pub pending_since: Option<i64>,
    pub created_at: i64,
    #[serde(deserialize_with = "flag")]
    pub is_backup: bool,
    pub pulled_backup_access_code_id: Option<String>,
    #[serde(deserialize_with = "flag")]
    pub is_backup_access_code_available: bool,
}

impl AccessCodeRow {
    pub fn kind(&self) -> Result<AccessCodeType> {
        AccessCodeType::parse(&self.kind)
            .ok_or_else(|| StoreError::Corrupt(format!("access code type {}", self.kind)))
    }

    pub fn status(&self) -> Result<AccessCodeStatus> {
        AccessCodeStatus::parse(&self.status)
            .ok_or_else(|| StoreError::Corrupt(format!("access code status {}", self.status)))
    }

    pub fn errors(&self) -> Result<Vec<AccessCodeError>> {
        serde_json::from_str(&self.errors).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    pub fn warnings(&self) -> Result<Vec<AccessCodeWarning>> {
        serde_json::from_str(&self.warnings).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    pub fn into_managed(self) -> Result<AccessCode> {
        Ok(AccessCode {
            kind: self.kind()?,
            status: self.status()?,
            errors: self.errors()?,
            warnings: self.warnings()?,
            starts_at: opt_ts(self.starts_at)?,
            ends_at: opt_ts(self.ends_at)?,
            created_at: ts(self.created_at)?,
            access_code_id: self.access_code_id,
            device_id: self.device_id,
            workspace_id: self.workspace_id,
            name: self.name,
            code: self.code,
            common_code_key: self.common_code_key,
            is_managed: true,
            is_backup: self.is_backup,
            is_backup_access_code_available: self.is_backup_access_code_available,
            pulled_backup_access_code_id: self.pulled_backup_access_code_id,
            is_external_modification_allowed: self.is_external_modification_allowed,
            is_one_time_use: self.is_one_time_use,
            is_offline_access_code: self.is_offline_access_code,
            is_scheduled_on_device: false,
            is_waiting_for_code_assignment: false,
        })
    }

    pub fn into_unmanaged(self) -> Result<UnmanagedAccessCode> {
        Ok(UnmanagedAccessCode {
            kind: self.kind()?,
            status: self.status()?,
            errors: self.errors()?,
            warnings: self.warnings()?,
            starts_at: opt_ts(self.starts_at)?,
            ends_at: opt_ts(self.ends_at)?,
            created_at: ts(self.created_at)?,
            access_code_id: self.access_code_id,
            device_id: self.device_id,
            workspace_id: self.workspace_id,
            name: self.name,
            code: self.code,
            is_managed: false,
            is_backup_access_code_available: false,
            pulled_backup_access_code_id: None,
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct ActionAttemptRow {
    pub action_attempt_id: String,
    pub action_type: String,
    pub status: String,
    pub result: Option<String>,
    pub error: Option<String>,
}

impl ActionAttemptRow {
    pub fn into_model(self) -> Result<ActionAttempt> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("action attempt {what}"));
        Ok(ActionAttempt {
            action_type: ActionType::parse(&self.action_type).ok_or_else(|| corrupt("type"))?,
            status: ActionAttemptStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            result: self
                .result
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|_| corrupt("result"))?,
            error: self
                .error
                .map(|r| serde_json::from_str::<ActionAttemptError>(&r))
                .transpose()
                .map_err(|_| corrupt("error"))?,
            action_attempt_id: self.action_attempt_id,
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct EventRow {
    pub seq: i64,
    pub event_id: String,
    pub workspace_id: String,
    pub event_type: String,
    pub device_id: Option<String>,
    pub connected_account_id: Option<String>,
    pub access_code_id: Option<String>,
    pub code: Option<String>,
    pub created_at: i64,
    pub occurred_at: i64,
    pub payload: Option<String>,
}

impl EventRow {
    pub fn into_model(self) -> Result<Event> {
        Ok(Event {
            event_type: EventType::parse(&self.event_type)
                .ok_or_else(|| StoreError::Corrupt(format!("event type {}", self.event_type)))?,
            created_at: ts(self.created_at)?,
            occurred_at: ts(self.occurred_at)?,
            event_id: self.event_id,
            workspace_id: self.workspace_id,
            device_id: self.device_id,
            connected_account_id: self.connected_account_id,
            access_code_id: self.access_code_id,
            code: self.code,
            extra: match self.payload {
                Some(payload) => serde_json::from_str(&payload)
                    .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?,
                None => Default::default(),
            },
        })
    }
}
