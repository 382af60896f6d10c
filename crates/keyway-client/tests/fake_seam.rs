//! The client against Seam's own fake server (npm `@seamapi/fake-seam-connect`), both ways:
//! the fake accepts every request the client sends, and its answers read into the client's
//! types. Runs when `KEYWAY_FAKE_SEAM_URL` names a running, seeded fake
//! (`tests/fake-seam/run.sh` starts one); otherwise it prints a note and passes.
//!
//! The fake has no engine (no code ever reaches `set`), no pagination, no workspace scoping and
//! no `unmanaged/get` or `unmanaged/convert_to_managed`: the assertions follow what it does.

use std::time::Duration;

use futures::TryStreamExt;
use keyway_client::model::{
    AccessCodeStatus, ActionAttemptStatus, ActionType, EventType, Timestamp,
};
use keyway_client::{
    Client, ConvertToManaged, CreateAccessCode, Error, ListAccessCodes, ListActionAttempts,
    ListConnectedAccounts, ListDevices, ListEvents, ListUnmanagedAccessCodes, UpdateAccessCode,
};
use serde_json::Value;

fn fake_url() -> Option<String> {
    match std::env::var("KEYWAY_FAKE_SEAM_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped: KEYWAY_FAKE_SEAM_URL is not set (tests/fake-seam/run.sh starts Seam's \
                 fake and sets it)"
            );
            None
        }
    }
}

/// The fake's seed: names → ids and API keys.
async fn seed(url: &str) -> Value {
    let response = reqwest::get(format!("{url}/_fake/default_seed"))
        .await
        .expect("GET /_fake/default_seed");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("seed is JSON")
}

fn text<'a>(seed: &'a Value, key: &str) -> &'a str {
    seed[key]
        .as_str()
        .unwrap_or_else(|| panic!("seed has no {key}: {seed}"))
}

/// A PIN unlikely to be on the device already, so the test can run twice on one fake.
fn fresh_pin() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:06}", nanos % 1_000_000)
}

#[tokio::test]
async fn the_client_and_seams_fake_agree() {
    let Some(url) = fake_url() else { return };
    let seed = seed(&url).await;
    let client = Client::new(&url, text(&seed, "seam_apikey1_token")).expect("client");
    let device_id = text(&seed, "august_device_1");

    // Workspace, devices, locks, connected accounts.
    let workspace = client.workspaces().get().await.expect("workspaces/get");
    assert_eq!(workspace.workspace_id, text(&seed, "seed_workspace_1"));
    assert!(!client
        .workspaces()
        .list()
        .await
        .expect("workspaces/list")
        .is_empty());
    let devices: Vec<_> = client
        .devices()
        .list_stream(&ListDevices::default())
        .expect("params")
        .try_collect()
        .await
        .expect("devices/list across pages");
    assert!(
        devices.iter().any(|d| d.device_id == device_id),
        "{devices:?}"
    );
    let one_page = client
        .devices()
        .list(&ListDevices {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .expect("devices/list limit 1");
    assert_eq!(one_page.items.len(), 1);
    let device = client.devices().get(device_id).await.expect("devices/get");
    assert_eq!(device.device_id, device_id);
    let lock = client.locks().get(device_id).await.expect("locks/get");
    assert_eq!(lock.device_id, device_id);
    let locks = client
        .locks()
        .list(&ListDevices::default())
        .await
        .expect("locks/list");
    assert!(!locks.items.is_empty());
    let accounts: Vec<_> = client
        .connected_accounts()
        .list_stream(&ListConnectedAccounts::default())
        .expect("params")
        .try_collect()
        .await
        .expect("connected_accounts/list");
    let account_id = text(&seed, "john_connected_account_id");
    assert!(accounts
        .iter()
        .any(|a| a.connected_account_id == account_id));
    client
        .connected_accounts()
        .get(account_id)
        .await
        .expect("connected_accounts/get");
    match client.devices().get("no_such_device").await {
        Err(Error::NotFound { kind, .. }) => assert_eq!(kind, "device_not_found"),
        other => panic!("expected device_not_found, got {other:?}"),
    }

    // Create, read back, duplicates.
    let pin = fresh_pin();
    let created = client
        .access_codes()
        .create(&CreateAccessCode::new(device_id).name("Contract").code(&pin))
        .await
        .expect("access_codes/create");
    let id = created.access_code.access_code_id.clone();
    assert_eq!(created.access_code.code.as_deref(), Some(pin.as_str()));
    assert_eq!(created.access_code.status, AccessCodeStatus::Setting);
    match client
        .access_codes()
        .create(&CreateAccessCode::new(device_id).code(&pin))
        .await
    {
        Err(Error::Conflict { kind, .. }) => assert_eq!(kind, "duplicate_access_code"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let time_bound = client
        .access_codes()
        .create(&CreateAccessCode::new(device_id).window(
            Timestamp::parse("2031-01-01T00:00:00Z").expect("instant"),
            Timestamp::parse("2031-01-02T00:00:00Z").expect("instant"),
        ))
        .await
        .expect("time-bound create");
    assert_eq!(time_bound.access_code.status, AccessCodeStatus::Unset);
    let got = client
        .access_codes()
        .get(&id)
        .await
        .expect("access_codes/get");
    assert_eq!(got.access_code_id, id);
    let by_pin = client
        .access_codes()
        .get_by_code(device_id, &pin)
        .await
        .expect("get by device and code");
    assert_eq!(by_pin.access_code_id, id);
    let listed: Vec<_> = client
        .access_codes()
        .list_stream(&ListAccessCodes::device(device_id))
        .expect("params")
        .try_collect()
        .await
        .expect("access_codes/list");
    assert!(listed.iter().any(|c| c.access_code_id == id));
    let generated = client
        .access_codes()
        .generate_code(device_id)
        .await
        .expect("generate_code");
    assert_eq!(generated.device_id, device_id);

    // The fake never sets a code: the wait helper times out, and says so.
    match client
        .access_codes()
        .wait_until_set(&id, Duration::from_millis(300))
        .await
    {
        Err(Error::Timeout { what, .. }) => assert!(what.contains("setting"), "{what}"),
        other => panic!("expected a timeout, got {other:?}"),
    }

    // Update through an action attempt.
    let attempt = client
        .access_codes()
        .update(&UpdateAccessCode {
            name: Some("Renamed".into()),
            ..UpdateAccessCode::new(&id)
        })
        .await
        .expect("access_codes/update");
    assert_eq!(attempt.action_type, ActionType::UpdateAccessCode);
    let done = client
        .action_attempts()
        .wait(&attempt.action_attempt_id, Duration::from_secs(5))
        .await
        .expect("update attempt settles");
    assert_eq!(done.status, ActionAttemptStatus::Success);
    let renamed = client.access_codes().get(&id).await.expect("get");
    assert_eq!(renamed.name.as_deref(), Some("Renamed"));
    let attempts = client
        .action_attempts()
        .list(&ListActionAttempts {
            action_attempt_ids: Some(vec![attempt.action_attempt_id.clone()]),
            ..Default::default()
        })
        .await
        .expect("action_attempts/list");
    assert_eq!(attempts.items.len(), 1);

    // Unmanaged codes: simulate and list work; get and convert are not served by the fake.
    let unmanaged = client
        .access_codes()
        .simulate_create_unmanaged(device_id, "Keypad", &fresh_pin()[..4])
        .await
        .expect("simulate/create_unmanaged_access_code");
    assert!(!unmanaged.is_managed);
    let listed = client
        .access_codes()
        .unmanaged()
        .list(&ListUnmanagedAccessCodes::device(device_id))
        .await
        .expect("unmanaged/list");
    assert!(listed
        .items
        .iter()
        .any(|c| c.access_code_id == unmanaged.access_code_id));
    let missing = client
        .access_codes()
        .unmanaged()
        .convert_to_managed(&ConvertToManaged {
            access_code_id: unmanaged.access_code_id.clone(),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );

    // Events: the fake requires `since` (400 invalid_input without it).
    match client.events().list(&ListEvents::default()).await {
        Err(Error::InvalidInput { message, .. }) => assert!(message.contains("since"), "{message}"),
        other => panic!("expected invalid_input, got {other:?}"),
    }
    let events: Vec<_> = client
        .events()
        .list_stream(&ListEvents {
            since: Timestamp::parse("2000-01-01T00:00:00Z"),
            ..Default::default()
        })
        .expect("params")
        .try_collect()
        .await
        .expect("events/list");
    let created_event = events
        .iter()
        .find(|e| {
            e.event_type == EventType::AccessCodeCreated && e.access_code_id.as_deref() == Some(&id)
        })
        .unwrap_or_else(|| panic!("no access_code.created for {id}: {events:?}"));
    let event = client
        .events()
        .get(&created_event.event_id)
        .await
        .expect("events/get");
    assert_eq!(event.event_id, created_event.event_id);

    // Delete, and wait for it.
    let attempt = client
        .access_codes()
        .delete(&id)
        .await
        .expect("access_codes/delete");
    assert_eq!(attempt.action_type, ActionType::DeleteAccessCode);
    client
        .action_attempts()
        .wait(&attempt.action_attempt_id, Duration::from_secs(5))
        .await
        .expect("delete attempt settles");
    client
        .access_codes()
        .wait_until_deleted(&id, Duration::from_secs(5))
        .await
        .expect("code is gone");
    eprintln!("keyway-client and Seam's fake at {url} agree");
}
