//! Circuit breaker and call statistics of one bank endpoint, pure: time comes
//! in as `now_ms`, nothing here sleeps, spawns or does I/O.
//!
//! ```text
//! CLOSED ──(consecutive failures ≥ N, or failure rate ≥ R over the window)──▶ OPEN
//!   ▲                                                                          │ cool-down
//!   └──────── trial successes ≥ T ──── HALF_OPEN ◀─────────────────────────────┘
//!                                         │ any trial failure
//!                                         └──────────────────▶ OPEN (cool-down again)
//! ```
//! Operators may force a breaker open or closed; `Auto` gives it back to the
//! rules above. A failure is an outcome the bank did not answer definitively
//! (timeout, 5xx, connection refused); a decline is a success — the bank works.

use std::collections::VecDeque;

/// Tunables of a breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: u32,
    /// Outcomes remembered for the failure rate.
    pub window: usize,
    /// Failure share (0..=1) over the window that opens the circuit…
    pub failure_rate: f64,
    /// …once the window holds at least this many outcomes.
    pub min_calls: usize,
    /// How long the circuit stays open before trial calls are let through.
    pub cool_down_ms: u64,
    /// Trial successes in a row that close it again.
    pub trial_successes: u32,
    /// Trial calls allowed at once while half open.
    pub trial_in_flight: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            window: 50,
            failure_rate: 0.5,
            min_calls: 20,
            cool_down_ms: 2_000,
            trial_successes: 3,
            trial_in_flight: 1,
        }
    }
}

/// The circuit as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "CLOSED",
            Circuit::Open => "OPEN",
            Circuit::HalfOpen => "HALF_OPEN",
        }
    }
}

/// Operator override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    ForcedOpen,
    ForcedClosed,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "auto" => Some(Mode::Auto),
            "open" => Some(Mode::ForcedOpen),
            "closed" => Some(Mode::ForcedClosed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::ForcedOpen => "open",
            Mode::ForcedClosed => "closed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until_ms: u64 },
    HalfOpen { successes: u32, in_flight: u32 },
}

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: State,
    mode: Mode,
    /// Recent outcomes, `true` = failure.
    window: VecDeque<bool>,
    consecutive: u32,
}

/// Whether a call may go, and whether it is a half-open trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Go { trial: bool },
    Refused,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            state: State::Closed,
            mode: Mode::Auto,
            window: VecDeque::with_capacity(cfg.window),
            consecutive: 0,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Operator override; back to `Auto` starts from a closed circuit.
    pub fn set_mode(&mut self, mode: Mode) {
        if mode == Mode::Auto && self.mode != Mode::Auto {
            self.reset();
        }
        self.mode = mode;
    }

    fn reset(&mut self) {
        self.state = State::Closed;
        self.window.clear();
        self.consecutive = 0;
    }

    /// The circuit now (an open circuit past its cool-down reports HALF_OPEN).
    pub fn circuit(&self, now_ms: u64) -> Circuit {
        match self.mode {
            Mode::ForcedOpen => return Circuit::Open,
            Mode::ForcedClosed => return Circuit::Closed,
            Mode::Auto => {}
        }
        match self.state {
            State::Closed => Circuit::Closed,
            State::Open { until_ms } if now_ms >= until_ms => Circuit::HalfOpen,
            State::Open { .. } => Circuit::Open,
            State::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    /// Asks to make a call now. A `Go` must be followed by exactly one
    /// `on_success`/`on_failure` with the same `trial` flag.
    pub fn permit(&mut self, now_ms: u64) -> Permit {
        match self.mode {
            Mode::ForcedOpen => return Permit::Refused,
            Mode::ForcedClosed => return Permit::Go { trial: false },
            Mode::Auto => {}
        }
        if let State::Open { until_ms } = self.state
            && now_ms >= until_ms
        {
            self.state = State::HalfOpen {
                successes: 0,
                in_flight: 0,
            };
        }
        match &mut self.state {
            State::Closed => Permit::Go { trial: false },
            State::Open { .. } => Permit::Refused,
            State::HalfOpen { in_flight, .. } if *in_flight < self.cfg.trial_in_flight => {
                *in_flight += 1;
                Permit::Go { trial: true }
            }
            State::HalfOpen { .. } => Permit::Refused,
        }
    }

    pub fn on_success(&mut self, trial: bool, _now_ms: u64) {
        self.consecutive = 0;
        self.remember(false);
        if let State::HalfOpen {
            successes,
            in_flight,
        } = &mut self.state
            && trial
        {
            *in_flight = in_flight.saturating_sub(1);
            *successes += 1;
            if *successes >= self.cfg.trial_successes {
                self.reset();
            }
        }
    }

    pub fn on_failure(&mut self, trial: bool, now_ms: u64) {
        self.consecutive = self.consecutive.saturating_add(1);
        self.remember(true);
        if self.mode != Mode::Auto {
            return;
        }
        let open = match self.state {
            State::HalfOpen { .. } => trial,
            State::Closed => {
                self.consecutive >= self.cfg.consecutive_failures || self.rate_exceeded()
            }
            State::Open { .. } => false,
        };
        if open {
            self.state = State::Open {
                until_ms: now_ms.saturating_add(self.cfg.cool_down_ms),
            };
            self.window.clear();
        }
    }

    fn remember(&mut self, failure: bool) {
        if self.window.len() == self.cfg.window.max(1) {
            self.window.pop_front();
        }
        self.window.push_back(failure);
    }

    fn rate_exceeded(&self) -> bool {
        if self.window.len() < self.cfg.min_calls.max(1) {
            return false;
        }
        let failures = self.window.iter().filter(|f| **f).count();
        failures as f64 / self.window.len() as f64 >= self.cfg.failure_rate
    }
}

/// Success rate and latency percentiles over the most recent calls.
#[derive(Debug, Clone)]
pub struct CallStats {
    capacity: usize,
    /// (success, latency_ms)
    recent: VecDeque<(bool, f64)>,
}

impl CallStats {
    pub fn new(capacity: usize) -> CallStats {
        CallStats {
            capacity: capacity.max(1),
            recent: VecDeque::with_capacity(capacity.max(1)),
        }
    }

    pub fn record(&mut self, success: bool, latency_ms: f64) {
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back((success, latency_ms));
    }

    /// Share of successes (1.0 with no calls yet).
    pub fn success_rate(&self) -> f64 {
        if self.recent.is_empty() {
            return 1.0;
        }
        self.recent.iter().filter(|(ok, _)| *ok).count() as f64 / self.recent.len() as f64
    }

    /// Latency percentile in ms (0 with no calls yet); `p` in 0..=1.
    pub fn latency_ms(&self, p: f64) -> f64 {
        let mut all: Vec<f64> = self.recent.iter().map(|(_, ms)| *ms).collect();
        if all.is_empty() {
            return 0.0;
        }
        all.sort_by(f64::total_cmp);
        let rank = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len());
        all[rank - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BreakerConfig = BreakerConfig {
        consecutive_failures: 3,
        window: 10,
        failure_rate: 0.5,
        min_calls: 6,
        cool_down_ms: 1_000,
        trial_successes: 2,
        trial_in_flight: 1,
    };

    fn fail(b: &mut Breaker, now: u64) {
        let Permit::Go { trial } = b.permit(now) else {
            panic!("refused")
        };
        b.on_failure(trial, now);
    }

    fn succeed(b: &mut Breaker, now: u64) {
        let Permit::Go { trial } = b.permit(now) else {
            panic!("refused")
        };
        b.on_success(trial, now);
    }

    #[test]
    fn opens_after_consecutive_failures_and_refuses_fast() {
        let mut b = Breaker::new(CFG);
        fail(&mut b, 0);
        fail(&mut b, 1);
        assert_eq!(b.circuit(1), Circuit::Closed);
        fail(&mut b, 2);
        assert_eq!(b.circuit(2), Circuit::Open);
        assert_eq!(b.permit(500), Permit::Refused);
    }

    #[test]
    fn opens_on_failure_rate_over_the_window() {
        let mut b = Breaker::new(CFG);
        for t in 0..6 {
            if t % 2 == 1 {
                fail(&mut b, t)
            } else {
                succeed(&mut b, t)
            }
        }
        assert_eq!(b.circuit(6), Circuit::Open, "3 of 6 failed");
    }

    #[test]
    fn half_open_trials_close_it_again() {
        let mut b = Breaker::new(CFG);
        for t in 0..3 {
            fail(&mut b, t);
        }
        assert_eq!(b.circuit(999), Circuit::Open);
        assert_eq!(b.circuit(1_002), Circuit::HalfOpen);
        let Permit::Go { trial: true } = b.permit(1_002) else {
            panic!("trial")
        };
        assert_eq!(b.permit(1_002), Permit::Refused, "one trial at a time");
        b.on_success(true, 1_003);
        succeed(&mut b, 1_004);
        assert_eq!(b.circuit(1_004), Circuit::Closed);
    }

    #[test]
    fn a_failed_trial_opens_it_for_another_cool_down() {
        let mut b = Breaker::new(CFG);
        for t in 0..3 {
            fail(&mut b, t);
        }
        fail(&mut b, 1_500);
        assert_eq!(b.circuit(1_600), Circuit::Open);
        assert_eq!(b.circuit(2_500), Circuit::HalfOpen);
    }

    #[test]
    fn operators_force_and_release() {
        let mut b = Breaker::new(CFG);
        b.set_mode(Mode::ForcedOpen);
        assert_eq!(b.permit(0), Permit::Refused);
        b.set_mode(Mode::ForcedClosed);
        for t in 0..10 {
            fail(&mut b, t);
        }
        assert_eq!(b.circuit(10), Circuit::Closed);
        b.set_mode(Mode::Auto);
        assert_eq!(b.circuit(10), Circuit::Closed);
    }

    #[test]
    fn stats_give_rate_and_percentiles() {
        let mut s = CallStats::new(100);
        assert_eq!(s.success_rate(), 1.0);
        for i in 1..=100 {
            s.record(i % 10 != 0, i as f64);
        }
        assert!((s.success_rate() - 0.9).abs() < 1e-9);
        assert_eq!(s.latency_ms(0.5), 50.0);
        assert_eq!(s.latency_ms(0.99), 99.0);
    }
}
