//! Losing the database: while PostgreSQL cannot be reached, `/health` and the API answer 503
//! `service_unavailable` (the process keeps running); once it is back, pooled connections are
//! re-established and the engine carries on. Keyway reaches the database through a loopback
//! proxy that the test cuts and restores.
//!
//! Runs only with `KEYWAY_TEST_DATABASE_URL=postgres://…` (skips with a note otherwise).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::helpers::*;

/// Forwards loopback connections to `target` until cut.
struct Proxy {
    addr: SocketAddr,
    target: String,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let task = Some(tokio::spawn(forward(listener, target.clone())));
        Proxy { addr, target, task }
    }

    /// Drops every forwarded connection and refuses new ones.
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn restore(&mut self) {
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("proxy binds its port again");
        self.task = Some(tokio::spawn(forward(listener, self.target.clone())));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn forward(listener: TcpListener, target: String) {
    // Dropping the set (when this task is aborted) closes every forwarded connection.
    let mut connections = JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        connections.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL, and the URL with `replacement` there.
fn with_host(url: &str, replacement: &str) -> (String, String) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let host_start = url[start..authority_end]
        .rfind('@')
        .map_or(start, |i| start + i + 1);
    let host = &url[host_start..authority_end];
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let replaced = format!(
        "{}{replacement}{}",
        &url[..host_start],
        &url[authority_end..]
    );
    (host, replaced)
}

async fn health(app: &TestApp) -> (u16, serde_json::Value) {
    let response = app
        .request(reqwest::Method::GET, "/health")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("keyway answers");
    read(response).await
}

#[tokio::test]
async fn health_is_503_while_the_database_is_unreachable_and_keyway_recovers() {
    let Some(server) = postgres_server_url() else {
        eprintln!("note: skipped: set KEYWAY_TEST_DATABASE_URL=postgres://… to cut a database");
        return;
    };
    let (target, _) = with_host(&server, "");
    let mut proxy = Proxy::start(target).await;
    let proxy_addr = proxy.addr.to_string();
    let app = spawn_app_with(move |config| {
        config.database_url = config
            .database_url
            .as_deref()
            .map(|url| with_host(url, &proxy_addr).1);
        config.store.statement_timeout = Duration::from_secs(2);
    })
    .await;
    assert_eq!(health(&app).await.0, 200);

    proxy.cut();
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["type"], "service_unavailable");
    let (status, body) = app.get("/access_codes/list", KEY1, &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "service_unavailable");

    proxy.restore().await;
    let mut status = 0;
    for _ in 0..100 {
        status = health(&app).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "keyway never found its database again");
    // The engine works again too.
    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "5150" }))
        .await;
    let id = code["access_code_id"].as_str().expect("id");
    app.wait_for_status(id, "set").await;
}
