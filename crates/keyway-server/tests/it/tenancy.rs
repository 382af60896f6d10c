//! Workspaces never see each other: another workspace's objects answer `*_not_found`.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn another_workspaces_objects_are_not_found_on_every_route() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "1357" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "set").await;
    let (_, unmanaged) = app
        .post(
            "/access_codes/simulate/create_unmanaged_access_code",
            KEY1,
            json!({ "device_id": DEVICE1, "name": "x", "code": "8080" }),
        )
        .await;
    let unmanaged_id = unmanaged["access_code"]["access_code_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, events) = app.get("/events/list", KEY1, &[]).await;
    let event_id = events["events"][0]["event_id"].as_str().unwrap().to_owned();
    let (_, attempts) = app.get("/action_attempts/list", KEY1, &[]).await;
    let attempt_id = attempts["action_attempts"][0]["action_attempt_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let probes: Vec<(&str, Value, &str)> = vec![
        (
            "/access_codes/get",
            json!({ "access_code_id": id }),
            "access_code_not_found",
        ),
        (
            "/access_codes/get",
            json!({ "device_id": DEVICE1, "code": "1357" }),
            "access_code_not_found",
        ),
        (
            "/access_codes/update",
            json!({ "access_code_id": id, "name": "x" }),
            "access_code_not_found",
        ),
        (
            "/access_codes/delete",
            json!({ "access_code_id": id }),
            "access_code_not_found",
        ),
        (
            "/access_codes/list",
            json!({ "device_id": DEVICE1 }),
            "device_not_found",
        ),
        (
            "/access_codes/create",
            json!({ "device_id": DEVICE1, "code": "2468" }),
            "device_not_found",
        ),
        (
            "/access_codes/generate_code",
            json!({ "device_id": DEVICE1 }),
            "device_not_found",
        ),
        (
            "/access_codes/unmanaged/list",
            json!({ "device_id": DEVICE1 }),
            "device_not_found",
        ),
        (
            "/access_codes/unmanaged/get",
            json!({ "access_code_id": unmanaged_id }),
            "access_code_not_found",
        ),
        (
            "/access_codes/simulate/create_unmanaged_access_code",
            json!({ "device_id": DEVICE1, "name": "x", "code": "1212" }),
            "device_not_found",
        ),
        (
            "/devices/get",
            json!({ "device_id": DEVICE1 }),
            "device_not_found",
        ),
        (
            "/locks/get",
            json!({ "device_id": DEVICE1 }),
            "device_not_found",
        ),
        (
            "/devices/simulate/disconnect",
            json!({ "device_id": DEVICE1 }),
            "device_not_found",
        ),
        (
            "/devices/simulate/connect",
            json!({ "device_id": DEVICE1 }),
            "device_not_found",
        ),
        (
            "/connected_accounts/get",
            json!({ "connected_account_id": "john_connected_account_id" }),
            "connected_account_not_found",
        ),
        (
            "/action_attempts/get",
            json!({ "action_attempt_id": attempt_id }),
            "action_attempt_not_found",
        ),
        (
            "/events/get",
            json!({ "event_id": event_id }),
            "event_not_found",
        ),
    ];
    for (path, body, kind) in probes {
        let (status, answer) = app.post(path, KEY2, body.clone()).await;
        assert_eq!(status, 404, "{path} {body} → {answer}");
        assert_eq!(answer["error"]["type"], kind, "{path} → {answer}");
    }
    // Lists are simply empty.
    for (path, key) in [
        ("/devices/list", "devices"),
        ("/locks/list", "locks"),
        ("/connected_accounts/list", "connected_accounts"),
        ("/events/list", "events"),
        ("/action_attempts/list", "action_attempts"),
    ] {
        let (status, answer) = app.post(path, KEY2, json!({})).await;
        assert_eq!(status, 200, "{path} → {answer}");
        assert_eq!(answer[key], json!([]), "{path} → {answer}");
    }
    let (_, by_ids) = app
        .post(
            "/access_codes/list",
            KEY2,
            json!({ "access_code_ids": [id] }),
        )
        .await;
    assert_eq!(by_ids["access_codes"], json!([]));
    let (_, workspace) = app.get("/workspaces/get", KEY2, &[]).await;
    assert_eq!(workspace["workspace"]["workspace_id"], "seed_workspace_2");
    // And the code is untouched.
    let (_, still) = app.get_code(&id).await;
    assert_eq!(still["access_code"]["status"], "set");
    assert_eq!(still["access_code"]["name"], Value::Null);
}

#[tokio::test]
async fn requests_without_a_valid_key_are_unauthorized() {
    let app = spawn_app().await;
    let (status, body) = app.post("/devices/list", "seam_not_a_key", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "unauthorized");
    let response = app
        .request(reqwest::Method::POST, "/devices/list")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}
