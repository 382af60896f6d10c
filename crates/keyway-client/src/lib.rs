//! A typed async client for Keyway, the self-hostable Seam-compatible access-code server, and
//! for Seam's own API (same routes, same JSON).
//!
//! The wire types come from `keyway-model` and are re-exported as [`model`]. This crate owns the
//! HTTP side only: endpoint and API key, headers, error classification, retries of reads,
//! pagination and the wait helpers. It holds no business rules.
//!
//! # Connecting
//!
//! [`Client::new`] takes the endpoint and the API key; [`Client::from_env`] reads
//! `KEYWAY_ENDPOINT` / `KEYWAY_API_KEY`, falling back to `SEAM_ENDPOINT` / `SEAM_API_KEY`
//! (endpoint default: `http://127.0.0.1:8080`). Every request carries
//! `Authorization: Bearer <key>`, `seam-sdk-name: keyway-client` and `seam-sdk-version`.
//!
//! # Example: put a code on a lock and wait for the lock to confirm it
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use keyway_client::{Client, CreateAccessCode, Error};
//!
//! # async fn run() -> Result<(), Error> {
//! let client = Client::new("http://127.0.0.1:8080", "seam_apikey1_token")?;
//! let created = client
//!     .access_codes()
//!     .create(&CreateAccessCode::new("august_device_1").name("Guest").code("4821"))
//!     .await?;
//! let code = client
//!     .access_codes()
//!     .wait_until_set(&created.access_code.access_code_id, Duration::from_secs(30))
//!     .await?;
//! println!("{} holds {:?}", code.device_id, code.code);
//!
//! match client.devices().get("no_such_device").await {
//!     Err(Error::NotFound { kind, message }) => println!("{kind}: {message}"),
//!     other => println!("{other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! An error answer becomes an [`Error`] variant by its status and the envelope's `type`:
//! [`Error::InvalidInput`] (400, with `validation_errors`), [`Error::Unauthorized`] (401),
//! [`Error::NotFound`] (404), [`Error::Conflict`] (409) and [`Error::Http`] for the rest;
//! [`Error::Transport`] when no answer came.
//!
//! # Retries
//!
//! Reads (`get`, `list`, `generate_code`, the wait helpers' polls) are repeated with exponential
//! back-off on 429, 5xx and connection errors ([`ClientBuilder::max_retries`]). Writes (create,
//! update, delete, simulate, convert) are sent once: a lost answer must not create a code twice.
//!
//! # Lists
//!
//! `list` answers one [`Page`]; `list_stream` answers an [`ItemStream`] that fetches the next
//! page when the previous one is consumed, following `next_page_cursor`.

mod access_codes;
mod action_attempts;
mod client;
mod devices;
mod error;
mod events;
#[cfg(test)]
mod fixtures;
mod pagination;
mod wait;

/// The wire types (`keyway-model`).
pub use keyway_model as model;

pub use access_codes::{
    AccessCodes, ConvertToManaged, CreateAccessCode, CreatedAccessCode, ListAccessCodes,
    ListUnmanagedAccessCodes, UnmanagedAccessCodes, UpdateAccessCode,
};
pub use action_attempts::{ActionAttempts, ListActionAttempts};
pub use client::{Client, ClientBuilder, DEFAULT_ENDPOINT, SDK_NAME, SDK_VERSION};
pub use devices::{ConnectedAccounts, Devices, ListConnectedAccounts, ListDevices, Locks};
pub use error::Error;
pub use events::{Events, ListEvents, Workspaces};
pub use pagination::{ItemStream, Page};
