//! The life of a managed access code, from the API to the lock and back.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn created_code_is_setting_then_set_once_the_lock_confirmed_it() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/access_codes/create",
            KEY1,
            json!({ "device_id": DEVICE1, "name": "Guest", "code": "4821" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    let code = &body["access_code"];
    assert_eq!(code["status"], "setting");
    assert_eq!(code["type"], "ongoing");
    assert_eq!(code["code"], "4821");
    assert_eq!(code["is_managed"], true);
    assert_eq!(code["workspace_id"], "seed_workspace_1");
    assert_eq!(body["action_attempt"]["status"], "pending");
    assert_eq!(body["action_attempt"]["action_type"], "CREATE_ACCESS_CODE");
    let id = code["access_code_id"].as_str().unwrap();

    let set = app.wait_for_status(id, "set").await;
    assert_eq!(set["errors"], json!([]));
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["4821"]);
    assert_eq!(
        app.event_types(id).await,
        vec!["access_code.created", "access_code.set_on_device"]
    );
    let attempt_id = body["action_attempt"]["action_attempt_id"]
        .as_str()
        .unwrap();
    let (_, attempt) = app
        .get(
            "/action_attempts/get",
            KEY1,
            &[("action_attempt_id", attempt_id)],
        )
        .await;
    assert_eq!(attempt["action_attempt"]["status"], "success");
    assert_eq!(
        attempt["action_attempt"]["result"]["access_code"]["status"],
        "set"
    );
}

#[tokio::test]
async fn deleted_code_leaves_the_lock_and_then_answers_404() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "5150" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    app.wait_for_status(id, "set").await;

    let (status, body) = app
        .post(
            "/access_codes/delete",
            KEY1,
            json!({ "access_code_id": id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action_attempt"]["action_type"], "DELETE_ACCESS_CODE");
    let missing = app.wait_until_gone(id).await;
    assert_eq!(missing["error"]["type"], "access_code_not_found");
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    let events = app.event_types(id).await;
    assert_eq!(
        events[events.len() - 2..],
        ["access_code.removed_from_device", "access_code.deleted"]
    );
    let attempt_id = body["action_attempt"]["action_attempt_id"]
        .as_str()
        .unwrap();
    let (_, attempt) = app
        .get(
            "/action_attempts/get",
            KEY1,
            &[("action_attempt_id", attempt_id)],
        )
        .await;
    assert_eq!(attempt["action_attempt"]["status"], "success");
}

#[tokio::test]
async fn a_new_pin_is_reprogrammed_but_a_new_name_does_not_touch_the_lock() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "1111" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    app.wait_for_status(id, "set").await;
    let operations = app.server.store.sandbox_operations(DEVICE1).await.unwrap();

    let (status, body) = app
        .send(
            reqwest::Method::PATCH,
            "/access_codes/update",
            json!({ "access_code_id": id, "name": "Renamed" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action_attempt"]["status"], "success");
    let (_, renamed) = app.get_code(id).await;
    assert_eq!(renamed["access_code"]["name"], "Renamed");
    assert_eq!(renamed["access_code"]["status"], "set");
    assert_eq!(
        app.server.store.sandbox_operations(DEVICE1).await.unwrap(),
        operations
    );

    let (status, body) = app
        .post(
            "/access_codes/update",
            KEY1,
            json!({ "access_code_id": id, "code": "2222" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action_attempt"]["action_type"], "UPDATE_ACCESS_CODE");
    let (_, during) = app.get_code(id).await;
    assert_ne!(during["access_code"]["code"], "1111");
    let set = app.wait_for_status(id, "set").await;
    assert_eq!(set["code"], "2222");
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["2222"]);
}

#[tokio::test]
async fn time_bound_code_is_unset_before_its_window_set_during_and_gone_after() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({
            "device_id": DEVICE1,
            "code": "8642",
            "starts_at": in_millis(800),
            "ends_at": in_millis(2000),
        }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    assert_eq!(code["type"], "time_bound");
    assert_eq!(code["status"], "unset");
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    app.wait_for_status(id, "set").await;
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["8642"]);
    app.wait_until_gone(id).await;
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    let events = app.event_types(id).await;
    assert!(
        events.contains(&"access_code.removed_from_device".to_owned()),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_pin_conflicts_only_with_codes_whose_windows_overlap() {
    let app = spawn_app().await;
    app.create_code(json!({ "device_id": DEVICE1, "code": "3030" }))
        .await;
    let (status, body) = app
        .post(
            "/access_codes/create",
            KEY1,
            json!({ "device_id": DEVICE1, "code": "3030" }),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["type"], "duplicate_access_code");
    assert_eq!(body["ok"], false);
    // Same PIN on another lock is fine.
    app.create_code(json!({ "device_id": "august_device_2", "code": "3030" }))
        .await;
    // Two bookings with the same PIN that never overlap.
    let first = json!({ "device_id": "august_device_2", "code": "4040",
        "starts_at": in_millis(3_600_000), "ends_at": in_millis(7_200_000) });
    let second = json!({ "device_id": "august_device_2", "code": "4040",
        "starts_at": in_millis(7_200_000), "ends_at": in_millis(9_000_000) });
    let overlapping = json!({ "device_id": "august_device_2", "code": "4040",
        "starts_at": in_millis(5_000_000), "ends_at": in_millis(8_000_000) });
    app.create_code(first).await;
    app.create_code(second).await;
    let (status, _) = app.post("/access_codes/create", KEY1, overlapping).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn codes_breaking_the_locks_rules_are_refused_with_the_reason() {
    let app = spawn_app().await;
    let cases = [
        (json!({ "device_id": DEVICE1, "code": "123" }), "code"),
        (json!({ "device_id": DEVICE1, "code": "1234567" }), "code"),
        (json!({ "device_id": DEVICE1, "code": "12a4" }), "code"),
        (
            json!({ "device_id": "schlage_device_id", "code": "1299" }),
            "code",
        ),
        (json!({ "device_id": DEVICE1, "code": 1234 }), "code"),
        (json!({ "code": "1234" }), "device_id"),
    ];
    for (input, field) in cases {
        let (status, body) = app.post("/access_codes/create", KEY1, input.clone()).await;
        assert_eq!(status, 400, "{input} → {body}");
        assert_eq!(body["error"]["type"], "invalid_input", "{body}");
        assert!(
            body["error"]["validation_errors"][field]["_errors"][0].is_string(),
            "{input} → {body}"
        );
    }
    let (_, body) = app
        .post(
            "/access_codes/create",
            KEY1,
            json!({ "device_id": DEVICE1, "code": "123" }),
        )
        .await;
    assert_eq!(
        body["error"]["message"],
        "code must be 4, 5, 6 digits long for this device, got 3"
    );
    let windows = [
        json!({ "device_id": DEVICE1, "starts_at": in_millis(5000), "ends_at": in_millis(1000) }),
        json!({ "device_id": DEVICE1, "starts_at": in_millis(-5000), "ends_at": in_millis(-1000) }),
        json!({ "device_id": DEVICE1, "starts_at": in_millis(5000) }),
        json!({ "device_id": DEVICE1, "starts_at": "yesterday", "ends_at": in_millis(1000) }),
    ];
    for input in windows {
        let (status, body) = app.post("/access_codes/create", KEY1, input.clone()).await;
        assert_eq!(status, 400, "{input} → {body}");
        assert_eq!(body["error"]["type"], "invalid_input");
    }
    let (status, body) = app
        .post(
            "/access_codes/create",
            KEY1,
            json!({ "device_id": "no_such_lock", "code": "1234" }),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "device_not_found");
}

#[tokio::test]
async fn generated_codes_follow_the_lock_and_avoid_its_pins() {
    let app = spawn_app().await;
    app.create_code(json!({ "device_id": "schlage_device_id", "code": "5555" }))
        .await;
    for _ in 0..30 {
        let (status, body) = app
            .get(
                "/access_codes/generate_code",
                KEY1,
                &[("device_id", "schlage_device_id")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let code = body["generated_code"]["code"].as_str().unwrap();
        assert_eq!(body["generated_code"]["device_id"], "schlage_device_id");
        assert!((4..=8).contains(&code.len()), "{code}");
        assert!(!code.starts_with("12"), "{code}");
        assert_ne!(code, "5555");
    }
    // A code created without a PIN gets one the lock accepts.
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "preferred_code_length": 6 }))
        .await;
    assert_eq!(code["code"].as_str().unwrap().len(), 6);
    app.wait_for_status(code["access_code_id"].as_str().unwrap(), "set")
        .await;
}

#[tokio::test]
async fn list_pages_through_every_code_once() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let code = app
            .create_code(json!({ "device_id": DEVICE1, "code": format!("700{n}") }))
            .await;
        ids.push(code["access_code_id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = json!({ "device_id": DEVICE1, "limit": 2 });
        if let Some(c) = &cursor {
            body["page_cursor"] = json!(c);
        }
        let (status, page) = app.post("/access_codes/list", KEY1, body).await;
        assert_eq!(status, 200, "{page}");
        for code in page["access_codes"].as_array().unwrap() {
            seen.push(code["access_code_id"].as_str().unwrap().to_owned());
        }
        if page["pagination"]["has_next_page"] != true {
            assert!(page["pagination"]["next_page_cursor"].is_null());
            break;
        }
        cursor = page["pagination"]["next_page_cursor"]
            .as_str()
            .map(str::to_owned);
    }
    assert_eq!(seen, ids);
    let (_, by_ids) = app
        .post(
            "/access_codes/list",
            KEY1,
            json!({ "access_code_ids": [ids[1], ids[3]] }),
        )
        .await;
    assert_eq!(by_ids["access_codes"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn windows_follow_the_injected_clock_not_the_wall_clock() {
    let clock = ManualClock::new();
    let app = spawn_app_with_clock(clock.clone()).await;
    let hour = std::time::Duration::from_secs(3600);
    let code = app
        .create_code(json!({
            "device_id": DEVICE1,
            "code": "7531",
            "starts_at": clock.in_(hour),
            "ends_at": clock.in_(hour * 3),
        }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    assert_eq!(code["status"], "unset");
    // An hour later (on the clock, a moment later on the wall), the window is open.
    clock.advance(hour + std::time::Duration::from_secs(1));
    app.wait_for_status(id, "set").await;
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["7531"]);
    // Two more hours: it has ended and left the lock.
    clock.advance(hour * 2);
    app.wait_until_gone(id).await;
    assert!(app.lock_pins(DEVICE1).await.is_empty());
}

#[tokio::test]
async fn a_full_lock_reports_no_space_for_the_code() {
    use keyway_drivers::sandbox::SandboxMemory;
    let app = spawn_app().await;
    // The schlage lock has 100 slots; fill them at the keypad.
    for slot in 1..=100u32 {
        let pin = format!("{}", 50_000 + slot);
        app.server
            .store
            .write_slot("schlage_device_id", slot, Some((&pin, None)))
            .await
            .unwrap();
    }
    let code = app
        .create_code(json!({ "device_id": "schlage_device_id", "code": "77777" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    for _ in 0..200 {
        let (_, body) = app.get_code(id).await;
        if body["access_code"]["errors"][0]["error_code"] == "no_space_for_access_code_on_device" {
            assert_ne!(body["access_code"]["status"], "set");
            assert!(app
                .event_types(id)
                .await
                .contains(&"access_code.failed_to_set_on_device".to_owned()));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no_space_for_access_code_on_device never reported");
}
