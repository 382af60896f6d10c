//! The client's transport against a scripted stub server on 127.0.0.1:0: headers sent, reads
//! retried on 429/5xx and connection errors, writes sent once, and streams that stop when a
//! server repeats a cursor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use futures::TryStreamExt;
use keyway_client::{Client, CreateAccessCode, Error, ListDevices, SDK_NAME, SDK_VERSION};
use serde_json::{json, Value};

#[derive(Default)]
struct Stub {
    calls: AtomicUsize,
    headers: Mutex<Vec<HeaderMap>>,
}

fn workspace() -> Value {
    json!({
        "workspace_id": "w1", "name": "W", "company_name": "C", "is_sandbox": true,
        "is_suspended": false, "connect_partner_name": null,
        "is_publishable_key_auth_enabled": false, "connect_webview_customization": {}
    })
}

fn unavailable() -> axum::response::Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": {"type": "service_unavailable", "message": "busy"}, "ok": false})),
    )
        .into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn client(url: &str) -> Client {
    Client::builder()
        .endpoint(url)
        .api_key("seam_stub_key")
        .retry_base(Duration::from_millis(5))
        .max_retries(3)
        .build()
        .expect("client")
}

#[tokio::test]
async fn reads_are_retried_until_the_server_recovers_and_carry_the_sdk_headers() {
    let stub = Arc::new(Stub::default());
    let state = stub.clone();
    let router = Router::new().route(
        "/workspaces/get",
        post(move |headers: HeaderMap| {
            let state = state.clone();
            async move {
                state.headers.lock().expect("lock").push(headers);
                match state.calls.fetch_add(1, Ordering::SeqCst) {
                    0 => unavailable(),
                    1 => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "0")],
                        "slow down",
                    )
                        .into_response(),
                    _ => Json(json!({ "workspace": workspace(), "ok": true })).into_response(),
                }
            }
        }),
    );
    let url = serve(router).await;
    let workspace = client(&url).workspaces().get().await.expect("third try");
    assert_eq!(workspace.workspace_id, "w1");
    assert_eq!(stub.calls.load(Ordering::SeqCst), 3);
    let headers = stub.headers.lock().expect("lock");
    let first = &headers[0];
    assert_eq!(first["authorization"], "Bearer seam_stub_key");
    assert_eq!(first["seam-sdk-name"], SDK_NAME);
    assert_eq!(first["seam-sdk-version"], SDK_VERSION);
    assert!(first["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("application/json"));
}

#[tokio::test]
async fn reads_give_up_after_max_retries_and_writes_are_sent_once() {
    let stub = Arc::new(Stub::default());
    let (reads, writes) = (stub.clone(), Arc::new(AtomicUsize::new(0)));
    let writes_seen = writes.clone();
    let router = Router::new()
        .route(
            "/devices/get",
            post(move || {
                let reads = reads.clone();
                async move {
                    reads.calls.fetch_add(1, Ordering::SeqCst);
                    unavailable()
                }
            }),
        )
        .route(
            "/access_codes/create",
            post(move || {
                let writes = writes_seen.clone();
                async move {
                    writes.fetch_add(1, Ordering::SeqCst);
                    unavailable()
                }
            }),
        );
    let url = serve(router).await;
    let client = client(&url);
    match client.devices().get("d1").await {
        Err(Error::Http {
            status: 503, kind, ..
        }) => assert_eq!(kind, "service_unavailable"),
        other => panic!("expected a 503, got {other:?}"),
    }
    assert_eq!(stub.calls.load(Ordering::SeqCst), 4, "1 try + 3 retries");
    let created = client
        .access_codes()
        .create(&CreateAccessCode::new("d1").code("1234"))
        .await;
    assert!(matches!(created, Err(Error::Http { status: 503, .. })));
    assert_eq!(
        writes.load(Ordering::SeqCst),
        1,
        "a create is never repeated"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error_after_the_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let started = std::time::Instant::now();
    let error = client(&format!("http://{addr}"))
        .workspaces()
        .get()
        .await
        .expect_err("nobody listens");
    assert!(matches!(error, Error::Transport { .. }), "{error:?}");
    assert!(error.to_string().contains("/workspaces/get"), "{error}");
    // Three back-offs of at least 5, 10 and 20 ms happened.
    assert!(started.elapsed() >= Duration::from_millis(35));
}

#[tokio::test]
async fn a_stream_follows_cursors_and_stops_when_one_repeats() {
    let router = Router::new().route(
        "/devices/list",
        post(|Json(params): Json<Value>| async move {
            let page = params["page_cursor"].as_str().unwrap_or("start").to_owned();
            // Always the same next cursor: a buggy server that would loop forever.
            Json(json!({
                "devices": [],
                "pagination": { "has_next_page": true, "next_page_cursor": "again",
                                "next_page_url": null },
                "page": page,
                "ok": true,
            }))
        }),
    );
    let url = serve(router).await;
    let devices: Vec<_> = tokio::time::timeout(
        Duration::from_secs(5),
        client(&url)
            .devices()
            .list_stream(&ListDevices::default())
            .expect("params")
            .try_collect::<Vec<_>>(),
    )
    .await
    .expect("the stream ends")
    .expect("pages");
    assert!(devices.is_empty());
}

#[tokio::test]
async fn a_success_body_of_the_wrong_shape_names_the_field() {
    let router = Router::new().route(
        "/workspaces/get",
        post(|| async { Json(json!({ "workspace": { "workspace_id": 5 }, "ok": true })) }),
    );
    let url = serve(router).await;
    match client(&url).workspaces().get().await {
        Err(Error::Decode { route, message }) => {
            assert_eq!(route, "/workspaces/get");
            assert!(message.contains("workspace.workspace_id"), "{message}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}
