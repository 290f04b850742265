//! The "Rinha de Backend 2025" final test, as data and arithmetic: its
//! schedule of processor faults, its load shape, its consistency check and
//! its score (the contest's rules).
//! Pure: the runner (`bench merchant`) does the I/O and feeds this module
//! what it saw; nothing here sleeps, spawns or talks to a server.
//!
//! The contest ran 300 s; a run here may be shorter: every time of the
//! schedule scales with the run's length, so a 120 s run sees the same ten
//! phases, each 12 s long.

use std::time::Duration;

/// What both processors are told to do during one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// When the phase starts, as a share of the run (0.0 – 1.0).
    pub at: f64,
    pub default_delay_ms: u64,
    pub default_failure: bool,
    pub fallback_delay_ms: u64,
    pub fallback_failure: bool,
}

const fn phase(at: f64, dd: u64, df: bool, fd: u64, ff: bool) -> Phase {
    Phase {
        at,
        default_delay_ms: dd,
        default_failure: df,
        fallback_delay_ms: fd,
        fallback_failure: ff,
    }
}

/// The final round's ten phases (its stages at 1 s, 30 s, … 270 s of 300 s).
pub const PHASES: [Phase; 10] = [
    phase(0.0, 0, false, 0, false),
    phase(0.1, 1_000, false, 0, false),
    phase(0.2, 500, false, 0, false),
    phase(0.3, 2_000, true, 1_000, false),
    phase(0.4, 5_000, true, 5, false),
    phase(0.5, 0, false, 5, true),
    phase(0.6, 100, false, 5, false),
    phase(0.7, 50, false, 0, false),
    phase(0.8, 103, false, 10, false),
    phase(0.9, 2_000, false, 0, false),
];

/// The contest's shape of load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Virtual users at the end of the ramp (the contest: 603).
    pub max_users: u32,
    pub duration: Duration,
    /// Each user waits this long after each answer (the contest: 1 s).
    pub think: Duration,
    /// Every payment's amount, in cents (the contest: 20.05).
    pub amount_cents: i64,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            max_users: 603,
            duration: Duration::from_secs(300),
            think: Duration::from_secs(1),
            amount_cents: 2_005,
        }
    }
}

impl Load {
    /// Users that should be running at `elapsed` (a linear ramp from 1).
    pub fn users_at(&self, elapsed: Duration) -> u32 {
        let share = (elapsed.as_secs_f64() / self.duration.as_secs_f64().max(1e-9)).min(1.0);
        1 + ((self.max_users.saturating_sub(1)) as f64 * share) as u32
    }

    /// When phase `p` starts, from the run's start.
    pub fn phase_start(&self, p: &Phase) -> Duration {
        self.duration.mul_f64(p.at)
    }
}

/// One processor's admin summary, or the switch's part for that processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub requests: i64,
    pub amount_cents: i64,
}

/// One consistency check: the window `[now − 15 s, now − 2 s]` asked of the
/// three summaries at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub default: Count,
    pub fallback: Count,
    pub switch_default: Count,
    pub switch_fallback: Count,
}

impl Check {
    /// The contest's measure: the difference in requests, per processor, summed.
    pub fn inconsistencies(&self) -> i64 {
        (self.switch_default.requests - self.default.requests).abs()
            + (self.switch_fallback.requests - self.fallback.requests).abs()
    }
}

/// The window a check asks about, as offsets before "now".
pub const CHECK_FROM: Duration = Duration::from_secs(15);
pub const CHECK_TO: Duration = Duration::from_secs(2);
/// How long the checker waits between checks (the contest: 10 s).
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Everything the score needs, as the runner saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `POST /payments` answered 200/201/202/204.
    pub successes: u64,
    pub failures: u64,
    /// p99 of the successful requests' latency, in ms.
    pub p99_ms: f64,
    /// The processors' own totals for the whole run, and their fees (fraction).
    pub default: Count,
    pub fallback: Count,
    pub default_fee: f64,
    pub fallback_fee: f64,
    /// Inconsistencies over every check.
    pub inconsistencies: i64,
}

/// The contest's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Rupees (the contest's units) processed by both processors.
    pub gross: f64,
    pub fees: f64,
    /// The latency bonus as a fraction (0.0 – 0.2).
    pub bonus: f64,
    /// 0.35 when any check found an inconsistency, else 0.
    pub fine: f64,
    /// gross − fees, plus the bonus, minus the fine: the contest's "total_liquido".
    pub net: f64,
    /// Payments answered 2xx that no processor counts (the contest's "lag").
    pub lag: i64,
}

pub fn score(o: &Outcome) -> Score {
    let gross = (o.default.amount_cents + o.fallback.amount_cents) as f64 / 100.0;
    let fees = o.default.amount_cents as f64 / 100.0 * o.default_fee
        + o.fallback.amount_cents as f64 / 100.0 * o.fallback_fee;
    // The contest rounds the bonus to two decimals.
    let bonus = (((11.0 - o.p99_ms) * 0.02).max(0.0) * 100.0).round() / 100.0;
    let fine = if o.inconsistencies > 0 { 0.35 } else { 0.0 };
    let liquid = gross - fees;
    Score {
        gross,
        fees,
        bonus,
        fine,
        net: liquid + liquid * bonus - liquid * fine,
        lag: o.successes as i64 - (o.default.requests + o.fallback.requests),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_goes_from_one_user_to_all_of_them() {
        let load = Load {
            duration: Duration::from_secs(100),
            ..Load::default()
        };
        assert_eq!(load.users_at(Duration::ZERO), 1);
        assert_eq!(load.users_at(Duration::from_secs(50)), 302);
        assert_eq!(load.users_at(Duration::from_secs(100)), 603);
        assert_eq!(load.users_at(Duration::from_secs(500)), 603);
    }

    #[test]
    fn phases_scale_with_the_run_and_keep_the_contest_order() {
        let load = Load {
            duration: Duration::from_secs(120),
            ..Load::default()
        };
        let starts: Vec<u64> = PHASES
            .iter()
            .map(|p| load.phase_start(p).as_secs())
            .collect();
        assert_eq!(starts, [0, 12, 24, 36, 48, 60, 72, 84, 96, 108]);
        assert!(PHASES[3].default_failure && PHASES[9].default_delay_ms == 2_000);
    }

    #[test]
    fn inconsistencies_sum_both_processors_either_way() {
        let c = |r| Count {
            requests: r,
            amount_cents: 0,
        };
        let check = Check {
            default: c(10),
            fallback: c(5),
            switch_default: c(14),
            switch_fallback: c(3),
        };
        assert_eq!(check.inconsistencies(), 6);
    }

    #[test]
    fn the_score_is_the_contests() {
        let o = Outcome {
            successes: 1_000,
            failures: 0,
            p99_ms: 3.0,
            default: Count {
                requests: 900,
                amount_cents: 900 * 2_005,
            },
            fallback: Count {
                requests: 90,
                amount_cents: 90 * 2_005,
            },
            default_fee: 0.07,
            fallback_fee: 0.10,
            inconsistencies: 0,
        };
        let s = score(&o);
        assert!((s.gross - 19_849.5).abs() < 1e-6);
        assert!((s.fees - (18_045.0 * 0.07 + 1_804.5 * 0.10)).abs() < 1e-6);
        assert!((s.bonus - 0.16).abs() < 1e-9);
        assert_eq!(s.lag, 10);
        let liquid = s.gross - s.fees;
        assert!((s.net - liquid * 1.16).abs() < 1e-6);
        let fined = score(&Outcome {
            inconsistencies: 4,
            p99_ms: 19.0,
            ..o
        });
        assert_eq!(fined.bonus, 0.0);
        assert!((fined.net - liquid * 0.65).abs() < 1e-6);
    }
}
