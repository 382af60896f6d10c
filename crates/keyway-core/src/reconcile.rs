//! What changed on a lock behind Keyway's back.
//!
//! Compares the codes Keyway confirmed on a lock with what the lock holds now. A confirmed code
//! whose slot lost its PIN was deleted at the lock; one whose slot holds another PIN was
//! modified at the lock. Codes not confirmed yet are the engine's business, not drift.

use crate::lifecycle::SlotView;

/// A managed code Keyway last saw confirmed in `slot` with PIN `confirmed`.
#[derive(Debug, Clone, Copy)]
pub struct Confirmed<'a> {
    pub access_code_id: &'a str,
    pub slot: u32,
    pub confirmed: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The slot is empty now.
    Deleted { access_code_id: String },
    /// The slot holds another PIN now.
    Modified { access_code_id: String, pin: String },
}

/// Every confirmed code that the lock no longer holds as confirmed.
pub fn drift(confirmed: &[Confirmed<'_>], lock: &[SlotView<'_>]) -> Vec<Drift> {
    confirmed
        .iter()
        .filter_map(|code| match lock.iter().find(|s| s.slot == code.slot) {
            Some(held) if held.pin == code.confirmed => None,
            Some(held) => Some(Drift::Modified {
                access_code_id: code.access_code_id.to_owned(),
                pin: held.pin.to_owned(),
            }),
            None => Some(Drift::Deleted {
                access_code_id: code.access_code_id.to_owned(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_edits_and_deletions_at_the_lock() {
        let confirmed = [
            Confirmed {
                access_code_id: "a",
                slot: 1,
                confirmed: "1111",
            },
            Confirmed {
                access_code_id: "b",
                slot: 2,
                confirmed: "2222",
            },
            Confirmed {
                access_code_id: "c",
                slot: 3,
                confirmed: "3333",
            },
        ];
        let lock = [
            SlotView {
                slot: 1,
                pin: "1111",
            },
            SlotView {
                slot: 2,
                pin: "2929",
            },
            SlotView {
                slot: 9,
                pin: "3333",
            },
        ];
        assert_eq!(
            drift(&confirmed, &lock),
            vec![
                Drift::Modified {
                    access_code_id: "b".into(),
                    pin: "2929".into()
                },
                Drift::Deleted {
                    access_code_id: "c".into()
                },
            ]
        );
    }
}
