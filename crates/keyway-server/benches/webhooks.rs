//! Webhook delivery on loopback: latency (commit → receipt) and throughput with 1 and 10
//! receivers, each against a baseline measured in the same process.
//!
//!     cargo bench -p keyway-server --bench webhooks
//!
//! Latency: codes are created one at a time on a seeded server with one webhook
//! (`access_code.created`); for each, the receipt is timed from the event's `created_at`
//! (taken in the committing transaction, millisecond resolution) and from the start of the
//! create request. Baseline: the create request's own round trip.
//!
//! Throughput: receivers hold every request at a gate while codes are created, so the outbox
//! fills (created + set_on_device per code, for every webhook); then the gates open and the
//! drain is timed. Baseline: plain signed-size POSTs from one reqwest client to the same
//! receivers at the same concurrency (8 per receiver), without the outbox.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use keyway_server::{EngineConfig, RunningServer, ServerConfig, WebhookConfig};
use serde_json::{json, Value};
use tokio::sync::watch;

const KEY: &str = "seam_apikey1_token";
const LATENCY_CODES: usize = 200;
const THROUGHPUT_CODES: usize = 400;
const PER_WEBHOOK: u32 = 8;

struct Receipts {
    gate: watch::Receiver<bool>,
    count: AtomicUsize,
    /// access_code_id → (receipt instant, receipt wall-clock ms, event created_at ms)
    created: Mutex<HashMap<String, (Instant, i64, i64)>>,
}

struct Receiver {
    addr: SocketAddr,
    state: Arc<Receipts>,
    open: watch::Sender<bool>,
}

impl Receiver {
    async fn start(open: bool) -> Receiver {
        let (open_tx, gate) = watch::channel(open);
        let state = Arc::new(Receipts {
            gate,
            count: AtomicUsize::new(0),
            created: Mutex::new(HashMap::new()),
        });
        let app = Router::new().fallback(receive).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            state,
            open: open_tx,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

async fn receive(State(state): State<Arc<Receipts>>, body: Bytes) -> StatusCode {
    let mut gate = state.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    let at = Instant::now();
    let wall = now_millis();
    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
        if event["event_type"] == "access_code.created" {
            let created_at = event["created_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis())
                .unwrap_or(0);
            if let Some(id) = event["access_code_id"].as_str() {
                state
                    .created
                    .lock()
                    .unwrap()
                    .insert(id.to_owned(), (at, wall, created_at));
            }
        }
    }
    state.count.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn server(dir: &tempfile::TempDir) -> RunningServer {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        database_url: None,
        store: keyway_store::StoreOptions::default(),
        durability: keyway_store::Durability::default(),
        seed: true,
        sandbox_delay: Duration::ZERO,
        backup_pool_size: 5,
        engine: EngineConfig::default(),
        webhooks: WebhookConfig {
            // Gated receivers hold requests for a while: no timeouts in this bench.
            timeout: Duration::from_secs(120),
            per_webhook_concurrency: PER_WEBHOOK,
            ..WebhookConfig::default()
        },
        zwave_js: Default::default(),
    };
    keyway_server::start(config).await.expect("server starts")
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert!(status.is_success(), "{url}: {body}");
    body
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn latency() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(&dir).await;
    let client = reqwest::Client::new();
    let receiver = Receiver::start(true).await;
    post(
        &client,
        &format!("{}/webhooks/create", server.url()),
        json!({ "url": receiver.url(), "event_types": ["access_code.created"] }),
    )
    .await;
    let mut from_commit = Vec::new();
    let mut from_request = Vec::new();
    let mut round_trips = Vec::new();
    for n in 0..LATENCY_CODES {
        let device = if n % 2 == 0 {
            "august_device_1"
        } else {
            "august_device_2"
        };
        let started = Instant::now();
        let body = post(
            &client,
            &format!("{}/access_codes/create", server.url()),
            json!({ "device_id": device, "code": format!("{}", 100_000 + n) }),
        )
        .await;
        round_trips.push(started.elapsed().as_secs_f64() * 1000.0);
        let id = body["access_code"]["access_code_id"]
            .as_str()
            .expect("id")
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (at, wall, created_at) = loop {
            if let Some(found) = receiver.state.created.lock().unwrap().get(&id) {
                break *found;
            }
            assert!(Instant::now() < deadline, "event of {id} never arrived");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        from_request.push(at.duration_since(started).as_secs_f64() * 1000.0);
        from_commit.push((wall - created_at) as f64);
    }
    for list in [&mut from_commit, &mut from_request, &mut round_trips] {
        list.sort_by(|a, b| a.total_cmp(b));
    }
    println!("latency, {LATENCY_CODES} codes created one at a time, 1 receiver:");
    println!(
        "  commit (event created_at) -> receipt: p50 {:.0} ms, p99 {:.0} ms (1 ms resolution)",
        percentile(&from_commit, 0.5),
        percentile(&from_commit, 0.99)
    );
    println!(
        "  create request sent -> receipt:       p50 {:.2} ms, p99 {:.2} ms",
        percentile(&from_request, 0.5),
        percentile(&from_request, 0.99)
    );
    println!(
        "  baseline, create request round trip:  p50 {:.2} ms, p99 {:.2} ms (ratio p50 {:.2})",
        percentile(&round_trips, 0.5),
        percentile(&round_trips, 0.99),
        percentile(&from_request, 0.5) / percentile(&round_trips, 0.5)
    );
}

async fn throughput(receivers: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(&dir).await;
    let client = reqwest::Client::new();
    let mut gated = Vec::new();
    for _ in 0..receivers {
        let receiver = Receiver::start(false).await;
        post(
            &client,
            &format!("{}/webhooks/create", server.url()),
            json!({ "url": receiver.url() }),
        )
        .await;
        gated.push(receiver);
    }
    for n in 0..THROUGHPUT_CODES {
        let device = if n % 2 == 0 {
            "august_device_1"
        } else {
            "august_device_2"
        };
        post(
            &client,
            &format!("{}/access_codes/create", server.url()),
            json!({ "device_id": device, "code": format!("{}", 200_000 + n) }),
        )
        .await;
    }
    // Wait until every code is set, i.e. every event is in the outbox.
    let expected_events = THROUGHPUT_CODES * 2;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = post(
            &client,
            &format!("{}/events/list", server.url()),
            json!({ "limit": 500, "event_type": "access_code.set_on_device" }),
        )
        .await;
        let mut set = events["events"].as_array().map_or(0, Vec::len);
        if set == 500 {
            let more = post(
                &client,
                &format!("{}/events/list", server.url()),
                json!({ "limit": 500, "event_type": "access_code.set_on_device",
                        "page_cursor": events["pagination"]["next_page_cursor"] }),
            )
            .await;
            set += more["events"].as_array().map_or(0, Vec::len);
        }
        if set >= THROUGHPUT_CODES {
            break;
        }
        assert!(Instant::now() < deadline, "codes never all set ({set})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = expected_events * receivers;
    let started = Instant::now();
    for receiver in &gated {
        let _ = receiver.open.send(true);
    }
    let count = || {
        gated
            .iter()
            .map(|r| r.state.count.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while count() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} arrived",
            count()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let drained = started.elapsed();
    let rate = total as f64 / drained.as_secs_f64();
    drop(server);

    // Baseline: the same receivers, the same concurrency, no outbox.
    for receiver in &gated {
        receiver.state.count.store(0, Ordering::SeqCst);
    }
    let body = Bytes::from(vec![b'x'; 330]);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for receiver in &gated {
        for worker in 0..PER_WEBHOOK as usize {
            let client = client.clone();
            let url = receiver.url();
            let body = body.clone();
            let share = expected_events / PER_WEBHOOK as usize
                + usize::from(worker < expected_events % PER_WEBHOOK as usize);
            tasks.spawn(async move {
                for _ in 0..share {
                    let _ = client.post(&url).body(body.clone()).send().await;
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let raw = total as f64 / started.elapsed().as_secs_f64();
    println!(
        "throughput, {receivers} receiver(s), {total} deliveries ({THROUGHPUT_CODES} codes x 2 events x {receivers}):"
    );
    println!(
        "  outbox drained in {:.2} s: {rate:.0} deliveries/s; baseline plain POSTs {raw:.0}/s (ratio {:.2})",
        drained.as_secs_f64(),
        rate / raw
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        latency().await;
        throughput(1).await;
        throughput(10).await;
    });
}
