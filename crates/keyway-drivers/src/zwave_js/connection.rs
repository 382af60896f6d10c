//! One websocket connection to a Z-Wave JS server, kept open for as long as Keyway runs:
//! handshake (`version`, `set_api_schema`, `start_listening`), requests matched to their results
//! by message id, events folded into the node table, and reconnection with back-off.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot, OwnedMutexGuard};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use super::node::{slot_key, LockNode, Slot, CC_DOOR_LOCK, CC_USER_CODE};
use super::ZwaveEvent;
use crate::DriverError;

/// The newest server schema Keyway speaks; older servers are asked for theirs.
const SCHEMA_VERSION: u64 = 44;
/// Set-value results carry a status from this schema on.
const MIN_SCHEMA_VERSION: u64 = 29;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const PING_EVERY: Duration = Duration::from_secs(15);
/// Nothing heard for this long: the server is gone even if the socket is not closed.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a duplicate-code notification explains a failed write.
const DUPLICATE_MEMORY: Duration = Duration::from_secs(30);

/// Access Control notification (type 6) events Keyway follows.
const NOTIFICATION_ACCESS_CONTROL: u64 = 6;
const EV_MANUAL_LOCK: u64 = 1;
const EV_MANUAL_UNLOCK: u64 = 2;
const EV_RF_LOCK: u64 = 3;
const EV_RF_UNLOCK: u64 = 4;
const EV_KEYPAD_LOCK: u64 = 5;
const EV_KEYPAD_UNLOCK: u64 = 6;
const EV_ALL_CODES_DELETED: u64 = 12;
const EV_CODE_DELETED: u64 = 13;
const EV_CODE_ADDED: u64 = 14;
const EV_DUPLICATE_CODE: u64 = 15;

struct Request {
    command: Map<String, Value>,
    reply: oneshot::Sender<Result<Value, DriverError>>,
}

/// What Keyway knows of the Z-Wave network behind one server.
#[derive(Default)]
struct Network {
    connected: bool,
    /// Whether subscribers have heard how the connection stands (the first failure counts).
    announced: bool,
    nodes: HashMap<u32, LockNode>,
    /// When each node's slots were last all read from the lock; absent: a full read is due.
    full_read_at: HashMap<u32, Instant>,
    /// Slots the lock said changed (keypad notifications) and that must be read again.
    stale: HashMap<u32, BTreeSet<u32>>,
    /// Duplicate-code notifications, by node and slot.
    duplicates: HashMap<(u32, u32), Instant>,
}

/// What the next read of a lock's codes must fetch from the lock.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// Every slot (`node.refresh_cc_values`).
    Full,
    /// These slots only; the rest is current.
    Slots(Vec<u32>),
}

/// Outcome of `node.set_value`, from its `SetValueStatus`.
#[derive(Debug, PartialEq, Eq)]
pub enum SetOutcome {
    Accepted,
    /// The node answered that it failed (Supervision FAIL).
    Failed,
    /// The value was refused before anything was sent (bad code, slot out of range).
    Invalid(String),
    Unsupported(String),
}

pub struct Connection {
    pub account_id: String,
    tx: mpsc::Sender<Request>,
    network: Mutex<Network>,
    events: broadcast::Sender<ZwaveEvent>,
    turns: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
}

impl Connection {
    /// A connection (not yet open) and the receiving end its task must run with.
    pub(super) fn new(
        account_id: &str,
        url: &str,
        queue: usize,
    ) -> (Arc<Connection>, ConnectionTask) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (events, _) = broadcast::channel(1024);
        let connection = Arc::new(Connection {
            account_id: account_id.to_owned(),
            tx,
            network: Mutex::new(Network::default()),
            events,
            turns: Mutex::new(HashMap::new()),
        });
        let task = ConnectionTask {
            connection: Arc::downgrade(&connection),
            url: url.to_owned(),
            rx,
        };
        (connection, task)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ZwaveEvent> {
        self.events.subscribe()
    }

    fn network(&self) -> MutexGuard<'_, Network> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.network.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: ZwaveEvent) {
        let _ = self.events.send(event);
    }

    pub fn is_connected(&self) -> bool {
        self.network().connected
    }

    /// The lock nodes as last known (kept while the connection is down).
    pub fn nodes(&self) -> Vec<LockNode> {
        let mut nodes: Vec<LockNode> = self.network().nodes.values().cloned().collect();
        nodes.sort_by_key(|n| n.node_id);
        nodes
    }

    pub fn node(&self, node_id: u32) -> Option<LockNode> {
        self.network().nodes.get(&node_id).cloned()
    }

    /// Waits for the node's turn: one command at a time per lock.
    pub async fn turn(&self, node_id: u32) -> OwnedMutexGuard<()> {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            turns.entry(node_id).or_default().clone()
        };
        turn.lock_owned().await
    }

    /// Fails unless the server is connected and the node answers.
    pub fn check_reachable(&self, node_id: u32) -> Result<(), DriverError> {
        let network = self.network();
        if !network.connected {
            return Err(DriverError::Offline);
        }
        match network.nodes.get(&node_id) {
            None => Err(DriverError::NotFound),
            // Dead, or still being interviewed (zwave-js may wipe a lock's codes then).
            Some(node) if !node.online() || !node.ready => Err(DriverError::Offline),
            Some(_) => Ok(()),
        }
    }

    pub fn read_plan(&self, node_id: u32, max_age: Duration) -> ReadPlan {
        let network = self.network();
        match network.full_read_at.get(&node_id) {
            Some(at) if at.elapsed() < max_age => ReadPlan::Slots(
                network
                    .stale
                    .get(&node_id)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
            ),
            _ => ReadPlan::Full,
        }
    }

    /// Whether the lock reported a duplicate code since `since` (one command at a time per
    /// node: it is about the write in progress), and the slot it named.
    pub fn duplicate_since(&self, node_id: u32, since: Instant) -> Option<u32> {
        self.network()
            .duplicates
            .iter()
            .filter(|((node, _), at)| *node == node_id && **at >= since)
            .map(|((_, slot), _)| *slot)
            .next()
    }

    /// Marks a slot as unknown until read again (before a write whose outcome may be lost).
    pub fn mark_stale(&self, node_id: u32, slot: u32) {
        self.network()
            .stale
            .entry(node_id)
            .or_default()
            .insert(slot);
    }

    /// Sends one command and waits for its result (`result` of a successful answer).
    pub async fn request(
        &self,
        command: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, DriverError> {
        if !self.is_connected() {
            return Err(DriverError::Offline);
        }
        let mut message = match args {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        message.insert("command".into(), Value::String(command.to_owned()));
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Request {
                command: message,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    DriverError::Internal("too many Z-Wave commands queued".into())
                }
                mpsc::error::TrySendError::Closed(_) => DriverError::Offline,
            })?;
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(DriverError::Timeout),
            // The connection dropped with the command in flight: its outcome is unknown.
            Ok(Err(_)) => Err(DriverError::Timeout),
            Ok(Ok(result)) => result,
        }
    }

    /// `node.set_value`, answered by its status.
    pub async fn set_value(
        &self,
        node_id: u32,
        value_id: Value,
        value: Value,
        timeout: Duration,
    ) -> Result<SetOutcome, DriverError> {
        let result = self
            .request(
                "node.set_value",
                json!({"nodeId": node_id, "valueId": value_id, "value": value}),
                timeout,
            )
            .await?;
        Ok(set_outcome(&result))
    }

    /// Reads one slot from the lock (User Code Get) and records what it holds.
    pub async fn read_slot(
        &self,
        node_id: u32,
        slot: u32,
        timeout: Duration,
    ) -> Result<Slot, DriverError> {
        let result = self
            .request(
                "endpoint.invoke_cc_api",
                json!({"nodeId": node_id, "endpoint": 0, "commandClass": CC_USER_CODE,
                       "methodName": "get", "args": [slot]}),
                timeout,
            )
            .await?;
        let response = result.get("response").cloned().unwrap_or(Value::Null);
        if response.is_null() {
            return Err(DriverError::Timeout);
        }
        let key = json!(slot);
        let mut network = self.network();
        let node = network
            .nodes
            .get_mut(&node_id)
            .ok_or(DriverError::NotFound)?;
        if let Some(status) = response.get("userIdStatus") {
            node.apply(CC_USER_CODE, "userIdStatus", Some(&key), status);
        }
        if let Some(code) = response.get("userCode") {
            node.apply(CC_USER_CODE, "userCode", Some(&key), code);
        }
        let read = node.slots.get(&slot).cloned().unwrap_or_default();
        if let Some(stale) = network.stale.get_mut(&node_id) {
            stale.remove(&slot);
        }
        Ok(read)
    }

    /// Reads every slot from the lock and takes the node's state afresh.
    pub async fn full_read(&self, node_id: u32, timeout: Duration) -> Result<(), DriverError> {
        let slots = self.node(node_id).map(|n| n.slot_count()).unwrap_or(0);
        let started = Instant::now();
        // About one round trip per slot; give each a second on a slow network.
        let refresh_timeout = timeout + Duration::from_secs(u64::from(slots));
        self.request(
            "node.refresh_cc_values",
            json!({"nodeId": node_id, "commandClass": CC_USER_CODE}),
            refresh_timeout,
        )
        .await?;
        let result = self
            .request("node.get_state", json!({"nodeId": node_id}), timeout)
            .await?;
        let state = result.get("state").ok_or_else(|| {
            DriverError::Internal("node.get_state answered without a state".into())
        })?;
        let node = LockNode::from_state(state).ok_or(DriverError::NotFound)?;
        // Slots the refresh did not reach (zwave-js gives up on a slot that times out, and
        // skips all when a checksum matches) are read one by one before Keyway trusts them.
        let unknown: BTreeSet<u32> = node
            .slots
            .iter()
            .filter(|(_, s)| s.code.is_none() && s.status.is_none())
            .map(|(n, _)| *n)
            .collect();
        let mut network = self.network();
        let mut node = node;
        if let Some(live) = network.nodes.get(&node_id) {
            // Health follows the events, which may be newer than this snapshot.
            node.status = live.status;
            node.ready = live.ready;
        }
        network.nodes.insert(node_id, node);
        network.full_read_at.insert(node_id, started);
        network.stale.insert(node_id, unknown);
        Ok(())
    }

    /// Asks the lock for its door state.
    pub async fn read_door(
        &self,
        node_id: u32,
        timeout: Duration,
    ) -> Result<Option<bool>, DriverError> {
        let result = self
            .request(
                "node.poll_value",
                json!({"nodeId": node_id,
                       "valueId": {"commandClass": CC_DOOR_LOCK, "property": "currentMode"}}),
                timeout,
            )
            .await?;
        let value = result.get("value").cloned().unwrap_or(Value::Null);
        let mut network = self.network();
        let node = network
            .nodes
            .get_mut(&node_id)
            .ok_or(DriverError::NotFound)?;
        node.apply(CC_DOOR_LOCK, "currentMode", None, &value);
        Ok(node.locked)
    }

    fn replace_nodes(&self, nodes: &[Value]) {
        let mut network = self.network();
        network.nodes = nodes
            .iter()
            .filter_map(LockNode::from_state)
            .map(|n| (n.node_id, n))
            .collect();
        // What the lock holds may have changed while Keyway was away.
        network.full_read_at.clear();
        network.stale.clear();
        network.connected = true;
        network.announced = true;
    }

    /// Answers whether subscribers must hear of it (it was connected, or nobody was told yet).
    fn set_disconnected(&self) -> bool {
        let mut network = self.network();
        let tell = network.connected || !network.announced;
        network.connected = false;
        network.announced = true;
        network.full_read_at.clear();
        tell
    }

    /// Folds one server event into the node table and tells subscribers what matters.
    fn on_event(&self, event: &Value) {
        let source = event.get("source").and_then(Value::as_str).unwrap_or("");
        let name = event.get("event").and_then(Value::as_str).unwrap_or("");
        if source == "controller" {
            match name {
                "node added" => {
                    if let Some(node) = event.get("node").and_then(LockNode::from_state) {
                        let node_id = node.node_id;
                        self.network().nodes.insert(node_id, node);
                        self.emit(ZwaveEvent::NodeChanged { node_id });
                    }
                }
                "node removed" => {
                    let node_id = event
                        .get("node")
                        .and_then(|n| n.get("nodeId"))
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok());
                    if let Some(node_id) = node_id {
                        if self.network().nodes.remove(&node_id).is_some() {
                            self.emit(ZwaveEvent::NodeRemoved { node_id });
                        }
                    }
                }
                _ => {}
            }
            return;
        }
        if source != "node" {
            return;
        }
        let Some(node_id) = event
            .get("nodeId")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
        else {
            return;
        };
        let args = event.get("args").cloned().unwrap_or(Value::Null);
        match name {
            "value added" | "value updated" => {
                let cc = args
                    .get("commandClass")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if args.get("endpoint").and_then(Value::as_u64).unwrap_or(0) != 0 {
                    return;
                }
                let property = args.get("property").and_then(Value::as_str).unwrap_or("");
                let key = args.get("propertyKey");
                let Some(value) = args.get("newValue") else {
                    return;
                };
                let changed = {
                    let mut network = self.network();
                    let Some(node) = network.nodes.get_mut(&node_id) else {
                        return;
                    };
                    let before = node.clone();
                    node.apply(cc, property, key, value) && *node != before
                };
                if changed {
                    if cc == CC_USER_CODE {
                        self.emit(ZwaveEvent::SlotChanged {
                            node_id,
                            slot: slot_key(key),
                        });
                    } else {
                        self.emit(ZwaveEvent::NodeChanged { node_id });
                    }
                }
            }
            "notification" => self.on_notification(node_id, event, &args),
            "dead" | "alive" | "sleep" | "wake up" => {
                let status = match name {
                    "dead" => 3,
                    "alive" => 4,
                    "sleep" => 1,
                    _ => 2,
                };
                if let Some(node) = self.network().nodes.get_mut(&node_id) {
                    node.status = status;
                }
                self.emit(ZwaveEvent::NodeChanged { node_id });
            }
            "ready" => {
                if let Some(node) = event.get("nodeState").and_then(LockNode::from_state) {
                    let mut network = self.network();
                    network.nodes.insert(node_id, node);
                    network.full_read_at.remove(&node_id);
                    drop(network);
                    self.emit(ZwaveEvent::NodeChanged { node_id });
                }
            }
            _ => {}
        }
    }

    fn on_notification(&self, node_id: u32, event: &Value, args: &Value) {
        let cc = event.get("ccId").and_then(Value::as_u64).unwrap_or(113);
        if cc != 113
            || args.get("type").and_then(Value::as_u64) != Some(NOTIFICATION_ACCESS_CONTROL)
        {
            return;
        }
        let kind = args.get("event").and_then(Value::as_u64).unwrap_or(0);
        let slots = self
            .network()
            .nodes
            .get(&node_id)
            .map(|n| n.slot_count())
            .unwrap_or(0);
        // A user id outside the slots (0 is the master code on some locks) names no slot.
        let slot = args
            .get("parameters")
            .and_then(|p| p.get("userId"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=slots).contains(n));
        debug!(node_id, kind, ?slot, "access control notification");
        match kind {
            EV_CODE_ADDED | EV_CODE_DELETED => {
                let mut network = self.network();
                match slot {
                    Some(slot) => {
                        network.stale.entry(node_id).or_default().insert(slot);
                    }
                    None => {
                        network.full_read_at.remove(&node_id);
                    }
                }
                drop(network);
                self.emit(ZwaveEvent::SlotChanged { node_id, slot });
            }
            EV_ALL_CODES_DELETED => {
                self.network().full_read_at.remove(&node_id);
                self.emit(ZwaveEvent::SlotChanged {
                    node_id,
                    slot: None,
                });
            }
            EV_DUPLICATE_CODE => {
                if let Some(slot) = slot {
                    let mut network = self.network();
                    network
                        .duplicates
                        .retain(|_, at| at.elapsed() < DUPLICATE_MEMORY);
                    network.duplicates.insert((node_id, slot), Instant::now());
                }
            }
            EV_KEYPAD_LOCK | EV_KEYPAD_UNLOCK => {
                let unlocked = kind == EV_KEYPAD_UNLOCK;
                // The PIN of the slot now, before anything changes it.
                let pin = {
                    let mut network = self.network();
                    let stale = slot.is_some_and(|s| {
                        network
                            .stale
                            .get(&node_id)
                            .is_some_and(|st| st.contains(&s))
                    });
                    let node = network.nodes.get_mut(&node_id);
                    let pin = match (&node, slot, stale) {
                        (Some(node), Some(s), false) => {
                            node.slots.get(&s).and_then(|s| s.pin().map(str::to_owned))
                        }
                        _ => None,
                    };
                    if let Some(node) = node {
                        node.locked = Some(!unlocked);
                    }
                    pin
                };
                self.emit(ZwaveEvent::Keypad {
                    node_id,
                    slot,
                    pin,
                    unlocked,
                });
            }
            EV_MANUAL_LOCK | EV_MANUAL_UNLOCK | EV_RF_LOCK | EV_RF_UNLOCK => {
                let locked = matches!(kind, EV_MANUAL_LOCK | EV_RF_LOCK);
                if let Some(node) = self.network().nodes.get_mut(&node_id) {
                    node.locked = Some(locked);
                }
                self.emit(ZwaveEvent::NodeChanged { node_id });
            }
            _ => {}
        }
    }
}

/// Reads a `node.set_value` result (`{"result": {"status", "message"}}`, or `{"success"}` from
/// servers before schema 29).
pub fn set_outcome(result: &Value) -> SetOutcome {
    let inner = result.get("result").unwrap_or(result);
    let message = inner
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match inner.get("status").and_then(Value::as_u64) {
        Some(1 | 254 | 255) => SetOutcome::Accepted,
        Some(2) => SetOutcome::Failed,
        Some(5) => SetOutcome::Invalid(if message.is_empty() {
            "the lock's driver refused the value".into()
        } else {
            message
        }),
        Some(other) => SetOutcome::Unsupported(format!("set_value status {other}: {message}")),
        None => match inner.get("success").and_then(Value::as_bool) {
            Some(false) => SetOutcome::Failed,
            _ => SetOutcome::Accepted,
        },
    }
}

/// Turns a failed result into a driver error.
fn result_error(message: &Value) -> DriverError {
    let code = message
        .get("errorCode")
        .and_then(Value::as_str)
        .unwrap_or("");
    let text = message
        .get("zwaveErrorMessage")
        .or_else(|| message.get("message"))
        .and_then(Value::as_str)
        .unwrap_or(code)
        .to_owned();
    match code {
        "zwave_error" => match message.get("zwaveErrorCode").and_then(Value::as_i64) {
            // Argument_Invalid: the driver refused the value itself.
            Some(322) => crate::Refusal::InvalidCode(text).into(),
            _ if text.contains("node_not_found") => DriverError::NotFound,
            _ if text.to_ascii_lowercase().contains("timeout")
                || text.to_ascii_lowercase().contains("acknowledge") =>
            {
                DriverError::Timeout
            }
            _ => DriverError::Internal(text),
        },
        "node_not_found" => DriverError::NotFound,
        _ => DriverError::Internal(format!("{code}: {text}")),
    }
}

/// The connection's task: runs sessions until the connection is dropped.
pub(super) struct ConnectionTask {
    connection: std::sync::Weak<Connection>,
    url: String,
    rx: mpsc::Receiver<Request>,
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl ConnectionTask {
    pub(super) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let started = Instant::now();
            let outcome = self.session().await;
            let Some(connection) = self.connection.upgrade() else {
                return;
            };
            match outcome {
                Ok(()) => return,
                Err(error) => warn!(url = %self.url, %error, "Z-Wave JS server connection lost"),
            }
            if connection.set_disconnected() {
                connection.emit(ZwaveEvent::Disconnected);
            }
            drop(connection);
            if started.elapsed() > Duration::from_secs(60) {
                backoff = BACKOFF_MIN;
            }
            // Wait before trying again; commands meanwhile fail at once.
            let pause = tokio::time::sleep(backoff);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    request = self.rx.recv() => match request {
                        Some(request) => { let _ = request.reply.send(Err(DriverError::Offline)); }
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection, from handshake to loss. `Ok` when the connection was dropped on purpose.
    async fn session(&mut self) -> Result<(), String> {
        let (mut ws, _) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(self.url.as_str()),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect failed: {e}"))?;
        let version = tokio::time::timeout(HANDSHAKE_TIMEOUT, next_json(&mut ws))
            .await
            .map_err(|_| "no version message".to_owned())??;
        if version.get("type").and_then(Value::as_str) != Some("version") {
            return Err(format!("expected a version message, got {version}"));
        }
        let max = version
            .get("maxSchemaVersion")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let schema = max.min(SCHEMA_VERSION);
        if schema < MIN_SCHEMA_VERSION {
            return Err(format!(
                "the server speaks schema {max} at most; Keyway needs {MIN_SCHEMA_VERSION}"
            ));
        }
        self.handshake_call(
            &mut ws,
            json!({"messageId": "hs-schema", "command": "set_api_schema", "schemaVersion": schema}),
        )
        .await?;
        let listening = self
            .handshake_call(
                &mut ws,
                json!({"messageId": "hs-listen", "command": "start_listening"}),
            )
            .await?;
        let nodes = listening
            .pointer("/state/nodes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        {
            let connection = self.connection.upgrade().ok_or("dropped")?;
            connection.replace_nodes(&nodes);
            let driver = version
                .get("driverVersion")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let locks = connection.nodes().len();
            info!(url = %self.url, schema, locks, driver, "connected to Z-Wave JS server");
            connection.emit(ZwaveEvent::Connected);
        }
        let (mut sink, mut stream) = ws.split();
        let mut pending: HashMap<String, oneshot::Sender<Result<Value, DriverError>>> =
            HashMap::new();
        let mut next_id: u64 = 0;
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                message = stream.next() => {
                    let text = match message {
                        None => return Err("the server closed the connection".into()),
                        Some(Err(e)) => return Err(e.to_string()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) => return Err("the server closed the connection".into()),
                        Some(Ok(_)) => { last_heard = Instant::now(); continue; }
                    };
                    last_heard = Instant::now();
                    let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                        warn!("Z-Wave JS server sent something that is not JSON");
                        continue;
                    };
                    match message.get("type").and_then(Value::as_str) {
                        Some("result") => {
                            let id = message.get("messageId").and_then(Value::as_str).unwrap_or("");
                            if let Some(reply) = pending.remove(id) {
                                let result = if message.get("success").and_then(Value::as_bool) == Some(true) {
                                    Ok(message.get("result").cloned().unwrap_or(Value::Null))
                                } else {
                                    Err(result_error(&message))
                                };
                                let _ = reply.send(result);
                            }
                        }
                        Some("event") => {
                            let connection = self.connection.upgrade().ok_or("dropped")?;
                            if let Some(event) = message.get("event") {
                                connection.on_event(event);
                            }
                        }
                        _ => {}
                    }
                }
                request = self.rx.recv() => {
                    let Some(Request { mut command, reply }) = request else {
                        let _ = sink.send(Message::Close(None)).await;
                        return Ok(());
                    };
                    next_id += 1;
                    let id = format!("kw-{next_id}");
                    command.insert("messageId".into(), Value::String(id.clone()));
                    let text = Value::Object(command).to_string();
                    if let Err(e) = sink.send(Message::Text(text.into())).await {
                        let _ = reply.send(Err(DriverError::Offline));
                        return Err(e.to_string());
                    }
                    pending.insert(id, reply);
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT {
                        return Err("the server stopped answering".into());
                    }
                    pending.retain(|_, reply| !reply.is_closed());
                    sink.send(Message::Ping(Vec::new().into())).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// Sends a handshake command and waits for its result, taking in events meanwhile.
    async fn handshake_call(&self, ws: &mut WsStream, command: Value) -> Result<Value, String> {
        let id = command
            .get("messageId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        ws.send(Message::Text(command.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            let message = tokio::time::timeout_at(deadline, next_json(ws))
                .await
                .map_err(|_| format!("no answer to {id}"))??;
            if message.get("type").and_then(Value::as_str) == Some("result")
                && message.get("messageId").and_then(Value::as_str) == Some(id.as_str())
            {
                if message.get("success").and_then(Value::as_bool) == Some(true) {
                    return Ok(message.get("result").cloned().unwrap_or(Value::Null));
                }
                return Err(format!("{id} failed: {message}"));
            }
        }
    }
}

async fn next_json(ws: &mut WsStream) -> Result<Value, String> {
    loop {
        match ws.next().await {
            None => return Err("the server closed the connection".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Close(_))) => return Err("the server closed the connection".into()),
            Some(Ok(_)) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_value_statuses() {
        assert_eq!(
            set_outcome(&json!({"result": {"status": 255}})),
            SetOutcome::Accepted
        );
        assert_eq!(
            set_outcome(&json!({"result": {"status": 254}})),
            SetOutcome::Accepted
        );
        assert_eq!(
            set_outcome(&json!({"result": {"status": 2}})),
            SetOutcome::Failed
        );
        assert_eq!(
            set_outcome(&json!({"result": {"status": 5, "message": "4 to 10 digits"}})),
            SetOutcome::Invalid("4 to 10 digits".into())
        );
        assert!(matches!(
            set_outcome(&json!({"result": {"status": 0}})),
            SetOutcome::Unsupported(_)
        ));
        assert_eq!(set_outcome(&json!({"success": false})), SetOutcome::Failed);
    }

    #[test]
    fn failed_results_become_driver_errors() {
        let invalid = json!({"success": false, "errorCode": "zwave_error", "zwaveErrorCode": 322,
                             "zwaveErrorMessage": "The user code must consist of 4 to 10 digits"});
        assert!(matches!(
            result_error(&invalid),
            DriverError::Refused(crate::Refusal::InvalidCode(_))
        ));
        let timeout = json!({"success": false, "errorCode": "zwave_error", "zwaveErrorCode": 204,
                             "zwaveErrorMessage": "Timeout while waiting for a response"});
        assert_eq!(result_error(&timeout), DriverError::Timeout);
        assert!(result_error(&json!({"errorCode": "unknown_command"})).is_transient());
    }

    #[test]
    fn keypad_notifications_mark_slots_for_reading() {
        let (connection, _task) = Connection::new("account", "ws://127.0.0.1:1", 4);
        let mut events = connection.subscribe();
        connection.replace_nodes(
            &[json!({"nodeId": 2, "status": 4, "ready": true, "values": [
                {"endpoint": 0, "commandClass": 99, "property": "userCode", "propertyKey": 1},
                {"endpoint": 0, "commandClass": 99, "property": "userCode", "propertyKey": 2}
            ]})],
        );
        assert_eq!(
            connection.read_plan(2, Duration::from_secs(60)),
            ReadPlan::Full
        );
        connection.network().full_read_at.insert(2, Instant::now());
        assert_eq!(
            connection.read_plan(2, Duration::from_secs(60)),
            ReadPlan::Slots(vec![])
        );
        connection.on_event(
            &json!({"source": "node", "event": "notification", "nodeId": 2,
            "ccId": 113, "args": {"type": 6, "event": 14, "parameters": {"userId": 2}}}),
        );
        assert_eq!(
            connection.read_plan(2, Duration::from_secs(60)),
            ReadPlan::Slots(vec![2])
        );
        assert!(matches!(
            events.try_recv(),
            Ok(ZwaveEvent::SlotChanged {
                node_id: 2,
                slot: Some(2)
            })
        ));
        connection.on_event(
            &json!({"source": "node", "event": "notification", "nodeId": 2,
            "ccId": 113, "args": {"type": 6, "event": 6, "parameters": {"userId": 1}}}),
        );
        assert!(matches!(
            events.try_recv(),
            Ok(ZwaveEvent::Keypad {
                node_id: 2,
                slot: Some(1),
                pin: None,
                unlocked: true
            })
        ));
        let since = Instant::now();
        assert_eq!(connection.duplicate_since(2, since), None);
        connection.on_event(
            &json!({"source": "node", "event": "notification", "nodeId": 2,
            "ccId": 113, "args": {"type": 6, "event": 15, "parameters": {"userId": 1}}}),
        );
        assert_eq!(connection.duplicate_since(2, since), Some(1));
        // A user id beyond the slots names none (and does not block reads).
        connection.on_event(
            &json!({"source": "node", "event": "notification", "nodeId": 2,
            "ccId": 113, "args": {"type": 6, "event": 14, "parameters": {"userId": 250}}}),
        );
        assert!(matches!(
            events.try_recv(),
            Ok(ZwaveEvent::SlotChanged {
                node_id: 2,
                slot: None
            })
        ));
        connection.on_event(&json!({"source": "node", "event": "dead", "nodeId": 2}));
        assert_eq!(
            connection.check_reachable(2),
            Err(DriverError::Offline),
            "not connected, and dead"
        );
        connection.network().connected = true;
        assert_eq!(connection.check_reachable(2), Err(DriverError::Offline));
        assert_eq!(connection.check_reachable(9), Err(DriverError::NotFound));
    }
}
