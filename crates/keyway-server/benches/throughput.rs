//! Throughput of `access_codes/create` and `access_codes/list` with concurrent clients against
//! real `keyway serve` processes: SQLite with one instance (the baseline), PostgreSQL with one
//! and with three instances (clients spread over them). Prints requests per second, latency
//! percentiles and the ratio to the baseline.
//!
//!     cargo bench -p keyway-server --bench throughput
//!
//! `KEYWAY_BENCH_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names
//! the PostgreSQL server (each run gets a fresh database, dropped afterwards);
//! `KEYWAY_BENCH_CLIENTS` (32) and `KEYWAY_BENCH_SECONDS` (10) shape the load. Created codes
//! have a window starting tomorrow, so the numbers are the API's and the database's, not the
//! sandbox locks'. Never run as a timed test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;

const KEY: &str = "seam_apikey1_token";
const DEVICES: [&str; 3] = ["august_device_1", "august_device_2", "schlage_device_id"];

struct Instance {
    child: Child,
    url: String,
}

impl Instance {
    fn start(storage: &[String]) -> Result<Instance, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyway"))
            .args(["serve", "--seed", "--listen", "127.0.0.1:0"])
            .args([
                "--sandbox-delay-ms",
                "0",
                "--database-max-connections",
                "10",
            ])
            .args(storage)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start keyway: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Keyway listening on ") {
                    let _ = url_tx.send(url.to_owned());
                }
            }
        });
        let url = url_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "keyway did not start within a minute".to_owned())?;
        Ok(Instance { child, url })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one scenario measured for one route.
struct Measured {
    requests: usize,
    errors: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `clients` loops sending `body(n)` to `path`, for `seconds`, spread over `urls`.
async fn load(
    urls: &[String],
    path: &str,
    clients: usize,
    seconds: u64,
    body: impl Fn(u32) -> Value + Send + Sync + 'static,
) -> Measured {
    let body = Arc::new(body);
    let counter = Arc::new(AtomicU32::new(0));
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let url = format!("{}{path}", urls[n % urls.len()]);
            let (http, body, counter) = (http.clone(), body.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < until {
                    let sent = Instant::now();
                    let request = http
                        .post(&url)
                        .bearer_auth(KEY)
                        .json(&body(counter.fetch_add(1, Ordering::Relaxed)))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    match request {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            latencies.push(sent.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((done, failed)) = task.await {
            latencies.extend(done);
            errors += failed;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Measured {
        requests: latencies.len(),
        errors,
        per_second: latencies.len() as f64 / elapsed,
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn scenario(
    name: &str,
    urls: &[String],
    clients: usize,
    seconds: u64,
) -> (Measured, Measured) {
    let (starts_at, ends_at) = (in_days(1), in_days(2));
    let create = load(urls, "/access_codes/create", clients, seconds, move |n| {
        json!({
            "device_id": DEVICES[n as usize % DEVICES.len()],
            "code": format!("{}", 100_000 + n),
            "name": format!("Guest {n}"),
            "starts_at": starts_at,
            "ends_at": ends_at,
        })
    })
    .await;
    let list = load(
        urls,
        "/access_codes/list",
        clients,
        seconds,
        |n| json!({ "device_id": DEVICES[n as usize % DEVICES.len()], "limit": 50 }),
    )
    .await;
    for (route, measured) in [("create", &create), ("list", &list)] {
        println!(
            "{name:<22} {route:<7} {:>8.0} req/s  p50 {:>6.1} ms  p99 {:>6.1} ms  ({} ok, {} errors)",
            measured.per_second,
            measured.p50.as_secs_f64() * 1000.0,
            measured.p99.as_secs_f64() * 1000.0,
            measured.requests,
            measured.errors
        );
    }
    (create, list)
}

async fn create_database(server: &str, name: &str) -> Result<String, String> {
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let _ = admin.close().await;
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[host_start..].find('/') {
        Some(slash) => &base[..host_start + slash],
        None => base,
    };
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok(format!("{root}/{name}{query}"))
}

async fn drop_database(server: &str, name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(server).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
    }
}

async fn postgres_scenario(
    server: &str,
    instances: usize,
    clients: usize,
    seconds: u64,
) -> Result<(Measured, Measured), String> {
    let name = format!("keyway_bench_{}", uuid::Uuid::new_v4().simple());
    let url = create_database(server, &name).await?;
    let storage = vec!["--database-url".to_owned(), url];
    let result = async {
        // The first instance migrates and seeds; the others find it done.
        let mut running = vec![Instance::start(&storage)?];
        for _ in 1..instances {
            running.push(Instance::start(&storage)?);
        }
        let urls: Vec<String> = running.iter().map(|i| i.url.clone()).collect();
        let label = format!("postgres x{instances}");
        Ok::<_, String>(scenario(&label, &urls, clients, seconds).await)
    }
    .await;
    drop_database(server, &name).await;
    result
}

fn ratio(value: f64, baseline: f64) -> String {
    if baseline > 0.0 {
        format!("{:.2}x", value / baseline)
    } else {
        "-".into()
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let clients = env("KEYWAY_BENCH_CLIENTS", 32) as usize;
    let seconds = env("KEYWAY_BENCH_SECONDS", 10);
    let server = std::env::var("KEYWAY_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    println!("{clients} concurrent clients, {seconds} s per route and setup");

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sqlite = {
        let storage = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
        let instance = Instance::start(&storage)?;
        scenario(
            "sqlite x1 (baseline)",
            std::slice::from_ref(&instance.url),
            clients,
            seconds,
        )
        .await
    };
    let one = postgres_scenario(&server, 1, clients, seconds).await?;
    let three = postgres_scenario(&server, 3, clients, seconds).await?;
    println!("ratios to the baseline (create, list):");
    for (name, (create, list)) in [("postgres x1", &one), ("postgres x3", &three)] {
        println!(
            "{name:<22} {}  {}",
            ratio(create.per_second, sqlite.0.per_second),
            ratio(list.per_second, sqlite.1.per_second)
        );
    }
    Ok(())
}
