//! The processor simulator's rules, pure: the payments it holds (keyed by
//! `correlationId`, each stored once), the admin summary over a `requestedAt`
//! window, and the exact decimal arithmetic of amounts and fees. Amounts are
//! integer cents; sums and fees are computed in integers and only turned into
//! decimal text at the edge. No clock, no I/O.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// One payment the processor accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub amount_cents: i64,
    /// The `requestedAt` the client sent; the summary counts by it.
    pub requested_at: DateTime<Utc>,
}

/// What storing a payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The `correlationId` was already here; nothing changed.
    AlreadyHad,
}

/// Totals over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub requests: u64,
    pub amount_cents: i128,
}

/// Every payment the simulator holds.
#[derive(Debug, Default)]
pub struct Ledger {
    payments: HashMap<Uuid, Payment>,
}

impl Ledger {
    /// Stores a payment unless its id is already here (then nothing changes).
    pub fn store(&mut self, id: Uuid, payment: Payment) -> Stored {
        match self.payments.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => Stored::AlreadyHad,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(payment);
                Stored::New
            }
        }
    }

    pub fn get(&self, id: &Uuid) -> Option<&Payment> {
        self.payments.get(id)
    }

    /// Payments whose `requestedAt` lies in `[from, to]` (either bound optional).
    pub fn totals(&self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Totals {
        let mut totals = Totals::default();
        for p in self.payments.values() {
            if from.is_some_and(|f| p.requested_at < f) || to.is_some_and(|t| p.requested_at > t) {
                continue;
            }
            totals.requests += 1;
            totals.amount_cents += i128::from(p.amount_cents);
        }
        totals
    }

    /// Forgets every payment; returns how many there were.
    pub fn purge(&mut self) -> usize {
        let n = self.payments.len();
        self.payments.clear();
        n
    }

    pub fn len(&self) -> usize {
        self.payments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.payments.is_empty()
    }
}

/// A fee as an exact decimal fraction: `units / 10^scale` (0.05 = 5 / 10^2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fee {
    pub units: i64,
    pub scale: u32,
}

impl Fee {
    /// Parses `0.05`, `0.1`, `0`, `1` (digits, optional point, at most 6 decimals, at most 1).
    pub fn parse(text: &str) -> Result<Fee, String> {
        let bad = || format!("invalid fee {text:?}: expected a decimal fraction such as 0.05");
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (text.contains('.') && frac.is_empty())
            || frac.len() > 6
            || whole.len() > 6
        {
            return Err(bad());
        }
        let digits = format!("{whole}{frac}");
        let units: i64 = digits.parse().map_err(|_| bad())?;
        let fee = Fee {
            units,
            scale: frac.len() as u32,
        };
        if units > 10_i64.pow(fee.scale) {
            return Err(format!("invalid fee {text:?}: must be at most 1"));
        }
        Ok(fee)
    }

    /// The fee as JSON number text (`0.05`).
    pub fn text(&self) -> String {
        decimal_text(i128::from(self.units), self.scale)
    }

    /// The fee on an amount in cents, as exact decimal text (`19.90` at 0.05 → `0.995`).
    pub fn of_cents_text(&self, cents: i128) -> String {
        decimal_text(cents * i128::from(self.units), self.scale + 2)
    }
}

/// Cents as JSON number text with two decimals: 1990 → `19.90`.
pub fn cents_text(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// `value / 10^scale` as decimal text without trailing zeros after the point
/// (`13930, 4` → `1.393`; `500, 2` → `5`). Never scientific notation.
pub fn decimal_text(value: i128, scale: u32) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let div = 10_u128.pow(scale);
    let whole = abs / div;
    let frac = abs % div;
    if scale == 0 || frac == 0 {
        return format!("{sign}{whole}");
    }
    let frac = format!("{:0width$}", frac, width = scale as usize);
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn stores_each_id_once() {
        let mut l = Ledger::default();
        let id = Uuid::new_v4();
        let p = Payment {
            amount_cents: 1990,
            requested_at: at("2025-07-15T12:00:00.000Z"),
        };
        assert_eq!(l.store(id, p.clone()), Stored::New);
        let other = Payment {
            amount_cents: 1,
            ..p.clone()
        };
        assert_eq!(l.store(id, other), Stored::AlreadyHad);
        assert_eq!(l.get(&id), Some(&p));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn totals_count_an_inclusive_window_exactly() {
        let mut l = Ledger::default();
        for (s, cents) in [
            ("2025-07-15T12:00:00.000Z", 10),
            ("2025-07-15T12:00:01.000Z", 20),
            ("2025-07-15T12:00:02.000Z", 30),
        ] {
            l.store(
                Uuid::new_v4(),
                Payment {
                    amount_cents: cents,
                    requested_at: at(s),
                },
            );
        }
        let all = l.totals(None, None);
        assert_eq!((all.requests, all.amount_cents), (3, 60));
        assert_eq!(cents_text(all.amount_cents), "0.60");
        let w = l.totals(
            Some(at("2025-07-15T12:00:00.000Z")),
            Some(at("2025-07-15T12:00:01.000Z")),
        );
        assert_eq!((w.requests, w.amount_cents), (2, 30));
        let w = l.totals(Some(at("2025-07-15T12:00:01.001Z")), None);
        assert_eq!((w.requests, w.amount_cents), (1, 30));
        assert_eq!(l.purge(), 3);
        assert!(l.is_empty());
    }

    #[test]
    fn fees_are_exact_decimals() {
        let f = Fee::parse("0.05").unwrap();
        assert_eq!(f.text(), "0.05");
        assert_eq!(f.of_cents_text(1990), "0.995");
        assert_eq!(f.of_cents_text(0), "0");
        assert_eq!(Fee::parse("0.15").unwrap().of_cents_text(3), "0.0045");
        assert_eq!(Fee::parse("1").unwrap().of_cents_text(150), "1.5");
        for bad in ["", ".5", "5.", "-0.1", "1.5", "0.1234567", "abc", "0,05"] {
            assert!(Fee::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(cents_text(1), "0.01");
        assert_eq!(cents_text(30), "0.30");
        assert_eq!(decimal_text(500, 2), "5");
    }
}
