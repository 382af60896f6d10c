//! The Keyway server: Seam-compatible HTTP API, the engine that drives locks, and the CLI
//! (server commands in `cli`, client commands in `commands`).

pub mod app;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod list_cache;
pub mod params;
pub mod routes;
pub mod webhooks;
pub mod zwave;

pub use app::{start, start_with_clock, RunningServer, ServerConfig};
pub use engine::EngineConfig;
pub use webhooks::WebhookConfig;
