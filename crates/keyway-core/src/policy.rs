//! Which PIN codes a lock accepts, and generating ones it will.
//!
//! PINs are strings end to end (a leading `0` is a digit like any other).

use keyway_model::{CodeConstraint, DeviceProperties};
use rand::Rng;

/// The rules a lock imposes on the PINs it stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRules {
    pub supported_code_lengths: Vec<u32>,
    pub max_active_codes: u32,
    pub constraints: Vec<String>,
}

impl LockRules {
    pub fn from_properties(properties: &DeviceProperties) -> Self {
        LockRules {
            supported_code_lengths: properties.supported_code_lengths.clone(),
            max_active_codes: properties.max_active_codes_supported,
            constraints: properties
                .code_constraints
                .iter()
                .map(|c: &CodeConstraint| c.constraint_type.clone())
                .collect(),
        }
    }

    fn has(&self, constraint: &str) -> bool {
        self.constraints.iter().any(|c| c == constraint)
    }

    fn lengths(&self) -> Vec<u32> {
        let mut lengths: Vec<u32> = self
            .supported_code_lengths
            .iter()
            .copied()
            .filter(|l| (4..=9).contains(l))
            .collect();
        if lengths.is_empty() {
            lengths = vec![4, 5, 6, 7, 8];
        }
        lengths.sort_unstable();
        lengths.dedup();
        lengths
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("code must only contain digits")]
    NotDigits,
    #[error("code must be {allowed} digits long for this device, got {got}")]
    Length { got: usize, allowed: String },
    #[error("code breaks the device's `{0}` constraint")]
    Constraint(String),
    #[error("this device does not accept a chosen PIN code")]
    PinNotSpecifiable,
}

/// A PIN code that a particular lock accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinCode(String);

impl PinCode {
    pub fn parse(raw: &str, rules: &LockRules) -> Result<PinCode, PolicyError> {
        if rules.has("cannot_specify_pin_code") {
            return Err(PolicyError::PinNotSpecifiable);
        }
        check(raw, rules)?;
        Ok(PinCode(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn check(raw: &str, rules: &LockRules) -> Result<(), PolicyError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PolicyError::NotDigits);
    }
    let lengths = rules.lengths();
    if !lengths.contains(&(raw.len() as u32)) {
        let allowed = lengths
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(PolicyError::Length {
            got: raw.len(),
            allowed,
        });
    }
    let digits: Vec<u8> = raw.bytes().map(|b| b - b'0').collect();
    for constraint in &rules.constraints {
        if breaks(constraint, raw, &digits) {
            return Err(PolicyError::Constraint(constraint.clone()));
        }
    }
    Ok(())
}

fn breaks(constraint: &str, raw: &str, digits: &[u8]) -> bool {
    match constraint {
        "no_zeros" => digits.contains(&0),
        "cannot_start_with_12" => raw.starts_with("12"),
        "no_triple_consecutive_ints" => digits.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]),
        "no_ascending_or_descending_sequence" => {
            let up = digits.windows(2).all(|w| w[1] == w[0] + 1);
            let down = digits.windows(2).all(|w| w[0] == w[1] + 1);
            up || down
        }
        "at_least_three_unique_digits" => {
            let mut seen = [false; 10];
            digits.iter().for_each(|d| seen[*d as usize] = true);
            seen.iter().filter(|s| **s).count() < 3
        }
        "cannot_contain_089" => raw.contains("089"),
        "cannot_contain_0789" => raw.contains("0789"),
        "no_all_same_digits" => digits.windows(2).all(|w| w[0] == w[1]),
        _ => false,
    }
}

/// Generates a PIN the lock accepts and that is not among `taken`.
/// `preferred_length` wins when the lock supports it; otherwise the shortest supported length.
pub fn generate(
    rules: &LockRules,
    taken: &[&str],
    preferred_length: Option<u32>,
    rng: &mut impl Rng,
) -> Option<String> {
    let lengths = rules.lengths();
    let length = preferred_length
        .filter(|l| lengths.contains(l))
        .unwrap_or(lengths[0]);
    let unique_first_four = rules.has("unique_first_four_digits");
    for _ in 0..10_000 {
        let candidate: String = (0..length)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect();
        if check(&candidate, rules).is_err() {
            continue;
        }
        let clashes = taken.iter().any(|t| {
            *t == candidate || (unique_first_four && t.len() >= 4 && t[..4] == candidate[..4])
        });
        if !clashes {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lengths: &[u32], constraints: &[&str]) -> LockRules {
        LockRules {
            supported_code_lengths: lengths.to_vec(),
            max_active_codes: 10,
            constraints: constraints.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn leading_zero_is_kept() {
        let pin = PinCode::parse("0123", &rules(&[4], &[])).expect("valid");
        assert_eq!(pin.as_str(), "0123");
    }

    #[test]
    fn wrong_length_names_the_allowed_lengths() {
        let err = PinCode::parse("123", &rules(&[4, 6], &[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "code must be 4, 6 digits long for this device, got 3"
        );
    }

    #[test]
    fn letters_are_refused() {
        assert_eq!(
            PinCode::parse("12a4", &rules(&[4], &[])),
            Err(PolicyError::NotDigits)
        );
    }

    #[test]
    fn constraints_are_enforced() {
        let r = rules(
            &[4, 5, 6],
            &["no_zeros", "cannot_start_with_12", "no_all_same_digits"],
        );
        assert!(PinCode::parse("1034", &r).is_err());
        assert!(PinCode::parse("1234", &r).is_err());
        assert!(PinCode::parse("7777", &r).is_err());
        assert!(PinCode::parse("5831", &r).is_ok());
        let seq = rules(&[4], &["no_ascending_or_descending_sequence"]);
        assert!(PinCode::parse("3456", &seq).is_err());
        assert!(PinCode::parse("6543", &seq).is_err());
        assert!(PinCode::parse("3457", &seq).is_ok());
    }

    #[test]
    fn generated_codes_follow_the_rules_and_avoid_taken_ones() {
        let r = rules(&[6], &["no_zeros", "at_least_three_unique_digits"]);
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let code = generate(&r, &["111111"], None, &mut rng).expect("a code");
            assert_eq!(code.len(), 6);
            assert!(PinCode::parse(&code, &r).is_ok(), "{code}");
        }
        let preferred = generate(&rules(&[4, 8], &[]), &[], Some(8), &mut rng).expect("a code");
        assert_eq!(preferred.len(), 8);
    }
}
