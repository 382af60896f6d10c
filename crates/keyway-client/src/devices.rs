//! `/devices/*`, `/locks/*` and `/connected_accounts/*`: the locks a workspace can program and
//! the accounts they belong to.

use keyway_model::{ConnectedAccount, Device};
use serde::Serialize;
use serde_json::json;

use crate::client::{take, Client, Idempotency};
use crate::error::Error;
use crate::pagination::{self, ItemStream, Page};

/// Parameters of `/devices/list` and `/locks/list`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListDevices {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cursor: Option<String>,
}

/// Parameters of `/connected_accounts/list`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListConnectedAccounts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cursor: Option<String>,
}

/// Devices: `client.devices()`.
#[derive(Debug, Clone, Copy)]
pub struct Devices<'a> {
    client: &'a Client,
}

/// Locks (devices that take access codes): `client.locks()`.
#[derive(Debug, Clone, Copy)]
pub struct Locks<'a> {
    client: &'a Client,
}

/// Connected accounts: `client.connected_accounts()`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectedAccounts<'a> {
    client: &'a Client,
}

impl Client {
    /// `/devices/*`.
    pub fn devices(&self) -> Devices<'_> {
        Devices { client: self }
    }

    /// `/locks/*`.
    pub fn locks(&self) -> Locks<'_> {
        Locks { client: self }
    }

    /// `/connected_accounts/*`.
    pub fn connected_accounts(&self) -> ConnectedAccounts<'_> {
        ConnectedAccounts { client: self }
    }
}

impl Devices<'_> {
    /// One device, by id.
    pub async fn get(&self, device_id: &str) -> Result<Device, Error> {
        self.client
            .call(
                "/devices/get",
                &json!({ "device_id": device_id }),
                "device",
                Idempotency::Read,
            )
            .await
    }

    /// One device, by name.
    pub async fn get_by_name(&self, name: &str) -> Result<Device, Error> {
        self.client
            .call(
                "/devices/get",
                &json!({ "name": name }),
                "device",
                Idempotency::Read,
            )
            .await
    }

    /// One page of devices.
    pub async fn list(&self, params: &ListDevices) -> Result<Page<Device>, Error> {
        let params = pagination::to_object(params)?;
        pagination::page(self.client, "/devices/list", &params, "devices").await
    }

    /// Every device matching `params`, across pages.
    pub fn list_stream(&self, params: &ListDevices) -> Result<ItemStream<Device>, Error> {
        let params = pagination::to_object(params)?;
        Ok(pagination::items(
            self.client.clone(),
            "/devices/list",
            params,
            "devices",
        ))
    }

    /// Sandbox only: brings a device back online.
    pub async fn simulate_connect(&self, device_id: &str) -> Result<(), Error> {
        self.client
            .send(
                "/devices/simulate/connect",
                &json!({ "device_id": device_id }),
                Idempotency::Write,
            )
            .await
            .map(drop)
    }

    /// Sandbox only: takes a device offline (codes wait, with a warning, until it is back).
    pub async fn simulate_disconnect(&self, device_id: &str) -> Result<(), Error> {
        self.client
            .send(
                "/devices/simulate/disconnect",
                &json!({ "device_id": device_id }),
                Idempotency::Write,
            )
            .await
            .map(drop)
    }
}

impl Locks<'_> {
    /// One lock, by id.
    pub async fn get(&self, device_id: &str) -> Result<Device, Error> {
        const ROUTE: &str = "/locks/get";
        let mut body = self
            .client
            .send(ROUTE, &json!({ "device_id": device_id }), Idempotency::Read)
            .await?;
        let key = if body.contains_key("lock") {
            "lock"
        } else {
            "device"
        };
        take(ROUTE, &mut body, key)
    }

    /// One page of locks.
    pub async fn list(&self, params: &ListDevices) -> Result<Page<Device>, Error> {
        let params = pagination::to_object(params)?;
        pagination::page(self.client, "/locks/list", &params, "locks").await
    }

    /// Every lock matching `params`, across pages.
    pub fn list_stream(&self, params: &ListDevices) -> Result<ItemStream<Device>, Error> {
        let params = pagination::to_object(params)?;
        Ok(pagination::items(
            self.client.clone(),
            "/locks/list",
            params,
            "locks",
        ))
    }
}

impl ConnectedAccounts<'_> {
    /// One connected account, by id.
    pub async fn get(&self, connected_account_id: &str) -> Result<ConnectedAccount, Error> {
        self.client
            .call(
                "/connected_accounts/get",
                &json!({ "connected_account_id": connected_account_id }),
                "connected_account",
                Idempotency::Read,
            )
            .await
    }

    /// One page of connected accounts.
    pub async fn list(
        &self,
        params: &ListConnectedAccounts,
    ) -> Result<Page<ConnectedAccount>, Error> {
        let params = pagination::to_object(params)?;
        pagination::page(
            self.client,
            "/connected_accounts/list",
            &params,
            "connected_accounts",
        )
        .await
    }

    /// Every connected account, across pages.
    pub fn list_stream(
        &self,
        params: &ListConnectedAccounts,
    ) -> Result<ItemStream<ConnectedAccount>, Error> {
        let params = pagination::to_object(params)?;
        Ok(pagination::items(
            self.client.clone(),
            "/connected_accounts/list",
            params,
            "connected_accounts",
        ))
    }
}
