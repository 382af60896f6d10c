//! The Z-Wave JS link against a scripted server on loopback (no Node, so it runs everywhere):
//! the connection survives the server going away and coming back, a dead node makes its lock
//! offline and its codes wait, and a node that never answers is a timeout, not a confirmation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use keyway_store::SEED;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// What the scripted lock (node 2, four slots) holds, and how it behaves.
#[derive(Default)]
struct Lock {
    slots: BTreeMap<u32, String>,
    locked: bool,
    /// Swallow set_value commands without answering.
    mute: bool,
    /// Answer set_value with success without storing anything.
    liar: bool,
    /// Door polls that still see the bolt where it was (a slow bolt).
    bolt_lag: u32,
    /// Where the bolt is heading.
    target_locked: bool,
}

fn node_state(lock: &Lock, status: u64) -> Value {
    let mut values = vec![
        json!({"endpoint": 0, "commandClass": 98, "property": "currentMode",
                                 "value": if lock.locked { 255 } else { 0 }}),
    ];
    for slot in 1..=4u32 {
        let code = lock.slots.get(&slot).cloned().unwrap_or_default();
        values.push(
            json!({"endpoint": 0, "commandClass": 99, "property": "userCode",
            "propertyKey": slot, "metadata": {"minLength": 4, "maxLength": 8}, "value": code}),
        );
        values.push(
            json!({"endpoint": 0, "commandClass": 99, "property": "userIdStatus",
            "propertyKey": slot, "value": if code.is_empty() { 0 } else { 1 }}),
        );
    }
    json!({"nodeId": 2, "status": status, "ready": true,
           "deviceConfig": {"manufacturer": "Kwikset", "label": "916"}, "values": values})
}

struct ScriptedServer {
    port: u16,
    lock: Arc<Mutex<Lock>>,
    events: broadcast::Sender<Value>,
    task: JoinHandle<()>,
}

impl ScriptedServer {
    async fn start(port: u16, lock: Arc<Mutex<Lock>>) -> ScriptedServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the scripted server");
        let port = listener.local_addr().expect("address").port();
        let (events, _) = broadcast::channel(16);
        let (shared, sender) = (lock.clone(), events.clone());
        let task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                sessions.spawn(session(stream, shared.clone(), sender.subscribe()));
            }
        });
        ScriptedServer {
            port,
            lock,
            events,
            task,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Stops listening and drops every connection, as a crashed server would.
    fn stop(self) -> (u16, Arc<Mutex<Lock>>) {
        self.task.abort();
        (self.port, self.lock)
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    lock: Arc<Mutex<Lock>>,
    mut events: broadcast::Receiver<Value>,
) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let version = json!({"type": "version", "driverVersion": "scripted", "serverVersion": "scripted",
                         "homeId": 1, "minSchemaVersion": 0, "maxSchemaVersion": 50});
    if ws
        .send(Message::Text(version.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => {
                let Ok(event) = event else { return };
                let message = json!({"type": "event", "event": event});
                if ws.send(Message::Text(message.to_string().into())).await.is_err() {
                    return;
                }
            }
            message = ws.next() => {
                let Some(Ok(Message::Text(text))) = message else {
                    if message.is_none() { return; }
                    continue;
                };
                let request: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let Some(result) = answer(&request, &lock) else { continue };
                let reply = json!({"type": "result", "messageId": request["messageId"],
                                   "success": true, "result": result});
                if ws.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The scripted server's answer to one command (`None`: no answer at all).
fn answer(request: &Value, lock: &Mutex<Lock>) -> Option<Value> {
    let mut lock = lock.lock().unwrap_or_else(|e| e.into_inner());
    let slot = |v: &Value| v.as_u64().unwrap_or(0) as u32;
    Some(match request["command"].as_str().unwrap_or("") {
        "start_listening" => json!({"state": {"nodes": [node_state(&lock, 4)]}}),
        "node.get_state" => json!({"state": node_state(&lock, 4)}),
        "node.set_value" => {
            if lock.mute {
                return None;
            }
            if lock.liar {
                return Some(json!({"result": {"status": 255}}));
            }
            let id = &request["valueId"];
            match (id["commandClass"].as_u64(), id["property"].as_str()) {
                (Some(99), Some("userCode")) => {
                    let code = request["value"].as_str().unwrap_or("").to_owned();
                    lock.slots.insert(slot(&id["propertyKey"]), code);
                }
                (Some(99), Some("userIdStatus")) => {
                    lock.slots.remove(&slot(&id["propertyKey"]));
                }
                (Some(98), Some("targetMode")) => {
                    lock.target_locked = request["value"] == 255;
                    if lock.bolt_lag == 0 {
                        lock.locked = lock.target_locked;
                    }
                }
                _ => return Some(json!({"result": {"status": 4}})),
            }
            json!({"result": {"status": 255}})
        }
        "endpoint.invoke_cc_api" => {
            let code = lock
                .slots
                .get(&slot(&request["args"][0]))
                .cloned()
                .unwrap_or_default();
            let status = if code.is_empty() { 0 } else { 1 };
            json!({"response": {"userIdStatus": status, "userCode": code}})
        }
        "node.poll_value" => {
            if lock.bolt_lag > 0 {
                lock.bolt_lag -= 1;
                if lock.bolt_lag == 0 {
                    lock.locked = lock.target_locked;
                }
            }
            json!({"value": if lock.locked { 255 } else { 0 }})
        }
        _ => json!({}),
    })
}

async fn spawn_linked(url: String) -> TestApp {
    spawn_app_with(move |config| {
        config.zwave_js.urls = vec![url];
        config.zwave_js.driver.request_timeout = Duration::from_millis(500);
        config.engine.retry.warn_after = Duration::from_millis(300);
        config.engine.retry.give_up_after = Duration::from_secs(60);
    })
    .await
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn device_online(app: &TestApp, device: &str) -> bool {
    let (status, body) = app
        .get("/devices/get", KEY1, &[("device_id", device)])
        .await;
    status == 200 && body["device"]["properties"]["online"] == true
}

fn ids(url: &str) -> (String, String) {
    let account = keyway_server::zwave::account_id(SEED.seed_workspace_1, url);
    let device = keyway_drivers::zwave_js::device_id(&account, 2);
    (account, device)
}

#[tokio::test]
async fn the_link_survives_the_server_going_away_and_coming_back() {
    let server = ScriptedServer::start(0, Arc::default()).await;
    let url = server.url();
    let (account, device) = ids(&url);
    let app = spawn_linked(url.clone()).await;
    wait_for("the lock to come online", || device_online(&app, &device)).await;
    let (_, got) = app
        .get("/devices/get", KEY1, &[("device_id", &device)])
        .await;
    assert_eq!(got["device"]["device_type"], "kwikset_lock");
    assert_eq!(got["device"]["properties"]["max_active_codes_supported"], 4);
    assert_eq!(
        got["device"]["properties"]["supported_code_lengths"],
        json!([4, 5, 6, 7, 8])
    );

    let first = app
        .create_code(json!({"device_id": device, "code": "4711"}))
        .await;
    let first_id = first["access_code_id"].as_str().expect("id").to_owned();
    app.wait_for_status(&first_id, "set").await;
    assert_eq!(
        server
            .lock
            .lock()
            .unwrap()
            .slots
            .values()
            .collect::<Vec<_>>(),
        vec!["4711"]
    );

    // The server dies: the account says so, the lock is offline, new codes wait.
    let (port, lock) = server.stop();
    wait_for("the account to be disconnected", async || {
        let (_, body) = app
            .get(
                "/connected_accounts/get",
                KEY1,
                &[("connected_account_id", &account)],
            )
            .await;
        body["connected_account"]["errors"][0]["error_code"] == "account_disconnected"
    })
    .await;
    assert!(!device_online(&app, &device).await);
    let second = app
        .create_code(json!({"device_id": device, "code": "5812"}))
        .await;
    let second_id = second["access_code_id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, waiting) = app.get_code(&second_id).await;
    assert_eq!(waiting["access_code"]["status"], "setting", "{waiting}");
    assert_eq!(
        lock.lock().unwrap().slots.len(),
        1,
        "nothing reached the lock"
    );

    // It comes back on the same port: Keyway reconnects by itself and the code goes on.
    let server = ScriptedServer::start(port, lock).await;
    wait_for("the lock to come back online", || {
        device_online(&app, &device)
    })
    .await;
    app.wait_for_status(&second_id, "set").await;
    let (_, account_now) = app
        .get(
            "/connected_accounts/get",
            KEY1,
            &[("connected_account_id", &account)],
        )
        .await;
    assert_eq!(account_now["connected_account"]["errors"], json!([]));
    let mut held: Vec<String> = server
        .lock
        .lock()
        .unwrap()
        .slots
        .values()
        .cloned()
        .collect();
    held.sort();
    assert_eq!(held, vec!["4711", "5812"]);
}

#[tokio::test]
async fn a_dead_node_is_offline_and_its_codes_wait_until_it_is_back() {
    let server = ScriptedServer::start(0, Arc::default()).await;
    let (_, device) = ids(&server.url());
    let app = spawn_linked(server.url()).await;
    wait_for("the lock to come online", || device_online(&app, &device)).await;

    server
        .events
        .send(json!({"source": "node", "event": "dead", "nodeId": 2}))
        .expect("a session listens");
    wait_for("the lock to go offline", async || {
        !device_online(&app, &device).await
    })
    .await;
    let (_, got) = app
        .get("/devices/get", KEY1, &[("device_id", &device)])
        .await;
    assert_eq!(got["device"]["errors"][0]["error_code"], "device_offline");
    let code = app
        .create_code(json!({"device_id": device, "code": "9090"}))
        .await;
    let id = code["access_code_id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        server.lock.lock().unwrap().slots.is_empty(),
        "a dead node gets no commands"
    );

    server
        .events
        .send(json!({"source": "node", "event": "alive", "nodeId": 2}))
        .expect("a session listens");
    app.wait_for_status(&id, "set").await;
    assert_eq!(
        server
            .lock
            .lock()
            .unwrap()
            .slots
            .get(&1)
            .map(String::as_str),
        Some("9090")
    );
}

#[tokio::test]
async fn a_write_the_lock_never_answers_is_not_confirmed() {
    let server = ScriptedServer::start(0, Arc::default()).await;
    let (_, device) = ids(&server.url());
    let app = spawn_linked(server.url()).await;
    wait_for("the lock to come online", || device_online(&app, &device)).await;
    server.lock.lock().unwrap().mute = true;
    let code = app
        .create_code(json!({"device_id": device, "code": "3141"}))
        .await;
    let id = code["access_code_id"].as_str().expect("id").to_owned();
    wait_for("the delay warning", async || {
        let (_, body) = app.get_code(&id).await;
        body["access_code"]["warnings"][0]["warning_code"] == "delay_in_setting_on_device"
    })
    .await;
    let (_, body) = app.get_code(&id).await;
    assert_eq!(body["access_code"]["status"], "setting", "{body}");
    // The lock answers again: the retry confirms the code.
    server.lock.lock().unwrap().mute = false;
    app.wait_for_status(&id, "set").await;
}

#[tokio::test]
async fn a_write_the_lock_only_claims_is_never_set() {
    let server = ScriptedServer::start(0, Arc::default()).await;
    let (_, device) = ids(&server.url());
    let app = spawn_linked(server.url()).await;
    wait_for("the lock to come online", || device_online(&app, &device)).await;
    // Status 255 (Supervision SUCCESS) for every write, and nothing stored.
    server.lock.lock().unwrap().liar = true;
    let code = app
        .create_code(json!({"device_id": device, "code": "2718"}))
        .await;
    let id = code["access_code_id"].as_str().expect("id").to_owned();
    wait_for("the delay warning", async || {
        let (_, body) = app.get_code(&id).await;
        body["access_code"]["warnings"][0]["warning_code"] == "delay_in_setting_on_device"
    })
    .await;
    let (_, body) = app.get_code(&id).await;
    assert_eq!(body["access_code"]["status"], "setting", "{body}");
    assert!(server.lock.lock().unwrap().slots.is_empty());
    server.lock.lock().unwrap().liar = false;
    app.wait_for_status(&id, "set").await;
}

#[tokio::test]
async fn a_server_down_at_start_shows_on_its_account_until_it_comes() {
    // A free port nobody listens on yet.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let (account, device) = ids(&url);
    let app = spawn_linked(url).await;
    wait_for("the account to be disconnected", async || {
        let (_, body) = app
            .get(
                "/connected_accounts/get",
                KEY1,
                &[("connected_account_id", &account)],
            )
            .await;
        body["connected_account"]["errors"][0]["error_code"] == "account_disconnected"
    })
    .await;
    let server = ScriptedServer::start(port, Arc::default()).await;
    wait_for("the lock to come online", || device_online(&app, &device)).await;
    let code = app
        .create_code(json!({"device_id": device, "code": "1618"}))
        .await;
    let id = code["access_code_id"].as_str().expect("id").to_owned();
    app.wait_for_status(&id, "set").await;
    assert_eq!(
        server
            .lock
            .lock()
            .unwrap()
            .slots
            .get(&1)
            .map(String::as_str),
        Some("1618")
    );
}

#[tokio::test]
async fn a_slow_bolt_is_waited_for() {
    let server = ScriptedServer::start(0, Arc::default()).await;
    let (_, device) = ids(&server.url());
    let app = spawn_linked(server.url()).await;
    wait_for("the lock to come online", || device_online(&app, &device)).await;
    // The bolt is still moving at the first polls.
    server.lock.lock().unwrap().bolt_lag = 3;
    let (status, body) = app
        .post("/locks/lock_door", KEY1, json!({"device_id": device}))
        .await;
    assert_eq!(status, 200, "{body}");
    let attempt = body["action_attempt"]["action_attempt_id"]
        .as_str()
        .expect("an attempt")
        .to_owned();
    let mut settled = Value::Null;
    for _ in 0..100 {
        let (_, got) = app
            .get(
                "/action_attempts/get",
                KEY1,
                &[("action_attempt_id", &attempt)],
            )
            .await;
        if got["action_attempt"]["status"] != "pending" {
            settled = got;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(settled["action_attempt"]["status"], "success", "{settled}");
    assert!(server.lock.lock().unwrap().locked);
}
