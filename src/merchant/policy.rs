//! Pure decisions of merchant forwarding: which processor (`route`), what one
//! payment does next (`plan`), the circuit breaker and latency estimate of a
//! processor, and the backoff of a held payment. Time comes in as arguments;
//! nothing here sleeps, spawns or does I/O.
//!
//! Fees decide the order: the default processor is cheaper, so it is chosen
//! whenever it admits calls and is fast; the dearer fallback only when the
//! default is open (failing), slower than `slow_ms`, or in doubt (a call has
//! waited far longer than usual: it may have just slowed down) while the
//! fallback is fast; a slow processor still beats holding; with neither admitting calls a
//! payment is held and retried. A payment whose last send to `P` has an
//! unknown outcome goes to the other processor only after `P` said "not found"
//! at a moment when no send of ours to `P` can still land (`settle_ms` after
//! the latest unanswered one).

use std::time::{Duration, Instant};

/// One of the two processors of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessorId {
    Default,
    Fallback,
}

impl ProcessorId {
    pub const ALL: [ProcessorId; 2] = [ProcessorId::Default, ProcessorId::Fallback];

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessorId::Default => "default",
            ProcessorId::Fallback => "fallback",
        }
    }

    pub fn parse(text: &str) -> Option<ProcessorId> {
        match text {
            "default" => Some(ProcessorId::Default),
            "fallback" => Some(ProcessorId::Fallback),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        match self {
            ProcessorId::Default => 0,
            ProcessorId::Fallback => 1,
        }
    }
}

/// Tunables of a processor's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the circuit.
    pub failures_to_open: u32,
    /// First cool-down of an open circuit; it doubles on each failed trial…
    pub cool_down_min: Duration,
    /// …up to this.
    pub cool_down_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: 3,
            cool_down_min: Duration::from_millis(250),
            cool_down_max: Duration::from_millis(1_000),
        }
    }
}

/// The circuit of one processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    /// No calls until `until`; then one trial.
    Open {
        until: Instant,
    },
    /// One trial call at a time decides.
    HalfOpen {
        trial_in_flight: bool,
    },
}

impl Circuit {
    /// How many new calls it admits at `now` (`usize::MAX` when closed).
    pub fn admits(&self, now: Instant) -> usize {
        match *self {
            Circuit::Closed => usize::MAX,
            Circuit::Open { until } if now >= until => 1,
            Circuit::HalfOpen {
                trial_in_flight: false,
            } => 1,
            _ => 0,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen { .. } => "half_open",
        }
    }
}

/// CLOSED ─(N consecutive failures, or a probe says failing)─▶ OPEN ─(cool-down)─▶
/// HALF_OPEN ─(trial succeeds)─▶ CLOSED; a failed trial opens it again for twice as long.
#[derive(Debug, Clone, Copy)]
pub struct Breaker {
    cfg: BreakerConfig,
    circuit: Circuit,
    consecutive_failures: u32,
    cool_down: Duration,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            circuit: Circuit::Closed,
            consecutive_failures: 0,
            cool_down: cfg.cool_down_min,
        }
    }

    pub fn circuit(&self) -> Circuit {
        self.circuit
    }

    /// Takes permission for one call; `None` = refused. `Some(true)` is the trial.
    pub fn try_acquire(&mut self, now: Instant) -> Option<bool> {
        match self.circuit {
            Circuit::Closed => Some(false),
            Circuit::Open { until } if now >= until => {
                self.circuit = Circuit::HalfOpen {
                    trial_in_flight: true,
                };
                Some(true)
            }
            Circuit::HalfOpen {
                trial_in_flight: false,
            } => {
                self.circuit = Circuit::HalfOpen {
                    trial_in_flight: true,
                };
                Some(true)
            }
            _ => None,
        }
    }

    fn open(&mut self, now: Instant) {
        self.circuit = Circuit::Open {
            until: now + self.cool_down,
        };
        self.cool_down = (self.cool_down * 2).min(self.cfg.cool_down_max);
    }

    /// A call the processor answered definitively (accepted, or "already have it").
    pub fn on_success(&mut self) {
        self.circuit = Circuit::Closed;
        self.consecutive_failures = 0;
        self.cool_down = self.cfg.cool_down_min;
    }

    /// A call that failed (5xx, 429, timeout, connection error, unexpected answer).
    pub fn on_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.circuit {
            Circuit::HalfOpen { .. } => self.open(now),
            Circuit::Closed if self.consecutive_failures >= self.cfg.failures_to_open => {
                self.open(now)
            }
            _ => {}
        }
    }

    /// What the health endpoint said: failing opens a closed circuit; healthy lets an
    /// open one try again at once.
    pub fn on_probe(&mut self, failing: bool, now: Instant) {
        match (failing, self.circuit) {
            (true, Circuit::Closed)
            | (
                true,
                Circuit::HalfOpen {
                    trial_in_flight: false,
                },
            ) => self.open(now),
            (false, Circuit::Open { .. }) => {
                self.circuit = Circuit::HalfOpen {
                    trial_in_flight: false,
                }
            }
            _ => {}
        }
    }
}

/// A processor is in doubt when its oldest call has waited more than this
/// many times its usual latency (and more than `Thresholds::doubt_ms`, so
/// that a processor answering in 2 ms is not in doubt after 7 ms).
pub const DOUBT_FACTOR: u64 = 3;

/// What "slow" and "in doubt" mean for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A processor slower than this (EWMA, or its oldest call's wait) is
    /// passed over while the other is fast.
    pub slow_ms: u64,
    /// The least wait of an oldest call that can put a processor in doubt.
    pub doubt_ms: u64,
}

/// A latency figure older than this is forgotten (so a processor passed over as
/// slow is tried again even when its health endpoint cannot be asked).
pub const LATENCY_STALE: Duration = Duration::from_secs(10);

/// Exponentially weighted latency of recent calls, reset by health probes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    ewma_ms: f64,
    updated: Option<Instant>,
    /// A call has ended since the last reset: the figure is measured, not
    /// only what the health endpoint claims.
    observed: bool,
}

impl Latency {
    pub fn record(&mut self, ms: f64, now: Instant) {
        self.ewma_ms = match self.updated {
            None => ms,
            Some(_) => 0.7 * self.ewma_ms + 0.3 * ms,
        };
        self.updated = Some(now);
        self.observed = true;
    }

    /// The processor's own figure (`minResponseTime`) replaces the estimate.
    pub fn reset(&mut self, ms: f64, now: Instant) {
        self.ewma_ms = ms;
        self.updated = Some(now);
    }

    pub fn estimate_ms(&self, now: Instant) -> u64 {
        match self.updated {
            Some(t) if now.saturating_duration_since(t) < LATENCY_STALE => self.ewma_ms as u64,
            _ => 0,
        }
    }
}

/// What an adapter publishes about its processor.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub circuit: Circuit,
    pub latency: Latency,
    /// Start of the oldest call still in flight (a hung processor shows here first).
    pub oldest_call: Option<Instant>,
    pub in_flight: usize,
    pub capacity: usize,
    /// The last health answer said `failing`.
    pub failing: bool,
}

impl Snapshot {
    /// Before anything is known: closed and idle.
    pub fn fresh(capacity: usize) -> Snapshot {
        Snapshot {
            circuit: Circuit::Closed,
            latency: Latency::default(),
            oldest_call: None,
            in_flight: 0,
            capacity,
            failing: false,
        }
    }

    /// New calls it would admit now.
    pub fn budget(&self, now: Instant) -> usize {
        self.capacity
            .saturating_sub(self.in_flight)
            .min(self.circuit.admits(now))
    }

    /// Latency estimate: recent calls and probes, or the age of the oldest call in flight.
    /// A call has waited far longer than this processor's calls usually
    /// take: its delay may have just grown, by how much is unknown until a
    /// call ends. New payments go elsewhere meanwhile if they can, so that
    /// few are sent into a slowness that could reach the checker's 2 s
    /// margin (a payment answered that late can be counted by the processor
    /// and not yet by the switch, or the other way round).
    ///
    /// Only against a measured usual latency: before any call has ended (a
    /// cold start, a first connection) nothing is known to have changed.
    pub fn in_doubt(&self, now: Instant, doubt_ms: u64) -> bool {
        if !self.latency.observed {
            return false;
        }
        let waiting = self
            .oldest_call
            .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64);
        let usual = self.latency.estimate_ms(now);
        waiting > usual.saturating_mul(DOUBT_FACTOR).max(doubt_ms)
    }

    pub fn latency_ms(&self, now: Instant) -> u64 {
        let waiting = self
            .oldest_call
            .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64);
        self.latency.estimate_ms(now).max(waiting)
    }
}

/// Where a new send should go now, by fee first and speed second (fast = under
/// `t.slow_ms`), avoiding a processor in doubt while the other is fast and
/// sure; `None` = hold.
pub fn route(
    default: &Snapshot,
    fallback: &Snapshot,
    now: Instant,
    t: Thresholds,
) -> Option<ProcessorId> {
    let open = |s: &Snapshot| s.budget(now) > 0;
    let fast = |s: &Snapshot| s.latency_ms(now) < t.slow_ms;
    let sure = |s: &Snapshot| open(s) && fast(s) && !s.in_doubt(now, t.doubt_ms);
    if sure(default) {
        Some(ProcessorId::Default)
    } else if sure(fallback) {
        Some(ProcessorId::Fallback)
    } else if open(default) && fast(default) {
        Some(ProcessorId::Default)
    } else if open(fallback) && fast(fallback) {
        Some(ProcessorId::Fallback)
    } else if open(default) {
        Some(ProcessorId::Default)
    } else if open(fallback) {
        Some(ProcessorId::Fallback)
    } else {
        None
    }
}

/// What one payment knows and where it could go, at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Situation {
    /// The processor of the latest send whose outcome is still unknown.
    pub maybe_at: Option<ProcessorId>,
    /// When the latest unanswered send (timeout, reset) left, in epoch ms.
    pub unanswered_since_ms: Option<i64>,
    /// `route(..)` now.
    pub route: Option<ProcessorId>,
    pub now_ms: i64,
    /// How long after an unanswered send a "not found" is believed.
    pub settle_ms: u64,
}

/// The next step of one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Announce durably, then POST to this processor (with its own requestedAt).
    Send(ProcessorId),
    /// Ask this processor whether it has the payment (`GET /payments/{id}`).
    Resolve(ProcessorId),
    /// Give the payment back to Postgres for `ms`.
    Hold { ms: u64 },
}

/// Decides the next step. A payment whose outcome at `p` is unknown is first
/// resolved at `p` as soon as a "not found" from `p` can be believed; before
/// that it may only be re-sent to `p` (same requestedAt: `p` answers 422 if it
/// has it), and only while `p` is the route — never to the other processor.
/// Resolving first also ends the loop of a slow processor's re-sends, each of
/// which would otherwise push the moment of belief further away.
pub fn plan(s: &Situation, hold_ms: u64) -> Step {
    let Some(p) = s.maybe_at else {
        return match s.route {
            Some(route) => Step::Send(route),
            None => Step::Hold { ms: hold_ms },
        };
    };
    let believed_at = s
        .unanswered_since_ms
        .map_or(i64::MIN, |t| t.saturating_add(s.settle_ms as i64));
    if s.now_ms >= believed_at {
        Step::Resolve(p)
    } else if s.route == Some(p) {
        Step::Send(p)
    } else {
        Step::Hold {
            ms: ((believed_at - s.now_ms) as u64).max(hold_ms.min(100)),
        }
    }
}

/// Pause before a held payment is looked at again: 100 ms doubling to 1 s, with
/// jitter derived from the payment (no randomness here).
pub fn hold_ms(holds: i32, jitter_seed: u64) -> u64 {
    let base = (100_u64 << holds.clamp(0, 4)).min(1_000);
    base + jitter_seed % (base / 4 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_recovers_through_a_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig::default());
        assert_eq!(b.try_acquire(t0), Some(false));
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.circuit(), Circuit::Closed);
        b.on_failure(t0);
        assert!(matches!(b.circuit(), Circuit::Open { .. }));
        assert_eq!(b.try_acquire(t0), None);
        assert_eq!(b.circuit().admits(t0), 0);
        let later = t0 + ms(250);
        assert_eq!(b.circuit().admits(later), 1);
        assert_eq!(b.try_acquire(later), Some(true));
        assert_eq!(b.try_acquire(later), None, "one trial at a time");
        b.on_failure(later);
        // Failed trial: open again, for twice as long.
        assert_eq!(b.try_acquire(later + ms(499)), None);
        assert_eq!(b.try_acquire(later + ms(500)), Some(true));
        b.on_success();
        assert_eq!(b.circuit(), Circuit::Closed);
        assert_eq!(b.try_acquire(later + ms(500)), Some(false));
    }

    #[test]
    fn probes_open_and_reopen_the_circuit() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig::default());
        b.on_probe(false, t0);
        assert_eq!(b.circuit(), Circuit::Closed);
        b.on_probe(true, t0);
        assert!(matches!(b.circuit(), Circuit::Open { .. }));
        b.on_probe(false, t0);
        assert_eq!(
            b.circuit(),
            Circuit::HalfOpen {
                trial_in_flight: false
            }
        );
        assert_eq!(b.try_acquire(t0), Some(true));
    }

    const T: Thresholds = Thresholds {
        slow_ms: 1_000,
        doubt_ms: 150,
    };

    fn snap(open: bool, latency_ms: u64, now: Instant) -> Snapshot {
        let mut s = Snapshot::fresh(10);
        s.latency.record(latency_ms as f64, now);
        if !open {
            s.circuit = Circuit::Open {
                until: now + ms(1_000),
            };
        }
        s
    }

    #[test]
    fn routing_prefers_the_cheaper_processor_unless_it_fails_or_is_slow() {
        use ProcessorId::*;
        let now = Instant::now();
        let r = |d: Snapshot, f: Snapshot| route(&d, &f, now, T);
        assert_eq!(r(snap(true, 5, now), snap(true, 1, now)), Some(Default));
        assert_eq!(
            r(snap(true, 1_000, now), snap(true, 5, now)),
            Some(Fallback)
        );
        assert_eq!(
            r(snap(true, 1_500, now), snap(true, 5, now)),
            Some(Fallback)
        );
        assert_eq!(r(snap(false, 5, now), snap(true, 5, now)), Some(Fallback));
        assert_eq!(
            r(snap(true, 1_500, now), snap(true, 2_000, now)),
            Some(Default)
        );
        assert_eq!(
            r(snap(true, 1_500, now), snap(false, 5, now)),
            Some(Default)
        );
        assert_eq!(r(snap(false, 5, now), snap(false, 5, now)), None);
        // A call hanging for 2 s makes a processor slow before any answer comes.
        let mut hung = snap(true, 5, now);
        hung.oldest_call = Some(now - ms(2_000));
        assert_eq!(r(hung, snap(true, 5, now)), Some(Fallback));
        // A full bulkhead admits nothing.
        let mut full = snap(true, 5, now);
        full.in_flight = 10;
        assert_eq!(r(full, snap(true, 5, now)), Some(Fallback));
    }

    #[test]
    fn a_call_waiting_far_longer_than_usual_sends_new_payments_elsewhere() {
        use ProcessorId::*;
        let now = Instant::now();
        let r = |d: Snapshot, f: Snapshot| route(&d, &f, now, T);
        // Usually 5 ms; one call has waited 200 ms: the delay may have just grown.
        let mut doubtful = snap(true, 5, now);
        doubtful.oldest_call = Some(now - ms(200));
        assert!(doubtful.in_doubt(now, T.doubt_ms));
        assert_eq!(r(doubtful, snap(true, 5, now)), Some(Fallback));
        // …but not when the other is no better: a doubt is not a failure.
        let mut other = snap(true, 5, now);
        other.oldest_call = Some(now - ms(300));
        assert_eq!(r(doubtful, other), Some(Default));
        assert_eq!(r(doubtful, snap(false, 5, now)), Some(Default));
        // A call within a few times the usual latency is no doubt.
        let mut usual = snap(true, 100, now);
        usual.oldest_call = Some(now - ms(250));
        assert!(!usual.in_doubt(now, T.doubt_ms));
        assert_eq!(r(usual, snap(true, 5, now)), Some(Default));
        // Nor a short wait of a very fast processor.
        let mut quick = snap(true, 2, now);
        quick.oldest_call = Some(now - ms(100));
        assert!(!quick.in_doubt(now, T.doubt_ms));
        // Before any call has ended (only the health figure), no doubt: a
        // first call may be slow just for opening its connection.
        let mut cold = Snapshot::fresh(10);
        cold.latency.reset(0.0, now);
        cold.oldest_call = Some(now - ms(400));
        assert!(!cold.in_doubt(now, T.doubt_ms));
    }

    #[test]
    fn a_stale_latency_is_forgotten() {
        let t0 = Instant::now();
        let s = snap(true, 3_000, t0);
        assert_eq!(s.latency_ms(t0), 3_000);
        assert_eq!(s.latency_ms(t0 + LATENCY_STALE), 0);
    }

    fn situation(maybe_at: Option<ProcessorId>, route: Option<ProcessorId>) -> Situation {
        Situation {
            maybe_at,
            unanswered_since_ms: None,
            route,
            now_ms: 10_000,
            settle_ms: 7_000,
        }
    }

    #[test]
    fn plan_never_sends_elsewhere_while_an_outcome_is_unknown() {
        use ProcessorId::*;
        assert_eq!(
            plan(&situation(None, Some(Default)), 100),
            Step::Send(Default)
        );
        assert_eq!(
            plan(&situation(None, Some(Fallback)), 100),
            Step::Send(Fallback)
        );
        assert_eq!(plan(&situation(None, None), 100), Step::Hold { ms: 100 });
        // The default answered an error: ask it first, wherever the route points.
        for route in [Some(Default), Some(Fallback), None] {
            assert_eq!(
                plan(&situation(Some(Default), route), 100),
                Step::Resolve(Default)
            );
        }
        // The last send to the default was never answered (it may still land).
        let mut s = situation(Some(Default), Some(Fallback));
        s.unanswered_since_ms = Some(9_000);
        assert_eq!(plan(&s, 100), Step::Hold { ms: 6_000 });
        s.route = None;
        assert_eq!(plan(&s, 100), Step::Hold { ms: 6_000 });
        // …unless the default is the route again: re-send there (it answers 422 if it has it).
        s.route = Some(Default);
        assert_eq!(plan(&s, 100), Step::Send(Default));
        // Once no send can land any more, "not found" is final: resolve first.
        s.now_ms = 16_000;
        assert_eq!(plan(&s, 100), Step::Resolve(Default));
        s.route = Some(Fallback);
        assert_eq!(plan(&s, 100), Step::Resolve(Default));
    }

    #[test]
    fn hold_backoff_is_capped() {
        assert!((100..=125).contains(&hold_ms(0, 7)));
        assert!((800..=1_000).contains(&hold_ms(3, 12345)));
        assert!(hold_ms(50, u64::MAX) <= 1_250);
        assert!(hold_ms(-3, 0) >= 100);
    }
}
