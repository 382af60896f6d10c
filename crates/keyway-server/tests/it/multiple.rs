//! Codes across locks, device constraints and changes of type.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn create_multiple_shares_one_pin_and_update_multiple_moves_them_together() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/access_codes/create_multiple",
            KEY1,
            json!({
                "device_ids": ["august_device_1", "august_device_2", "schlage_device_id"],
                "name": "Family",
                "preferred_code_length": 5,
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let codes = body["access_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 3);
    let pin = codes[0]["code"].as_str().unwrap();
    assert_eq!(pin.len(), 5);
    assert!(!pin.starts_with("12"), "schlage refuses 12…");
    let key = codes[0]["common_code_key"].as_str().unwrap();
    assert!(key.starts_with("auto_set_by_create_multiple_"));
    for code in codes {
        assert_eq!(code["code"], pin);
        assert_eq!(code["common_code_key"], key);
        app.wait_for_status(code["access_code_id"].as_str().unwrap(), "set")
            .await;
    }
    let (status, body) = app
        .post(
            "/access_codes/update_multiple",
            KEY1,
            json!({
                "common_code_key": key,
                "name": "Family (summer)",
                "starts_at": in_millis(3_600_000),
                "ends_at": in_millis(7_200_000),
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for code in codes {
        let id = code["access_code_id"].as_str().unwrap();
        let unset = app.wait_for_status(id, "unset").await;
        assert_eq!(unset["type"], "time_bound");
        assert_eq!(unset["name"], "Family (summer)");
    }
    for device in ["august_device_1", "august_device_2", "schlage_device_id"] {
        assert!(
            app.lock_pins(device).await.is_empty(),
            "{device} still holds the code"
        );
    }
    let (status, _) = app
        .post(
            "/access_codes/update_multiple",
            KEY1,
            json!({ "common_code_key": "nope" }),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn create_multiple_with_a_chosen_pin_is_not_linked_and_is_all_or_nothing() {
    let app = spawn_app().await;
    let (_, body) = app
        .post(
            "/access_codes/create_multiple",
            KEY1,
            json!({ "device_ids": ["august_device_1", "august_device_2"], "code": "4545" }),
        )
        .await;
    assert_eq!(
        body["access_codes"][0]["common_code_key"],
        serde_json::Value::Null
    );
    // 4545 is taken on august_device_1: nothing is created on schlage either.
    let (status, body) = app
        .post(
            "/access_codes/create_multiple",
            KEY1,
            json!({ "device_ids": ["schlage_device_id", "august_device_1"], "code": "4545" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (_, list) = app
        .get(
            "/access_codes/list",
            KEY1,
            &[("device_id", "schlage_device_id")],
        )
        .await;
    assert_eq!(list["access_codes"], json!([]));
    // A PIN one lock cannot take.
    let (status, _) = app
        .post(
            "/access_codes/create_multiple",
            KEY1,
            json!({ "device_ids": ["schlage_device_id"], "code": "1234" }),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn reported_constraints_govern_validation_and_generation() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/access_codes/report_device_constraints",
            KEY1,
            json!({ "device_id": DEVICE1, "min_code_length": 7, "max_code_length": 8 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, device) = app
        .get("/devices/get", KEY1, &[("device_id", DEVICE1)])
        .await;
    assert_eq!(
        device["device"]["properties"]["supported_code_lengths"],
        json!([7, 8])
    );
    let (status, _) = app
        .post(
            "/access_codes/create",
            KEY1,
            json!({ "device_id": DEVICE1, "code": "1234" }),
        )
        .await;
    assert_eq!(status, 400);
    let (_, generated) = app
        .get(
            "/access_codes/generate_code",
            KEY1,
            &[("device_id", DEVICE1)],
        )
        .await;
    assert_eq!(
        generated["generated_code"]["code"].as_str().unwrap().len(),
        7
    );
    for bad in [
        json!({ "device_id": DEVICE1, "supported_code_lengths": [3] }),
        json!({ "device_id": DEVICE1, "min_code_length": 9, "max_code_length": 5 }),
        json!({ "device_id": DEVICE1 }),
        json!({ "device_id": DEVICE1, "supported_code_lengths": [4], "min_code_length": 4 }),
    ] {
        let (status, body) = app
            .post("/access_codes/report_device_constraints", KEY1, bad.clone())
            .await;
        assert_eq!(status, 400, "{bad} → {body}");
    }
}

#[tokio::test]
async fn updates_convert_between_ongoing_and_time_bound() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "8181" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    app.wait_for_status(id, "set").await;
    // Ongoing → time-bound in the future: off the lock until then.
    let (status, body) = app
        .post(
            "/access_codes/update",
            KEY1,
            json!({ "access_code_id": id, "starts_at": in_millis(3_600_000), "ends_at": in_millis(7_200_000) }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let unset = app.wait_for_status(id, "unset").await;
    assert_eq!(unset["type"], "time_bound");
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    // Back to ongoing: on the lock again.
    let (status, body) = app
        .post(
            "/access_codes/update",
            KEY1,
            json!({ "access_code_id": id, "type": "ongoing" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let set = app.wait_for_status(id, "set").await;
    assert_eq!(set["type"], "ongoing");
    assert!(set.get("starts_at").is_none() || set["starts_at"].is_null());
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["8181"]);
    let (status, _) = app
        .post(
            "/access_codes/update",
            KEY1,
            json!({ "access_code_id": id, "type": "time_bound" }),
        )
        .await;
    assert_eq!(status, 400);
}
