//! Settlement cut-offs (`--settlement-cutoffs`): the IST times of day at
//! which the open window closes, and the next one after an instant. Pure:
//! the clock is an argument (the database's, so every node agrees).
//!
//! `01:00,03:00,…` are IST wall-clock times (IST has no daylight saving: a
//! fixed +05:30). `every:<N>s` closes every N seconds (since the epoch), for
//! tests and chaos runs.

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};

/// IST's offset from UTC, in seconds.
const IST_OFFSET_S: i64 = 5 * 3600 + 30 * 60;
const DAY_S: i64 = 86_400;

/// When windows close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cutoffs {
    /// Seconds after IST midnight, sorted, distinct, at least one.
    Daily(Vec<i64>),
    /// Every this many seconds (at least 1).
    Every(i64),
}

impl Default for Cutoffs {
    /// Every two hours: 01:00, 03:00, …, 23:00 IST.
    fn default() -> Self {
        Cutoffs::Daily((0..12).map(|h| (2 * h + 1) * 3600).collect())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CutoffError {
    #[error("{0:?} is not a time of day HH:MM (IST)")]
    BadTime(String),
    #[error("{0:?} is not every:<seconds>s with at least 1 second")]
    BadEvery(String),
    #[error("no cut-off given")]
    Empty,
}

impl Cutoffs {
    /// Parses `HH:MM[,HH:MM…]` or `every:<N>s`.
    pub fn parse(text: &str) -> Result<Cutoffs, CutoffError> {
        let text = text.trim();
        if let Some(every) = text.strip_prefix("every:") {
            let secs = every
                .strip_suffix('s')
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| (1..=DAY_S).contains(n))
                .ok_or_else(|| CutoffError::BadEvery(text.to_string()))?;
            return Ok(Cutoffs::Every(secs));
        }
        let mut times = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let t = NaiveTime::parse_from_str(part, "%H:%M")
                .map_err(|_| CutoffError::BadTime(part.to_string()))?;
            times.push(i64::from(t.num_seconds_from_midnight()));
        }
        if times.is_empty() {
            return Err(CutoffError::Empty);
        }
        times.sort_unstable();
        times.dedup();
        Ok(Cutoffs::Daily(times))
    }

    /// The first cut-off strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let ts = t.timestamp();
        let next_s = match self {
            Cutoffs::Every(n) => (ts.div_euclid(*n) + 1) * n,
            Cutoffs::Daily(times) => {
                let local = ts + IST_OFFSET_S;
                let midnight = local.div_euclid(DAY_S) * DAY_S;
                let of_day = local - midnight;
                let next_local = match times.iter().find(|c| **c > of_day) {
                    Some(c) => midnight + c,
                    None => midnight + DAY_S + times[0],
                };
                next_local - IST_OFFSET_S
            }
        };
        DateTime::from_timestamp(next_s, 0).unwrap_or(t + Duration::days(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    #[test]
    fn daily_cutoffs_are_ist_times() {
        let c = Cutoffs::parse("03:00, 01:00").expect("parse");
        // 00:30 IST = 19:00 UTC the day before → 01:00 IST = 19:30 UTC.
        assert_eq!(
            c.next_after(utc("2025-01-01T19:00:00Z")),
            utc("2025-01-01T19:30:00Z")
        );
        // Exactly at a cut-off: the next one.
        assert_eq!(
            c.next_after(utc("2025-01-01T19:30:00Z")),
            utc("2025-01-01T21:30:00Z")
        );
        // After the last: tomorrow's first.
        assert_eq!(
            c.next_after(utc("2025-01-01T22:00:00Z")),
            utc("2025-01-02T19:30:00Z")
        );
    }

    #[test]
    fn the_default_is_every_two_hours() {
        let c = Cutoffs::default();
        let t = utc("2025-06-01T00:00:00Z"); // 05:30 IST
        assert_eq!(c.next_after(t), utc("2025-06-01T01:30:00Z")); // 07:00 IST
    }

    #[test]
    fn every_n_seconds_and_bad_input() {
        let c = Cutoffs::parse("every:5s").expect("parse");
        assert_eq!(
            c.next_after(utc("2025-01-01T00:00:03Z")),
            utc("2025-01-01T00:00:05Z")
        );
        assert!(Cutoffs::parse("25:00").is_err());
        assert!(Cutoffs::parse("").is_err());
        assert!(Cutoffs::parse("every:0s").is_err());
        assert!(Cutoffs::parse("every:5").is_err());
    }
}
