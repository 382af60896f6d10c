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
