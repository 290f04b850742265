//! Money: `Paise(i64)` and the exact rupee-decimal parsing/formatting used on the
//! switch API. Pure; no I/O. Floats never appear here: rupee text is parsed digit
//! by digit into integer paise.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of Indian money in paise (1 rupee = 100 paise). Always an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Paise(pub i64);

/// Largest amount the Bank API v1 wire allows (10^13 paise).
pub const MAX_WIRE_PAISE: i64 = 10_000_000_000_000;

/// Why a rupee amount was refused. Each maps to a stable API code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a decimal like \"150.75\" (digits, optional '.', at most 2 decimals)")]
    Malformed,
    #[error("amount has more than 2 decimals")]
    TooManyDecimals,
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount exceeds the per-transaction limit of {limit}")]
    OverLimit { limit: Paise },
}

impl MoneyError {
    /// Stable machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::OverLimit { .. } => "AMOUNT_OVER_LIMIT",
            _ => "INVALID_AMOUNT",
        }
    }
}

impl Paise {
    /// Parses rupees text (`"150.75"`, `"10"`, `"0.5"`) exactly into paise and checks
    /// `0 < amount <= limit`. A leading `-` is reported as not positive.
    pub fn parse_rupees(text: &str, limit: Paise) -> Result<Paise, MoneyError> {
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = match body.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (body, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Malformed);
        }
        let frac = frac.unwrap_or("");
        if body.contains('.') && frac.is_empty() {
            return Err(MoneyError::Malformed);
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Malformed);
        }
        if frac.len() > 2 {
            return Err(MoneyError::TooManyDecimals);
        }
        // "01.00", "000…1": one way to write each amount, and no unbounded
        // digits to skip.
        if whole.len() > 1 && whole.starts_with('0') {
            return Err(MoneyError::Malformed);
        }
        let whole = whole.trim_start_matches('0');
        // 16 digits of rupees already exceeds any sane limit and i64 paise.
        if whole.len() > 15 {
            return if negative {
                Err(MoneyError::NotPositive)
            } else {
                Err(MoneyError::OverLimit { limit })
            };
        }
        let mut paise: i64 = 0;
        for b in whole.bytes() {
            paise = paise * 10 + i64::from(b - b'0');
        }
        paise *= 100;
        let mut frac_digits = frac.bytes();
        let tens = frac_digits.next().map_or(0, |b| i64::from(b - b'0'));
        let ones = frac_digits.next().map_or(0, |b| i64::from(b - b'0'));
        paise += tens * 10 + ones;
        if negative || paise == 0 {
            return Err(MoneyError::NotPositive);
        }
        if paise > limit.0 {
            return Err(MoneyError::OverLimit { limit });
        }
        Ok(Paise(paise))
    }

    /// Rupees as a decimal string with exactly two decimals: `Paise(15075)` → `"150.75"`.
    pub fn to_rupees(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    /// Rupees with Indian digit grouping, for people: `Paise(123_456_789)` → `"₹12,34,567.89"`.
    pub fn to_inr(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = (abs / 100).to_string();
        let grouped = if whole.len() <= 3 {
            whole
        } else {
            let (head, tail) = whole.split_at(whole.len() - 3);
            let mut groups = Vec::new();
            let mut rest = head;
            while rest.len() > 2 {
                let (h, t) = rest.split_at(rest.len() - 2);
                groups.push(t);
                rest = h;
            }
            groups.push(rest);
            groups.reverse();
            format!("{},{tail}", groups.join(","))
        };
        format!("{sign}₹{grouped}.{:02}", abs % 100)
    }
}

impl fmt::Display for Paise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "₹{}", self.to_rupees())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const LIMIT: Paise = Paise(10_000_000);

    #[test]
    fn indian_grouping() {
        assert_eq!(Paise(0).to_inr(), "₹0.00");
        assert_eq!(Paise(12_345).to_inr(), "₹123.45");
        assert_eq!(Paise(123_456).to_inr(), "₹1,234.56");
        assert_eq!(Paise(150_000_000).to_inr(), "₹15,00,000.00");
        assert_eq!(Paise(-123_456_789).to_inr(), "-₹12,34,567.89");
    }

    #[test]
    fn parses_exact_rupee_text() {
        assert_eq!(Paise::parse_rupees("150.75", LIMIT), Ok(Paise(15075)));
        assert_eq!(Paise::parse_rupees("150.7", LIMIT), Ok(Paise(15070)));
        assert_eq!(Paise::parse_rupees("150", LIMIT), Ok(Paise(15000)));
        assert_eq!(Paise::parse_rupees("0.01", LIMIT), Ok(Paise(1)));
        assert_eq!(Paise::parse_rupees("100000", LIMIT), Ok(Paise(10_000_000)));
        assert_eq!(Paise::parse_rupees("0.1", LIMIT), Ok(Paise(10)));
    }

    #[test]
    fn refuses_bad_amounts_with_their_reason() {
        use MoneyError::*;
        assert_eq!(Paise::parse_rupees("0", LIMIT), Err(NotPositive));
        assert_eq!(Paise::parse_rupees("01.00", LIMIT), Err(Malformed));
        assert_eq!(
            Paise::parse_rupees(&format!("{}1", "0".repeat(10_000)), LIMIT),
            Err(Malformed)
        );
        assert_eq!(Paise::parse_rupees("0.50", LIMIT), Ok(Paise(50)));
        assert_eq!(Paise::parse_rupees("0.00", LIMIT), Err(NotPositive));
        assert_eq!(Paise::parse_rupees("-5", LIMIT), Err(NotPositive));
        assert_eq!(Paise::parse_rupees("1.234", LIMIT), Err(TooManyDecimals));
        assert_eq!(Paise::parse_rupees("1e3", LIMIT), Err(Malformed));
        assert_eq!(Paise::parse_rupees("", LIMIT), Err(Malformed));
        assert_eq!(Paise::parse_rupees("1.", LIMIT), Err(Malformed));
        assert_eq!(Paise::parse_rupees(".5", LIMIT), Err(Malformed));
        assert_eq!(Paise::parse_rupees("abc", LIMIT), Err(Malformed));
        assert_eq!(Paise::parse_rupees("+5", LIMIT), Err(Malformed));
        assert_eq!(Paise::parse_rupees(" 5", LIMIT), Err(Malformed));
        assert_eq!(
            Paise::parse_rupees("100000.01", LIMIT),
            Err(OverLimit { limit: LIMIT })
        );
        assert_eq!(
            Paise::parse_rupees("99999999999999999999999", LIMIT),
            Err(OverLimit { limit: LIMIT })
        );
    }

    #[test]
    fn formats_with_two_decimals() {
        assert_eq!(Paise(15075).to_rupees(), "150.75");
        assert_eq!(Paise(5).to_rupees(), "0.05");
        assert_eq!(Paise(-250).to_rupees(), "-2.50");
    }
}
