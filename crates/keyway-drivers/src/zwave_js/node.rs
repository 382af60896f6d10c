//! What Keyway knows of one Z-Wave lock node: its identity, its health, its door and its
//! User Code slots, parsed from Z-Wave JS server's node state and kept current by its events.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::LockCode;

/// User Code command class.
pub const CC_USER_CODE: u64 = 99;
/// Door Lock command class.
pub const CC_DOOR_LOCK: u64 = 98;
/// Battery command class.
pub const CC_BATTERY: u64 = 128;

/// Z-Wave JS `NodeStatus`: the controller gave up on the node.
const NODE_STATUS_DEAD: u64 = 3;

/// One User Code slot as last reported by the lock (`None`: not read yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    pub code: Option<String>,
    /// `UserIDStatus`: 0 available, 1 enabled, 2 disabled, …
    pub status: Option<u64>,
}

impl Slot {
    /// The PIN the slot holds, if it holds one (enabled, or disabled and still there).
    pub fn pin(&self) -> Option<&str> {
        let code = self.code.as_deref().filter(|c| !c.is_empty())?;
        match self.status {
            Some(0) => None,
            Some(_) => Some(code),
            // Status unknown: an all-zero code is how many locks report an empty slot.
            None if code.bytes().all(|b| b == b'0') => None,
            None => Some(code),
        }
    }

    /// The PIN, if the slot is enabled: only then does the lock open with it.
    pub fn active_pin(&self) -> Option<&str> {
        match self.status {
            Some(1) | None => self.pin(),
            Some(_) => None,
        }
    }

    /// Whether the slot is known to hold nothing.
    pub fn is_free(&self) -> bool {
        self.status == Some(0)
            || (self.status.is_none() && self.code.is_some() && self.pin().is_none())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LockNode {
    pub node_id: u32,
    pub name: String,
    pub manufacturer: String,
    pub model: Option<String>,
    /// Z-Wave JS `NodeStatus` (0 unknown, 1 asleep, 2 awake, 3 dead, 4 alive).
    pub status: u64,
    pub ready: bool,
    pub locked: Option<bool>,
    /// Battery level between 0 and 1.
    pub battery: Option<f64>,
    pub min_code_length: u32,
    pub max_code_length: u32,
    pub slots: BTreeMap<u32, Slot>,
}

impl LockNode {
    /// Reads a node of `start_listening` / `node.get_state`; `None` if it has no User Code slots
    /// (it is not a keypad lock).
    pub fn from_state(node: &Value) -> Option<LockNode> {
        let node_id = u32::try_from(node.get("nodeId")?.as_u64()?).ok()?;
        let config = node.get("deviceConfig");
        let text = |value: Option<&Value>| {
            value
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let manufacturer = text(config.and_then(|c| c.get("manufacturer")))
            .or_else(|| text(node.get("manufacturer")))
            .unwrap_or_else(
                || match node.get("manufacturerId").and_then(Value::as_u64) {
                    Some(id) => format!("Z-Wave manufacturer 0x{id:04x}"),
                    None => "Z-Wave".to_owned(),
                },
            );
        let model = text(config.and_then(|c| c.get("label")))
            .or_else(|| text(node.get("label")))
            .or_else(|| text(config.and_then(|c| c.get("description"))));
        let name = text(node.get("name"))
            .or_else(|| model.clone())
            .unwrap_or_else(|| format!("Z-Wave lock {node_id}"));
        let mut lock = LockNode {
            node_id,
            name,
            manufacturer,
            model,
            status: node.get("status").and_then(Value::as_u64).unwrap_or(0),
            ready: node.get("ready").and_then(Value::as_bool).unwrap_or(false),
            locked: None,
            battery: None,
            min_code_length: 4,
            max_code_length: 10,
            slots: BTreeMap::new(),
        };
        for value in node
            .get("values")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if value.get("endpoint").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            let Some(cc) = value.get("commandClass").and_then(Value::as_u64) else {
                continue;
            };
            let property = value.get("property").and_then(Value::as_str).unwrap_or("");
            let key = value.get("propertyKey");
            if cc == CC_USER_CODE && property == "userCode" {
                if let Some(slot) = slot_key(key) {
                    lock.slots.entry(slot).or_default();
                }
                if let Some(meta) = value.get("metadata") {
                    // User Code CC allows 4 to 10 characters; keep a lock's claim in that range.
                    if let Some(min) = meta.get("minLength").and_then(Value::as_u64) {
                        lock.min_code_length = min.clamp(4, 10) as u32;
                    }
                    if let Some(max) = meta.get("maxLength").and_then(Value::as_u64) {
                        lock.max_code_length = max.clamp(4, 10) as u32;
                    }
                }
            }
            if let Some(v) = value.get("value") {
                lock.apply(cc, property, key, v);
            }
        }
        if lock.slots.is_empty() {
            return None;
        }
        Some(lock)
    }

    /// Takes in one value the lock reported (a state entry or a `value added/updated` event).
    /// Answers whether it is one Keyway follows.
    pub fn apply(&mut self, cc: u64, property: &str, key: Option<&Value>, value: &Value) -> bool {
        match (cc, property) {
            (CC_USER_CODE, "userCode") => {
                let Some(slot) = slot_key(key) else {
                    return false;
                };
                self.slots.entry(slot).or_default().code = user_code(value);
                true
            }
            (CC_USER_CODE, "userIdStatus") => {
                let Some(slot) = slot_key(key) else {
                    return false;
                };
                self.slots.entry(slot).or_default().status = value.as_u64();
                true
            }
            (CC_DOOR_LOCK, "currentMode") => {
                self.locked = value.as_u64().and_then(door_locked);
                true
            }
            (CC_BATTERY, "level") => {
                self.battery = value.as_f64().map(|level| (level / 100.0).clamp(0.0, 1.0));
                true
            }
            _ => false,
        }
    }

    pub fn online(&self) -> bool {
        self.status != NODE_STATUS_DEAD
    }

    pub fn slot_count(&self) -> u32 {
        self.slots.keys().next_back().copied().unwrap_or(0)
    }

    /// Every code the slots hold, as last read.
    pub fn codes(&self) -> Vec<LockCode> {
        self.slots
            .iter()
            .filter_map(|(slot, s)| {
                s.pin().map(|pin| LockCode {
                    slot: *slot,
                    code: pin.to_owned(),
                    name: None,
                })
            })
            .collect()
    }

    /// Code lengths the lock accepts.
    pub fn code_lengths(&self) -> Vec<u32> {
        let min = self.min_code_length.clamp(4, 10);
        let max = self.max_code_length.clamp(min, 10);
        (min..=max).collect()
    }
}

/// A User Code as the driver reports it: text, or bytes (`{"type": "Buffer", "data": [...]}`)
/// when the lock sent characters that are not printable; `None` when unknown.
fn user_code(value: &Value) -> Option<String> {
    match value {
        Value::String(code) => Some(code.clone()),
        Value::Object(buffer) => {
            let bytes: Vec<u8> = buffer
                .get("data")?
                .as_array()?
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<_>>()?;
            // Bytes Keyway can read as a PIN, or an occupied slot whose code is no PIN.
            Some(String::from_utf8(bytes).unwrap_or_else(|_| "?".to_owned()))
        }
        _ => None,
    }
}

/// Door Lock `DoorLockMode`: 255 secured; 0 and the "with timeout / inside / outside" modes
/// unsecured; 254 unknown.
fn door_locked(mode: u64) -> Option<bool> {
    match mode {
        255 => Some(true),
        0 | 1 | 16 | 17 | 32 | 33 => Some(false),
        _ => None,
    }
}

/// A slot number from a `propertyKey` (a number, or its text).
pub fn slot_key(key: Option<&Value>) -> Option<u32> {
    match key? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|slot| *slot > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> Value {
        json!({
            "nodeId": 2, "name": "", "status": 4, "ready": true,
            "deviceConfig": {"manufacturer": "Yale", "label": "YRD256"},
            "values": [
                {"endpoint": 0, "commandClass": 99, "property": "userCode", "propertyKey": 1,
                 "metadata": {"minLength": 4, "maxLength": 8}, "value": "1234"},
                {"endpoint": 0, "commandClass": 99, "property": "userIdStatus", "propertyKey": 1, "value": 1},
                {"endpoint": 0, "commandClass": 99, "property": "userCode", "propertyKey": 2},
                {"endpoint": 0, "commandClass": 99, "property": "userCode", "propertyKey": 3, "value": ""},
                {"endpoint": 0, "commandClass": 99, "property": "userIdStatus", "propertyKey": 3, "value": 0},
                {"endpoint": 0, "commandClass": 98, "property": "currentMode", "value": 0},
                {"endpoint": 0, "commandClass": 128, "property": "level", "value": 85}
            ]
        })
    }

    #[test]
    fn a_node_with_user_codes_is_a_lock() {
        let lock = LockNode::from_state(&state()).expect("a lock");
        assert_eq!(lock.node_id, 2);
        assert_eq!(lock.name, "YRD256");
        assert_eq!(lock.manufacturer, "Yale");
        assert_eq!(lock.slot_count(), 3);
        assert_eq!(lock.code_lengths(), vec![4, 5, 6, 7, 8]);
        assert_eq!(lock.locked, Some(false));
        assert_eq!(lock.battery, Some(0.85));
        let codes = lock.codes();
        assert_eq!(codes.len(), 1);
        assert_eq!((codes[0].slot, codes[0].code.as_str()), (1, "1234"));
    }

    #[test]
    fn a_node_without_user_codes_is_not_a_lock() {
        let node = json!({"nodeId": 1, "values": [
            {"endpoint": 0, "commandClass": 37, "property": "currentValue", "value": true}
        ]});
        assert!(LockNode::from_state(&node).is_none());
    }

    #[test]
    fn events_keep_the_slots_current() {
        let mut lock = LockNode::from_state(&state()).expect("a lock");
        assert!(lock.apply(99, "userCode", Some(&json!(2)), &json!("5678")));
        assert!(lock.apply(99, "userIdStatus", Some(&json!("2")), &json!(1)));
        assert_eq!(lock.codes().len(), 2);
        // A cleared slot: status available, whatever code is left.
        assert!(lock.apply(99, "userIdStatus", Some(&json!(1)), &json!(0)));
        assert_eq!(lock.codes().len(), 1);
        // An all-zero code with no status is how some locks report an empty slot; with a
        // status, it is a PIN.
        assert!(lock.apply(99, "userCode", Some(&json!(3)), &json!("0000")));
        assert_eq!(lock.slots[&3].status, Some(0));
        assert!(lock.apply(99, "userIdStatus", Some(&json!(3)), &json!(1)));
        assert_eq!(lock.slots[&3].active_pin(), Some("0000"));
        let unknown = Slot {
            code: Some("0000".into()),
            status: None,
        };
        assert!(unknown.pin().is_none() && unknown.is_free());
        // A disabled slot holds its PIN, but the lock does not open with it.
        assert!(lock.apply(99, "userIdStatus", Some(&json!(2)), &json!(2)));
        assert_eq!(lock.slots[&2].pin(), Some("5678"));
        assert_eq!(lock.slots[&2].active_pin(), None);
        // Bytes the lock sent, and values that are no code at all.
        assert!(lock.apply(
            99,
            "userCode",
            Some(&json!(2)),
            &json!({"type": "Buffer", "data": [52, 52, 52, 52]})
        ));
        assert_eq!(lock.slots[&2].code.as_deref(), Some("4444"));
        assert!(lock.apply(99, "userCode", Some(&json!(2)), &json!(null)));
        assert_eq!(lock.slots[&2].code, None);
        assert!(lock.apply(98, "currentMode", None, &json!(255)));
        assert_eq!(lock.locked, Some(true));
        assert!(!lock.apply(37, "currentValue", None, &json!(true)));
        lock.status = 3;
        assert!(!lock.online());
    }
}
