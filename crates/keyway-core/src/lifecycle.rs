//! What a managed code's next step on its lock is.
//!
//! Input: the code's intent (its PIN, window, whether it was deleted), the time, the slot the
//! lock confirmed for it last, and what the lock holds now. A code is recognised on the lock by
//! slot *and* PIN — never by "a new code appeared" — so a code typed at the keypad meanwhile is
//! not mistaken for ours.

use keyway_model::Timestamp;

/// Why a code must not be on its lock right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// The client deleted it.
    Deleted,
    /// A time-bound code whose window has not opened yet.
    NotStarted,
    /// A time-bound code whose window has closed.
    Ended,
}

/// Where a code belongs at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    OnLock,
    OffLock(Absence),
}

/// The parts of a code's intent that decide where it belongs.
#[derive(Debug, Clone, Copy)]
pub struct Intent {
    pub deleted: bool,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
}

impl Intent {
    pub fn target(&self, now: Timestamp) -> Target {
        if self.deleted {
            return Target::OffLock(Absence::Deleted);
        }
        if let Some(ends_at) = self.ends_at {
            if now >= ends_at {
                return Target::OffLock(Absence::Ended);
            }
        }
        if let Some(starts_at) = self.starts_at {
            if now < starts_at {
                return Target::OffLock(Absence::NotStarted);
            }
        }
        Target::OnLock
    }

    /// The next instant at which `target` changes, if any.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        if self.deleted {
            return None;
        }
        [self.starts_at, self.ends_at]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
    }
}

/// One slot of a lock as read back: its number and the PIN it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView<'a> {
    pub slot: u32,
    pub pin: &'a str,
}

/// What to do on the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The lock holds the PIN in the code's slot: nothing to do.
    Confirmed { slot: u32 },
    /// Program the PIN (into this slot when it is known and free for it).
    Put { slot: Option<u32> },
    /// Clear the code's slot.
    Remove { slot: u32 },
    /// The code is not on the lock, as wanted.
    Absent,
}

/// What Keyway knows of a code's place on its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known<'a> {
    /// The slot chosen for the code.
    pub slot: u32,
    /// The PIN the lock last confirmed in that slot, if any.
    pub confirmed: Option<&'a str>,
}

/// Decides the next step for one code whose PIN is `pin`.
pub fn next_step(
    target: Target,
    pin: &str,
    known: Option<Known<'_>>,
    lock: &[SlotView<'_>],
) -> Step {
    let Some(known) = known else {
        return match target {
            Target::OnLock => Step::Put { slot: None },
            Target::OffLock(_) => Step::Absent,
        };
    };
    let held = lock.iter().find(|v| v.slot == known.slot).map(|v| v.pin);
    let ours = |held: &str| held == pin || Some(held) == known.confirmed;
    match (target, held) {
        (Target::OnLock, Some(held)) if held == pin => Step::Confirmed { slot: known.slot },
        // Our slot holds our previous PIN, or nothing: program it there.
        (Target::OnLock, Some(held)) if ours(held) => Step::Put {
            slot: Some(known.slot),
        },
        (Target::OnLock, None) => Step::Put {
            slot: Some(known.slot),
        },
        // Someone else's code sits in the slot now: leave it and find another.
        (Target::OnLock, Some(_)) => Step::Put { slot: None },
        (Target::OffLock(_), Some(held)) if ours(held) => Step::Remove { slot: known.slot },
        (Target::OffLock(_), _) => Step::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000).expect("in range")
    }

    #[test]
    fn windows_decide_the_target() {
        let intent = Intent {
            deleted: false,
            starts_at: Some(at(10)),
            ends_at: Some(at(20)),
        };
        assert_eq!(intent.target(at(5)), Target::OffLock(Absence::NotStarted));
        assert_eq!(intent.target(at(10)), Target::OnLock);
        assert_eq!(intent.target(at(20)), Target::OffLock(Absence::Ended));
        assert_eq!(intent.next_change(at(5)), Some(at(10)));
        assert_eq!(intent.next_change(at(15)), Some(at(20)));
        assert_eq!(intent.next_change(at(25)), None);
        let deleted = Intent {
            deleted: true,
            ..intent
        };
        assert_eq!(deleted.target(at(15)), Target::OffLock(Absence::Deleted));
    }

    #[test]
    fn a_code_is_confirmed_by_slot_and_pin() {
        let lock = [
            SlotView {
                slot: 1,
                pin: "1111",
            },
            SlotView {
                slot: 2,
                pin: "2222",
            },
        ];
        let chosen = |slot| {
            Some(Known {
                slot,
                confirmed: None,
            })
        };
        assert_eq!(
            next_step(Target::OnLock, "2222", chosen(2), &lock),
            Step::Confirmed { slot: 2 }
        );
        // Same PIN in another slot (typed at the keypad) is not ours.
        assert_eq!(
            next_step(Target::OnLock, "2222", None, &lock),
            Step::Put { slot: None }
        );
        // A PIN change: our slot holds our previous PIN.
        let was_1111 = Some(Known {
            slot: 1,
            confirmed: Some("1111"),
        });
        assert_eq!(
            next_step(Target::OnLock, "3333", was_1111, &lock),
            Step::Put { slot: Some(1) }
        );
        // A foreign PIN in our slot is left alone.
        assert_eq!(
            next_step(Target::OnLock, "3333", chosen(1), &lock),
            Step::Put { slot: None }
        );
        assert_eq!(
            next_step(Target::OnLock, "3333", chosen(7), &lock),
            Step::Put { slot: Some(7) }
        );
    }

    #[test]
    fn removal_only_clears_what_is_ours() {
        let lock = [SlotView {
            slot: 1,
            pin: "1111",
        }];
        let off = Target::OffLock(Absence::Deleted);
        let chosen = |slot| {
            Some(Known {
                slot,
                confirmed: None,
            })
        };
        assert_eq!(
            next_step(off, "1111", chosen(1), &lock),
            Step::Remove { slot: 1 }
        );
        let was_1111 = Some(Known {
            slot: 1,
            confirmed: Some("1111"),
        });
        assert_eq!(
            next_step(off, "5555", was_1111, &lock),
            Step::Remove { slot: 1 }
        );
        assert_eq!(next_step(off, "9999", chosen(1), &lock), Step::Absent);
        assert_eq!(next_step(off, "1111", None, &lock), Step::Absent);
        assert_eq!(next_step(off, "1111", chosen(4), &lock), Step::Absent);
    }
}
