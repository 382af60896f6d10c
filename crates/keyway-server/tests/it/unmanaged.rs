//! Codes typed at the keypad: found by reading the lock back, listed as unmanaged.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_keypad_code_is_found_by_reading_the_lock_and_listed_as_unmanaged() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/access_codes/simulate/create_unmanaged_access_code",
            KEY1,
            json!({ "device_id": DEVICE1, "name": "Cleaner", "code": "3333" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let code = &body["access_code"];
    assert_eq!(code["is_managed"], false);
    assert_eq!(code["status"], "set");
    assert_eq!(code["code"], "3333");
    assert_eq!(code["name"], "Cleaner");
    let id = code["access_code_id"].as_str().unwrap();
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["3333"]);

    let (_, list) = app
        .get(
            "/access_codes/unmanaged/list",
            KEY1,
            &[("device_id", DEVICE1)],
        )
        .await;
    assert_eq!(list["access_codes"][0]["access_code_id"], id);
    assert_eq!(list["pagination"]["has_next_page"], false);
    let (status, got) = app
        .get(
            "/access_codes/unmanaged/get",
            KEY1,
            &[("access_code_id", id)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["access_code"]["code"], "3333");
    let (status, _) = app
        .get(
            "/access_codes/unmanaged/get",
            KEY1,
            &[("device_id", DEVICE1), ("code", "3333")],
        )
        .await;
    assert_eq!(status, 200);
    // Not a managed code.
    let (status, _) = app.get_code(id).await;
    assert_eq!(status, 404);
    let (_, managed) = app
        .get("/access_codes/list", KEY1, &[("device_id", DEVICE1)])
        .await;
    assert_eq!(managed["access_codes"], json!([]));
    assert_eq!(
        app.event_types(id).await,
        vec!["access_code.unmanaged.created"]
    );
    // Its PIN is taken on that lock.
    let (status, body) = app
        .post(
            "/access_codes/create",
            KEY1,
            json!({ "device_id": DEVICE1, "code": "3333" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn simulate_refuses_bad_codes() {
    let app = spawn_app().await;
    for code in ["12", "123456789", "12ab"] {
        let (status, body) = app
            .post(
                "/access_codes/simulate/create_unmanaged_access_code",
                KEY1,
                json!({ "device_id": DEVICE1, "name": "x", "code": code }),
            )
            .await;
        assert_eq!(status, 400, "{code}: {body}");
        assert_eq!(body["error"]["type"], "invalid_input");
    }
}

async fn keypad_code(app: &TestApp, code: &str) -> String {
    let (status, body) = app
        .post(
            "/access_codes/simulate/create_unmanaged_access_code",
            KEY1,
            json!({ "device_id": DEVICE1, "name": "Keypad", "code": code }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_code"]["access_code_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_converted_code_is_managed_and_stays_on_the_lock() {
    let app = spawn_app().await;
    let id = keypad_code(&app, "4455").await;
    let (status, body) = app
        .send(
            reqwest::Method::PATCH,
            "/access_codes/unmanaged/convert_to_managed",
            json!({ "access_code_id": id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, managed) = app.get_code(&id).await;
    assert_eq!(status, 200, "{managed}");
    assert_eq!(managed["access_code"]["is_managed"], true);
    assert_eq!(managed["access_code"]["status"], "set");
    assert_eq!(managed["access_code"]["code"], "4455");
    let (_, unmanaged) = app
        .get(
            "/access_codes/unmanaged/list",
            KEY1,
            &[("device_id", DEVICE1)],
        )
        .await;
    assert_eq!(unmanaged["access_codes"], json!([]));
    assert!(app
        .event_types(&id)
        .await
        .contains(&"access_code.unmanaged.converted_to_managed".to_owned()));
    // Managed now: deleting it takes it off the lock.
    app.post(
        "/access_codes/delete",
        KEY1,
        json!({ "access_code_id": id }),
    )
    .await;
    app.wait_until_gone(&id).await;
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    // Converting twice, or an unknown id, is a 404.
    let (status, body) = app
        .post(
            "/access_codes/unmanaged/convert_to_managed",
            KEY1,
            json!({ "access_code_id": id }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn unmanaged_update_with_is_managed_true_converts() {
    let app = spawn_app().await;
    let id = keypad_code(&app, "5544").await;
    let (status, body) = app
        .post(
            "/access_codes/unmanaged/update",
            KEY1,
            json!({ "access_code_id": id, "is_managed": false }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .post(
            "/access_codes/unmanaged/update",
            KEY1,
            json!({ "access_code_id": id, "is_managed": true, "allow_external_modification": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, managed) = app.get_code(&id).await;
    assert_eq!(
        managed["access_code"]["is_external_modification_allowed"],
        true
    );
}

#[tokio::test]
async fn deleting_an_unmanaged_code_takes_it_off_the_lock() {
    let app = spawn_app().await;
    let id = keypad_code(&app, "6655").await;
    let response = app
        .request(reqwest::Method::DELETE, "/access_codes/unmanaged/delete")
        .bearer_auth(KEY1)
        .query(&[("access_code_id", id.as_str()), ("sync", "true")])
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action_attempt"]["status"], "success");
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    let (status, _) = app
        .get(
            "/access_codes/unmanaged/get",
            KEY1,
            &[("access_code_id", &id)],
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        app.event_types(&id).await,
        vec![
            "access_code.unmanaged.created",
            "access_code.unmanaged.removed"
        ]
    );
}
