//! A device's code list is kept between requests (`list_cache`), yet shows every change to its
//! codes, and to the lock's faults, as soon as the change is acknowledged.

use serde_json::{json, Value};

use crate::helpers::*;

async fn listed(app: &TestApp, route: &str, query: &[(&str, &str)]) -> Value {
    let (status, body) = app.get(route, KEY1, query).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The managed codes of `DEVICE1`. Each call after the first finds the page the one before
/// kept, unless the lock's codes changed in between.
async fn codes(app: &TestApp) -> Vec<Value> {
    listed(app, "/access_codes/list", &[("device_id", DEVICE1)]).await["access_codes"]
        .as_array()
        .unwrap()
        .clone()
}

async fn unmanaged_pins(app: &TestApp) -> Vec<String> {
    listed(
        app,
        "/access_codes/unmanaged/list",
        &[("device_id", DEVICE1)],
    )
    .await["access_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect()
}

fn field<'a>(codes: &'a [Value], id: &str, name: &str) -> Option<&'a Value> {
    codes
        .iter()
        .find(|c| c["access_code_id"] == id)
        .map(|c| &c[name])
}

#[tokio::test]
async fn a_kept_list_shows_each_change_once_it_is_acknowledged() {
    let app = spawn_app().await;
    assert!(codes(&app).await.is_empty());

    let created = app
        .create_code(json!({ "device_id": DEVICE1, "code": "1111", "name": "Guest A" }))
        .await;
    let id = created["access_code_id"].as_str().unwrap();
    assert_eq!(field(&codes(&app).await, id, "name").unwrap(), "Guest A");

    // The engine's writes count as much as the API's.
    app.wait_for_status(id, "set").await;
    assert_eq!(field(&codes(&app).await, id, "status").unwrap(), "set");

    let (status, body) = app
        .post(
            "/access_codes/update",
            KEY1,
            json!({ "access_code_id": id, "name": "Guest B" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(field(&codes(&app).await, id, "name").unwrap(), "Guest B");

    // A code on another lock leaves this lock's list as it was, and shows on its own.
    let other = app
        .create_code(json!({ "device_id": "august_device_2", "code": "2222" }))
        .await;
    assert_eq!(codes(&app).await.len(), 1);
    let (_, listed_other) = app
        .get(
            "/access_codes/list",
            KEY1,
            &[("device_id", "august_device_2")],
        )
        .await;
    assert_eq!(
        listed_other["access_codes"][0]["access_code_id"],
        other["access_code_id"]
    );

    let (status, body) = app
        .post(
            "/access_codes/delete",
            KEY1,
            json!({ "access_code_id": id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after_delete = codes(&app).await;
    let status = field(&after_delete, id, "status");
    assert!(
        status.is_none() || status == Some(&json!("removing")),
        "{after_delete:?}"
    );
    app.wait_until_gone(id).await;
    assert!(codes(&app).await.is_empty());

    // Another workspace cannot read the kept page.
    let (status, body) = app
        .get("/access_codes/list", KEY2, &[("device_id", DEVICE1)])
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn kept_pages_keep_their_place_and_their_next_page() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for pin in ["3001", "3002", "3003"] {
        let code = app
            .create_code(json!({ "device_id": DEVICE1, "code": pin }))
            .await;
        ids.push(code["access_code_id"].as_str().unwrap().to_owned());
    }
    let query = [("device_id", DEVICE1), ("limit", "2")];
    let first = listed(&app, "/access_codes/list", &query).await;
    let page_ids = |page: &Value| -> Vec<String> {
        page["access_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["access_code_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(page_ids(&first), ids[..2]);
    let cursor = first["pagination"]["next_page_cursor"].as_str().unwrap();
    let query = [
        ("device_id", DEVICE1),
        ("limit", "2"),
        ("page_cursor", cursor),
    ];
    let second = listed(&app, "/access_codes/list", &query).await;
    assert_eq!(page_ids(&second), ids[2..]);
    assert_eq!(second["pagination"]["has_next_page"], false);
    // The whole list is its own page.
    assert_eq!(codes(&app).await.len(), 3);
}

#[tokio::test]
async fn a_kept_list_follows_the_lock_going_offline_and_back() {
    let app = spawn_app().await;
    let created = app
        .create_code(json!({ "device_id": DEVICE1, "code": "4444" }))
        .await;
    let id = created["access_code_id"].as_str().unwrap();
    app.wait_for_status(id, "set").await;
    let device_errors = |codes: &[Value]| -> Vec<String> {
        field(codes, id, "errors")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .filter(|e| e["is_device_error"] == true)
            .map(|e| e["error_code"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(device_errors(&codes(&app).await).is_empty());
    app.simulate_device(DEVICE1, "disconnect").await;
    assert_eq!(device_errors(&codes(&app).await), ["device_offline"]);
    app.simulate_device(DEVICE1, "connect").await;
    assert!(device_errors(&codes(&app).await).is_empty());
}

#[tokio::test]
async fn a_kept_unmanaged_list_shows_a_code_set_at_the_keypad() {
    let app = spawn_app().await;
    assert!(unmanaged_pins(&app).await.is_empty());
    assert!(unmanaged_pins(&app).await.is_empty());
    let (status, body) = app
        .post(
            "/access_codes/simulate/create_unmanaged_access_code",
            KEY1,
            json!({ "device_id": DEVICE1, "name": "Cleaner", "code": "5555" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(unmanaged_pins(&app).await, ["5555"]);
}
