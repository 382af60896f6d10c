//! The engine against faults: offline locks, refusals, restarts in the middle of work.

use std::time::Duration;

use keyway_drivers::sandbox::SandboxMemory;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn an_offline_lock_delays_then_fails_the_code_and_recovers_when_back() {
    let app = spawn_app().await;
    app.simulate_device(DEVICE1, "disconnect").await;
    let (_, device) = app
        .get("/devices/get", KEY1, &[("device_id", DEVICE1)])
        .await;
    assert_eq!(device["device"]["properties"]["online"], false);
    assert_eq!(
        device["device"]["errors"][0]["error_code"],
        "device_offline"
    );

    let code = app
        .create_code(json!({ "device_id": DEVICE1, "code": "6060" }))
        .await;
    let id = code["access_code_id"].as_str().unwrap();
    // Still trying: a warning, status still setting.
    let mut warned = false;
    for _ in 0..100 {
        let (_, body) = app.get_code(id).await;
        let warnings = body["access_code"]["warnings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if warnings
            .iter()
            .any(|w| w["warning_code"] == "delay_in_setting_on_device")
        {
            assert_eq!(body["access_code"]["status"], "setting");
            warned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(warned, "no delay warning");
    // Then it gives up with an error, never claiming `set`.
    let mut failed = None;
    for _ in 0..200 {
        let (_, body) = app.get_code(id).await;
        let errors = body["access_code"]["errors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if errors
            .iter()
            .any(|e| e["error_code"] == "failed_to_set_on_device")
        {
            failed = Some(body["access_code"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = failed.expect("never failed");
    assert_ne!(failed["status"], "set");
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    let events = app.event_types(id).await;
    assert!(events.contains(&"access_code.delay_in_setting_on_device".to_owned()));
    assert!(events.contains(&"access_code.failed_to_set_on_device".to_owned()));

    // The lock comes back: the code is set after all, and its error clears.
    app.simulate_device(DEVICE1, "connect").await;
    let set = app.wait_for_status(id, "set").await;
    assert_eq!(set["errors"], json!([]));
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["6060"]);
}

#[tokio::test]
async fn a_pin_already_typed_at_the_keypad_is_reported_as_a_duplicate_not_retried() {
    // No read-back poll during the test: the keypad code stays unknown to Keyway until the
    // engine reads the lock to program ours.
    let app = spawn_app_with(|c| c.engine.poll_interval = Duration::from_secs(600)).await;
    let mut synced = app.server.engine.subscribe();
    // The read every lock gets at start is over (or, if it ended before we listened, long over).
    wait_for_round(&mut synced, DEVICE1).await;
    // Typed at the keypad, not yet read back by Keyway.
    app.server
        .store
        .write_slot(DEVICE1, 200, Some(("9090", Some("keypad"))))
        .await
        .unwrap();
    let blocked = app
        .create_code(json!({ "device_id": DEVICE1, "code": "9090" }))
        .await;
    let other = app
        .create_code(json!({ "device_id": DEVICE1, "code": "9191" }))
        .await;
    let id = blocked["access_code_id"].as_str().unwrap();
    let mut refused = None;
    for _ in 0..200 {
        let (_, body) = app.get_code(id).await;
        if body["access_code"]["errors"][0]["error_code"] == "duplicate_code_on_device" {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("duplicate never reported");
    assert_eq!(refused["access_code"]["status"], "unset");
    // One bad code does not block the others.
    app.wait_for_status(other["access_code_id"].as_str().unwrap(), "set")
        .await;
    // The keypad code is now known as unmanaged, and was not taken for ours.
    let (_, unmanaged) = app
        .get(
            "/access_codes/unmanaged/list",
            KEY1,
            &[("device_id", DEVICE1)],
        )
        .await;
    let pins: Vec<&str> = unmanaged["access_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(pins, vec!["9090"]);
    let mut lock = app.lock_pins(DEVICE1).await;
    lock.sort();
    assert_eq!(lock, vec!["9090", "9191"]);
}

#[tokio::test]
async fn work_pending_at_a_crash_resumes_after_restart_and_nothing_is_lost() {
    let mut app = spawn_app_with(|config| config.sandbox_delay = Duration::from_millis(150)).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let code = app
            .create_code(json!({ "device_id": DEVICE1, "code": format!("420{n}") }))
            .await;
        ids.push(code["access_code_id"].as_str().unwrap().to_owned());
    }
    // Killed while the lock is still being programmed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.restart().await;
    for id in &ids {
        app.wait_for_status(id, "set").await;
    }
    let mut pins = app.lock_pins(DEVICE1).await;
    pins.sort();
    assert_eq!(pins, vec!["4200", "4201", "4202", "4203"]);

    // Killed with a removal pending: it still happens.
    let (status, _) = app
        .post(
            "/access_codes/delete",
            KEY1,
            json!({ "access_code_id": ids[0] }),
        )
        .await;
    assert_eq!(status, 200);
    app.kill();
    app.restart().await;
    app.wait_until_gone(&ids[0]).await;
    let mut pins = app.lock_pins(DEVICE1).await;
    pins.sort();
    assert_eq!(pins, vec!["4201", "4202", "4203"]);
    // Each code appears once on the lock and once in the API.
    let (_, list) = app
        .get("/access_codes/list", KEY1, &[("device_id", DEVICE1)])
        .await;
    assert_eq!(list["access_codes"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn sync_true_answers_after_the_lock_did_it() {
    let app = spawn_app_with(|config| config.sandbox_delay = Duration::from_millis(50)).await;
    let (status, body) = app
        .post(
            "/access_codes/create",
            KEY1,
            json!({ "device_id": DEVICE1, "code": "2468", "sync": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_code"]["status"], "set");
    assert_eq!(body["action_attempt"]["status"], "success");
    let id = body["access_code"]["access_code_id"].as_str().unwrap();
    let (_, deleted) = app
        .post(
            "/access_codes/delete",
            KEY1,
            json!({ "access_code_id": id, "sync": true }),
        )
        .await;
    assert_eq!(deleted["action_attempt"]["status"], "success");
    assert!(app.lock_pins(DEVICE1).await.is_empty());
}

async fn set_code(app: &TestApp, body: serde_json::Value) -> (String, u32) {
    let code = app.create_code(body).await;
    let id = code["access_code_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "set").await;
    let pin = code["code"].as_str().unwrap().to_owned();
    let slots = app.server.store.sandbox_slots(DEVICE1).await.unwrap();
    let slot = slots
        .iter()
        .find(|s| s.code == pin)
        .expect("on the lock")
        .slot;
    (id, slot)
}

async fn wait_for_event(app: &TestApp, id: &str, event: &str) {
    for _ in 0..200 {
        if app.event_types(id).await.iter().any(|e| e == event) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {event} for {id}");
}

async fn wait_for_lock(app: &TestApp, pins: &[&str]) {
    let mut last = Vec::new();
    for _ in 0..200 {
        last = app.lock_pins(DEVICE1).await;
        last.sort();
        if last == pins {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("lock holds {last:?}, wanted {pins:?}");
}

#[tokio::test]
async fn a_code_edited_or_erased_at_the_keypad_is_reported_and_put_back() {
    let app = spawn_app().await;
    let (id, slot) = set_code(&app, json!({ "device_id": DEVICE1, "code": "1122" })).await;
    // Someone edits the slot at the keypad.
    app.server
        .store
        .write_slot(DEVICE1, slot, Some(("9988", None)))
        .await
        .unwrap();
    wait_for_event(&app, &id, "access_code.modified_external_to_seam").await;
    wait_for_lock(&app, &["1122"]).await;
    let set = app.wait_for_status(&id, "set").await;
    assert_eq!(set["code"], "1122");
    assert_eq!(
        set["warnings"][0]["warning_code"],
        "code_modified_external_to_seam"
    );
    // The edited PIN was not taken for an unmanaged code of its own.
    let (_, unmanaged) = app
        .get(
            "/access_codes/unmanaged/list",
            KEY1,
            &[("device_id", DEVICE1)],
        )
        .await;
    assert_eq!(unmanaged["access_codes"], json!([]));

    // Someone erases it.
    app.server
        .store
        .write_slot(DEVICE1, slot, None)
        .await
        .unwrap();
    wait_for_event(&app, &id, "access_code.deleted_external_to_seam").await;
    wait_for_lock(&app, &["1122"]).await;
    app.wait_for_status(&id, "set").await;
}

#[tokio::test]
async fn external_edits_are_accepted_when_the_code_allows_them() {
    let app = spawn_app().await;
    let (id, slot) = set_code(
        &app,
        json!({ "device_id": DEVICE1, "code": "3344", "allow_external_modification": true }),
    )
    .await;
    app.server
        .store
        .write_slot(DEVICE1, slot, Some(("5566", None)))
        .await
        .unwrap();
    wait_for_event(&app, &id, "access_code.modified_external_to_seam").await;
    let (_, got) = app.get_code(&id).await;
    assert_eq!(got["access_code"]["code"], "5566");
    assert_eq!(got["access_code"]["status"], "set");
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["5566"]);

    app.server
        .store
        .write_slot(DEVICE1, slot, None)
        .await
        .unwrap();
    app.wait_until_gone(&id).await;
    assert!(app.lock_pins(DEVICE1).await.is_empty());
}

#[tokio::test]
async fn a_keypad_code_that_disappears_is_no_longer_listed() {
    let app = spawn_app().await;
    app.server
        .store
        .write_slot(DEVICE1, 77, Some(("7777", Some("Guest"))))
        .await
        .unwrap();
    let mut id = None;
    for _ in 0..100 {
        let (_, list) = app
            .get(
                "/access_codes/unmanaged/list",
                KEY1,
                &[("device_id", DEVICE1)],
            )
            .await;
        if let Some(code) = list["access_codes"].as_array().and_then(|a| a.first()) {
            id = code["access_code_id"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = id.expect("poller never found the keypad code");
    app.server
        .store
        .write_slot(DEVICE1, 77, None)
        .await
        .unwrap();
    wait_for_event(&app, &id, "access_code.unmanaged.removed").await;
    let (status, _) = app
        .get(
            "/access_codes/unmanaged/get",
            KEY1,
            &[("access_code_id", &id)],
        )
        .await;
    assert_eq!(status, 404);
}

/// A server whose engine prepares rounds three seconds ahead (its lease allows it).
async fn spawn_app_preparing_ahead() -> TestApp {
    spawn_app_with(|config| {
        config.engine.lease = Duration::from_secs(9);
        config.engine.lead = Duration::from_secs(3);
    })
    .await
}

/// A code on `DEVICE1` whose window opens in four seconds (inside the lead of
/// `spawn_app_preparing_ahead`); answers it, its id and when it opens (epoch milliseconds).
async fn create_window(app: &TestApp, pin: &str) -> (serde_json::Value, String, i64) {
    let code = app
        .create_code(json!({
            "device_id": DEVICE1,
            "code": pin,
            "starts_at": in_millis(4_000),
            "ends_at": in_millis(3_600_000),
        }))
        .await;
    let id = code["access_code_id"].as_str().unwrap().to_owned();
    let opens = millis_of(&code["starts_at"]);
    (code, id, opens)
}

/// Milliseconds since the epoch of an ISO time the API answered.
fn millis_of(iso: &serde_json::Value) -> i64 {
    let text = iso.as_str().expect("a time");
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("ISO time")
        .timestamp_millis()
}

#[tokio::test]
async fn a_window_is_prepared_ahead_and_reaches_the_lock_as_it_opens() {
    let app = spawn_app_preparing_ahead().await;
    let (code, id, opens) = create_window(&app, "8642").await;
    assert_eq!(code["status"], "unset");
    // Before the window opens the slot is chosen and the code shows `setting`, but the lock
    // does not hold it yet.
    let prepared = app.wait_for_status(&id, "setting").await;
    assert!(chrono::Utc::now().timestamp_millis() < opens, "{prepared}");
    assert!(!app.lock_pins(DEVICE1).await.contains(&"8642".to_owned()));
    // Once it opens, the lock holds it, and the lock confirmed it no earlier than `starts_at`.
    app.wait_for_status(&id, "set").await;
    assert!(app.lock_pins(DEVICE1).await.contains(&"8642".to_owned()));
    let (status, events) = app
        .post("/events/list", KEY1, json!({ "access_code_id": id }))
        .await;
    assert_eq!(status, 200, "{events}");
    let set = events["events"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|e| e["event_type"] == "access_code.set_on_device")
        })
        .expect("a set event");
    assert!(millis_of(&set["occurred_at"]) >= opens, "{set}");
}

#[tokio::test]
async fn a_code_deleted_while_its_window_is_prepared_never_reaches_the_lock() {
    let app = spawn_app_preparing_ahead().await;
    let (_, id, opens) = create_window(&app, "9753").await;
    app.wait_for_status(&id, "setting").await;
    let (status, body) = app
        .post(
            "/access_codes/delete",
            KEY1,
            json!({ "access_code_id": id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Past the window's opening, until the code is gone, the lock never holds the PIN.
    for _ in 0..400 {
        assert!(!app.lock_pins(DEVICE1).await.contains(&"9753".to_owned()));
        let (status, _) = app.get_code(&id).await;
        if status == 404 && chrono::Utc::now().timestamp_millis() > opens + 1_000 {
            // Not even for a moment: the lock never confirmed it.
            let events = app.event_types(&id).await;
            assert!(
                !events.contains(&"access_code.set_on_device".to_owned()),
                "{events:?}"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the deleted code was not gone a second after its window opened");
}

#[tokio::test]
async fn a_window_whose_lock_cannot_be_read_ahead_is_tried_as_it_opens() {
    let app = spawn_app_preparing_ahead().await;
    app.simulate_device(DEVICE1, "disconnect").await;
    let (_, id, opens) = create_window(&app, "1357").await;
    // Until the window opens, nothing is tried on the code's behalf: no retries, warnings or
    // errors of its own (the device's `device_offline` shows, as on every code of the lock).
    while chrono::Utc::now().timestamp_millis() < opens - 300 {
        let (_, body) = app.get_code(&id).await;
        let code = &body["access_code"];
        assert_eq!(code["status"], "unset", "{code}");
        assert_eq!(code["warnings"], json!([]), "{code}");
        let own_errors = code["errors"]
            .as_array()
            .map(|all| all.iter().filter(|e| e["is_device_error"] != true).count())
            .unwrap_or_default();
        assert_eq!(own_errors, 0, "{code}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while chrono::Utc::now().timestamp_millis() < opens + 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.simulate_device(DEVICE1, "connect").await;
    app.wait_for_status(&id, "set").await;
    assert!(app.lock_pins(DEVICE1).await.contains(&"1357".to_owned()));
}

/// What the benchmark harness waits on: `set_on_device` events counted from a cursor, on
/// either backend.
#[tokio::test]
async fn set_events_are_counted_once_from_a_cursor() {
    let app = spawn_app().await;
    let store = &app.server.store;
    assert_eq!(store.set_events_since(0).await.unwrap().0, 0);
    let mut ids = Vec::new();
    for pin in ["6001", "6002"] {
        let code = app
            .create_code(json!({ "device_id": DEVICE1, "code": pin }))
            .await;
        ids.push(code["access_code_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_for_status(id, "set").await;
    }
    let (events, last) = store.set_events_since(0).await.unwrap();
    assert_eq!(events, 2);
    assert_eq!(store.set_events_since(last).await.unwrap(), (0, last));
}

/// Codes created one after another while their lock is being worked on: after the round in
/// progress, the lock's next round waits for the stream to gather (`gather`) and takes the
/// rest at once, instead of one lock read per code or two.
async fn rounds_for_a_stream_of_codes(gather: Duration) -> usize {
    let app = spawn_app_with(|config| {
        config.sandbox_delay = Duration::from_millis(40);
        config.engine.gather = gather;
        config.engine.poll_interval = Duration::from_secs(600);
    })
    .await;
    let mut synced = app.server.engine.subscribe();
    // The read every lock gets at start is over.
    wait_for_round(&mut synced, DEVICE1).await;
    let ids = create_codes(&app, 5100..5116, Duration::from_millis(25)).await;
    for id in &ids {
        app.wait_for_status(id, "set").await;
    }
    let mut rounds = 0;
    while let Ok(device) = synced.try_recv() {
        rounds += usize::from(device == DEVICE1);
    }
    rounds
}

#[tokio::test]
async fn a_busy_lock_gathers_a_stream_of_codes_into_few_rounds() {
    // The first round takes the first code; everything created meanwhile and during the
    // pause goes in the second.
    let rounds = rounds_for_a_stream_of_codes(Duration::from_millis(1500)).await;
    assert!(rounds <= 2, "{rounds} rounds for 16 codes");
}

/// Ongoing codes on `DEVICE1`, one per PIN of `pins`, `apart` from one another; answers their ids.
async fn create_codes(app: &TestApp, pins: std::ops::Range<u32>, apart: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    for pin in pins {
        let code = app
            .create_code(json!({ "device_id": DEVICE1, "code": pin.to_string() }))
            .await;
        ids.push(code["access_code_id"].as_str().unwrap().to_owned());
        tokio::time::sleep(apart).await;
    }
    ids
}

/// Waits (at most 5 s) for the engine to finish a round on `device_id`.
async fn wait_for_round(synced: &mut tokio::sync::broadcast::Receiver<String>, device_id: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(device) = synced.recv().await {
            if device == device_id {
                break;
            }
        }
    })
    .await;
}

/// Takes `DEVICE1`'s lease away from whoever holds it, for another instance, for `for_ms`.
async fn lease_to_another_instance(app: &TestApp, for_ms: i64) {
    let store = &app.server.store;
    let now = keyway_model::Timestamp(chrono::Utc::now());
    let until = keyway_model::Timestamp::from_millis(now.millis() + for_ms).unwrap();
    store.release_all_leases().await.unwrap();
    assert!(store
        .claim_device(DEVICE1, "another-instance", now, until)
        .await
        .unwrap());
}

/// A worker whose lease is taken partway through a round (another instance's, after a pause
/// that outlasted it) stops, and leaves the codes it did not program, with their jobs, to the
/// lease's next holder: none is left `setting` for good.
#[tokio::test]
async fn codes_left_by_a_worker_that_lost_its_lease_are_set_by_the_next_holder() {
    let app = spawn_app_with(|config| {
        // A slow lock: one code at a time, each recorded as it lands.
        config.sandbox_delay = Duration::from_millis(300);
        // Renewed once a third of it (500 ms) has passed.
        config.engine.lease = Duration::from_millis(1500);
        config.engine.poll_interval = Duration::from_secs(600);
    })
    .await;
    let mut synced = app.server.engine.subscribe();
    wait_for_round(&mut synced, DEVICE1).await;
    // The codes queue up while another instance holds the lock, and go in one round after.
    lease_to_another_instance(&app, 500).await;
    let ids = create_codes(&app, 7100..7105, Duration::ZERO).await;
    app.wait_for_status(&ids[0], "set").await;
    // The lease goes while the round's second code is being put: the worker finds out when it
    // renews, before the third.
    lease_to_another_instance(&app, 800).await;
    for id in &ids {
        app.wait_for_status(id, "set").await;
    }
}

/// A lock read that outlasts the lease (another instance takes the lock meanwhile) is not
/// acted on: the worker renews before it records or programs anything, finds the lease gone,
/// and leaves the round, with its jobs, to the new holder; the code is set once that lease
/// runs out and this instance takes the lock again.
#[tokio::test]
async fn a_read_that_outlasts_the_lease_is_not_acted_on() {
    let app = spawn_app_with(|config| {
        // A read takes longer than a third of the lease.
        config.sandbox_delay = Duration::from_millis(800);
        config.engine.lease = Duration::from_millis(1500);
        config.engine.poll_interval = Duration::from_secs(600);
    })
    .await;
    let mut synced = app.server.engine.subscribe();
    wait_for_round(&mut synced, DEVICE1).await;
    let ids = create_codes(&app, 7200..7201, Duration::ZERO).await;
    // The round is reading the lock: another instance takes it for three seconds.
    tokio::time::sleep(Duration::from_millis(200)).await;
    lease_to_another_instance(&app, 3000).await;
    // Without the renewal the code would be on the lock 1.6 s after its creation.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        app.lock_pins(DEVICE1).await.is_empty(),
        "programmed by a worker that no longer held the lock"
    );
    let (_, body) = app.get_code(&ids[0]).await;
    assert_eq!(body["access_code"]["status"], "setting");
    app.wait_for_status(&ids[0], "set").await;
    assert_eq!(app.lock_pins(DEVICE1).await, vec!["7200"]);
}
