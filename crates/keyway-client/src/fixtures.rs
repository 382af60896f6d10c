//! Answers recorded from Seam's fake server (npm `@seamapi/fake-seam-connect` 1.86.0, stack
//! traces removed) read through the client's own decoding: the offline half of the contract
//! test in `tests/fake_seam.rs`.

use keyway_model::{
    AccessCode, AccessCodeStatus, AccessCodeType, ActionAttempt, ConnectedAccount, Device, Event,
    GeneratedCode, UnmanagedAccessCode, Workspace,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::client::take;
use crate::error::Error;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fake-seam-1.86.0/",
            $name,
            ".json"
        ))
    };
}

fn read<T: DeserializeOwned>(raw: &str, key: &str) -> T {
    let mut body: Map<String, Value> = serde_json::from_str(raw).expect("fixture is JSON");
    match take(key, &mut body, key) {
        Ok(value) => value,
        Err(error) => panic!("{error}"),
    }
}

#[test]
fn managed_codes_read_without_the_fields_the_fake_omits() {
    let code: AccessCode = read(fixture!("access_codes_create"), "access_code");
    assert_eq!(code.status, AccessCodeStatus::Setting);
    assert!(!code.is_backup && !code.is_scheduled_on_device);
    let code: AccessCode = read(fixture!("access_codes_create_time_bound"), "access_code");
    assert_eq!(code.kind, AccessCodeType::TimeBound);
    assert!(code.starts_at.is_some() && code.ends_at.is_some());
    let codes: Vec<AccessCode> = read(fixture!("access_codes_list"), "access_codes");
    assert!(codes.len() >= 2);
}

#[test]
fn unmanaged_codes_and_generated_codes_read() {
    let code: UnmanagedAccessCode = read(fixture!("simulate_unmanaged"), "access_code");
    assert!(!code.is_managed);
    let codes: Vec<UnmanagedAccessCode> = read(fixture!("unmanaged_list"), "access_codes");
    assert_eq!(codes.len(), 1);
    let generated: GeneratedCode = read(fixture!("generate_code"), "generated_code");
    assert_eq!(generated.device_id, "august_device_1");
}

#[test]
fn action_attempts_read() {
    for name in [
        fixture!("access_codes_update"),
        fixture!("access_codes_delete"),
    ] {
        let _: ActionAttempt = read(name, "action_attempt");
    }
    let _: ActionAttempt = read(fixture!("action_attempts_get"), "action_attempt");
    let _: Vec<ActionAttempt> = read(fixture!("action_attempts_list"), "action_attempts");
}

#[test]
fn devices_accounts_events_and_workspaces_read() {
    // The seed holds a thermostat and a noise sensor too: no `locked`, no code rules.
    let devices: Vec<Device> = read(fixture!("devices_list"), "devices");
    assert!(devices.len() >= 3);
    let lock: Device = read(fixture!("locks_get"), "lock");
    assert_eq!(lock.properties.name, "Fake August Lock 1");
    let accounts: Vec<ConnectedAccount> =
        read(fixture!("connected_accounts_list"), "connected_accounts");
    assert!(accounts.iter().all(|a| a.errors.is_empty()));
    let events: Vec<Event> = read(fixture!("events_list"), "events");
    assert!(!events.is_empty());
    let _: Workspace = read(fixture!("workspaces_get"), "workspace");
}

#[test]
fn the_fakes_errors_classify() {
    let error = Error::from_answer(409, fixture!("error_duplicate").as_bytes());
    assert!(matches!(error, Error::Conflict { ref kind, .. } if kind == "duplicate_access_code"));
    match Error::from_answer(400, fixture!("error_invalid_input").as_bytes()) {
        Error::InvalidInput {
            message,
            validation_errors: Some(errors),
        } => {
            assert_eq!(message, "device_id is required");
            assert_eq!(errors["device_id"]["_errors"][0], "Required");
        }
        other => panic!("{other:?}"),
    }
}
