//! Events: one per change of state, listed by `events/list` and sent to webhooks.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The event types Keyway emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "access_code.created")]
    AccessCodeCreated,
    #[serde(rename = "access_code.changed")]
    AccessCodeChanged,
    #[serde(rename = "access_code.set_on_device")]
    AccessCodeSetOnDevice,
    #[serde(rename = "access_code.removed_from_device")]
    AccessCodeRemovedFromDevice,
    #[serde(rename = "access_code.deleted")]
    AccessCodeDeleted,
    #[serde(rename = "access_code.delay_in_setting_on_device")]
    AccessCodeDelayInSettingOnDevice,
    #[serde(rename = "access_code.failed_to_set_on_device")]
    AccessCodeFailedToSetOnDevice,
    #[serde(rename = "access_code.delay_in_removing_from_device")]
    AccessCodeDelayInRemovingFromDevice,
    #[serde(rename = "access_code.failed_to_remove_from_device")]
    AccessCodeFailedToRemoveFromDevice,
    #[serde(rename = "access_code.modified_external_to_seam")]
    AccessCodeModifiedExternalToSeam,
    #[serde(rename = "access_code.deleted_external_to_seam")]
    AccessCodeDeletedExternalToSeam,
    #[serde(rename = "access_code.unmanaged.created")]
    AccessCodeUnmanagedCreated,
    #[serde(rename = "access_code.unmanaged.removed")]
    AccessCodeUnmanagedRemoved,
    #[serde(rename = "access_code.unmanaged.converted_to_managed")]
    AccessCodeUnmanagedConvertedToManaged,
    #[serde(rename = "access_code.backup_access_code_pulled")]
    AccessCodeBackupAccessCodePulled,
    #[serde(rename = "lock.locked")]
    LockLocked,
    #[serde(rename = "lock.unlocked")]
    LockUnlocked,
    #[serde(rename = "lock.access_denied")]
    LockAccessDenied,
    #[serde(rename = "device.connected")]
    DeviceConnected,
    #[serde(rename = "device.disconnected")]
    DeviceDisconnected,
}

impl EventType {
    pub const ALL: [EventType; 20] = [
        EventType::AccessCodeCreated,
        EventType::AccessCodeChanged,
        EventType::AccessCodeSetOnDevice,
        EventType::AccessCodeRemovedFromDevice,
        EventType::AccessCodeDeleted,
        EventType::AccessCodeDelayInSettingOnDevice,
        EventType::AccessCodeFailedToSetOnDevice,
        EventType::AccessCodeDelayInRemovingFromDevice,
        EventType::AccessCodeFailedToRemoveFromDevice,
        EventType::AccessCodeModifiedExternalToSeam,
        EventType::AccessCodeDeletedExternalToSeam,
        EventType::AccessCodeUnmanagedCreated,
        EventType::AccessCodeUnmanagedRemoved,
        EventType::AccessCodeUnmanagedConvertedToManaged,
        EventType::AccessCodeBackupAccessCodePulled,
        EventType::LockLocked,
        EventType::LockUnlocked,
        EventType::LockAccessDenied,
        EventType::DeviceConnected,
        EventType::DeviceDisconnected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AccessCodeCreated => "access_code.created",
            EventType::AccessCodeChanged => "access_code.changed",
            EventType::AccessCodeSetOnDevice => "access_code.set_on_device",
            EventType::AccessCodeRemovedFromDevice => "access_code.removed_from_device",
            EventType::AccessCodeDeleted => "access_code.deleted",
            EventType::AccessCodeDelayInSettingOnDevice => "access_code.delay_in_setting_on_device",
            EventType::AccessCodeFailedToSetOnDevice => "access_code.failed_to_set_on_device",
            EventType::AccessCodeDelayInRemovingFromDevice => {
                "access_code.delay_in_removing_from_device"
            }
            EventType::AccessCodeFailedToRemoveFromDevice => {
                "access_code.failed_to_remove_from_device"
            }
            EventType::AccessCodeModifiedExternalToSeam => "access_code.modified_external_to_seam",
            EventType::AccessCodeDeletedExternalToSeam => "access_code.deleted_external_to_seam",
            EventType::AccessCodeUnmanagedCreated => "access_code.unmanaged.created",
            EventType::AccessCodeUnmanagedRemoved => "access_code.unmanaged.removed",
            EventType::AccessCodeUnmanagedConvertedToManaged => {
                "access_code.unmanaged.converted_to_managed"
            }
            EventType::AccessCodeBackupAccessCodePulled => "access_code.backup_access_code_pulled",
            EventType::LockLocked => "lock.locked",
            EventType::LockUnlocked => "lock.unlocked",
            EventType::LockAccessDenied => "lock.access_denied",
            EventType::DeviceConnected => "device.connected",
            EventType::DeviceDisconnected => "device.disconnected",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub event_type: EventType,
    pub workspace_id: String,
    pub created_at: Timestamp,
    pub occurred_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_code_id: Option<String>,
    /// `code` on `set_on_device` and `deleted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Fields particular to the event type (`method`, `action_attempt_id`, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}
