//! The wire types of Keyway's Seam-compatible API.
//!
//! Field names, enum values and nullability follow Seam Connect's OpenAPI document
//! (`shared/spec/`). This crate owns the JSON shape only: no validation rules, no I/O.

mod access_code;
mod action_attempt;
mod device;
mod error;
mod event;
mod time;
mod webhook;
mod workspace;

pub use access_code::{
    AccessCode, AccessCodeError, AccessCodeStatus, AccessCodeType, AccessCodeWarning,
    GeneratedCode, UnmanagedAccessCode,
};
pub use action_attempt::{ActionAttempt, ActionAttemptError, ActionAttemptStatus, ActionType};
pub use device::{
    CodeConstraint, ConnectedAccount, Device, DeviceError, DeviceModel, DeviceProperties,
    DeviceWarning,
};
pub use error::{ErrorBody, ErrorEnvelope};
pub use event::{Event, EventType};
pub use time::Timestamp;
pub use webhook::{Webhook, WebhookDelivery, WebhookDeliveryStatus, ALL_EVENT_TYPES};
pub use workspace::{Pagination, Workspace};
