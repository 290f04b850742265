//! Identifiers parsed once at the edge: `Vpa`, `BankCode`, `OpId`, and masked
//! display names. Pure; the inside of the switch never re-validates these.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The part after `@` of a stored VPA (lower-cased already).
pub fn psp_of(vpa: &str) -> &str {
    vpa.rsplit_once('@').map_or("", |(_, psp)| psp)
}

/// A virtual payment address `handle@psp`, stored lower-cased (VPAs compare
/// case-insensitively). Handle: 2–256 of `[A-Za-z0-9._-]`; psp: 2–64 of `[A-Za-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Vpa(String);

impl Vpa {
    pub fn parse(text: &str) -> Option<Vpa> {
        let (handle, psp) = text.split_once('@')?;
        let handle_ok = (2..=256).contains(&handle.len())
            && handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let psp_ok =
            (2..=64).contains(&psp.len()) && psp.bytes().all(|b| b.is_ascii_alphanumeric());
        (handle_ok && psp_ok).then(|| Vpa(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The VPA with its handle partly hidden, for events and logs: `al***@hdfc`.
    pub fn masked(&self) -> String {
        let (handle, psp) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let shown: String = handle.chars().take(2).collect();
        format!("{shown}***@{psp}")
    }
}

impl fmt::Display for Vpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bank code: 2–12 of `[A-Z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BankCode(String);

impl BankCode {
    pub fn parse(text: &str) -> Option<BankCode> {
        ((2..=12).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        .then(|| BankCode(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BankCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Is this a valid Bank API v1 `op_id`: 1–64 of `[A-Za-z0-9._:-]`?
pub fn is_valid_op_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// An account holder's name masked for payers' eyes: `"Bob Rao"` → `"B*** R***"`.
pub fn mask_name(name: &str) -> String {
    name.split_whitespace()
        .map(|word| {
            let first: String = word.chars().take(1).collect();
            format!("{first}***")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpa_syntax_and_case() {
        assert_eq!(
            Vpa::parse("Alice.R@HDFC").map(|v| v.0),
            Some("alice.r@hdfc".into())
        );
        for bad in [
            "alice",
            "a@hdfc",
            "alice@h",
            "al ice@hdfc",
            "alice@hd-fc",
            "@hdfc",
            "alice@",
        ] {
            assert!(Vpa::parse(bad).is_none(), "{bad} should be invalid");
        }
        assert!(Vpa::parse(&format!("{}@hdfc", "a".repeat(257))).is_none());
        assert!(Vpa::parse(&format!("{}@hdfc", "a".repeat(256))).is_some());
    }

    #[test]
    fn bank_code_and_op_id_rules() {
        assert!(BankCode::parse("HDFC").is_some());
        assert!(BankCode::parse("hdfc").is_none());
        assert!(BankCode::parse("H").is_none());
        assert!(BankCode::parse("ABCDEFGHIJKLM").is_none());
        assert!(is_valid_op_id("abc:debit.1_-"));
        assert!(!is_valid_op_id(""));
        assert!(!is_valid_op_id("a b"));
        assert!(!is_valid_op_id(&"x".repeat(65)));
    }

    #[test]
    fn names_are_masked_per_word() {
        assert_eq!(mask_name("Bob Rao"), "B*** R***");
        assert_eq!(mask_name("  Élan  "), "É***");
    }
}
