//! The pure half of the load generator: the schedule of intended send times,
//! the accounting of late sends, the report (JSON) and its human summary, and
//! the warnings a run earns. No I/O and no clock: times come in as arguments.

use crate::traffic::{LatencySummary, STATUSES};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Highest rate asked for; beyond it one process cannot even schedule sends.
pub const MAX_RATE: f64 = 100_000.0;
/// A send more than this late is "late", however long the interval.
pub const MIN_LATE: Duration = Duration::from_millis(1);
/// Achieved send rate below this share of the asked one earns a warning.
pub const RATE_SHORTFALL: f64 = 0.99;
/// More late sends than this share of those sent earns a warning.
pub const LATE_SHARE: f64 = 0.01;

/// Arrivals at fixed intervals: arrival `i` is intended at `t0 + i / rate`,
/// for every `i` whose time falls inside the duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    duration: Duration,
}

impl Schedule {
    pub fn new(rate: f64, duration: Duration) -> Result<Schedule, String> {
        if !rate.is_finite() || rate <= 0.0 || rate > MAX_RATE {
            return Err(format!(
                "--rate must be a number above 0 and at most {MAX_RATE} (got {rate})"
            ));
        }
        if duration.is_zero() {
            return Err("--duration must be longer than 0".into());
        }
        let schedule = Schedule { rate, duration };
        if schedule.arrivals() == 0 {
            return Err("--rate × --duration gives no send at all".into());
        }
        Ok(schedule)
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// When arrival `i` is intended, counted from the start.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many arrivals fall inside the duration (`offset(i) < duration`).
    pub fn arrivals(&self) -> u64 {
        let estimate = (self.rate * self.duration.as_secs_f64()).ceil();
        let mut n = if estimate >= u64::MAX as f64 {
            u64::MAX
        } else {
            estimate as u64
        };
        // Float noise either way: settle on the exact boundary.
        while n > 0 && self.offset(n - 1) >= self.duration {
            n -= 1;
        }
        while n < u64::MAX && self.offset(n) < self.duration {
            n += 1;
        }
        n
    }

    /// Time between two arrivals.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    /// A send behind its intended time by more than this is late: a tenth of
    /// the interval, but never less than [`MIN_LATE`].
    pub fn late_threshold(&self) -> Duration {
        (self.interval() / 10).max(MIN_LATE)
    }
}

/// How far behind schedule the sends went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lateness {
    pub threshold: Duration,
    pub sends: u64,
    pub late: u64,
    pub max_lag: Duration,
}

impl Lateness {
    pub fn new(threshold: Duration) -> Lateness {
        Lateness {
            threshold,
            sends: 0,
            late: 0,
            max_lag: Duration::ZERO,
        }
    }

    /// Counts one send that went out `lag` after its intended time; true when it was late.
    pub fn record(&mut self, lag: Duration) -> bool {
        self.sends += 1;
        self.max_lag = self.max_lag.max(lag);
        let late = lag > self.threshold;
        if late {
            self.late += 1;
        }
        late
    }
}

/// The arguments as the run understood them.
#[derive(Debug, Clone, Serialize)]
pub struct RunArgs {
    /// The command line as given.
    pub argv: Vec<String>,
    pub switch: String,
    pub rate: f64,
    pub duration_ms: u64,
    pub concurrency: usize,
    pub vpas: Vec<String>,
    pub amount: String,
    /// The payment types and their weights (`--mix`, canonical).
    pub mix: String,
    /// Payees of P2M payments.
    pub merchants: Vec<String>,
    pub pairing: crate::cli::Pairing,
    pub seed: u64,
    pub request_timeout_ms: u64,
    pub poll_wait_ms: u64,
    pub drain_timeout_ms: u64,
    pub fail_on_errors: bool,
    /// Payments followed to their end (`false`: `--no-follow`, only posted).
    pub follow: bool,
}

/// How the sends kept to the schedule.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleReport {
    pub asked_rate: f64,
    pub duration_s: f64,
    /// How long sends went out: the duration, or less when a signal stopped the run.
    pub send_window_s: f64,
    /// Arrivals in the schedule.
    pub scheduled: u64,
    /// Sends that went out.
    pub sent: u64,
    /// Arrivals never sent: no free slot (or the run was stopped) before the duration ended.
    pub unsent: u64,
    /// `sent / send window`.
    pub achieved_send_rate: f64,
    pub late_sends: u64,
    pub late_threshold_ms: f64,
    pub max_lag_ms: f64,
    /// Distribution of how late sends went out (actual − intended).
    pub lag_ms: LatencySummary,
}

/// Failed requests by kind (`POST 503 SWITCH_BUSY`, `GET timeout`, …).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorsReport {
    pub total: u64,
    /// POSTs not accepted: these transactions were not followed.
    pub send: u64,
    /// Failed status polls (the transaction was followed on).
    pub follow: u64,
    pub send_by_kind: BTreeMap<String, u64>,
    pub follow_by_kind: BTreeMap<String, u64>,
}

impl ErrorsReport {
    pub fn new(send: BTreeMap<String, u64>, follow: BTreeMap<String, u64>) -> ErrorsReport {
        let (s, f) = (send.values().sum::<u64>(), follow.values().sum::<u64>());
        ErrorsReport {
            total: s + f,
            send: s,
            follow: f,
            send_by_kind: send,
            follow_by_kind: follow,
        }
    }
}

/// What one payment type amounted to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeReport {
    /// Arrivals sent as this type.
    pub sent: u64,
    pub accepted: u64,
    /// Final status of each accepted one (the answer's with `--no-follow`).
    pub statuses: BTreeMap<String, u64>,
    /// Sends not accepted (for a collect: its request or its approval).
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
}

/// Latency distributions, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Intended send time → 202 (includes any wait for a slot: coordinated omission counted).
    pub accept: LatencySummary,
    /// Actual send time → 202 (the switch's own answer time, for comparison).
    pub accept_service: LatencySummary,
    /// 202 → terminal status seen.
    pub accept_to_terminal: LatencySummary,
    /// Intended send time → terminal status seen.
    pub end_to_end: LatencySummary,
}

/// Everything a run measured; written as JSON by `--report`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub started_at: String,
    pub ended_at: String,
    pub elapsed_s: f64,
    /// The signal that stopped the run early, if one did.
    pub interrupted: Option<String>,
    pub args: RunArgs,
    pub schedule: ScheduleReport,
    pub accepted: u64,
    /// `accepted / send window`.
    pub achieved_accept_rate: f64,
    pub terminal: u64,
    /// Final status of every accepted transaction (`PENDING`: not terminal at the drain timeout).
    pub statuses: BTreeMap<String, u64>,
    /// The same by payment type (`P2P`, `P2M`, `REFUND`, `COLLECT`), with sends and errors.
    pub by_type: BTreeMap<String, TypeReport>,
    /// Refund arrivals sent as a P2P or P2M instead: no SUCCESS payment of
    /// this run was known yet to refund (counted under the type they became).
    pub refund_fallbacks: u64,
    /// `reason.code` of terminal transactions.
    pub reasons: BTreeMap<String, u64>,
    pub errors: ErrorsReport,
    pub latency_ms: Latencies,
    /// Tasks still running at the hard stop after the drain (should be none).
    pub abandoned: u64,
    /// User + system CPU of this process over the whole run, in seconds.
    pub process_cpu_s: f64,
    /// `process_cpu_s / sent`, in microseconds: what the load costs the machine per payment.
    pub cpu_us_per_send: f64,
    pub warnings: Vec<String>,
}

impl Report {
    /// Fills in the derived fields: rates, terminal count, warnings.
    pub fn finish(mut self) -> Report {
        let secs = self.schedule.send_window_s.max(1e-9);
        self.schedule.achieved_send_rate = self.schedule.sent as f64 / secs;
        self.achieved_accept_rate = self.accepted as f64 / secs;
        for s in STATUSES {
            self.statuses.entry(s.as_str().to_string()).or_insert(0);
            for t in self.by_type.values_mut() {
                t.statuses.entry(s.as_str().to_string()).or_insert(0);
            }
        }
        self.terminal = STATUSES
            .iter()
            .filter(|s| s.is_terminal())
            .filter_map(|s| self.statuses.get(s.as_str()))
            .sum();
        self.cpu_us_per_send = if self.schedule.sent == 0 {
            0.0
        } else {
            self.process_cpu_s * 1e6 / self.schedule.sent as f64
        };
        self.warnings = warnings(&self);
        self
    }

    /// Accepted transactions not seen terminal (none when they were not followed).
    pub fn pending(&self) -> u64 {
        if !self.args.follow {
            return 0;
        }
        self.statuses.get("PENDING").copied().unwrap_or(0)
    }

    /// The human summary: a compact table.
    pub fn render(&self) -> String {
        let s = &self.schedule;
        let a = &self.args;
        let mut out = vec![format!(
            "== upi-switch loadgen {} -> {} ==",
            self.run_id, a.switch
        )];
        let mut row = |label: &str, value: String| out.push(format!("{label:<12}{value}"));
        row(
            "asked",
            format!(
                "{} tx/s for {:.1} s = {} sends, concurrency {}",
                trim_float(s.asked_rate),
                s.duration_s,
                s.scheduled,
                a.concurrency
            ),
        );
        row(
            "sent",
            format!(
                "{}  ({:.1} tx/s)  unsent {}  late {} (>{:.1} ms)  max lag {:.1} ms",
                s.sent,
                s.achieved_send_rate,
                s.unsent,
                s.late_sends,
                s.late_threshold_ms,
                s.max_lag_ms
            ),
        );
        row(
            "accepted",
            format!("{}  ({:.1} tx/s)", self.accepted, self.achieved_accept_rate),
        );
        let statuses: Vec<String> = STATUSES
            .iter()
            .map(|st| {
                let n = self.statuses.get(st.as_str()).copied().unwrap_or(0);
                format!("{} {n}", st.as_str())
            })
            .collect();
        if a.follow {
            row(
                "terminal",
                format!("{}  {}", self.terminal, statuses.join("  ")),
            );
        } else {
            row(
                "answered",
                format!(
                    "{}  (not followed: --no-follow; the switch's database has the outcomes)",
                    statuses.join("  ")
                ),
            );
        }
        if self.by_type.keys().any(|k| k != "P2P") {
            row(
                "by type",
                format!(
                    "mix {}{}",
                    a.mix,
                    if self.refund_fallbacks > 0 {
                        format!(
                            "  ({} refund(s) sent as P2P/P2M: nothing to refund yet)",
                            self.refund_fallbacks
                        )
                    } else {
                        String::new()
                    }
                ),
            );
            for (kind, t) in &self.by_type {
                let statuses: Vec<String> = STATUSES
                    .iter()
                    .map(|st| {
                        let n = t.statuses.get(st.as_str()).copied().unwrap_or(0);
                        format!("{} {n}", st.as_str())
                    })
                    .collect();
                row(
                    "",
                    format!(
                        "{kind:<8}sent {}  accepted {}  {}  errors {}",
                        t.sent,
                        t.accepted,
                        statuses.join("  "),
                        t.errors
                    ),
                );
            }
        }
        if !self.reasons.is_empty() {
            let reasons: Vec<String> = self
                .reasons
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            row("reasons", reasons.join("  "));
        }
        let e = &self.errors;
        row(
            "errors",
            format!("{}  (send {}, follow {})", e.total, e.send, e.follow),
        );
        for (kind, n) in e.send_by_kind.iter().chain(&e.follow_by_kind) {
            row("", format!("{n:>8}  {kind}"));
        }
        out.push(format!(
            "{:<22}{:>8}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "latency ms", "n", "p50", "p90", "p99", "p99.9", "max"
        ));
        let l = &self.latency_ms;
        for (label, d) in [
            ("accept (sched->202)", &l.accept),
            ("  service (sent->202)", &l.accept_service),
            ("accept->terminal", &l.accept_to_terminal),
            ("end-to-end", &l.end_to_end),
            ("send lag", &s.lag_ms),
        ] {
            out.push(format!(
                "{label:<22}{:>8}{:>9.1}{:>9.1}{:>9.1}{:>9.1}{:>9.1}",
                d.count, d.p50_ms, d.p90_ms, d.p99_ms, d.p99_9_ms, d.max_ms
            ));
        }
        out.push(format!(
            "{:<12}{:.2} s of CPU = {:.1} µs per send",
            "cpu", self.process_cpu_s, self.cpu_us_per_send
        ));
        if let Some(signal) = &self.interrupted {
            out.push(format!("stopped early by {signal}"));
        }
        for w in &self.warnings {
            out.push(format!("WARNING: {w}"));
        }
        out.join("\n")
    }
}

/// `100` for 100.0, `2.5` for 2.5.
fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// What the reader must not miss: the rate was not kept, sends were late,
/// transactions were left pending, tasks were abandoned.
pub fn warnings(r: &Report) -> Vec<String> {
    let s = &r.schedule;
    let mut out = Vec::new();
    // A run stopped by a signal says so instead: its schedule was cut, not missed.
    if r.interrupted.is_none() && s.achieved_send_rate < s.asked_rate * RATE_SHORTFALL {
        out.push(format!(
            "could not keep the asked rate: sent {:.1} tx/s of {} asked ({} of {} scheduled sends went out, {} never did); \
             the switch or --concurrency {} was the limit, and latencies count the wait",
            s.achieved_send_rate,
            trim_float(s.asked_rate),
            s.sent,
            s.scheduled,
            s.unsent,
            r.args.concurrency
        ));
    }
    if s.sent > 0 && s.late_sends as f64 > s.sent as f64 * LATE_SHARE {
        out.push(format!(
            "{} of {} sends ({:.1}%) went out more than {:.1} ms behind schedule (max lag {:.1} ms); \
             latencies are measured from the intended send times",
            s.late_sends,
            s.sent,
            100.0 * s.late_sends as f64 / s.sent as f64,
            s.late_threshold_ms,
            s.max_lag_ms
        ));
    }
    if r.pending() > 0 {
        let when = match &r.interrupted {
            Some(signal) => format!("{signal} stopped the run"),
            None => format!(
                "the drain timeout ({:.1} s) ended",
                r.args.drain_timeout_ms as f64 / 1000.0
            ),
        };
        out.push(format!(
            "{} accepted transaction(s) were still PENDING when {when}",
            r.pending()
        ));
    }
    if r.abandoned > 0 {
        out.push(format!(
            "{} payment task(s) had not finished at the hard stop and were abandoned",
            r.abandoned
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn schedule_times_are_fixed_intervals_from_the_start() {
        let s = Schedule::new(50.0, secs(3)).unwrap();
        assert_eq!(s.arrivals(), 150);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(20));
        assert_eq!(s.offset(149), Duration::from_millis(2980));
        assert_eq!(s.interval(), Duration::from_millis(20));
        // Offsets come from i / rate, not from adding intervals: no drift.
        let fast = Schedule::new(3.0, secs(10)).unwrap();
        assert_eq!(fast.arrivals(), 30);
        let third = fast.offset(29).as_secs_f64();
        assert!((third - 29.0 / 3.0).abs() < 1e-9, "{third}");
        // Fractional rates: arrivals at 0, 2.5, 5, 7.5 s inside 10 s.
        assert_eq!(Schedule::new(0.4, secs(10)).unwrap().arrivals(), 4);
        // 0.3/s for 10 s: 0, 3.33, 6.67 (10.0 is outside).
        assert_eq!(Schedule::new(0.3, secs(10)).unwrap().arrivals(), 3);
        // At least one arrival: the one at t0.
        assert_eq!(Schedule::new(0.001, secs(1)).unwrap().arrivals(), 1);
        for (rate, d) in [(100.0, 7), (7.0, 13), (1000.0, 60), (33.3, 9)] {
            let s = Schedule::new(rate, secs(d)).unwrap();
            let n = s.arrivals();
            assert!(
                s.offset(n - 1) < secs(d) && s.offset(n) >= secs(d),
                "{rate} {d}"
            );
        }
    }

    #[test]
    fn schedule_refuses_nonsense() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_RATE * 2.0] {
            assert!(Schedule::new(rate, secs(1)).is_err(), "{rate}");
        }
        assert!(Schedule::new(10.0, Duration::ZERO).is_err());
    }

    #[test]
    fn late_threshold_is_a_tenth_of_the_interval_but_at_least_a_millisecond() {
        let slow = Schedule::new(10.0, secs(1)).unwrap();
        assert_eq!(slow.late_threshold(), Duration::from_millis(10));
        let fast = Schedule::new(5000.0, secs(1)).unwrap();
        assert_eq!(fast.late_threshold(), MIN_LATE);
    }

    #[test]
    fn late_sends_are_counted_with_the_longest_lag() {
        let mut l = Lateness::new(Duration::from_millis(2));
        assert!(!l.record(Duration::ZERO));
        assert!(
            !l.record(Duration::from_millis(2)),
            "exactly at the threshold is on time"
        );
        assert!(l.record(Duration::from_micros(2001)));
        assert!(l.record(Duration::from_millis(150)));
        assert!(!l.record(Duration::from_millis(1)));
        assert_eq!(
            l,
            Lateness {
                threshold: Duration::from_millis(2),
                sends: 5,
                late: 2,
                max_lag: Duration::from_millis(150),
            }
        );
    }

    fn report(scheduled: u64, sent: u64, late: u64, pending: u64) -> Report {
        let zero = LatencySummary::default();
        Report {
            run_id: "lg-test".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            ended_at: "2025-01-01T00:00:10Z".into(),
            elapsed_s: 10.0,
            interrupted: None,
            args: RunArgs {
                argv: vec![],
                switch: "http://127.0.0.1:8080".into(),
                rate: 10.0,
                duration_ms: 10_000,
                concurrency: 4,
                vpas: vec!["a@x".into(), "b@y".into()],
                amount: "1.00".into(),
                mix: "p2p=1".into(),
                merchants: vec![],
                pairing: crate::cli::Pairing::Random,
                seed: 1,
                request_timeout_ms: 1000,
                poll_wait_ms: 1000,
                drain_timeout_ms: 5000,
                fail_on_errors: false,
                follow: true,
            },
            schedule: ScheduleReport {
                asked_rate: 10.0,
                duration_s: 10.0,
                send_window_s: 10.0,
                scheduled,
                sent,
                unsent: scheduled - sent,
                achieved_send_rate: 0.0,
                late_sends: late,
                late_threshold_ms: 10.0,
                max_lag_ms: 0.0,
                lag_ms: zero,
            },
            accepted: sent,
            achieved_accept_rate: 0.0,
            terminal: 0,
            statuses: BTreeMap::from([
                ("SUCCESS".into(), sent - pending),
                ("PENDING".into(), pending),
            ]),
            by_type: BTreeMap::new(),
            refund_fallbacks: 0,
            reasons: BTreeMap::new(),
            errors: ErrorsReport::default(),
            latency_ms: Latencies {
                accept: zero,
                accept_service: zero,
                accept_to_terminal: zero,
                end_to_end: zero,
            },
            abandoned: 0,
            process_cpu_s: 0.5,
            cpu_us_per_send: 0.0,
            warnings: vec![],
        }
        .finish()
    }

    #[test]
    fn cpu_per_send_and_an_unfollowed_run_has_nothing_pending() {
        let r = report(100, 100, 0, 30);
        assert_eq!(r.cpu_us_per_send, 5000.0);
        assert!(r.warnings.iter().any(|w| w.contains("PENDING")));
        let mut posted = report(100, 100, 0, 30);
        posted.args.follow = false;
        let posted = posted.finish();
        assert_eq!(posted.pending(), 0);
        assert!(posted.warnings.is_empty(), "{:?}", posted.warnings);
        assert!(posted.render().contains("not followed"));
    }

    #[test]
    fn a_run_that_kept_the_schedule_has_no_warning() {
        let r = report(100, 100, 1, 0);
        assert_eq!(r.schedule.achieved_send_rate, 10.0);
        assert_eq!(r.terminal, 100);
        assert_eq!(r.statuses["FAILED"], 0, "every status is listed");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let text = r.render();
        assert!(
            text.contains("terminal    100  SUCCESS 100  FAILED 0  REVERSED 0  PENDING 0"),
            "{text}"
        );
        assert!(!text.contains("WARNING"), "{text}");
    }

    #[test]
    fn shortfall_late_sends_and_pending_each_warn() {
        let short = report(100, 98, 0, 0);
        assert_eq!(short.warnings.len(), 1, "{:?}", short.warnings);
        assert!(short.warnings[0].contains("could not keep the asked rate"));
        assert!(short.render().contains("WARNING: could not keep"));
        let late = report(100, 100, 2, 0);
        assert_eq!(late.warnings.len(), 1, "{:?}", late.warnings);
        assert!(late.warnings[0].contains("behind schedule"));
        let pending = report(100, 100, 0, 3);
        assert_eq!(pending.terminal, 97);
        assert!(pending.warnings[0].contains("3 accepted transaction(s) were still PENDING"));
    }

    #[test]
    fn a_stopped_run_is_not_blamed_for_the_rate() {
        let mut r = report(100, 20, 0, 1);
        r.interrupted = Some("Ctrl-C".into());
        r.schedule.send_window_s = 2.0;
        let r = r.finish();
        assert_eq!(r.schedule.achieved_send_rate, 10.0);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("PENDING when Ctrl-C stopped the run"));
        assert!(r.render().contains("stopped early by Ctrl-C"));
    }

    #[test]
    fn a_mixed_run_shows_each_type() {
        let mut r = report(100, 100, 0, 0);
        r.args.mix = "p2p=70,p2m=20,collect=5,refund=5".into();
        r.refund_fallbacks = 2;
        for (kind, n) in [("P2P", 72), ("P2M", 20), ("COLLECT", 5), ("REFUND", 3)] {
            r.by_type.insert(
                kind.into(),
                TypeReport {
                    sent: n,
                    accepted: n,
                    statuses: BTreeMap::from([("SUCCESS".into(), n)]),
                    ..TypeReport::default()
                },
            );
        }
        let r = r.finish();
        assert_eq!(
            r.by_type["REFUND"].statuses["FAILED"], 0,
            "every status is listed"
        );
        let text = r.render();
        assert!(
            text.contains("mix p2p=70,p2m=20,collect=5,refund=5  (2 refund(s) sent as P2P/P2M"),
            "{text}"
        );
        assert!(
            text.contains(
                "REFUND  sent 3  accepted 3  SUCCESS 3  FAILED 0  REVERSED 0  PENDING 0  errors 0"
            ),
            "{text}"
        );
        // P2P alone: the summary is as it always was.
        let plain = report(10, 10, 0, 0).render();
        assert!(!plain.contains("by type"), "{plain}");
    }

    #[test]
    fn errors_are_totalled_by_side() {
        let e = ErrorsReport::new(
            BTreeMap::from([
                ("POST 503 SWITCH_BUSY".into(), 3),
                ("POST timeout".into(), 1),
            ]),
            BTreeMap::from([("GET timeout".into(), 2)]),
        );
        assert_eq!((e.total, e.send, e.follow), (6, 4, 2));
    }
}
