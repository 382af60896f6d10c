//! Door commands and keypad entries.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn lock_and_unlock_go_through_the_lock_and_report_events() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/locks/unlock_door",
            KEY1,
            json!({ "device_id": DEVICE1, "sync": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action_attempt"]["action_type"], "UNLOCK_DOOR");
    assert_eq!(body["action_attempt"]["status"], "success");
    let (_, lock) = app.get("/locks/get", KEY1, &[("device_id", DEVICE1)]).await;
    assert_eq!(lock["lock"]["properties"]["locked"], false);
    let (status, body) = app
        .post("/locks/lock_door", KEY1, json!({ "device_id": DEVICE1 }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action_attempt"]["status"], "pending");
    let attempt_id = body["action_attempt"]["action_attempt_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut done = false;
    for _ in 0..100 {
        let (_, got) = app
            .get(
                "/action_attempts/get",
                KEY1,
                &[("action_attempt_id", &attempt_id)],
            )
            .await;
        if got["action_attempt"]["status"] == "success" {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(done);
    let (_, events) = app
        .post(
            "/events/list",
            KEY1,
            json!({ "event_types": ["lock.locked", "lock.unlocked"] }),
        )
        .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_type"], "lock.unlocked");
    assert_eq!(events[0]["method"], "seamapi");
    assert_eq!(events[1]["event_type"], "lock.locked");
    assert_eq!(events[1]["action_attempt_id"], attempt_id.as_str());
    // An offline lock does not obey.
    app.post(
        "/devices/simulate/disconnect",
        KEY1,
        json!({ "device_id": DEVICE1 }),
    )
    .await;
    let (_, body) = app
        .post(
            "/locks/unlock_door",
            KEY1,
            json!({ "device_id": DEVICE1, "sync": true }),
        )
        .await;
    assert_eq!(body["action_attempt"]["status"], "error");
    assert_eq!(body["action_attempt"]["error"]["type"], "device_offline");
}

#[tokio::test]
async fn a_keypad_entry_unlocks_with_the_matching_code_and_one_time_codes_go_after_use() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "1593", "is_one_time_use": true }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    app.wait_for_status(id, "set").await;
    let (status, body) = app
        .post(
            "/locks/simulate/keypad_code_entry",
            KEY1,
            json!({ "device_id": DEVICE1, "code": "0000" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            "/locks/simulate/keypad_code_entry",
            KEY1,
            json!({ "device_id": DEVICE1, "code": "1593" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["action_attempt"]["action_type"],
        "SIMULATE_KEYPAD_CODE_ENTRY"
    );
    let (_, events) = app
        .post(
            "/events/list",
            KEY1,
            json!({ "event_types": ["lock.unlocked", "lock.access_denied"] }),
        )
        .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events[0]["event_type"], "lock.access_denied");
    assert_eq!(events[1]["event_type"], "lock.unlocked");
    assert_eq!(events[1]["method"], "keycode");
    assert_eq!(events[1]["access_code_id"], id);
    assert_eq!(events[1]["access_code_is_managed"], true);
    // Used once: removed from the lock.
    app.wait_until_gone(id).await;
    assert!(app.lock_pins(DEVICE1).await.is_empty());
}
