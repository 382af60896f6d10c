//! The model-based test against a Z-Wave lock: the real zwave-js driver inside zwave-server on
//! zwave-js' mock controller (tests/zwave/peer). Random creates, updates, deletes, windows,
//! keypad edits/erasures/additions (told and untold) and restarts; at quiescence Keyway, the
//! lock (as its control API reports it) and the model must agree.
//!
//! Needs a running peer: `KEYWAY_ZWAVE_WS_URL` and `KEYWAY_ZWAVE_CONTROL_URL` (tests/zwave/run.sh
//! starts one and runs this with `--ignored`). `KEYWAY_ZWAVE_MODEL_SEEDS` (default 2) and
//! `KEYWAY_ZWAVE_MODEL_STEPS` (default 25) size the run.

use std::collections::BTreeMap;
use std::time::Duration;

use keyway_store::SEED;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::*;

struct Peer {
    ws: String,
    control: String,
    http: reqwest::Client,
}

impl Peer {
    fn from_env() -> Peer {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run tests/zwave/run.sh, which starts the Z-Wave peer")
            })
        };
        Peer {
            ws: var("KEYWAY_ZWAVE_WS_URL"),
            control: var("KEYWAY_ZWAVE_CONTROL_URL"),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.control);
        let request = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        let response = request
            .send()
            .await
            .expect("the mock lock's control API answers");
        read(response).await
    }

    /// Slot → PIN of every enabled slot, as the lock itself holds them.
    async fn slots(&self) -> BTreeMap<u32, String> {
        let (status, state) = self.call("/state", None).await;
        assert_eq!(status, 200, "{state}");
        state["slots"]
            .as_object()
            .map(|slots| {
                slots
                    .iter()
                    // Enabled slots: the PINs that open the door.
                    .filter(|(_, s)| s["status"].as_u64() == Some(1))
                    .filter_map(|(slot, s)| {
                        let code = s["code"].as_str().unwrap_or("");
                        (!code.is_empty())
                            .then(|| (slot.parse().ok(), code.to_owned()))
                            .and_then(|(slot, code)| slot.map(|slot| (slot, code)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct Expected {
    pin: String,
    on_lock: bool,
    gone: bool,
}

fn count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Z-Wave JS peer: tests/zwave/run.sh"]
async fn keyway_and_a_zwave_lock_agree_after_random_operations_and_restarts() {
    let peer = Peer::from_env();
    let steps = count("KEYWAY_ZWAVE_MODEL_STEPS", 25) as usize;
    for n in 1..=count("KEYWAY_ZWAVE_MODEL_SEEDS", 2) {
        run_seed(&peer, n * 104_729, steps).await;
    }
}

async fn run_seed(peer: &Peer, seed: u64, steps: usize) {
    // A clean lock, and a driver cache that knows it (0x0C: all codes deleted).
    let (status, reset) = peer.call("/reset", Some(json!({"notify": true}))).await;
    assert_eq!(status, 200, "{reset}");
    let ws = peer.ws.clone();
    let mut app = spawn_app_with(move |config| {
        config.zwave_js.urls = vec![ws];
        // Untold keypad changes are found by full reads; make them come often.
        config.zwave_js.driver.full_read_interval = Duration::from_secs(4);
        config.engine.poll_interval = Duration::from_millis(500);
        config.engine.retry.warn_after = Duration::from_secs(2);
        config.engine.retry.give_up_after = Duration::from_secs(120);
    })
    .await;
    let account = keyway_server::zwave::account_id(SEED.seed_workspace_1, &peer.ws);
    let device = keyway_drivers::zwave_js::device_id(&account, 2);
    let mut online = false;
    for _ in 0..300 {
        let (status, body) = app
            .get("/devices/get", KEY1, &[("device_id", &device)])
            .await;
        if status == 200 && body["device"]["properties"]["online"] == true {
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(online, "the Z-Wave lock never came online as {device}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut codes: BTreeMap<String, Expected> = BTreeMap::new();
    let mut next_pin = 0u32;
    let mut pin = move || {
        next_pin += 1;
        format!("{}", 40_000 + u64::from(next_pin) * 7 + seed % 7)
    };
    let mut settle_after = chrono::Utc::now();
    let mut log = Vec::new();
    for step in 0..steps {
        let live: Vec<String> = codes
            .iter()
            .filter(|(_, e)| !e.gone)
            .map(|(id, _)| id.clone())
            .collect();
        let on_lock = codes.values().filter(|e| !e.gone).count();
        match rng.gen_range(0..100) {
            // The lock has 20 slots; keep room for keypad codes.
            0..=34 if on_lock < 10 => {
                let code = pin();
                let mut body = json!({ "device_id": device, "code": code });
                let (on_lock, gone) = match rng.gen_range(0..4) {
                    0 => {
                        body["starts_at"] = json!(in_millis(3_600_000));
                        body["ends_at"] = json!(in_millis(7_200_000));
                        (false, false)
                    }
                    1 => {
                        let ends = rng.gen_range(1_000..4_000);
                        body["starts_at"] = json!(in_millis(-1000));
                        body["ends_at"] = json!(in_millis(ends));
                        settle_after = settle_after
                            .max(chrono::Utc::now() + chrono::Duration::milliseconds(ends));
                        (false, true)
                    }
                    _ => (true, false),
                };
                let (status, answer) = app.post("/access_codes/create", KEY1, body.clone()).await;
                assert_eq!(
                    status, 200,
                    "seed {seed} step {step}: create {body} → {answer}"
                );
                let id = answer["access_code"]["access_code_id"]
                    .as_str()
                    .expect("an id")
                    .to_owned();
                log.push(format!("create {id} {code} on_lock={on_lock} gone={gone}"));
                codes.insert(
                    id,
                    Expected {
                        pin: code,
                        on_lock,
                        gone,
                    },
                );
            }
            35..=47 if !live.is_empty() => {
                let id = &live[rng.gen_range(0..live.len())];
                let code = pin();
                let (status, answer) = app
                    .post(
                        "/access_codes/update",
                        KEY1,
                        json!({ "access_code_id": id, "code": code }),
                    )
                    .await;
                if status == 404 && codes[id].gone {
                    continue;
                }
                assert_eq!(
                    status, 200,
                    "seed {seed} step {step}: update {id} → {answer}"
                );
                log.push(format!("update {id} → {code}"));
                if let Some(expected) = codes.get_mut(id) {
                    expected.pin = code;
                }
            }
            48..=59 if !live.is_empty() => {
                let id = &live[rng.gen_range(0..live.len())];
                let (status, answer) = app
                    .post(
                        "/access_codes/delete",
                        KEY1,
                        json!({ "access_code_id": id }),
                    )
                    .await;
                if status == 404 && codes[id].gone {
                    continue;
                }
                assert_eq!(
                    status, 200,
                    "seed {seed} step {step}: delete {id} → {answer}"
                );
                log.push(format!("delete {id}"));
                if let Some(expected) = codes.get_mut(id) {
                    expected.gone = true;
                    expected.on_lock = false;
                }
            }
            60..=79 => {
                // The owner at the keypad: edit or erase a slot, or program a new code; some
                // locks tell (a notification), some do not (only a full read finds out).
                let slots = peer.slots().await;
                let silent = rng.gen_bool(0.3);
                match (rng.gen_range(0..3), slots.is_empty()) {
                    (0, false) => {
                        let slot = *slots
                            .keys()
                            .nth(rng.gen_range(0..slots.len()))
                            .expect("a slot");
                        let code = pin();
                        let (status, answer) = peer
                            .call(
                                "/keypad/program",
                                Some(json!({"slot": slot, "code": code, "silent": silent})),
                            )
                            .await;
                        log.push(format!(
                            "keypad edit slot {slot} → {code} silent={silent}: {status} {answer}"
                        ));
                    }
                    (1, false) => {
                        let slot = *slots
                            .keys()
                            .nth(rng.gen_range(0..slots.len()))
                            .expect("a slot");
                        let (status, answer) = peer
                            .call(
                                "/keypad/delete",
                                Some(json!({"slot": slot, "silent": silent})),
                            )
                            .await;
                        log.push(format!(
                            "keypad erase slot {slot} silent={silent}: {status} {answer}"
                        ));
                    }
                    _ => {
                        let free: Vec<u32> = (15..=20).filter(|s| !slots.contains_key(s)).collect();
                        if let Some(slot) = free.first() {
                            let code = pin();
                            let (status, answer) = peer
                                .call(
                                    "/keypad/program",
                                    Some(json!({"slot": slot, "code": code, "silent": silent})),
                                )
                                .await;
                            log.push(format!(
                                "keypad add slot {slot} {code} silent={silent}: {status} {answer}"
                            ));
                        }
                    }
                }
            }
            80..=86 => {
                app.restart().await;
                log.push("restart".to_owned());
            }
            _ => tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await,
        }
    }
    let wait = (settle_after - chrono::Utc::now())
        .num_milliseconds()
        .max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait + 200)).await;
    let mut last_problem = String::new();
    // Z-Wave is slow (about 100 ms a command, 2 s a full read): give it a minute.
    for _ in 0..120 {
        match check(&app, peer, &device, &codes).await {
            Ok(()) => {
                app.kill();
                return;
            }
            Err(problem) => last_problem = problem,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "seed {seed}: Keyway and the Z-Wave lock never agreed: {last_problem}\nsteps:\n{}",
        log.join("\n")
    );
}

async fn check(
    app: &TestApp,
    peer: &Peer,
    device: &str,
    codes: &BTreeMap<String, Expected>,
) -> Result<(), String> {
    for (id, e) in codes {
        app.check_code(id, &e.pin, e.on_lock, e.gone).await?;
    }
    let lock: Vec<String> = peer.slots().await.into_values().collect();
    let managed: Vec<&String> = codes
        .values()
        .filter(|e| e.on_lock && !e.gone)
        .map(|e| &e.pin)
        .collect();
    for pin in &managed {
        let held = lock.iter().filter(|p| p == pin).count();
        if held != 1 {
            return Err(format!("the lock holds {pin} {held} times: {lock:?}"));
        }
    }
    for (id, e) in codes {
        if (e.gone || !e.on_lock) && lock.contains(&e.pin) {
            return Err(format!("the lock still holds {} of {id}", e.pin));
        }
    }
    let mut expected_unmanaged: Vec<&String> =
        lock.iter().filter(|p| !managed.contains(p)).collect();
    expected_unmanaged.sort();
    let listed = app.unmanaged_pins(device).await;
    let listed_refs: Vec<&String> = listed.iter().collect();
    if listed_refs != expected_unmanaged {
        return Err(format!(
            "unmanaged {listed:?}, the lock leaves {expected_unmanaged:?}"
        ));
    }
    Ok(())
}
