//! `spawn_app()`: a seeded Keyway on 127.0.0.1:0 with its own fresh database: a temporary SQLite
//! directory, or, when `KEYWAY_TEST_DATABASE_URL` names a PostgreSQL server
//! (`postgres://postgres@127.0.0.1:5432/postgres`), a new database with a random name on it,
//! dropped when the test is done.

use std::time::Duration;

use keyway_core::delivery::DeliveryPolicy;
use keyway_core::retry::RetryPolicy;
use keyway_server::{EngineConfig, RunningServer, ServerConfig, WebhookConfig};
use keyway_store::StoreOptions;
use serde_json::Value;
use tempfile::TempDir;

pub const KEY1: &str = "seam_apikey1_token";
pub const KEY2: &str = "seam_apikey2_token";
pub const DEVICE1: &str = "august_device_1";

pub struct TestApp {
    pub server: RunningServer,
    _database: TestDatabase,
    pub config: ServerConfig,
    client: reqwest::Client,
}

/// The PostgreSQL server the tests use, if any (`KEYWAY_TEST_DATABASE_URL`).
pub fn postgres_server_url() -> Option<String> {
    std::env::var("KEYWAY_TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres:") || url.starts_with("postgresql:"))
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[host_start..].find('/') {
        Some(slash) => &base[..host_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// A test's own database: a temporary directory (SQLite, and scratch space either way) and,
/// on PostgreSQL, a database created for the test and dropped with this value.
pub struct TestDatabase {
    pub dir: TempDir,
    /// `Some(postgres://…/keyway_test_…)` on PostgreSQL.
    pub url: Option<String>,
    server_url: Option<String>,
    name: String,
}

impl TestDatabase {
    pub async fn new() -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = format!("keyway_test_{}", uuid::Uuid::new_v4().simple());
        let Some(server_url) = postgres_server_url() else {
            return TestDatabase {
                dir,
                url: None,
                server_url: None,
                name,
            };
        };
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&server_url)
            .await
            .expect("KEYWAY_TEST_DATABASE_URL answers");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        TestDatabase {
            dir,
            url: Some(with_database(&server_url, &name)),
            server_url: Some(server_url),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(server_url) = self.server_url.take() else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        // Drop runs inside the test's runtime: drop the database from a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&server_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: test database was left behind (drop it by hand)");
        }
    }
}

pub fn test_config(database: &TestDatabase) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: database.dir.path().to_path_buf(),
        database_url: database.url.clone(),
        store: StoreOptions::default(),
        durability: keyway_store::Durability::default(),
        seed: true,
        sandbox_delay: Duration::ZERO,
        backup_pool_size: 2,
        engine: EngineConfig {
            retry: RetryPolicy {
                base: Duration::from_millis(50),
                cap: Duration::from_millis(200),
                warn_after: Duration::from_millis(300),
                give_up_after: Duration::from_millis(1500),
            },
            poll_interval: Duration::from_millis(200),
            // A lease left by a killed server (see `restart`) runs out soon.
            lease: Duration::from_secs(2),
            ..EngineConfig::default()
        },
        webhooks: WebhookConfig {
            timeout: Duration::from_secs(2),
            policy: DeliveryPolicy {
                base: Duration::from_millis(25),
                cap: Duration::from_millis(200),
                max_attempts: 5,
            },
            poll: Duration::from_millis(200),
            ..WebhookConfig::default()
        },
        zwave_js: Default::default(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A clock the test moves by hand.
pub struct ManualClock(std::sync::Mutex<keyway_model::Timestamp>);

impl ManualClock {
    pub fn new() -> std::sync::Arc<ManualClock> {
        std::sync::Arc::new(ManualClock(std::sync::Mutex::new(keyway_model::Timestamp(
            chrono::Utc::now(),
        ))))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock");
        *now = keyway_model::Timestamp(now.0 + chrono::Duration::from_std(by).expect("duration"));
    }

    /// `offset` after the clock's now, as an ISO string.
    pub fn in_(&self, offset: Duration) -> String {
        let now = *self.0.lock().expect("clock");
        (now.0 + chrono::Duration::from_std(offset).expect("duration"))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

impl keyway_core::Clock for ManualClock {
    fn now(&self) -> keyway_model::Timestamp {
        *self.0.lock().expect("clock")
    }
}

/// A seeded app whose engine and API run on `clock`.
pub async fn spawn_app_with_clock(clock: std::sync::Arc<ManualClock>) -> TestApp {
    let database = TestDatabase::new().await;
    let config = test_config(&database);
    let server = keyway_server::start_with_clock(config.clone(), clock)
        .await
        .expect("server starts");
    TestApp {
        server,
        _database: database,
        config,
        client: reqwest::Client::new(),
    }
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestApp {
    // Server logs show up with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_test_writer()
        .try_init();
    let database = TestDatabase::new().await;
    let mut config = test_config(&database);
    adjust(&mut config);
    let server = keyway_server::start(config.clone())
        .await
        .expect("server starts");
    TestApp {
        server,
        _database: database,
        config,
        client: reqwest::Client::new(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url(), path)
    }

    /// Kills the server (tasks aborted mid-flight) and starts a new one on the same data.
    pub async fn restart(&mut self) {
        self.server.kill();
        // A dead process releases its SQLite locks; in-process, the aborted tasks' connections
        // must be closed to do the same.
        self.server.store.close().await;
        let mut config = self.config.clone();
        config.seed = false;
        self.server = keyway_server::start(config).await.expect("server restarts");
    }

    pub fn kill(&mut self) {
        self.server.kill();
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn get(&self, path: &str, key: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(key)
            .query(query)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Any verb with a JSON body, as workspace 1.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(method, path)
            .bearer_auth(KEY1)
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn create_code(&self, body: Value) -> Value {
        let (status, body) = self.post("/access_codes/create", KEY1, body).await;
        assert_eq!(status, 200, "{body}");
        body["access_code"].clone()
    }

    /// Takes a sandbox lock off the network (`"disconnect"`) or back (`"connect"`).
    pub async fn simulate_device(&self, device_id: &str, what: &str) {
        let (status, body) = self
            .post(
                &format!("/devices/simulate/{what}"),
                KEY1,
                serde_json::json!({ "device_id": device_id }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn get_code(&self, access_code_id: &str) -> (u16, Value) {
        self.post(
            "/access_codes/get",
            KEY1,
            serde_json::json!({ "access_code_id": access_code_id }),
        )
        .await
    }

    /// Polls until the code's status is `status` (bounded), and answers the code.
    pub async fn wait_for_status(&self, access_code_id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let (code, body) = self.get_code(access_code_id).await;
            if code == 200 && body["access_code"]["status"] == status {
                return body["access_code"].clone();
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("access code {access_code_id} never reached {status}: {last}");
    }

    /// Polls until the code is gone (404), bounded.
    pub async fn wait_until_gone(&self, access_code_id: &str) -> Value {
        for _ in 0..200 {
            let (code, body) = self.get_code(access_code_id).await;
            if code == 404 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("access code {access_code_id} was never removed");
    }

    /// PINs the sandbox lock holds, slot by slot.
    pub async fn lock_pins(&self, device_id: &str) -> Vec<String> {
        self.server
            .store
            .sandbox_slots(device_id)
            .await
            .expect("slots")
            .into_iter()
            .map(|c| c.code)
            .collect()
    }

    /// PINs of the unmanaged codes Keyway lists for a device, sorted.
    pub async fn unmanaged_pins(&self, device_id: &str) -> Vec<String> {
        let (_, unmanaged) = self
            .get(
                "/access_codes/unmanaged/list",
                KEY1,
                &[("device_id", device_id)],
            )
            .await;
        let mut pins: Vec<String> = unmanaged["access_codes"]
            .as_array()
            .map(|codes| {
                codes
                    .iter()
                    .map(|c| c["code"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        pins.sort();
        pins
    }

    /// For the model-based tests: whether a managed code is as the model expects at
    /// quiescence (gone, or holding `pin` and `set` / `unset`).
    pub async fn check_code(
        &self,
        id: &str,
        pin: &str,
        on_lock: bool,
        gone: bool,
    ) -> Result<(), String> {
        let (status, body) = self.get_code(id).await;
        if gone {
            return match status {
                404 => Ok(()),
                _ => Err(format!("{id} should be gone: {body}")),
            };
        }
        if status != 200 {
            return Err(format!("{id} was lost: {body}"));
        }
        let code = &body["access_code"];
        if code["code"] != pin {
            return Err(format!("{id} has PIN {} instead of {pin}", code["code"]));
        }
        let want = if on_lock { "set" } else { "unset" };
        if code["status"] != want {
            return Err(format!(
                "{id} is {} instead of {want}: {code}",
                code["status"]
            ));
        }
        Ok(())
    }

    pub async fn event_types(&self, access_code_id: &str) -> Vec<String> {
        let (status, body) = self
            .post(
                "/events/list",
                KEY1,
                serde_json::json!({ "access_code_id": access_code_id }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["event_type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

/// An instant `millis` from now, as an ISO string.
pub fn in_millis(millis: i64) -> String {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(millis);
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
