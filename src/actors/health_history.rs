//! A bank's recent health as its supervisor saw it, for operators ("circuit
//! state over the last minutes"): one sample per `BUCKET` keeping the worst
//! state seen in it — a circuit that opened for two seconds shows — over the
//! last `KEEP` buckets. Pure and bounded; owned by the bank's supervisor.

use super::psp_adapter::EndpointView;
use std::collections::VecDeque;

/// One sample's span.
pub const BUCKET_MS: i64 = 5_000;
/// Samples kept (10 minutes).
pub const KEEP: usize = 120;

/// One bucket: the worst the bank and each endpoint were in it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct HealthSample {
    /// The bucket's start, unix milliseconds.
    pub at_ms: i64,
    /// `UP`, `DEGRADED` or `DOWN`: the worst seen.
    pub health: &'static str,
    /// Per endpoint (in the bank's order), the worst circuit seen:
    /// `CLOSED`, `HALF_OPEN` or `OPEN`.
    pub circuits: Vec<&'static str>,
    /// The lowest success rate seen, 0-1.
    pub success_rate: f64,
}

fn health_rank(h: &str) -> u8 {
    match h {
        "UP" => 0,
        "DEGRADED" => 1,
        _ => 2,
    }
}

fn circuit_rank(c: &str) -> u8 {
    match c {
        "CLOSED" => 0,
        "HALF_OPEN" => 1,
        _ => 2,
    }
}

#[derive(Debug, Default)]
pub struct HealthHistory {
    samples: VecDeque<HealthSample>,
}

impl HealthHistory {
    /// Records what the endpoints look like at `now_ms`.
    pub fn record(&mut self, now_ms: i64, health: &'static str, endpoints: &[EndpointView]) {
        let at_ms = now_ms - now_ms.rem_euclid(BUCKET_MS);
        let circuits: Vec<&'static str> = endpoints.iter().map(|e| e.circuit).collect();
        let rate = endpoints
            .iter()
            .map(|e| e.success_rate)
            .fold(1.0_f64, f64::min);
        match self.samples.back_mut() {
            Some(last) if last.at_ms == at_ms && last.circuits.len() == circuits.len() => {
                if health_rank(health) > health_rank(last.health) {
                    last.health = health;
                }
                for (worst, now) in last.circuits.iter_mut().zip(circuits) {
                    if circuit_rank(now) > circuit_rank(worst) {
                        *worst = now;
                    }
                }
                last.success_rate = last.success_rate.min(rate);
            }
            _ => {
                self.samples.push_back(HealthSample {
                    at_ms,
                    health,
                    circuits,
                    success_rate: rate,
                });
                while self.samples.len() > KEEP {
                    self.samples.pop_front();
                }
            }
        }
    }

    pub fn samples(&self) -> Vec<HealthSample> {
        self.samples.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(circuit: &'static str, rate: f64) -> EndpointView {
        EndpointView {
            url: "http://b".into(),
            priority: 0,
            circuit,
            mode: "auto",
            success_rate: rate,
            latency_ms_p50: 1.0,
            latency_ms_p99: 2.0,
            in_flight: 0,
            bulkhead: 8,
        }
    }

    #[test]
    fn a_bucket_keeps_the_worst_it_saw_and_the_history_is_bounded() {
        let mut h = HealthHistory::default();
        h.record(10_000, "UP", &[endpoint("CLOSED", 1.0)]);
        h.record(11_000, "DOWN", &[endpoint("OPEN", 0.2)]);
        h.record(12_000, "UP", &[endpoint("CLOSED", 1.0)]);
        let s = h.samples();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].health, s[0].circuits[0]), ("DOWN", "OPEN"));
        assert!((s[0].success_rate - 0.2).abs() < 1e-9);
        h.record(15_000, "UP", &[endpoint("CLOSED", 1.0)]);
        assert_eq!(h.samples()[1].health, "UP");
        for i in 0..500 {
            h.record(20_000 + i * BUCKET_MS, "UP", &[endpoint("CLOSED", 1.0)]);
        }
        assert_eq!(h.samples().len(), KEEP);
    }
}
