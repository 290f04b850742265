//! Fault injection for the bank simulator: the current fault settings (set by
//! flags at start, changed at runtime through `PUT /admin/faults`) and the gate
//! every `/v1` request passes through. Settings are configuration, shared by a
//! `watch` channel; they are never business state.

use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;

/// What is currently wrong with this bank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added to every `/v1` request before it is handled.
    pub latency_ms: u64,
    /// Uniform random extra latency in `0..=jitter_ms`.
    pub jitter_ms: u64,
    /// Share (0..=1) of requests answered `503` without being applied.
    pub error_rate: f64,
    /// Share (0..=1) of money movements applied and committed, then answered `503`.
    pub lost_reply_rate: f64,
    /// Money movements are held without an answer until `hang` is cleared
    /// (then applied and answered) or `max_hang_ms` passes (then `503`, not applied).
    pub hang: bool,
    pub max_hang_ms: u64,
    /// Every `/v1` endpoint, health included, answers `503`.
    pub down: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            lost_reply_rate: 0.0,
            hang: false,
            max_hang_ms: 300_000,
            down: false,
        }
    }
}

/// A partial update: fields left out keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPatch {
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub lost_reply_rate: Option<f64>,
    pub hang: Option<bool>,
    pub max_hang_ms: Option<u64>,
    pub down: Option<bool>,
}

/// Upper bound on injected latency and hang, so no request is held forever.
pub const MAX_FAULT_DELAY_MS: u64 = 3_600_000;

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("lost_reply_rate", self.lost_reply_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        for (name, ms) in [
            ("latency_ms", self.latency_ms),
            ("jitter_ms", self.jitter_ms),
            ("max_hang_ms", self.max_hang_ms),
        ] {
            if ms > MAX_FAULT_DELAY_MS {
                return Err(format!("{name} must be at most {MAX_FAULT_DELAY_MS}"));
            }
        }
        Ok(())
    }

    /// Whether `gate` may hold a money movement before it reaches the writer.
    pub fn delays_movements(&self) -> bool {
        self.latency_ms > 0 || self.jitter_ms > 0 || self.hang
    }

    pub fn patched(&self, p: FaultPatch) -> Faults {
        Faults {
            latency_ms: p.latency_ms.unwrap_or(self.latency_ms),
            jitter_ms: p.jitter_ms.unwrap_or(self.jitter_ms),
            error_rate: p.error_rate.unwrap_or(self.error_rate),
            lost_reply_rate: p.lost_reply_rate.unwrap_or(self.lost_reply_rate),
            hang: p.hang.unwrap_or(self.hang),
            max_hang_ms: p.max_hang_ms.unwrap_or(self.max_hang_ms),
            down: p.down.unwrap_or(self.down),
        }
    }
}

/// What the gate decided for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Handle the request normally.
    Proceed,
    /// Answer `503` without applying anything.
    Refuse(&'static str),
}

/// Kind of endpoint, because not every fault applies to every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Movement,
    Read,
    Health,
}

fn roll(rate: f64) -> bool {
    rate > 0.0 && rand::rng().random::<f64>() < rate
}

/// Applies down/latency/error/hang to one request. Lost replies are decided
/// after the movement is applied, by `lose_reply`.
pub async fn gate(faults: &watch::Receiver<Faults>, endpoint: Endpoint) -> Gate {
    let now = faults.borrow().clone();
    gate_as(faults, now, endpoint).await
}

/// `gate` with the settings `now` read when the request arrived (a hang set
/// during its latency still holds it). Without latency, jitter or hang in
/// `now` it finishes without waiting (`Faults::delays_movements`).
pub async fn gate_as(faults: &watch::Receiver<Faults>, now: Faults, endpoint: Endpoint) -> Gate {
    if now.down {
        return Gate::Refuse("BANK_DOWN");
    }
    if endpoint == Endpoint::Health {
        return Gate::Proceed;
    }
    let jitter = if now.jitter_ms > 0 {
        rand::rng().random_range(0..=now.jitter_ms)
    } else {
        0
    };
    let delay = now.latency_ms + jitter;
    let mut hang = now.hang;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        hang = faults.borrow().hang;
    }
    if roll(now.error_rate) {
        return Gate::Refuse("INJECTED_ERROR");
    }
    if endpoint == Endpoint::Movement && hang {
        let mut rx = faults.clone();
        let released = tokio::time::timeout(
            Duration::from_millis(now.max_hang_ms),
            rx.wait_for(|f| !f.hang || f.down),
        )
        .await;
        return match released {
            Ok(Ok(f)) if !f.down => Gate::Proceed,
            _ => Gate::Refuse("HUNG"),
        };
    }
    Gate::Proceed
}

/// Whether this applied movement's reply is to be lost (answered `503`).
pub fn lose_reply(faults: &watch::Receiver<Faults>) -> bool {
    roll(faults.borrow().lost_reply_rate)
}
