//! Z-Wave locks through a Z-Wave JS server (`@zwave-js/server`, the websocket server behind
//! Home Assistant's Z-Wave JS and Z-Wave JS UI).
//!
//! Each connected account is one server; each node with User Code slots is one lock. Codes live
//! in slots: a write counts only once the lock reports the slot's value back (a User Code Get
//! after the Set, or a read of the slot since its last change), never on the write's status
//! alone; a PIN counts only in an enabled slot. The slot table is read in full on connect
//! and every `full_read_interval`, kept current by value events in between, and the slots a
//! keypad notification names are read again before Keyway trusts them.

mod connection;
pub mod node;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use connection::{Connection, ReadPlan, SetOutcome};
pub use node::{LockNode, Slot};

use crate::{DriverError, LockCode, LockDriver, Refusal};
use node::{CC_DOOR_LOCK, CC_USER_CODE};

/// How long a bolt may take to reach its position after a lock or unlock command.
const BOLT_TRAVEL: Duration = Duration::from_secs(5);

/// What a server connection tells the rest of Keyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZwaveEvent {
    /// The connection is up and the node table fresh.
    Connected,
    Disconnected,
    /// A lock node appeared or changed (name, health, door, battery).
    NodeChanged {
        node_id: u32,
    },
    NodeRemoved {
        node_id: u32,
    },
    /// A slot changed at the lock (`None`: maybe all of them): read the lock back.
    SlotChanged {
        node_id: u32,
        slot: Option<u32>,
    },
    /// Someone locked or unlocked at the keypad, with the slot the lock named and the PIN that
    /// slot held at that moment (if Keyway knew it).
    Keypad {
        node_id: u32,
        slot: Option<u32>,
        pin: Option<String>,
        unlocked: bool,
    },
}

#[derive(Debug, Clone)]
pub struct ZwaveJsConfig {
    /// Longest wait for one command's result.
    pub request_timeout: Duration,
    /// How old the slot table may get before a read fetches every slot from the lock again.
    pub full_read_interval: Duration,
    /// Commands queued per server at most.
    pub queue: usize,
}

impl Default for ZwaveJsConfig {
    fn default() -> Self {
        ZwaveJsConfig {
            request_timeout: Duration::from_secs(15),
            full_read_interval: Duration::from_secs(15 * 60),
            queue: 64,
        }
    }
}

/// The id of the Keyway device for a node of an account: stable across restarts.
pub fn device_id(connected_account_id: &str, node_id: u32) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b65_7977_6179_2d7a_7761_7665_2d6a_7300);
    uuid::Uuid::new_v5(
        &NAMESPACE,
        format!("{connected_account_id}/{node_id}").as_bytes(),
    )
    .to_string()
}

/// Every Z-Wave JS server Keyway talks to, and the `LockDriver` of their locks.
#[derive(Default)]
pub struct ZwaveJsProvider {
    config: ZwaveJsConfig,
    connections: RwLock<Vec<Arc<Connection>>>,
    /// Device id → (account id, node id), for every lock seen.
    devices: RwLock<HashMap<String, (String, u32)>>,
}

impl ZwaveJsProvider {
    pub fn new(config: ZwaveJsConfig) -> Self {
        ZwaveJsProvider {
            config,
            ..Default::default()
        }
    }

    /// Starts talking to the server of a connected account: answers the connection, its
    /// events from the very first, and the task that keeps it up (reconnecting with back-off)
    /// until it is aborted.
    pub fn connect(
        &self,
        connected_account_id: &str,
        url: &str,
    ) -> (
        Arc<Connection>,
        broadcast::Receiver<ZwaveEvent>,
        JoinHandle<()>,
    ) {
        let (connection, task) = Connection::new(connected_account_id, url, self.config.queue);
        let events = connection.subscribe();
        self.connections
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection.clone());
        (connection, events, tokio::spawn(task.run()))
    }

    /// Records that `device_id` is node `node_id` of the account's server.
    pub fn register(&self, device_id: &str, connected_account_id: &str, node_id: u32) {
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                device_id.to_owned(),
                (connected_account_id.to_owned(), node_id),
            );
    }

    fn resolve(&self, device_id: &str) -> Result<(Arc<Connection>, u32), DriverError> {
        let known = self
            .devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_id)
            .cloned();
        // Before its server first answered, a lock is simply out of reach.
        let (account, node_id) = known.ok_or(DriverError::Offline)?;
        let connection = self
            .connections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|c| c.account_id == account)
            .cloned()
            .ok_or(DriverError::Offline)?;
        Ok((connection, node_id))
    }

    /// Brings the slot table up to date as far as the read plan asks.
    async fn refresh(&self, connection: &Connection, node_id: u32) -> Result<(), DriverError> {
        let timeout = self.config.request_timeout;
        match connection.read_plan(node_id, self.config.full_read_interval) {
            ReadPlan::Full => connection.full_read(node_id, timeout).await,
            ReadPlan::Slots(slots) => {
                for slot in slots {
                    connection.read_slot(node_id, slot, timeout).await?;
                }
                Ok(())
            }
        }
    }
}

#[async_trait]
impl LockDriver for ZwaveJsProvider {
    async fn read_codes(&self, device_id: &str) -> Result<Vec<LockCode>, DriverError> {
        let (connection, node_id) = self.resolve(device_id)?;
        let _turn = connection.turn(node_id).await;
        connection.check_reachable(node_id)?;
        self.refresh(&connection, node_id).await?;
        connection
            .node(node_id)
            .map(|n| n.codes())
            .ok_or(DriverError::NotFound)
    }

    async fn put_code(
        &self,
        device_id: &str,
        slot: Option<u32>,
        code: &str,
        _name: Option<&str>,
    ) -> Result<LockCode, DriverError> {
        let (connection, node_id) = self.resolve(device_id)?;
        let _turn = connection.turn(node_id).await;
        connection.check_reachable(node_id)?;
        self.refresh(&connection, node_id).await?;
        let lock = connection.node(node_id).ok_or(DriverError::NotFound)?;
        let slot = match slot {
            Some(slot) => slot,
            None => lock
                .slots
                .iter()
                .find(|(_, s)| s.is_free())
                .map(|(n, _)| *n)
                .ok_or(Refusal::NoSpace)?,
        };
        if slot == 0 || slot > lock.slot_count() {
            return Err(Refusal::NoSpace.into());
        }
        let confirmed = LockCode {
            slot,
            code: code.to_owned(),
            name: None,
        };
        // The slot was read since anything could have changed it: it holds the code already.
        if lock.slots.get(&slot).and_then(Slot::active_pin) == Some(code) {
            return Ok(confirmed);
        }
        let holder = |lock: &LockNode| {
            lock.slots
                .iter()
                .find(|(n, s)| **n != slot && s.pin() == Some(code))
                .map(|(n, _)| *n)
        };
        if let Some(other) = holder(&lock) {
            return Err(Refusal::Duplicate { slot: other }.into());
        }
        let timeout = self.config.request_timeout;
        let since = Instant::now();
        // Until read back, nobody knows what the slot holds (the write may land late).
        connection.mark_stale(node_id, slot);
        let outcome = connection
            .set_value(
                node_id,
                json!({"commandClass": CC_USER_CODE, "property": "userCode", "propertyKey": slot}),
                json!(code),
                timeout,
            )
            .await?;
        match outcome {
            SetOutcome::Accepted | SetOutcome::Failed => {}
            SetOutcome::Invalid(reason) => return Err(Refusal::InvalidCode(reason).into()),
            SetOutcome::Unsupported(reason) => return Err(DriverError::Internal(reason)),
        }
        // The status only says the lock took the frame: read the slot back.
        let mut read = connection.read_slot(node_id, slot, timeout).await?;
        if read.pin() == Some(code) && read.active_pin().is_none() {
            // Written into a disabled slot: zwave-js keeps its status. Enable it.
            connection.mark_stale(node_id, slot);
            connection
                .set_value(
                    node_id,
                    json!({"commandClass": CC_USER_CODE, "property": "userIdStatus", "propertyKey": slot}),
                    json!(1),
                    timeout,
                )
                .await?;
            read = connection.read_slot(node_id, slot, timeout).await?;
        }
        if read.active_pin() == Some(code) {
            return Ok(confirmed);
        }
        if let Some(named) = connection.duplicate_since(node_id, since) {
            // The lock said "duplicate": name the slot that holds the PIN if Keyway knows it.
            let other = connection
                .node(node_id)
                .and_then(|lock| holder(&lock))
                .unwrap_or(named);
            return Err(Refusal::Duplicate { slot: other }.into());
        }
        Err(DriverError::Internal(match outcome {
            SetOutcome::Failed => "the lock reported that it could not store the code".into(),
            _ => "the lock accepted the code but does not hold it".into(),
        }))
    }

    async fn set_locked(&self, device_id: &str, locked: bool) -> Result<(), DriverError> {
        let (connection, node_id) = self.resolve(device_id)?;
        let _turn = connection.turn(node_id).await;
        connection.check_reachable(node_id)?;
        let timeout = self.config.request_timeout;
        let outcome = connection
            .set_value(
                node_id,
                json!({"commandClass": CC_DOOR_LOCK, "property": "targetMode"}),
                json!(if locked { 255 } else { 0 }),
                timeout,
            )
            .await?;
        match outcome {
            SetOutcome::Accepted => {}
            SetOutcome::Failed => {
                return Err(DriverError::Internal(
                    "the lock did not move its bolt".into(),
                ))
            }
            SetOutcome::Invalid(reason) | SetOutcome::Unsupported(reason) => {
                return Err(DriverError::Internal(reason))
            }
        }
        // A bolt takes a moment (Supervision may answer "working"): ask again for a while.
        let deadline = Instant::now() + BOLT_TRAVEL;
        loop {
            if connection.read_door(node_id, timeout).await? == Some(locked) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Internal(
                    "the lock reports its door in another state".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn remove_code(&self, device_id: &str, slot: u32) -> Result<(), DriverError> {
        let (connection, node_id) = self.resolve(device_id)?;
        let _turn = connection.turn(node_id).await;
        connection.check_reachable(node_id)?;
        self.refresh(&connection, node_id).await?;
        let lock = connection.node(node_id).ok_or(DriverError::NotFound)?;
        if slot == 0 || slot > lock.slot_count() {
            return Ok(());
        }
        if lock.slots.get(&slot).is_some_and(Slot::is_free) {
            return Ok(());
        }
        let timeout = self.config.request_timeout;
        connection.mark_stale(node_id, slot);
        let outcome = connection
            .set_value(
                node_id,
                json!({"commandClass": CC_USER_CODE, "property": "userIdStatus", "propertyKey": slot}),
                json!(0),
                timeout,
            )
            .await?;
        if let SetOutcome::Invalid(reason) | SetOutcome::Unsupported(reason) = outcome {
            return Err(DriverError::Internal(reason));
        }
        let read = connection.read_slot(node_id, slot, timeout).await?;
        if read.pin().is_none() {
            Ok(())
        } else {
            Err(DriverError::Internal(
                "the lock still holds the code".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_stable_per_account_and_node() {
        assert_eq!(device_id("a", 2), device_id("a", 2));
        assert_ne!(device_id("a", 2), device_id("a", 3));
        assert_ne!(device_id("a", 2), device_id("b", 2));
        assert!(uuid::Uuid::parse_str(&device_id("a", 2)).is_ok());
    }

    #[tokio::test]
    async fn an_unknown_or_unreachable_lock_is_offline() {
        let provider = ZwaveJsProvider::new(ZwaveJsConfig::default());
        assert_eq!(
            provider.read_codes("nobody").await,
            Err(DriverError::Offline)
        );
        // A server nobody listens on: the lock stays offline, and the call does not hang.
        let (_connection, _events, task) = provider.connect("account", "ws://127.0.0.1:9");
        provider.register(&device_id("account", 2), "account", 2);
        assert_eq!(
            provider
                .put_code(&device_id("account", 2), Some(1), "1234", None)
                .await,
            Err(DriverError::Offline)
        );
        task.abort();
    }
}
