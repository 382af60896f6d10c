//! Backup access codes: a pool programmed ahead, handed out once, removed after the original.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

async fn device(app: &TestApp) -> serde_json::Value {
    app.get("/devices/get", KEY1, &[("device_id", DEVICE1)])
        .await
        .1["device"]
        .clone()
}

async fn wait_for_pool(app: &TestApp, ready: usize) {
    for _ in 0..200 {
        if app.lock_pins(DEVICE1).await.len() >= ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backup pool never filled");
}

async fn wait_for_available_backup(app: &TestApp, access_code_id: &str) {
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, got) = app.get_code(access_code_id).await;
        if got["access_code"]["is_backup_access_code_available"] == true {
            return;
        }
        last = got;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no backup became available for {access_code_id}: {last}");
}

#[tokio::test]
async fn backups_are_programmed_ahead_handed_out_once_and_refilled() {
    let app = spawn_app().await;
    let (status, _) = app
        .post(
            "/access_codes/create",
            KEY1,
            json!({ "device_id": DEVICE1, "code": "1010", "use_backup_access_code_pool": true }),
        )
        .await;
    assert_eq!(status, 400, "ongoing codes have no backups");
    let first = app
        .create_code(json!({
            "device_id": DEVICE1, "code": "2020", "name": "Booking A",
            "starts_at": in_millis(-1000), "ends_at": in_millis(3000),
            "use_backup_access_code_pool": true,
        }))
        .await;
    let second = app
        .create_code(json!({
            "device_id": DEVICE1, "code": "3030",
            "starts_at": in_millis(-1000), "ends_at": in_millis(60_000),
            "use_backup_access_code_pool": true,
        }))
        .await;
    let first_id = first["access_code_id"].as_str().unwrap();
    let second_id = second["access_code_id"].as_str().unwrap();
    // Two codes plus a pool of two backups on the lock.
    wait_for_pool(&app, 4).await;
    app.wait_for_status(first_id, "set").await;
    // The lock holds the pool's PINs a moment before the round records them as `set`.
    wait_for_available_backup(&app, first_id).await;
    assert!(device(&app).await["errors"].as_array().unwrap().is_empty());
    // Backups are not listed among the codes.
    let (_, list) = app
        .get("/access_codes/list", KEY1, &[("device_id", DEVICE1)])
        .await;
    assert_eq!(list["access_codes"].as_array().unwrap().len(), 2);

    let (status, pulled) = app
        .post(
            "/access_codes/pull_backup_access_code",
            KEY1,
            json!({ "access_code_id": first_id }),
        )
        .await;
    assert_eq!(status, 200, "{pulled}");
    let backup = pulled["backup_access_code"].clone();
    assert_eq!(pulled["access_code"], backup);
    assert_eq!(backup["is_backup"], true);
    assert_eq!(backup["status"], "set");
    let backup_id = backup["access_code_id"].as_str().unwrap();
    // Idempotent for the same code; another code gets another backup.
    let (_, again) = app
        .post(
            "/access_codes/pull_backup_access_code",
            KEY1,
            json!({ "access_code_id": first_id }),
        )
        .await;
    assert_eq!(again["backup_access_code"]["access_code_id"], backup_id);
    let (_, other) = app
        .post(
            "/access_codes/pull_backup_access_code",
            KEY1,
            json!({ "access_code_id": second_id }),
        )
        .await;
    assert_ne!(other["backup_access_code"]["access_code_id"], backup_id);
    assert_ne!(other["backup_access_code"]["code"], backup["code"]);
    let (_, original) = app.get_code(first_id).await;
    assert_eq!(
        original["access_code"]["pulled_backup_access_code_id"],
        backup_id
    );
    assert!(app
        .event_types(first_id)
        .await
        .contains(&"access_code.backup_access_code_pulled".to_owned()));

    // The pool is refilled, and the backup leaves the lock with the original.
    app.wait_until_gone(first_id).await;
    app.wait_until_gone(backup_id).await;
    let pins = app.lock_pins(DEVICE1).await;
    assert!(
        !pins.contains(&backup["code"].as_str().unwrap().to_owned()),
        "{pins:?}"
    );
    assert!(!pins.contains(&"2020".to_owned()));
    // 3030 + its backup + a refilled pool of two.
    wait_for_pool(&app, 4).await;

    let (status, body) = app
        .post(
            "/access_codes/pull_backup_access_code",
            KEY1,
            json!({ "access_code_id": app.create_code(json!({ "device_id": DEVICE1, "code": "4040" })).await["access_code_id"] }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "access_code_not_time_bound");
}

fn codes_of(list: &serde_json::Value, key: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i[key].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_device_reports_a_partial_then_an_empty_pool() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for pin in ["5050", "6060"] {
        let code = app
            .create_code(json!({
                "device_id": DEVICE1, "code": pin,
                "starts_at": in_millis(-1000), "ends_at": in_millis(60_000),
                "use_backup_access_code_pool": true,
            }))
            .await;
        ids.push(code["access_code_id"].as_str().unwrap().to_owned());
    }
    wait_for_pool(&app, 4).await;
    // The lock goes offline: pulled backups cannot be replaced on it.
    app.post(
        "/devices/simulate/disconnect",
        KEY1,
        json!({ "device_id": DEVICE1 }),
    )
    .await;
    app.post(
        "/access_codes/pull_backup_access_code",
        KEY1,
        json!({ "access_code_id": ids[0] }),
    )
    .await;
    let lock = device(&app).await;
    assert_eq!(
        codes_of(&lock["warnings"], "warning_code"),
        vec!["partial_backup_access_code_pool"]
    );
    app.post(
        "/access_codes/pull_backup_access_code",
        KEY1,
        json!({ "access_code_id": ids[1] }),
    )
    .await;
    let lock = device(&app).await;
    assert!(codes_of(&lock["errors"], "error_code")
        .contains(&"empty_backup_access_code_pool".to_owned()));
    // Back online: the pool is full again.
    app.post(
        "/devices/simulate/connect",
        KEY1,
        json!({ "device_id": DEVICE1 }),
    )
    .await;
    for _ in 0..200 {
        let lock = device(&app).await;
        if lock["errors"] == json!([]) && lock["warnings"] == json!([]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the pool never recovered");
}
