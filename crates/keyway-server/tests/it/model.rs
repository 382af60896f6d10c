//! Model-based test: random API calls, lock faults, keypad edits and restarts against sandbox
//! locks. At quiescence, Keyway's view must equal each lock's memory and the model's intent.
//!
//! `KEYWAY_MODEL_SEEDS=N` runs N seeds (default 3), `KEYWAY_MODEL_SEED=S` runs one seed,
//! `KEYWAY_MODEL_STEPS=K` sets the steps per seed (default 40). A failure names its seed.

use std::collections::BTreeMap;
use std::time::Duration;

use keyway_drivers::sandbox::SandboxMemory;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::helpers::*;

const DEVICES: [&str; 3] = ["august_device_1", "august_device_2", "schlage_device_id"];

/// What the model expects of one managed code.
#[derive(Debug, Clone)]
struct Expected {
    device: &'static str,
    pin: String,
    /// On the lock at quiescence (ongoing, or a window open for the next hour).
    on_lock: bool,
    /// Gone for good (deleted, or its short window has ended) at quiescence.
    gone: bool,
}

struct Model {
    codes: BTreeMap<String, Expected>,
    next_pin: u32,
    /// Latest end of a short window: the check waits for it.
    settle_after: chrono::DateTime<chrono::Utc>,
}

impl Model {
    fn pin(&mut self) -> String {
        self.next_pin += 1;
        // 5 digits, never starting with 12 (the schlage lock refuses those).
        format!("{}", 30_000 + self.next_pin)
    }

    fn live(&self) -> Vec<String> {
        self.codes
            .iter()
            .filter(|(_, e)| !e.gone)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("KEYWAY_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("KEYWAY_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u64);
    (1..=count).map(|n| n * 7919).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyway_and_the_locks_agree_after_random_operations_faults_and_restarts() {
    let steps = std::env::var("KEYWAY_MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40usize);
    for seed in seeds() {
        run_seed(seed, steps).await;
    }
}

async fn run_seed(seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut app = spawn_app_with(|config| {
        config.engine.retry.warn_after = Duration::from_millis(500);
        config.engine.retry.give_up_after = Duration::from_secs(120);
    })
    .await;
    let mut model = Model {
        codes: BTreeMap::new(),
        next_pin: 0,
        settle_after: chrono::Utc::now(),
    };
    let mut log = Vec::new();
    for step in 0..steps {
        let action = rng.gen_range(0..100);
        let device = DEVICES[rng.gen_range(0..DEVICES.len())];
        let live = model.live();
        match action {
            0..=29 => {
                let pin = model.pin();
                let mut body = json!({ "device_id": device, "code": pin });
                let (on_lock, gone) = match rng.gen_range(0..4) {
                    0 => {
                        body["starts_at"] = json!(in_millis(3_600_000));
                        body["ends_at"] = json!(in_millis(7_200_000));
                        (false, false)
                    }
                    1 => {
                        let ends = rng.gen_range(300..1500);
                        body["starts_at"] = json!(in_millis(-1000));
                        body["ends_at"] = json!(in_millis(ends));
                        let end = chrono::Utc::now() + chrono::Duration::milliseconds(ends);
                        model.settle_after = model.settle_after.max(end);
                        (false, true)
                    }
                    2 => {
                        body["starts_at"] = json!(in_millis(-1000));
                        body["ends_at"] = json!(in_millis(3_600_000));
                        (true, false)
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
                    .unwrap()
                    .to_owned();
                log.push(format!(
                    "create {id} {pin} on {device} on_lock={on_lock} gone={gone}"
                ));
                model.codes.insert(
                    id,
                    Expected {
                        device,
                        pin,
                        on_lock,
                        gone,
                    },
                );
            }
            30..=39 if !live.is_empty() => {
                let id = &live[rng.gen_range(0..live.len())];
                let pin = model.pin();
                let (status, answer) = app
                    .post(
                        "/access_codes/update",
                        KEY1,
                        json!({ "access_code_id": id, "code": pin }),
                    )
                    .await;
                // A code whose short window just ended may already be gone.
                if status == 404 && model.codes[id].gone {
                    continue;
                }
                assert_eq!(
                    status, 200,
                    "seed {seed} step {step}: update {id} → {answer}"
                );
                log.push(format!("update {id} → {pin}"));
                if let Some(expected) = model.codes.get_mut(id) {
                    expected.pin = pin;
                }
            }
            40..=49 if !live.is_empty() => {
                let id = &live[rng.gen_range(0..live.len())];
                let (status, answer) = app
                    .post(
                        "/access_codes/delete",
                        KEY1,
                        json!({ "access_code_id": id }),
                    )
                    .await;
                if status == 404 && model.codes[id].gone {
                    continue;
                }
                assert_eq!(
                    status, 200,
                    "seed {seed} step {step}: delete {id} → {answer}"
                );
                log.push(format!("delete {id}"));
                if let Some(expected) = model.codes.get_mut(id) {
                    expected.gone = true;
                    expected.on_lock = false;
                }
            }
            50..=57 => {
                let route = if rng.gen_bool(0.5) {
                    "disconnect"
                } else {
                    "connect"
                };
                app.post(
                    &format!("/devices/simulate/{route}"),
                    KEY1,
                    json!({ "device_id": device }),
                )
                .await;
                log.push(format!("{route} {device}"));
            }
            58..=62 => {
                let failures = rng.gen_range(1..4);
                app.post(
                    "/devices/simulate/configure_sandbox_lock",
                    KEY1,
                    json!({ "device_id": device, "fail_next_operations": failures }),
                )
                .await;
                log.push(format!("fail next {failures} on {device}"));
            }
            63..=72 => {
                // Keypad: edit or erase a slot, or program a new code.
                let slots = app.server.store.sandbox_slots(device).await.unwrap();
                let store = &app.server.store;
                match (rng.gen_range(0..3), slots.is_empty()) {
                    (0, false) => {
                        let slot = slots[rng.gen_range(0..slots.len())].slot;
                        let pin = model.pin();
                        store
                            .write_slot(device, slot, Some((&pin, None)))
                            .await
                            .unwrap();
                        log.push(format!("keypad edit {device} slot {slot} → {pin}"));
                    }
                    (1, false) => {
                        let slot = slots[rng.gen_range(0..slots.len())].slot;
                        store.write_slot(device, slot, None).await.unwrap();
                        log.push(format!("keypad erase {device} slot {slot}"));
                    }
                    _ => {
                        let slot = rng.gen_range(90..99);
                        let pin = model.pin();
                        store
                            .write_slot(device, slot, Some((&pin, Some("keypad"))))
                            .await
                            .unwrap();
                        log.push(format!("keypad add {device} slot {slot} {pin}"));
                    }
                }
            }
            73..=76 => {
                app.restart().await;
                log.push("restart".to_owned());
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
            }
        }
    }
    for device in DEVICES {
        app.post(
            "/devices/simulate/connect",
            KEY1,
            json!({ "device_id": device }),
        )
        .await;
        app.post(
            "/devices/simulate/configure_sandbox_lock",
            KEY1,
            json!({ "device_id": device, "fail_next_operations": 0 }),
        )
        .await;
    }
    let wait = (model.settle_after - chrono::Utc::now())
        .num_milliseconds()
        .max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait + 100)).await;
    let mut last_problem = String::new();
    for _ in 0..150 {
        match check(&app, &model).await {
            Ok(()) => return,
            Err(problem) => last_problem = problem,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "seed {seed}: Keyway and the locks never agreed: {last_problem}\n\
         reproduce with KEYWAY_MODEL_SEED={seed}\nsteps:\n{}",
        log.join("\n")
    );
}

async fn check(app: &TestApp, model: &Model) -> Result<(), String> {
    for (id, e) in &model.codes {
        app.check_code(id, &e.pin, e.on_lock, e.gone).await?;
    }
    for device in DEVICES {
        let mut lock = app.lock_pins(device).await;
        lock.sort();
        let mut managed: Vec<String> = model
            .codes
            .values()
            .filter(|e| e.device == device && e.on_lock && !e.gone)
            .map(|e| e.pin.clone())
            .collect();
        managed.sort();
        for pin in &managed {
            if lock.iter().filter(|p| *p == pin).count() != 1 {
                return Err(format!(
                    "{device} holds {pin} {} times: {lock:?}",
                    lock.iter().filter(|p| *p == pin).count()
                ));
            }
        }
        let mut expected_unmanaged: Vec<String> = lock
            .iter()
            .filter(|p| !managed.contains(p))
            .cloned()
            .collect();
        expected_unmanaged.sort();
        // Codes Keyway removed must not linger: everything else on the lock is unmanaged.
        for (id, e) in &model.codes {
            if e.device == device && (e.gone || !e.on_lock) && lock.contains(&e.pin) {
                return Err(format!("{device} still holds {} of {id}", e.pin));
            }
        }
        let listed = app.unmanaged_pins(device).await;
        if listed != expected_unmanaged {
            return Err(format!(
                "{device}: unmanaged {listed:?}, lock leaves {expected_unmanaged:?}"
            ));
        }
    }
    Ok(())
}
