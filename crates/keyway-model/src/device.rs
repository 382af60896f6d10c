//! Devices (locks) and the connected accounts they belong to.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A rule a lock imposes on PIN codes (`properties.code_constraints[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeConstraint {
    pub constraint_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
}

/// The `properties` of a lock that matter for access codes, plus its state.
///
/// Every field is optional in Seam's schema (a thermostat has no `locked`, Seam's fake sends no
/// code rules), so an absent field reads as its default. Keyway always writes them all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceProperties {
    pub name: String,
    pub online: bool,
    pub locked: bool,
    pub door_open: bool,
    pub manufacturer: String,
    pub supported_code_lengths: Vec<u32>,
    pub max_active_codes_supported: u32,
    pub code_constraints: Vec<CodeConstraint>,
    pub supports_backup_access_code_pool: bool,
    pub has_native_entry_events: bool,
    pub online_access_codes_enabled: bool,
    pub offline_access_codes_enabled: bool,
    pub supports_offline_access_codes: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<DeviceModel>,
    /// Between 0 and 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_level: Option<f64>,
}

/// `properties.model`: what the device is, as its maker names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceModel {
    pub display_name: String,
    pub manufacturer_display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceError {
    pub error_code: String,
    pub message: String,
    pub created_at: Timestamp,
    pub is_device_error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceWarning {
    pub warning_code: String,
    pub message: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub device_id: String,
    pub device_type: String,
    pub display_name: String,
    pub nickname: Option<String>,
    pub workspace_id: String,
    pub connected_account_id: String,
    pub capabilities_supported: Vec<String>,
    pub properties: DeviceProperties,
    pub location: Option<serde_json::Value>,
    pub space_ids: Vec<String>,
    pub errors: Vec<DeviceError>,
    pub warnings: Vec<DeviceWarning>,
    pub created_at: Timestamp,
    pub is_managed: bool,
    pub custom_metadata: serde_json::Map<String, serde_json::Value>,
    // The `can_*` flags are optional in Seam's schema: absent reads as `false`.
    #[serde(default)]
    pub can_program_online_access_codes: bool,
    #[serde(default)]
    pub can_program_offline_access_codes: bool,
    #[serde(default)]
    pub can_remotely_lock: bool,
    #[serde(default)]
    pub can_remotely_unlock: bool,
    #[serde(default)]
    pub can_simulate_connection: bool,
    #[serde(default)]
    pub can_simulate_disconnection: bool,
    #[serde(default)]
    pub can_simulate_removal: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectedAccount {
    pub connected_account_id: String,
    /// Optional in Seam's schema (its fake sends `provider` instead); absent reads as `""`.
    #[serde(default)]
    pub account_type: String,
    pub account_type_display_name: String,
    pub display_name: String,
    pub created_at: Timestamp,
    // Seam's fake omits both lists.
    #[serde(default)]
    pub errors: Vec<DeviceError>,
    #[serde(default)]
    pub warnings: Vec<DeviceWarning>,
    pub custom_metadata: serde_json::Map<String, serde_json::Value>,
    pub automatically_manage_new_devices: bool,
    pub accepted_capabilities: Vec<String>,
    pub user_identifier: Option<serde_json::Value>,
}
