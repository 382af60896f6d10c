//! The benchmark scenarios and the report they write.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keyway_model::{AccessCodeStatus, AccessCodeType, Timestamp};
use keyway_store::{
    DeviceCodeRules, DeviceRecord, NewAccessCode, NewWorkspace, Store, StoreOptions,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::load::{self, LoadResult};
use crate::ms;
use crate::servers::{self, KeywayOptions};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The release `keyway` binary.
    #[arg(long, default_value = "target/release/keyway")]
    keyway_bin: PathBuf,
    /// Directory of Seam's fake launcher (`npm ci` done).
    #[arg(long, default_value = "bench/fake")]
    fake_dir: PathBuf,
    /// Where results are written.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// Concurrent clients of the API load.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of load per route and server.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Engine run without delay: codes and locks.
    #[arg(long, default_value_t = 100_000)]
    engine_codes: usize,
    #[arg(long, default_value_t = 10_000)]
    engine_locks: usize,
    /// Engine run with a delay per lock operation: locks, codes per lock, delay.
    #[arg(long, default_value_t = 1_000)]
    delay_locks: usize,
    #[arg(long, default_value_t = 10)]
    delay_codes_per_lock: usize,
    #[arg(long, default_value_t = 200)]
    delay_ms: u64,
    /// Scheduler run: windows opening in the same second (on `engine_locks` locks).
    #[arg(long, default_value_t = 100_000)]
    scheduler_windows: usize,
    /// Scale run: stored codes (on `engine_locks` locks).
    #[arg(long, default_value_t = 1_000_000)]
    scale_codes: usize,
    /// A tiny run that only checks the harness works.
    #[arg(long)]
    smoke: bool,
    /// Which parts to run (api, engine, delay, scheduler, scale); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Which routes the API load measures (list, get, create); all by default.
    #[arg(long, value_delimiter = ',')]
    routes: Vec<String>,
}

impl RunArgs {
    fn shrink(&mut self) {
        self.duration_secs = 1;
        self.concurrency = 4;
        self.engine_codes = 200;
        self.engine_locks = 20;
        self.delay_locks = 5;
        self.delay_codes_per_lock = 3;
        self.delay_ms = 20;
        self.scheduler_windows = 200;
        self.scale_codes = 2_000;
    }

    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

#[derive(Default, Serialize)]
struct Report {
    when: String,
    machine: String,
    command: String,
    api: Vec<ApiRow>,
    ratios: Option<Value>,
    durability: Option<Value>,
    engine: Option<Value>,
    delay: Option<Value>,
    scheduler: Option<Value>,
    scale: Option<Value>,
}

#[derive(Serialize)]
struct ApiRow {
    server: String,
    route: String,
    #[serde(flatten)]
    result: LoadResult,
}

const KEY: &str = "seam_apikey1_token";

pub async fn run(mut args: RunArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.shrink();
    }
    if !args.keyway_bin.exists() {
        bail!(
            "{} not found: build it with cargo build --release --bin keyway",
            args.keyway_bin.display()
        );
    }
    let mut report = Report {
        when: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..Report::default()
    };
    if args.wants("api") {
        api(&args, &mut report).await?;
    }
    if args.wants("engine") {
        let result = engine(
            &args,
            args.engine_locks,
            args.engine_codes / args.engine_locks.max(1),
            0,
        )
        .await?;
        report.engine = Some(result);
    }
    if args.wants("delay") {
        let result = engine(
            &args,
            args.delay_locks,
            args.delay_codes_per_lock,
            args.delay_ms,
        )
        .await?;
        report.delay = Some(result);
    }
    if args.wants("scheduler") {
        report.scheduler = Some(scheduler(&args).await?);
    }
    if args.wants("scale") {
        report.scale = Some(scale(&args).await?);
    }
    write_report(&args, &report)?;
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cpus} cores, {model}")
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?)
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let response = client.post(url).bearer_auth(KEY).json(&body).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    Ok(body)
}

/// 50 codes on `august_device_1`; answers one code id and the raw list response.
async fn prepare_api(client: &reqwest::Client, url: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let mut id = String::new();
    for n in 0..50 {
        let body = json!({ "device_id": "august_device_1", "code": format!("{}", 900_000 + n), "name": format!("Guest {n}") });
        let created = post(client, &format!("{url}/access_codes/create"), body).await?;
        id = created["access_code"]["access_code_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    let list = client
        .post(format!("{url}/access_codes/list"))
        .bearer_auth(KEY)
        .json(&json!({ "device_id": "august_device_1" }))
        .send()
        .await?
        .bytes()
        .await?;
    Ok((id, list.to_vec()))
}

async fn measure_routes(
    args: &RunArgs,
    server: &str,
    url: &str,
    get_id: &str,
    report: &mut Report,
) {
    let duration = Duration::from_secs(args.duration_secs);
    let list: load::BodyFn = Arc::new(|_| json!({ "device_id": "august_device_1" }));
    let id = get_id.to_owned();
    let get: load::BodyFn = Arc::new(move |_| json!({ "access_code_id": id }));
    let create: load::BodyFn = Arc::new(|n| {
        let devices = ["august_device_1", "august_device_2", "schlage_device_id"];
        json!({ "device_id": devices[(n % 3) as usize], "code": format!("{}", 200_000 + n) })
    });
    for (route, body) in [("list", list), ("get", get), ("create", create)] {
        if !args.routes.is_empty() && !args.routes.iter().any(|r| r == route) {
            continue;
        }
        let result = match load::run(
            format!("{url}/access_codes/{route}"),
            KEY,
            body,
            args.concurrency,
            duration,
        )
        .await
        {
            Ok(result) => result,
            Err(error) => {
                eprintln!("{server:>8} {route:>6}: not measured: {error:#}");
                continue;
            }
        };
        eprintln!(
            "{server:>8} {route:>6}: {:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
            result.requests_per_sec, result.p50_ms, result.p99_ms, result.errors
        );
        report.api.push(ApiRow {
            server: server.to_owned(),
            route: route.to_owned(),
            result,
        });
    }
}

async fn api(args: &RunArgs, report: &mut Report) -> anyhow::Result<()> {
    let client = client()?;
    let dir = tempfile::tempdir()?;
    let keyway = servers::start_keyway(
        &args.keyway_bin,
        KeywayOptions {
            data_dir: dir.path(),
            seed: true,
            engine_concurrency: 256,
            poll_interval_secs: 60.0,
        },
    )
    .await?;
    let (keyway_id, list_body) = prepare_api(&client, &keyway.url).await?;
    measure_routes(args, "keyway", &keyway.url, &keyway_id, report).await;
    drop(keyway);

    let body_file = dir.path().join("ceiling.json");
    std::fs::write(&body_file, &list_body)?;
    let ceiling = servers::start_ceiling(&body_file).await?;
    let result = load::run(
        format!("{}/access_codes/list", ceiling.url),
        KEY,
        Arc::new(|_| json!({ "device_id": "august_device_1" })),
        args.concurrency,
        Duration::from_secs(args.duration_secs),
    )
    .await?;
    eprintln!(
        " ceiling   list: {:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms",
        result.requests_per_sec, result.p50_ms, result.p99_ms
    );
    report.api.push(ApiRow {
        server: "axum ceiling".into(),
        route: "list".into(),
        result,
    });
    drop(ceiling);

    match servers::start_fake(&args.fake_dir).await {
        Ok(fake) => {
            let (fake_id, _) = prepare_api(&client, &fake.url).await?;
            measure_routes(args, "fake", &fake.url, &fake_id, report).await;
        }
        Err(error) => eprintln!("Seam's fake could not start ({error}); run npm ci in bench/fake"),
    }
    let rps = |server: &str, route: &str| {
        report
            .api
            .iter()
            .find(|r| r.server == server && r.route == route)
            .map(|r| r.result.requests_per_sec)
    };
    let ratio =
        |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (a / b * 100.0).round() / 100.0);
    report.ratios = Some(json!({
        "list_keyway_over_fake": ratio(rps("keyway", "list"), rps("fake", "list")),
        "list_keyway_over_ceiling": ratio(rps("keyway", "list"), rps("axum ceiling", "list")),
        "get_keyway_over_fake": ratio(rps("keyway", "get"), rps("fake", "get")),
        "create_keyway_over_fake": ratio(rps("keyway", "create"), rps("fake", "create")),
    }));
    report.durability = Some(durability(args, &client).await?);
    Ok(())
}

/// Creates under load, kills Keyway with SIGKILL mid-burst, restarts it and checks that every
/// acknowledged code is there.
async fn durability(args: &RunArgs, client: &reqwest::Client) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let options = || KeywayOptions {
        data_dir: dir.path(),
        seed: true,
        engine_concurrency: 256,
        poll_interval_secs: 60.0,
    };
    let mut keyway = servers::start_keyway(&args.keyway_bin, options()).await?;
    let url = keyway.url.clone();
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for client_n in 0..args.concurrency as u64 {
        let client = client.clone();
        let url = url.clone();
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let code = format!("{}", 300_000 + client_n * 10_000 + n);
                let body = json!({ "device_id": "schlage_device_id", "code": code });
                let Ok(response) = client
                    .post(format!("{url}/access_codes/create"))
                    .bearer_auth(KEY)
                    .json(&body)
                    .send()
                    .await
                else {
                    break;
                };
                if !response.status().is_success() {
                    continue;
                }
                let Ok(value) = response.json::<Value>().await else {
                    break;
                };
                if let Some(id) = value["access_code"]["access_code_id"].as_str() {
                    if let Ok(mut ids) = acknowledged.lock() {
                        ids.push(id.to_owned());
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    keyway.kill();
    for task in tasks {
        let _ = task.await;
    }
    let ids = acknowledged
        .lock()
        .map(|ids| ids.clone())
        .unwrap_or_default();
    let keyway = servers::start_keyway(&args.keyway_bin, options()).await?;
    let mut missing = 0;
    for id in &ids {
        let found = client
            .post(format!("{}/access_codes/get", keyway.url))
            .bearer_auth(KEY)
            .json(&json!({ "access_code_id": id }))
            .send()
            .await?
            .status()
            .is_success();
        if !found {
            missing += 1;
        }
    }
    eprintln!(
        "durability: {} acknowledged creates before kill -9, {missing} missing after restart",
        ids.len()
    );
    Ok(json!({ "acknowledged_before_kill": ids.len(), "missing_after_restart": missing }))
}

/// A store with `locks` sandbox locks (delay per operation `delay_ms`) in a fresh workspace.
async fn seed_locks(
    store: &Store,
    locks: usize,
    delay_ms: u64,
) -> anyhow::Result<Vec<DeviceRecord>> {
    let now = Timestamp(chrono::Utc::now());
    let workspace = store
        .create_workspace(
            NewWorkspace {
                workspace_id: Some("bench"),
                name: "bench",
                is_sandbox: true,
                api_key: KEY,
            },
            now,
        )
        .await?;
    store
        .insert_connected_account(
            &workspace.workspace_id,
            "bench_account",
            "sandbox",
            "bench",
            now,
        )
        .await?;
    let rules = DeviceCodeRules {
        supported_code_lengths: vec![4, 5, 6, 7, 8],
        max_active_codes_supported: 1000,
        code_constraints: vec![],
        supports_backup_access_code_pool: false,
    };
    let mut devices = Vec::with_capacity(locks);
    for n in 0..locks {
        let id = format!("bench_lock_{n}");
        store
            .insert_sandbox_device(
                &workspace.workspace_id,
                "bench_account",
                &id,
                "august_lock",
                &id,
                "august",
                &rules,
                delay_ms,
                now,
            )
            .await?;
        devices.push(
            store
                .get_device(&workspace.workspace_id, Some(&id), None)
                .await?
                .context("device")?,
        );
    }
    Ok(devices)
}

/// `per_lock` codes on every lock, in batches; with a window, they wait for it.
async fn insert_codes(
    store: &Store,
    devices: &[DeviceRecord],
    per_lock: usize,
    window: Option<(Timestamp, Timestamp)>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let now = Timestamp(chrono::Utc::now());
    let mut batch = Vec::new();
    for (n, device) in devices.iter().enumerate() {
        for k in 0..per_lock {
            batch.push(NewAccessCode {
                device,
                name: Some(format!("Guest {k}")),
                code: format!("{}", 10_000_000 + k * 1000 + n % 1000),
                kind: if window.is_some() {
                    AccessCodeType::TimeBound
                } else {
                    AccessCodeType::Ongoing
                },
                starts_at: window.map(|w| w.0),
                ends_at: window.map(|w| w.1),
                status: if window.is_some() {
                    AccessCodeStatus::Unset
                } else {
                    AccessCodeStatus::Setting
                },
                is_external_modification_allowed: false,
                is_one_time_use: false,
                is_offline_access_code: false,
                common_code_key: None,
                use_backup_access_code_pool: false,
                job_at: window.map(|w| w.0).unwrap_or(now),
            });
            if batch.len() >= 5_000 {
                store
                    .create_access_codes(std::mem::take(&mut batch), now)
                    .await?;
            }
        }
    }
    if !batch.is_empty() {
        store.create_access_codes(batch, now).await?;
    }
    Ok(started.elapsed())
}

/// Waits until `total` codes are `set`; answers when the first ones were and when all were.
/// With `KEYWAY_BENCH_TRACE` set, prints the count at every look.
async fn wait_all_set(
    store: &Store,
    total: i64,
    limit: Duration,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let trace = std::env::var_os("KEYWAY_BENCH_TRACE").is_some();
    let mut first_set = None;
    // Counting `set` codes reads every code (20 ms for 100,000, half of this process's core at
    // one look per 20 ms, taken from the server on a 2-core machine). The `set_on_device` events
    // are counted instead, reading only those since the last look; the codes are counted once
    // the events say all are set, and once a second in case the events ever fall short.
    let (mut events, mut cursor) = (0i64, 0i64);
    let mut last_full = Instant::now();
    loop {
        let (new, last) = store.set_events_since(cursor).await?;
        (events, cursor) = (events + new, last);
        if trace {
            eprintln!("{:>8.3} s: {events} set", started.elapsed().as_secs_f64());
        }
        if events > 0 && first_set.is_none() {
            first_set = Some(started.elapsed());
        }
        if events >= total || last_full.elapsed() >= Duration::from_secs(1) {
            last_full = Instant::now();
            let set = store.count_access_codes(Some("set")).await?;
            if set >= total {
                return Ok((first_set.unwrap_or_default(), started.elapsed()));
            }
            if started.elapsed() > limit {
                bail!("only {set} of {total} codes set after {limit:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Codes on locks: time from the engine's start until all are `set`.
async fn engine(
    args: &RunArgs,
    locks: usize,
    per_lock: usize,
    delay_ms: u64,
) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_dir(dir.path(), &StoreOptions::default()).await?;
    let devices = seed_locks(&store, locks, delay_ms).await?;
    let insert = insert_codes(&store, &devices, per_lock, None).await?;
    let total = (locks * per_lock) as i64;
    let started = Instant::now();
    let keyway = servers::start_keyway(
        &args.keyway_bin,
        KeywayOptions {
            data_dir: dir.path(),
            seed: false,
            engine_concurrency: locks.max(1),
            poll_interval_secs: 3600.0,
        },
    )
    .await?;
    let (first_set, all_set) = wait_all_set(&store, total, Duration::from_secs(900)).await?;
    let ready = keyway.started_in;
    let (first_set, all_set) = (first_set + ready, all_set + ready);
    let elapsed = started.elapsed().max(all_set);
    let bound = Duration::from_millis(delay_ms * per_lock as u64);
    let codes_per_sec = total as f64 / elapsed.as_secs_f64();
    eprintln!(
        "engine: {total} codes on {locks} locks, delay {delay_ms} ms: first set at {:.2} s, all set in {:.2} s ({codes_per_sec:.0} codes/s), bound {:.2} s",
        first_set.as_secs_f64(),
        elapsed.as_secs_f64(),
        bound.as_secs_f64()
    );
    drop(keyway);
    store.close().await;
    Ok(json!({
        "codes": total,
        "locks": locks,
        "delay_ms": delay_ms,
        "insert_ms": ms(insert),
        "ready_ms": ms(ready),
        "first_set_ms": ms(first_set),
        "all_set_ms": ms(elapsed),
        "codes_per_sec": codes_per_sec.round(),
        "per_lock_bound_ms": ms(bound),
        "ratio_to_bound": (delay_ms > 0).then(|| (elapsed.as_secs_f64() / bound.as_secs_f64() * 100.0).round() / 100.0),
    }))
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Codes per second `insert_codes` stores on this machine (time-bound, on fresh locks).
async fn insert_rate(locks: usize, per_lock: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_dir(dir.path(), &StoreOptions::default()).await?;
    let devices = seed_locks(&store, locks, 0).await?;
    let opens = Timestamp(chrono::Utc::now() + chrono::Duration::days(30));
    let closes = Timestamp(opens.0 + chrono::Duration::days(1));
    let took = insert_codes(&store, &devices, per_lock, Some((opens, closes))).await?;
    store.close().await;
    Ok((locks * per_lock) as f64 / took.as_secs_f64().max(0.001))
}

/// Windows opening in the same second: lag from `starts_at` to the lock's confirmation, and
/// until all show `set`.
async fn scheduler(args: &RunArgs) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_dir(dir.path(), &StoreOptions::default()).await?;
    let locks = args.engine_locks.min(args.scheduler_windows).max(1);
    let devices = seed_locks(&store, locks, 0).await?;
    let per_lock = (args.scheduler_windows / locks).max(1);
    // Leave time to insert everything and start the server before the windows open: a pilot
    // insert into a scratch store gives this machine's rate, and the lead is twenty times what
    // it predicts: the pilot's small store fills much faster than the real one grows (six
    // times was once too short). The lag is measured from `starts_at`, so a long lead costs
    // only waiting.
    let rate = insert_rate(locks.min(200), per_lock.min(10)).await?;
    let lead = Duration::from_secs(5)
        + Duration::from_secs_f64(20.0 * args.scheduler_windows as f64 / rate);
    eprintln!("scheduler: inserting at about {rate:.0} codes/s; windows open in {lead:?}");
    let opens = chrono::Utc::now() + chrono::Duration::from_std(lead)?;
    let opens = Timestamp(opens.with_timezone(&chrono::Utc));
    let closes = Timestamp(opens.0 + chrono::Duration::hours(1));
    insert_codes(&store, &devices, per_lock, Some((opens, closes))).await?;
    let keyway = servers::start_keyway(
        &args.keyway_bin,
        KeywayOptions {
            data_dir: dir.path(),
            seed: false,
            engine_concurrency: locks,
            poll_interval_secs: 3600.0,
        },
    )
    .await?;
    if Timestamp(chrono::Utc::now()) >= opens {
        bail!("setting up took longer than the lead time; the windows opened too early");
    }
    let total = (locks * per_lock) as i64;
    wait_all_set(&store, total, Duration::from_secs(900) + lead).await?;
    // Within 20 ms (the harness looks that often).
    let all_set = (chrono::Utc::now() - opens.0).num_milliseconds();
    // From `starts_at` to the moment the driver answered that the lock holds the code (the
    // `set_on_device` event's `occurred_at`).
    let mut lags = store.window_open_lags_ms().await?;
    lags.sort_unstable();
    let (p50, p99, max) = (
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0),
    );
    eprintln!("scheduler: {total} windows on {locks} locks: lag to the lock's confirmation p50 {p50} ms, p99 {p99} ms, max {max} ms; all shown `set` {all_set} ms after opening");
    drop(keyway);
    store.close().await;
    Ok(
        json!({ "windows": total, "locks": locks, "lag_to_confirmed_p50_ms": p50, "lag_to_confirmed_p99_ms": p99, "lag_to_confirmed_max_ms": max, "all_set_after_open_ms": all_set }),
    )
}

/// A big store: start-up time, resident memory and list latency.
async fn scale(args: &RunArgs) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_dir(dir.path(), &StoreOptions::default()).await?;
    let locks = args.engine_locks.min(args.scale_codes).max(1);
    let devices = seed_locks(&store, locks, 0).await?;
    let per_lock = (args.scale_codes / locks).max(1);
    let opens = Timestamp(chrono::Utc::now() + chrono::Duration::days(30));
    let closes = Timestamp(opens.0 + chrono::Duration::days(1));
    let insert = insert_codes(&store, &devices, per_lock, Some((opens, closes))).await?;
    let total = store.count_access_codes(None).await?;
    store.close().await;
    let keyway = servers::start_keyway(
        &args.keyway_bin,
        KeywayOptions {
            data_dir: dir.path(),
            seed: false,
            engine_concurrency: 256,
            poll_interval_secs: 3600.0,
        },
    )
    .await?;
    let startup = keyway.started_in;
    let rss_start = keyway.rss_mb();
    let client = client()?;
    let mut latencies = Vec::new();
    for n in 0..200 {
        let device = format!("bench_lock_{}", (n * 7919) % locks);
        let begin = Instant::now();
        let body = post(
            &client,
            &format!("{}/access_codes/list", keyway.url),
            json!({ "device_id": device }),
        )
        .await?;
        latencies.push(begin.elapsed().as_micros() as i64);
        if body["access_codes"].as_array().map(|a| a.len()) != Some(per_lock) {
            bail!("list for {device} did not answer {per_lock} codes");
        }
    }
    latencies.sort_unstable();
    // Let the engine's first read-back of every lock pass, then read memory again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = keyway.rss_mb();
    let (p50, p99) = (
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
    );
    eprintln!(
        "scale: {total} codes: start-up {:.0} ms, RSS {:.1} MB at start, {:.1} MB after lists; list p50 {p50:.2} ms p99 {p99:.2} ms",
        ms(startup),
        rss_start.unwrap_or(0.0),
        rss_after.unwrap_or(0.0)
    );
    Ok(json!({
        "codes": total,
        "locks": locks,
        "insert_ms": ms(insert),
        "startup_ms": ms(startup),
        "rss_mb_at_start": rss_start,
        "rss_mb_after": rss_after,
        "list_p50_ms": p50,
        "list_p99_ms": p99,
    }))
}

fn write_report(args: &RunArgs, report: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)?;
    let stem = if args.smoke {
        "smoke".to_owned()
    } else {
        format!("bench-{}", report.when.replace(':', ""))
    };
    let json_path = args.out_dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(report)?)?;
    let markdown = markdown(report);
    std::fs::write(args.out_dir.join(format!("{stem}.md")), &markdown)?;
    if !args.smoke {
        std::fs::write(args.out_dir.join("latest.md"), &markdown)?;
    }
    println!("{markdown}");
    eprintln!("results written to {}", json_path.display());
    Ok(())
}

fn markdown(report: &Report) -> String {
    let mut out = format!(
        "Run {} on {}\n\n`{}`\n\n",
        report.when, report.machine, report.command
    );
    if !report.api.is_empty() {
        out.push_str("| server | route | req/s | p50 ms | p99 ms | errors |\n|---|---|---:|---:|---:|---:|\n");
        for row in &report.api {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} |\n",
                row.server,
                row.route,
                row.result.requests_per_sec,
                row.result.p50_ms,
                row.result.p99_ms,
                row.result.errors
            ));
        }
        out.push('\n');
    }
    for (title, value) in [
        ("ratios", &report.ratios),
        ("durability (kill -9 during creates)", &report.durability),
        ("engine, zero delay", &report.engine),
        ("engine, delay per operation", &report.delay),
        ("scheduler", &report.scheduler),
        ("scale", &report.scale),
    ] {
        if let Some(Value::Object(map)) = value {
            out.push_str(&format!("**{title}**: "));
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            out.push_str(&parts.join(", "));
            out.push_str("\n\n");
        }
    }
    out
}
