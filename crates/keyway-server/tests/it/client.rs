//! `keyway-client` against a real Keyway: every route through the typed client, the wait
//! helpers, streams across pages, and each error variant.

use std::time::Duration;

use futures::TryStreamExt;
use keyway_client::model::{
    AccessCodeStatus, ActionAttemptStatus, ActionType, EventType, Timestamp,
};
use keyway_client::{
    Client, ConvertToManaged, CreateAccessCode, Error, ListAccessCodes, ListActionAttempts,
    ListConnectedAccounts, ListDevices, ListEvents, ListUnmanagedAccessCodes, UpdateAccessCode,
};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

fn client_for(app: &TestApp, key: &str) -> Client {
    Client::builder()
        .endpoint(app.server.url())
        .api_key(key)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("client")
}

#[tokio::test]
async fn created_code_is_waited_for_until_the_lock_confirmed_it() {
    let app = spawn_app().await;
    let client = client_for(&app, KEY1);
    let created = client
        .access_codes()
        .create(&CreateAccessCode::new(DEVICE1).name("Guest").code("4821"))
        .await
        .expect("create");
    assert_eq!(created.access_code.status, AccessCodeStatus::Setting);
    let attempt = created.action_attempt.expect("Keyway sends the attempt");
    assert_eq!(attempt.action_type, ActionType::CreateAccessCode);

    let set = client
        .access_codes()
        .wait_until_set(&created.access_code.access_code_id, WAIT)
        .await
        .expect("set");
    assert_eq!(set.status, AccessCodeStatus::Set);
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["4821"]);
    let done = client
        .action_attempts()
        .wait(&attempt.action_attempt_id, WAIT)
        .await
        .expect("attempt settles");
    assert_eq!(done.status, ActionAttemptStatus::Success);
    let by_pin = client
        .access_codes()
        .get_by_code(DEVICE1, "4821")
        .await
        .expect("get by PIN");
    assert_eq!(by_pin.access_code_id, set.access_code_id);
}

#[tokio::test]
async fn a_stream_walks_every_page() {
    let app = spawn_app().await;
    let client = client_for(&app, KEY1);
    let mut ids = Vec::new();
    for pin in ["1357", "2468", "3579", "4680", "5791"] {
        let created = client
            .access_codes()
            .create(&CreateAccessCode::new(DEVICE1).code(pin))
            .await
            .expect("create");
        ids.push(created.access_code.access_code_id);
    }
    let params = ListAccessCodes {
        limit: Some(2),
        ..ListAccessCodes::device(DEVICE1)
    };
    let first = client.access_codes().list(&params).await.expect("page 1");
    assert_eq!(first.items.len(), 2);
    assert!(first.next_cursor().is_some());
    let all: Vec<_> = client
        .access_codes()
        .list_stream(&params)
        .expect("params")
        .try_collect()
        .await
        .expect("every page");
    let listed: Vec<_> = all.into_iter().map(|c| c.access_code_id).collect();
    assert_eq!(listed, ids);

    let devices: Vec<_> = client
        .devices()
        .list_stream(&ListDevices {
            limit: Some(2),
            ..Default::default()
        })
        .expect("params")
        .try_collect()
        .await
        .expect("devices");
    assert_eq!(devices.len(), 3);
}

#[tokio::test]
async fn error_answers_become_typed_errors() {
    let app = spawn_app().await;
    let client = client_for(&app, KEY1);
    match client.access_codes().get("no_such_code").await {
        Err(Error::NotFound { kind, message }) => {
            assert_eq!(kind, "access_code_not_found");
            assert_eq!(message, "Access code not found");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    let error = client
        .access_codes()
        .create(&CreateAccessCode::new("no_such_device").code("1234"))
        .await
        .expect_err("unknown device");
    assert_eq!(error.to_string(), "device_not_found: Device not found");
    assert_eq!(error.status(), Some(404));

    client
        .access_codes()
        .create(&CreateAccessCode::new(DEVICE1).code("8642"))
        .await
        .expect("first");
    match client
        .access_codes()
        .create(&CreateAccessCode::new(DEVICE1).code("8642"))
        .await
    {
        Err(Error::Conflict { kind, .. }) => assert_eq!(kind, "duplicate_access_code"),
        other => panic!("expected a 409, got {other:?}"),
    }

    match client
        .access_codes()
        .create(&CreateAccessCode::new(DEVICE1).code("12"))
        .await
    {
        Err(Error::InvalidInput {
            message,
            validation_errors: Some(errors),
        }) => {
            assert!(!message.is_empty());
            assert!(errors["code"]["_errors"][0].is_string(), "{errors}");
        }
        other => panic!("expected a 400 with validation errors, got {other:?}"),
    }

    let stranger = client_for(&app, "seam_not_a_known_key");
    match stranger.workspaces().get().await {
        Err(error @ Error::Unauthorized { .. }) => assert_eq!(error.status(), Some(401)),
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn an_update_reprograms_the_lock() {
    let app = spawn_app().await;
    let client = client_for(&app, KEY1);
    let created = client
        .access_codes()
        .create(&CreateAccessCode::new(DEVICE1).name("Guest").code("1470"))
        .await
        .expect("create");
    let id = created.access_code.access_code_id;
    client
        .access_codes()
        .wait_until_set(&id, WAIT)
        .await
        .expect("set");

    let attempt = client
        .access_codes()
        .update(&UpdateAccessCode {
            name: Some("Cleaner".into()),
            code: Some("2581".into()),
            ..UpdateAccessCode::new(&id)
        })
        .await
        .expect("update");
    assert_eq!(attempt.action_type, ActionType::UpdateAccessCode);
    client
        .action_attempts()
        .wait(&attempt.action_attempt_id, WAIT)
        .await
        .expect("update settles");
    let code = client
        .access_codes()
        .wait_until_set(&id, WAIT)
        .await
        .expect("set again");
    assert_eq!(code.name.as_deref(), Some("Cleaner"));
    assert_eq!(code.code.as_deref(), Some("2581"));
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["2581"]);
}

#[tokio::test]
async fn a_deleted_code_is_waited_for_until_it_is_gone() {
    let app = spawn_app().await;
    let client = client_for(&app, KEY1);
    let created = client
        .access_codes()
        .create(&CreateAccessCode::new(DEVICE1).code("9630"))
        .await
        .expect("create");
    let id = created.access_code.access_code_id;
    client
        .access_codes()
        .wait_until_set(&id, WAIT)
        .await
        .expect("set");
    let attempt = client.access_codes().delete(&id).await.expect("delete");
    assert_eq!(attempt.action_type, ActionType::DeleteAccessCode);
    client
        .access_codes()
        .wait_until_deleted(&id, WAIT)
        .await
        .expect("gone");
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    let attempts = client
        .action_attempts()
        .list(&ListActionAttempts {
            action_attempt_ids: Some(vec![attempt.action_attempt_id.clone()]),
            ..Default::default()
        })
        .await
        .expect("attempts");
    assert_eq!(attempts.items.len(), 1);
    assert!(matches!(
        client.access_codes().delete(&id).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn events_tell_the_life_of_a_code() {
    let app = spawn_app().await;
    let client = client_for(&app, KEY1);
    let before = Timestamp(chrono::Utc::now() - chrono::Duration::seconds(5));
    let created = client
        .access_codes()
        .create(&CreateAccessCode::new(DEVICE1).code("7531"))
        .await
        .expect("create");
    let id = created.access_code.access_code_id;
    client
        .access_codes()
        .wait_until_set(&id, WAIT)
        .await
        .expect("set");
    let events: Vec<_> = client
        .events()
        .list_stream(&ListEvents {
            access_code_id: Some(id.clone()),
            since: Some(before),
            limit: Some(1),
            ..Default::default()
        })
        .expect("params")
        .try_collect()
        .await
        .expect("events");
    let types: Vec<_> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        vec![
            EventType::AccessCodeCreated,
            EventType::AccessCodeSetOnDevice
        ]
    );
    let event = client
        .events()
        .get(&events[1].event_id)
        .await
        .expect("event");
    assert_eq!(event.code.as_deref(), Some("7531"));
    let only_set = client
        .events()
        .list(&ListEvents {
            event_type: Some("access_code.set_on_device".into()),
            ..Default::default()
        })
        .await
        .expect("filtered");
    assert_eq!(only_set.items.len(), 1);
}

#[tokio::test]
async fn every_other_route_answers_through_the_client() {
    let app = spawn_app().await;
    let client = client_for(&app, KEY1);
    let workspace = client.workspaces().get().await.expect("workspace");
    assert_eq!(workspace.workspace_id, "seed_workspace_1");
    assert_eq!(client.workspaces().list().await.expect("list").len(), 1);

    let device = client.devices().get(DEVICE1).await.expect("device");
    assert_eq!(device.display_name, "Front Door");
    let by_name = client
        .devices()
        .get_by_name("Front Door")
        .await
        .expect("by name");
    assert_eq!(by_name.device_id, DEVICE1);
    let lock = client.locks().get(DEVICE1).await.expect("lock");
    assert_eq!(lock.device_id, DEVICE1);
    let locks = client
        .locks()
        .list(&ListDevices::default())
        .await
        .expect("locks");
    assert_eq!(locks.items.len(), 3);
    let accounts: Vec<_> = client
        .connected_accounts()
        .list_stream(&ListConnectedAccounts::default())
        .expect("params")
        .try_collect()
        .await
        .expect("accounts");
    assert_eq!(accounts.len(), 2);
    client
        .connected_accounts()
        .get(&device.connected_account_id)
        .await
        .expect("account");

    let generated = client
        .access_codes()
        .generate_code(DEVICE1)
        .await
        .expect("generate");
    assert_eq!(generated.device_id, DEVICE1);

    client
        .devices()
        .simulate_disconnect(DEVICE1)
        .await
        .expect("disconnect");
    let offline = client.devices().get(DEVICE1).await.expect("device");
    assert!(offline
        .errors
        .iter()
        .any(|e| e.error_code == "device_offline"));
    client
        .devices()
        .simulate_connect(DEVICE1)
        .await
        .expect("connect");

    let unmanaged = client
        .access_codes()
        .simulate_create_unmanaged(DEVICE1, "Keypad", "3333")
        .await
        .expect("simulate");
    assert!(!unmanaged.is_managed);
    let listed = client
        .access_codes()
        .unmanaged()
        .list(&ListUnmanagedAccessCodes::device(DEVICE1))
        .await
        .expect("unmanaged list");
    assert_eq!(listed.items.len(), 1);
    let got = client
        .access_codes()
        .unmanaged()
        .get(&unmanaged.access_code_id)
        .await
        .expect("unmanaged get");
    assert_eq!(got.code.as_deref(), Some("3333"));
    // Converting makes it a managed code; converting again is a typed 404.
    let convert = ConvertToManaged {
        access_code_id: unmanaged.access_code_id.clone(),
        ..Default::default()
    };
    client
        .access_codes()
        .unmanaged()
        .convert_to_managed(&convert)
        .await
        .expect("convert");
    let managed = client
        .access_codes()
        .get(&unmanaged.access_code_id)
        .await
        .expect("now managed");
    assert!(managed.is_managed);
    match client
        .access_codes()
        .unmanaged()
        .convert_to_managed(&convert)
        .await
    {
        Err(Error::NotFound { kind, .. }) => assert_eq!(kind, "access_code_not_found"),
        other => panic!("expected a 404, got {other:?}"),
    }
}
