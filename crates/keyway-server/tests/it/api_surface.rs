//! The wire contract: verbs, parameter encodings, envelopes, errors, headers.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn read_routes_take_get_with_a_query_and_post_with_a_body() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "2580" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    let (status, got) = app
        .get(
            "/access_codes/get",
            KEY1,
            &[("access_code_id", id), ("_strict", "true")],
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["access_code"]["access_code_id"], id);
    let (status, list) = app
        .get(
            "/access_codes/list",
            KEY1,
            &[("access_code_ids", id), ("access_code_ids", "other")],
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["access_codes"].as_array().unwrap().len(), 1);
    for path in [
        "/devices/list",
        "/locks/list",
        "/connected_accounts/list",
        "/workspaces/get",
    ] {
        let (status, body) = app.get(path, KEY1, &[]).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["ok"], true);
    }
    let (_, devices) = app.get("/devices/list", KEY1, &[]).await;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["august_device_1", "august_device_2", "schlage_device_id"]
    );
    let (_, lock) = app
        .get("/locks/get", KEY1, &[("device_id", "schlage_device_id")])
        .await;
    assert_eq!(lock["lock"]["display_name"], "Bathroom Door");
    assert_eq!(
        lock["device"]["properties"]["supported_code_lengths"],
        json!([4, 5, 6, 7, 8])
    );
    let (_, account) = app
        .get(
            "/connected_accounts/get",
            KEY1,
            &[("connected_account_id", "jane_connected_account_id")],
        )
        .await;
    assert_eq!(account["connected_account"]["account_type"], "schlage");
}

#[tokio::test]
async fn delete_takes_a_query_string_and_an_empty_form_post_is_an_empty_object() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "1470" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    let response = app
        .request(reqwest::Method::DELETE, "/access_codes/delete")
        .bearer_auth(KEY1)
        .query(&[("access_code_id", id)])
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    app.wait_until_gone(id).await;

    let response = app
        .request(reqwest::Method::POST, "/devices/list")
        .bearer_auth(KEY1)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["devices"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn updates_accept_post_put_and_patch() {
    let app = spawn_app().await;
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "3690" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    for (method, name) in [
        (reqwest::Method::POST, "post"),
        (reqwest::Method::PUT, "put"),
        (reqwest::Method::PATCH, "patch"),
    ] {
        let (status, body) = app
            .send(
                method,
                "/access_codes/update",
                json!({ "access_code_id": id, "name": name }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (_, got) = app.get_code(id).await;
        assert_eq!(got["access_code"]["name"], name);
    }
}

#[tokio::test]
async fn every_failure_answers_the_json_envelope() {
    let app = spawn_app().await;
    // Malformed JSON.
    let response = app
        .request(reqwest::Method::POST, "/access_codes/create")
        .bearer_auth(KEY1)
        .header("content-type", "application/json")
        .body("{\"device_id\": ")
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("seam-request-id"));
    let (status, body) = read(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_input");
    assert_eq!(body["ok"], false);
    // Unknown route.
    let (status, body) = app.post("/access_codes/nope", KEY1, json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found");
    // Wrong verb.
    let (status, body) = app.get("/access_codes/create", KEY1, &[]).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["type"], "method_not_allowed");
    // Oversized body.
    let huge = json!({ "device_id": DEVICE1, "name": "x".repeat(400 * 1024) });
    let (status, body) = app.post("/access_codes/create", KEY1, huge).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["type"], "payload_too_large");
    // Missing parameters are named.
    let (status, body) = app.post("/access_codes/get", KEY1, json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_input");
    let (status, body) = app.post("/access_codes/delete", KEY1, json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "access_code_id is required");
    let (status, body) = app
        .post(
            "/access_codes/list",
            KEY1,
            json!({ "device_id": DEVICE1, "page_cursor": "garbage" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn seeded_mode_serves_the_fake_launcher_routes() {
    let app = spawn_app().await;
    let response = app
        .request(reqwest::Method::GET, "/health")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = app
        .request(reqwest::Method::GET, "/_fake/default_seed")
        .send()
        .await
        .unwrap();
    let (_, seed) = read(response).await;
    assert_eq!(seed["seam_apikey1_token"], "seam_apikey1_token");
    assert_eq!(seed["august_device_1"], "august_device_1");
}

#[tokio::test]
async fn a_created_workspace_key_works_and_is_stored_only_as_a_hash() {
    let database = TestDatabase::new().await;
    let args = keyway_server::cli::CreateWorkspaceArgs {
        name: "Rentals".into(),
        sandbox_locks: 1,
        sandbox_delay_ms: 0,
        storage: keyway_server::cli::StorageArgs {
            data_dir: database.dir.path().to_path_buf(),
            database_url: database.url.clone(),
            database_max_connections: 2,
            statement_timeout_ms: 5000,
            fsync_every_commit: true,
        },
    };
    let (workspace_id, api_key) = keyway_server::cli::create_workspace(&args).await.unwrap();
    assert!(api_key.starts_with("seam_"));
    let mut config = test_config(&database);
    config.seed = false;
    let server = keyway_server::start(config).await.unwrap();
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/workspaces/get", server.url()))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["workspace"]["workspace_id"], workspace_id);
    assert_eq!(body["workspace"]["name"], "Rentals");
    let response = client
        .get(format!("{}/devices/list", server.url()))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    let (_, devices) = read(response).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);
    drop(server);
    if let Some(url) = &database.url {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        let keys: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_keys")
            .fetch_all(&mut connection)
            .await
            .unwrap();
        assert!(!keys.is_empty());
        assert!(!keys.contains(&api_key), "the API key is stored in clear");
        return;
    }
    for entry in std::fs::read_dir(database.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&api_key), "the API key is stored in clear");
    }
}
