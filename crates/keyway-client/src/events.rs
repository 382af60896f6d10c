//! `/events/*` and `/workspaces/*`.

use keyway_model::{Event, Timestamp, Workspace};
use serde::Serialize;
use serde_json::json;

use crate::client::{Client, Idempotency};
use crate::error::Error;
use crate::pagination::{self, ItemStream, Page};

/// Parameters of `/events/list`. Filters combine with AND.
///
/// Seam requires `since` or `between`; Keyway lists everything without them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListEvents {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_code_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_code_ids: Option<Vec<String>>,
    /// e.g. `access_code.set_on_device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// Events that occurred at or after this instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Events that occurred within `[from, to]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub between: Option<[Timestamp; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cursor: Option<String>,
}

/// Events: `client.events()`.
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    client: &'a Client,
}

/// Workspaces: `client.workspaces()`.
#[derive(Debug, Clone, Copy)]
pub struct Workspaces<'a> {
    client: &'a Client,
}

impl Client {
    /// `/events/*`.
    pub fn events(&self) -> Events<'_> {
        Events { client: self }
    }

    /// `/workspaces/*`.
    pub fn workspaces(&self) -> Workspaces<'_> {
        Workspaces { client: self }
    }
}

impl Events<'_> {
    /// One event, by id.
    pub async fn get(&self, event_id: &str) -> Result<Event, Error> {
        self.client
            .call(
                "/events/get",
                &json!({ "event_id": event_id }),
                "event",
                Idempotency::Read,
            )
            .await
    }

    /// One page of events, oldest first.
    pub async fn list(&self, params: &ListEvents) -> Result<Page<Event>, Error> {
        let params = pagination::to_object(params)?;
        pagination::page(self.client, "/events/list", &params, "events").await
    }

    /// Every event matching `params`, across pages.
    ///
    /// ```no_run
    /// # async fn run(client: keyway_client::Client) -> Result<(), keyway_client::Error> {
    /// use futures::TryStreamExt;
    /// use keyway_client::ListEvents;
    /// let mut events = client.events().list_stream(&ListEvents {
    ///     access_code_id: Some("some_access_code_id".into()),
    ///     ..Default::default()
    /// })?;
    /// while let Some(event) = events.try_next().await? {
    ///     println!("{} {:?}", event.occurred_at, event.event_type);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list_stream(&self, params: &ListEvents) -> Result<ItemStream<Event>, Error> {
        let params = pagination::to_object(params)?;
        Ok(pagination::items(
            self.client.clone(),
            "/events/list",
            params,
            "events",
        ))
    }
}

impl Workspaces<'_> {
    /// The API key's workspace.
    pub async fn get(&self) -> Result<Workspace, Error> {
        self.client
            .call(
                "/workspaces/get",
                &json!({}),
                "workspace",
                Idempotency::Read,
            )
            .await
    }

    /// The workspaces the API key sees (on Keyway: its own).
    pub async fn list(&self) -> Result<Vec<Workspace>, Error> {
        self.client
            .call(
                "/workspaces/list",
                &json!({}),
                "workspaces",
                Idempotency::Read,
            )
            .await
    }
}
