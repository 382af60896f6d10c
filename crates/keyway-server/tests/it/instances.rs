//! Several `keyway serve` processes (the real binary) on one PostgreSQL database: clients
//! spread over them, one instance killed with SIGKILL while it works a lock, time windows
//! opening after that. At quiescence every lock holds exactly the codes it should, no lock saw
//! an operation twice, and every instance lists the same events in the same order, pages never
//! having skipped one.
//!
//! Runs only with `KEYWAY_TEST_DATABASE_URL=postgres://…` (skips with a note otherwise).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::*;

const DEVICES: [&str; 3] = ["august_device_1", "august_device_2", "schlage_device_id"];

/// One `keyway serve` process; killed when dropped.
struct Instance {
    child: Child,
    url: String,
    /// The engine's lease owner id, read from its log.
    owner: Arc<Mutex<Option<String>>>,
    /// The last lines it logged, for a failure message.
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    async fn start(database_url: &str) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyway"))
            .args(["serve", "--seed", "--listen", "127.0.0.1:0"])
            .args(["--database-url", database_url])
            .args(["--sandbox-delay-ms", "120", "--lease-secs", "2"])
            .args(["--poll-interval-secs", "1", "--retry-base-ms", "100"])
            .args(["--database-max-connections", "6"])
            .env("RUST_LOG", "keyway_server=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("keyway starts");
        let owner = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Keyway listening on ") {
                    let _ = url_tx.send(url.to_owned());
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let (owner_in, log_in) = (owner.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("owner=keyway-") {
                    let id: String = line[at + "owner=".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect();
                    *owner_in.lock().unwrap() = Some(id);
                }
                let mut log = log_in.lock().unwrap();
                log.push(line);
                if log.len() > 100 {
                    log.remove(0);
                }
            }
        });
        let url = tokio::task::spawn_blocking(move || url_rx.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("keyway prints its URL within a minute");
        Instance {
            child,
            url,
            owner,
            log,
        }
    }

    fn owner(&self) -> Option<String> {
        self.owner.lock().unwrap().clone()
    }

    fn log_tail(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the test expects of one acknowledged code.
#[derive(Debug, Clone)]
struct Expected {
    device: &'static str,
    pin: String,
    /// Deleted, or its window has ended by the time of the check.
    gone: bool,
}

type Codes = Arc<Mutex<BTreeMap<String, Expected>>>;

async fn call(client: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(KEY1)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path} on {base}: {e}"));
    read(response).await
}

/// One client: `ops` creates and deletes against `base`, one at a time.
async fn client_burst(base: String, seed: u64, ops: usize, pins: Arc<AtomicU32>, codes: Codes) {
    let client = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mine: Vec<String> = Vec::new();
    for _ in 0..ops {
        if !mine.is_empty() && rng.gen_bool(0.3) {
            let id = mine.swap_remove(rng.gen_range(0..mine.len()));
            let (status, body) = call(
                &client,
                &base,
                "/access_codes/delete",
                json!({ "access_code_id": id }),
            )
            .await;
            // A code whose short window already ended may be gone by itself.
            let gone_by_itself = status == 404 && codes.lock().unwrap()[&id].gone;
            assert!(status == 200 || gone_by_itself, "delete {id}: {body}");
            if let Some(expected) = codes.lock().unwrap().get_mut(&id) {
                expected.gone = true;
            }
            continue;
        }
        let device = DEVICES[rng.gen_range(0..DEVICES.len())];
        let pin = format!("{}", 40_000 + pins.fetch_add(1, Ordering::Relaxed));
        let mut body = json!({ "device_id": device, "code": pin });
        // Windows open (and some close) after the instance is killed.
        let gone = match rng.gen_range(0..4) {
            0 => {
                body["starts_at"] = json!(in_millis(rng.gen_range(2_000..4_000)));
                body["ends_at"] = json!(in_millis(3_600_000));
                false
            }
            1 => {
                body["starts_at"] = json!(in_millis(rng.gen_range(500..2_000)));
                body["ends_at"] = json!(in_millis(rng.gen_range(3_500..5_000)));
                true
            }
            _ => false,
        };
        let (status, answer) = call(&client, &base, "/access_codes/create", body).await;
        assert_eq!(status, 200, "create on {base}: {answer}");
        let id = answer["access_code"]["access_code_id"]
            .as_str()
            .expect("access_code_id")
            .to_owned();
        codes
            .lock()
            .unwrap()
            .insert(id.clone(), Expected { device, pin, gone });
        if !gone {
            mine.push(id);
        }
    }
}

/// Every event of workspace 1, following `next_page_cursor` with small pages.
async fn all_events(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = json!({ "limit": 25 });
        if let Some(cursor) = &cursor {
            body["page_cursor"] = json!(cursor);
        }
        let (status, page) = call(client, base, "/events/list", body).await;
        assert_eq!(status, 200, "{page}");
        events.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["pagination"]["next_page_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Reads the event list again and again while others write: each read must extend the one
/// before (an event that commits late never lands before events already listed).
async fn tail_events(base: String, stop: Arc<std::sync::atomic::AtomicBool>) -> usize {
    let client = reqwest::Client::new();
    let mut seen: Vec<String> = Vec::new();
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = event_ids(&all_events(&client, &base).await);
        assert!(
            now.len() >= seen.len() && now[..seen.len()] == seen[..],
            "events/list changed order under concurrent writes"
        );
        seen = now;
        reads += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reads
}

/// Problems with the final state, or `Ok` with the operation counts per lock.
async fn check(
    client: &reqwest::Client,
    base: &str,
    pool: &sqlx::PgPool,
    codes: &BTreeMap<String, Expected>,
) -> Result<BTreeMap<&'static str, (i64, i64)>, String> {
    for (id, expected) in codes {
        let (status, body) = call(
            client,
            base,
            "/access_codes/get",
            json!({ "access_code_id": id }),
        )
        .await;
        match (expected.gone, status) {
            (true, 404) => {}
            (true, _) => return Err(format!("{id} should be gone: {body}")),
            (false, 200) if body["access_code"]["status"] == "set" => {}
            (false, _) => return Err(format!("{id} is not set: {body}")),
        }
    }
    let events = all_events(client, base).await;
    let mut by_code: HashMap<String, Vec<String>> = HashMap::new();
    for event in &events {
        if let Some(id) = event["access_code_id"].as_str() {
            by_code
                .entry(id.to_owned())
                .or_default()
                .push(event["event_type"].as_str().unwrap_or_default().to_owned());
        }
    }
    let mut operations = BTreeMap::new();
    for device in DEVICES {
        let mut held: Vec<String> =
            sqlx::query_scalar("SELECT code FROM sandbox_slots WHERE device_id = $1 ORDER BY code")
                .bind(device)
                .fetch_all(pool)
                .await
                .map_err(|e| e.to_string())?;
        held.sort();
        let mut wanted: Vec<String> = codes
            .values()
            .filter(|e| e.device == device && !e.gone)
            .map(|e| e.pin.clone())
            .collect();
        wanted.sort();
        if held != wanted {
            return Err(format!("{device} holds {held:?}, should hold {wanted:?}"));
        }
        // One put for each code that reached the lock, one removal for each of those gone.
        let mut expected_operations = 0;
        for (id, code) in codes.iter().filter(|(_, e)| e.device == device) {
            let types = by_code.get(id).cloned().unwrap_or_default();
            let sets = types
                .iter()
                .filter(|t| *t == "access_code.set_on_device")
                .count();
            if sets > 1 {
                return Err(format!("{id} was set on its lock {sets} times: {types:?}"));
            }
            let reached_lock =
                sets == 1 || types.iter().any(|t| t == "access_code.removed_from_device");
            if reached_lock {
                expected_operations += if code.gone { 2 } else { 1 };
            }
            if types.first().map(String::as_str) != Some("access_code.created") {
                return Err(format!("{id}: events out of order: {types:?}"));
            }
        }
        let done: i64 =
            sqlx::query_scalar("SELECT operations FROM sandbox_locks WHERE device_id = $1")
                .bind(device)
                .fetch_one(pool)
                .await
                .map_err(|e| e.to_string())?;
        if done != expected_operations {
            return Err(format!(
                "{device} carried out {done} operations, {expected_operations} were needed"
            ));
        }
        operations.insert(device, (done, expected_operations));
        let (_, unmanaged) = call(
            client,
            base,
            "/access_codes/unmanaged/list",
            json!({ "device_id": device }),
        )
        .await;
        if unmanaged["access_codes"].as_array().map(Vec::len) != Some(0) {
            return Err(format!("{device} has unmanaged codes: {unmanaged}"));
        }
    }
    Ok(operations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_share_one_database_and_survive_one_killed_mid_operation() {
    if postgres_server_url().is_none() {
        eprintln!(
            "note: skipped: set KEYWAY_TEST_DATABASE_URL=postgres://… to run several \
             instances on one database"
        );
        return;
    }
    let started = Instant::now();
    let database = TestDatabase::new().await;
    let database_url = database.url.clone().expect("postgres");
    let pool = sqlx::PgPool::connect(&database_url)
        .await
        .expect("test pool");

    // Three instances seeding the same database at once.
    let (first, second, third) = tokio::join!(
        Instance::start(&database_url),
        Instance::start(&database_url),
        Instance::start(&database_url)
    );
    let mut instances = [first, second, third];
    let urls: Vec<String> = instances.iter().map(|i| i.url.clone()).collect();
    let client = reqwest::Client::new();
    for url in &urls {
        let (status, devices) = call(&client, url, "/devices/list", json!({})).await;
        assert_eq!(status, 200, "{devices}");
        assert_eq!(devices["devices"].as_array().map(Vec::len), Some(3));
    }

    let codes: Codes = Arc::new(Mutex::new(BTreeMap::new()));
    let pins = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tailer = tokio::spawn(tail_events(urls[1].clone(), stop.clone()));

    // Phase 1: two clients on each instance.
    let phase1: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(client_burst(
                urls[n % 3].clone(),
                n as u64,
                15,
                pins.clone(),
                codes.clone(),
            ))
        })
        .collect();
    for client in phase1 {
        client.await.expect("client");
    }

    // Phase 2 on the two survivors, while the first instance is killed working a lock.
    let phase2: Vec<_> = (0..4)
        .map(|n| {
            tokio::spawn(client_burst(
                urls[1 + n % 2].clone(),
                100 + n as u64,
                15,
                pins.clone(),
                codes.clone(),
            ))
        })
        .collect();
    let victim = instances[0]
        .owner()
        .expect("the engine logged its owner id");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut held: Vec<String> = Vec::new();
    while held.is_empty() && Instant::now() < deadline {
        held = sqlx::query_scalar(
            "SELECT device_id FROM devices WHERE lease_owner = $1
             AND lease_until > (extract(epoch from now()) * 1000)::bigint",
        )
        .bind(&victim)
        .fetch_all(&pool)
        .await
        .expect("leases");
        if held.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    instances[0].child.kill().expect("SIGKILL");
    let _ = instances[0].child.wait();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_jobs WHERE taken")
        .fetch_one(&pool)
        .await
        .expect("jobs");
    eprintln!("killed instance 1 holding the leases of {held:?}, {left} jobs half done");
    for client in phase2 {
        client.await.expect("client");
    }

    // Quiescence: windows have opened and closed, the dead instance's leases expired.
    let codes = codes.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(45);
    let outcome = loop {
        let outcome = check(&client, &urls[2], &pool, &codes).await;
        if outcome.is_ok() || Instant::now() > deadline {
            break outcome;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let reads = tailer.await.expect("events stayed in order while written");
    let operations = match outcome {
        Ok(operations) => operations,
        Err(problem) => panic!(
            "{problem}\n--- instance 2 log:\n{}\n--- instance 3 log:\n{}",
            instances[1].log_tail(),
            instances[2].log_tail()
        ),
    };

    // Every survivor lists the same events, in the same order, once each.
    let seen_by_second = event_ids(&all_events(&client, &urls[1]).await);
    let seen_by_third = event_ids(&all_events(&client, &urls[2]).await);
    assert_eq!(seen_by_second, seen_by_third);
    let distinct: BTreeSet<&String> = seen_by_second.iter().collect();
    assert_eq!(
        distinct.len(),
        seen_by_second.len(),
        "an event listed twice"
    );
    eprintln!(
        "{} codes, {} events ({reads} concurrent reads stayed in order), operations per lock \
         (done, needed): {operations:?}, in {:.1}s",
        codes.len(),
        seen_by_second.len(),
        started.elapsed().as_secs_f64()
    );
    pool.close().await;
}
