//! Z-Wave JS servers: one connection per `zwave_js` connected account, and a task per account
//! that keeps Keyway's devices in step with what its server reports: locks appear as devices,
//! their health, door and battery follow the server, changes at the keypad queue a read-back,
//! and keypad unlocks become `lock.unlocked` events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyway_core::Clock;
use keyway_drivers::zwave_js::{device_id, Connection, LockNode, ZwaveEvent, ZwaveJsProvider};
use keyway_store::{DeviceCodeRules, DeviceDetails, ProviderAccount, ProviderDevice, Store};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::engine::Engine;

/// The connected-account type (and device provider) of Z-Wave JS servers.
pub const PROVIDER: &str = "zwave_js";

/// The connected account of a server URL in a workspace: the same one every time.
pub fn account_id(workspace_id: &str, url: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("keyway:zwave_js:{workspace_id}:{url}").as_bytes(),
    )
    .to_string()
}

/// Adds the connected account of a Z-Wave JS server to a workspace (the same account for the
/// same URL: adding it again changes nothing).
pub async fn add_account(
    store: &Store,
    workspace_id: &str,
    url: &str,
    now: keyway_model::Timestamp,
) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("invalid Z-Wave JS server URL {url:?}: {e}"))?;
    match parsed.scheme() {
        "ws" => {}
        "wss" => anyhow::bail!(
            "Keyway speaks plain ws:// to Z-Wave JS servers (keep the server on a trusted network, \
             or put a TLS terminator on Keyway's side): {url:?}"
        ),
        _ => anyhow::bail!("a Z-Wave JS server URL starts with ws://, not {url:?}"),
    }
    let account = ProviderAccount {
        workspace_id: workspace_id.to_owned(),
        connected_account_id: account_id(workspace_id, url),
        endpoint: url.to_owned(),
    };
    let display = format!("Z-Wave JS at {}", parsed.host_str().unwrap_or(url));
    store
        .add_provider_account(&account, PROVIDER, &display, now)
        .await?;
    Ok(account.connected_account_id)
}

/// Connects to the server of every `zwave_js` account in the store.
pub async fn start(
    store: Store,
    engine: Arc<Engine>,
    clock: Arc<dyn Clock>,
    provider: Arc<ZwaveJsProvider>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for account in store.provider_accounts(PROVIDER).await? {
        let (connection, events, task) =
            provider.connect(&account.connected_account_id, &account.endpoint);
        let sync = Sync {
            store: store.clone(),
            engine: engine.clone(),
            clock: clock.clone(),
            provider: provider.clone(),
            account,
            connection,
            online: Mutex::new(HashMap::new()),
        };
        tasks.push(task);
        tasks.push(tokio::spawn(sync.run(events)));
    }
    Ok(tasks)
}

struct Sync {
    store: Store,
    engine: Arc<Engine>,
    clock: Arc<dyn Clock>,
    provider: Arc<ZwaveJsProvider>,
    account: ProviderAccount,
    connection: Arc<Connection>,
    /// Whether each node was online when last recorded.
    online: Mutex<HashMap<u32, bool>>,
}

impl Sync {
    async fn run(self, mut events: tokio::sync::broadcast::Receiver<ZwaveEvent>) {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                // Missed events: take the connection's state and the whole network afresh.
                Err(RecvError::Lagged(_)) if self.connection.is_connected() => {
                    ZwaveEvent::Connected
                }
                Err(RecvError::Lagged(_)) => ZwaveEvent::Disconnected,
                Err(RecvError::Closed) => return,
            };
            if let Err(error) = self.handle(&event).await {
                warn!(account = %self.account.connected_account_id, ?event, %error,
                      "could not record a Z-Wave JS event");
            }
        }
    }

    fn device_id(&self, node_id: u32) -> String {
        device_id(&self.account.connected_account_id, node_id)
    }

    async fn handle(&self, event: &ZwaveEvent) -> anyhow::Result<()> {
        let account_id = &self.account.connected_account_id;
        match event {
            ZwaveEvent::Connected => {
                self.store.set_account_connected(account_id, true).await?;
                let mut failed = None;
                for node in self.connection.nodes() {
                    // One lock the store could not take does not keep the others out.
                    if let Err(error) = self.on_connected(&node).await {
                        warn!(node_id = node.node_id, %error, "could not record a Z-Wave lock");
                        failed = Some(error);
                    }
                }
                if let Some(error) = failed {
                    return Err(error);
                }
            }
            ZwaveEvent::Disconnected => {
                self.store.set_account_connected(account_id, false).await?;
            }
            ZwaveEvent::NodeChanged { node_id } => {
                if let Some(node) = self.connection.node(*node_id) {
                    if self.sync_node(&node).await? {
                        self.read_back(*node_id).await?;
                    }
                }
            }
            ZwaveEvent::NodeRemoved { node_id } => {
                self.store
                    .set_device_state(&self.device_id(*node_id), Some(false), None)
                    .await?;
            }
            ZwaveEvent::SlotChanged { node_id, .. } => self.read_back(*node_id).await?,
            ZwaveEvent::Keypad {
                node_id,
                slot,
                pin,
                unlocked,
            } => {
                let device_id = self.device_id(*node_id);
                self.store
                    .set_device_state(&device_id, None, Some(!unlocked))
                    .await?;
                if *unlocked {
                    let Some(device) = self.store.engine_device(&device_id).await? else {
                        return Ok(());
                    };
                    // Slot 0: the lock did not say which code; the unlock is still recorded.
                    self.store
                        .record_keypad_entry(
                            &device,
                            pin.as_deref().unwrap_or_default(),
                            Some(slot.unwrap_or(0)),
                            self.clock.now(),
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// A lock seen at (re)connection: recorded, its waiting codes woken, and read afresh (it may
    /// have changed while Keyway was away).
    async fn on_connected(&self, node: &LockNode) -> anyhow::Result<()> {
        self.sync_node(node).await?;
        self.store
            .wake_device(&self.device_id(node.node_id), self.clock.now())
            .await?;
        self.read_back(node.node_id).await
    }

    /// Records the node as a device; answers whether it is new.
    async fn sync_node(&self, node: &LockNode) -> anyhow::Result<bool> {
        let device_id = self.device_id(node.node_id);
        let account_id = &self.account.connected_account_id;
        self.provider.register(&device_id, account_id, node.node_id);
        let rules = DeviceCodeRules {
            supported_code_lengths: node.code_lengths(),
            max_active_codes_supported: node.slot_count(),
            code_constraints: vec![],
            supports_backup_access_code_pool: false,
        };
        let details = DeviceDetails {
            model: node.model.clone(),
            battery_level: node.battery,
        };
        let created = self
            .store
            .upsert_provider_device(
                &ProviderDevice {
                    workspace_id: &self.account.workspace_id,
                    connected_account_id: account_id,
                    device_id: &device_id,
                    provider: PROVIDER,
                    device_type: device_type(&node.manufacturer),
                    name: &node.name,
                    manufacturer: &node.manufacturer,
                    rules: &rules,
                    online: node.online(),
                    locked: node.locked,
                    details: &details,
                },
                self.clock.now(),
            )
            .await?;
        let was_online = self
            .online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.node_id, node.online());
        if node.online() && was_online == Some(false) {
            // Codes waiting for the lock to come back go now.
            self.store.wake_device(&device_id, self.clock.now()).await?;
            self.engine.notify();
        }
        Ok(created)
    }

    /// Queues a read-back of the lock for the engine.
    async fn read_back(&self, node_id: u32) -> anyhow::Result<()> {
        let now = self.clock.now();
        self.store
            .enqueue_job(&self.device_id(node_id), None, now, now)
            .await?;
        self.engine.notify();
        Ok(())
    }
}

/// The spec's device type for a lock maker; `zwave_lock` for the others.
pub fn device_type(manufacturer: &str) -> &'static str {
    let maker = manufacturer.to_ascii_lowercase();
    if maker.contains("schlage") || maker.contains("allegion") {
        "schlage_lock"
    } else if maker.contains("yale") || maker.contains("assa abloy") {
        "yale_lock"
    } else if maker.contains("kwikset") || maker.contains("spectrum brands") {
        "kwikset_lock"
    } else {
        "zwave_lock"
    }
}
