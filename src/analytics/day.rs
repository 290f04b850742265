//! IST calendar days, the unit of every analytics summary, and the date
//! ranges the analytics API takes. Pure: no clock is read here (today is an
//! argument).

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};

/// IST is UTC+05:30 all year (no daylight saving).
const IST_OFFSET_S: i32 = 5 * 3600 + 30 * 60;

/// Longest range one analytics request may cover, in days (inclusive).
pub const MAX_RANGE_DAYS: i64 = 366;

fn ist() -> FixedOffset {
    // 19,800 s is well inside ±24 h, so this never falls back.
    FixedOffset::east_opt(IST_OFFSET_S).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// The IST calendar day of an instant.
pub fn ist_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&ist()).date_naive()
}

/// The instant an IST day starts.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    DateTime::<Utc>::from_naive_utc_and_offset(midnight, Utc)
        - Duration::seconds(IST_OFFSET_S.into())
}

/// Why a date range was refused; each is a stable API code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{name} must be a date YYYY-MM-DD (got {value:?})")]
    BadDate { name: &'static str, value: String },
    #[error("from ({from}) is after to ({to})")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error("the range {from}..{to} covers {days} days; at most {MAX_RANGE_DAYS} are allowed")]
    TooLong {
        from: NaiveDate,
        to: NaiveDate,
        days: i64,
    },
}

impl RangeError {
    pub fn code(&self) -> &'static str {
        match self {
            RangeError::BadDate { .. } => "INVALID_DATE",
            RangeError::Reversed { .. } => "INVALID_DATE_RANGE",
            RangeError::TooLong { .. } => "DATE_RANGE_TOO_LONG",
        }
    }
}

/// Parses exactly `YYYY-MM-DD` (ten characters, a real date).
pub fn parse_date(name: &'static str, value: &str) -> Result<NaiveDate, RangeError> {
    let bad = || RangeError::BadDate {
        name,
        value: value.chars().take(40).collect(),
    };
    let b = value.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(bad());
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())
}

/// An inclusive range of IST days, at most `MAX_RANGE_DAYS` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DayRange {
    /// `to` defaults to `today`, `from` to `to`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        today: NaiveDate,
    ) -> Result<DayRange, RangeError> {
        let to = to
            .map(|v| parse_date("to", v))
            .transpose()?
            .unwrap_or(today);
        let from = from
            .map(|v| parse_date("from", v))
            .transpose()?
            .unwrap_or(to);
        DayRange::new(from, to)
    }

    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<DayRange, RangeError> {
        if from > to {
            return Err(RangeError::Reversed { from, to });
        }
        let days = (to - from).num_days() + 1;
        if days > MAX_RANGE_DAYS {
            return Err(RangeError::TooLong { from, to, days });
        }
        Ok(DayRange { from, to })
    }

    /// Every day of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let (from, to) = (self.from, self.to);
        from.iter_days().take_while(move |d| *d <= to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn ist_days_turn_at_1830_utc() {
        let before: DateTime<Utc> = "2026-12-01T18:29:59Z".parse().unwrap();
        let after: DateTime<Utc> = "2026-12-01T18:30:00Z".parse().unwrap();
        assert_eq!(ist_day(before), d("2026-12-01"));
        assert_eq!(ist_day(after), d("2026-12-02"));
        assert_eq!(day_start(d("2026-12-02")), after);
    }

    #[test]
    fn ranges_default_check_and_refuse_with_codes() {
        let today = d("2026-12-01");
        assert_eq!(
            DayRange::parse(None, None, today).unwrap(),
            DayRange {
                from: today,
                to: today
            }
        );
        let r = DayRange::parse(Some("2026-11-30"), None, today).unwrap();
        assert_eq!(r.days().count(), 2);
        for bad in [
            "2026-1-01",
            "2026-02-30",
            "x",
            "",
            "2026-12-01T00:00:00Z",
            "+026-12-01",
        ] {
            let e = DayRange::parse(Some(bad), None, today).unwrap_err();
            assert_eq!(e.code(), "INVALID_DATE", "{bad}");
        }
        let e = DayRange::parse(Some("2026-12-02"), Some("2026-12-01"), today).unwrap_err();
        assert_eq!(e.code(), "INVALID_DATE_RANGE");
        let e = DayRange::parse(Some("2024-01-01"), Some("2026-12-01"), today).unwrap_err();
        assert_eq!(e.code(), "DATE_RANGE_TOO_LONG");
        assert!(DayRange::parse(Some("2025-12-01"), Some("2026-12-01"), today).is_ok());
    }
}
