//! Faults through the simulate routes: what the device and its codes report.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// The `key` of each entry of the `list` array of `value` (`errors`/`error_code`, ...).
fn listed_codes(value: &serde_json::Value, list: &str, key: &str) -> Vec<String> {
    value[list]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e[key].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn error_codes(value: &serde_json::Value) -> Vec<String> {
    listed_codes(value, "errors", "error_code")
}

fn warning_codes(value: &serde_json::Value) -> Vec<String> {
    listed_codes(value, "warnings", "warning_code")
}

#[tokio::test]
async fn an_offline_device_marks_its_codes_until_it_returns() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "1357" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    app.wait_for_status(id, "set").await;
    app.post(
        "/devices/simulate/disconnect",
        KEY1,
        json!({ "device_id": DEVICE1 }),
    )
    .await;
    let (_, got) = app.get_code(id).await;
    assert_eq!(error_codes(&got["access_code"]), vec!["device_offline"]);
    assert_eq!(got["access_code"]["errors"][0]["is_device_error"], true);
    app.post(
        "/devices/simulate/connect",
        KEY1,
        json!({ "device_id": DEVICE1 }),
    )
    .await;
    let (_, got) = app.get_code(id).await;
    assert!(error_codes(&got["access_code"]).is_empty());
}

#[tokio::test]
async fn a_lock_that_times_out_is_retried_until_it_answers() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/devices/simulate/configure_sandbox_lock",
            KEY1,
            json!({ "device_id": DEVICE1, "fail_next_operations": 3 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "2468" }))
        .await;
    let set = app
        .wait_for_status(code["access_code_id"].as_str().unwrap(), "set")
        .await;
    assert_eq!(set["errors"], json!([]));
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["2468"]);
    let (status, _) = app
        .post(
            "/devices/simulate/configure_sandbox_lock",
            KEY1,
            json!({ "device_id": DEVICE1, "operation_delay_ms": 600_000 }),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_removed_device_and_a_disconnected_account_say_so() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": "august_device_2", "code": "9753" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    app.wait_for_status(id, "set").await;
    app.post(
        "/devices/simulate/remove",
        KEY1,
        json!({ "device_id": "august_device_2" }),
    )
    .await;
    let (_, device) = app
        .get("/devices/get", KEY1, &[("device_id", "august_device_2")])
        .await;
    assert_eq!(error_codes(&device["device"]), vec!["device_removed"]);
    let (_, got) = app.get_code(id).await;
    assert_eq!(error_codes(&got["access_code"]), vec!["device_removed"]);

    let (status, _) = app
        .post(
            "/connected_accounts/simulate/disconnect",
            KEY1,
            json!({ "connected_account_id": "jane_connected_account_id" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, account) = app
        .get(
            "/connected_accounts/get",
            KEY1,
            &[("connected_account_id", "jane_connected_account_id")],
        )
        .await;
    assert_eq!(
        error_codes(&account["connected_account"]),
        vec!["account_disconnected"]
    );
    let (_, lock) = app
        .get("/devices/get", KEY1, &[("device_id", "schlage_device_id")])
        .await;
    assert_eq!(error_codes(&lock["device"]), vec!["account_disconnected"]);
    assert_eq!(lock["device"]["properties"]["online"], false);
    // Codes for its locks wait, never claiming `set`.
    let code = app
        .create_code(json!({ "device_id": "schlage_device_id", "code": "86420" }))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (_, got) = app.get_code(code["access_code_id"].as_str().unwrap()).await;
    assert_ne!(got["access_code"]["status"], "set");
    assert!(error_codes(&got["access_code"]).contains(&"account_disconnected".to_owned()));
    assert!(app.lock_pins("schlage_device_id").await.is_empty());
    let (status, _) = app
        .post(
            "/connected_accounts/simulate/disconnect",
            KEY2,
            json!({ "connected_account_id": "john_connected_account_id" }),
        )
        .await;
    assert_eq!(status, 404);
}

/// A lock that stops answering (each operation would take a minute) holds nothing up: the
/// engine abandons each call after its driver timeout, as "unknown", and tries again. The code
/// is warned about, never claimed `set`, and is set once the lock answers again.
#[tokio::test]
async fn a_lock_that_stops_answering_is_warned_about_then_set_when_it_answers() {
    let app = spawn_app_with(|config| {
        config.engine.driver_timeout = Duration::from_millis(300);
    })
    .await;
    let configure = |delay_ms: u32| {
        app.post(
            "/devices/simulate/configure_sandbox_lock",
            KEY1,
            json!({ "device_id": DEVICE1, "operation_delay_ms": delay_ms }),
        )
    };
    let (status, body) = configure(60_000).await;
    assert_eq!(status, 200, "{body}");
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "8642" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    let mut warned = None;
    for _ in 0..150 {
        let (_, body) = app.get_code(id).await;
        if warning_codes(&body["access_code"]).contains(&"delay_in_setting_on_device".to_owned()) {
            warned = Some(body["access_code"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warned = warned.expect("no delay warning while the lock does not answer");
    assert_eq!(warned["status"], "setting");

    let (status, _) = configure(0).await;
    assert_eq!(status, 200);
    let set = app.wait_for_status(id, "set").await;
    assert_eq!(set["errors"], json!([]));
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["8642"]);
}
