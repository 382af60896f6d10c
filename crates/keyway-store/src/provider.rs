//! Connected accounts and devices of real providers (Z-Wave JS): the accounts Keyway must
//! connect to, and the locks their servers report, kept in step with what the servers say.

use async_trait::async_trait;
use keyway_model::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{DeviceCodeRules, Result};

/// What a provider tells of a device beyond its name and code rules (`devices.details`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Between 0 and 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_level: Option<f64>,
}

/// A device as its provider reports it.
#[derive(Debug, Clone)]
pub struct ProviderDevice<'a> {
    pub workspace_id: &'a str,
    pub connected_account_id: &'a str,
    pub device_id: &'a str,
    pub provider: &'a str,
    pub device_type: &'a str,
    pub name: &'a str,
    pub manufacturer: &'a str,
    pub rules: &'a DeviceCodeRules,
    pub online: bool,
    pub locked: Option<bool>,
    pub details: &'a DeviceDetails,
}

/// A connected account whose server Keyway keeps a connection to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Deserialize)]
pub struct ProviderAccount {
    pub workspace_id: String,
    pub connected_account_id: String,
    pub endpoint: String,
}

#[async_trait]
pub trait ProviderStore: Send + Sync {
    /// Adds a connected account reached at `endpoint`, or points an existing one there.
    async fn add_provider_account(
        &self,
        account: &ProviderAccount,
        account_type: &str,
        display_name: &str,
        now: Timestamp,
    ) -> Result<()>;

    /// Every account of this type with an endpoint, in all workspaces.
    async fn provider_accounts(&self, account_type: &str) -> Result<Vec<ProviderAccount>>;

    /// Records whether Keyway reaches the account's server.
    async fn set_account_connected(
        &self,
        connected_account_id: &str,
        connected: bool,
    ) -> Result<()>;

    /// Adds the device, or brings its name, rules and state up to date. Answers whether it is
    /// new.
    async fn upsert_provider_device(
        &self,
        device: &ProviderDevice<'_>,
        now: Timestamp,
    ) -> Result<bool>;

    /// Records what the provider says of the device's health and door.
    async fn set_device_state(
        &self,
        device_id: &str,
        online: Option<bool>,
        locked: Option<bool>,
    ) -> Result<()>;
}
