//! Prometheus metrics of the switch, in one registry served at `GET /metrics`.
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms).

use crate::adapters::store::cluster::ClaimReason;
use crate::cluster::lease::LeaseLoss;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Transactions accepted (new, not idempotent replays).
    pub txns_created: IntCounterVec,
    /// Transactions that reached a terminal status, by type and status.
    pub txns_finished: IntCounterVec,
    /// Collect requests by what happened to them: REQUESTED, APPROVED,
    /// DECLINED, EXPIRED.
    pub collects: IntCounterVec,
    /// Payments refused at acceptance by a limit, a refund cap or a
    /// collect's state, by type and code.
    pub refusals: IntCounterVec,
    /// Sagas running as actors now.
    pub sagas_in_flight: IntGauge,
    /// What woke a `?wait=` caller: its saga's actor stopping here (`here`),
    /// its events from another node (`event`), or a look without RabbitMQ (`poll`).
    pub wait_wakeups: IntCounterVec,
    /// Bank calls by bank, endpoint, operation and outcome.
    pub bank_calls: IntCounterVec,
    /// Bank call latency by bank, endpoint and operation.
    pub bank_call_seconds: HistogramVec,
    /// Time a saga spent in each step (checkpoint label), until the next checkpoint.
    pub saga_step_seconds: HistogramVec,
    /// Outbox events not yet confirmed by RabbitMQ.
    pub outbox_pending: IntGauge,
    /// Age of the oldest unconfirmed outbox event.
    pub outbox_lag_seconds: Gauge,
    /// Outbox events published and confirmed by this process.
    pub outbox_published: IntCounter,
    /// RabbitMQ failures by operation.
    pub rabbitmq_errors: IntCounterVec,
    /// Circuit of each bank endpoint: 0 closed, 1 half open, 2 open.
    pub circuit_state: IntGaugeVec,
    /// Checkpoint write latency.
    pub checkpoint_seconds: HistogramVec,
    /// HTTP requests by route and status.
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    /// Sagas this node's sweep claimed, by why (`ClaimReason`): `takeover`
    /// (another node's lease had run out), `handed_back`, `own_idle`.
    pub sagas_claimed: IntCounterVec,
    /// Times this node stopped every saga because it could no longer trust
    /// its lease (self-fencing), by why (`cluster::lease::LeaseLoss`).
    pub lease_lost: IntCounterVec,
    /// Messages in the event exchange's dead-letter queue, by queue, as this
    /// node's outbox relay last read them (only the relay leader reports).
    pub dead_letters: IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid histogram");
            let _ = registry.register(Box::new(h.clone()));
            h
        };
        let sagas_in_flight = IntGauge::new("upi_sagas_in_flight", "Sagas running as actors now")
            .expect("valid gauge");
        let _ = registry.register(Box::new(sagas_in_flight.clone()));
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        // Every label value exists from the start at 0, so the first one
        // counted is an increase that alerts can see.
        let counter_from_zero = |name: &str, help: &str, label: &str, values: &[&str]| {
            let c = counter(name, help, &[label]);
            for value in values {
                c.with_label_values(&[value]);
            }
            c
        };
        let circuit_state = gauge_vec(
            "upi_bank_circuit_state",
            "Circuit per bank endpoint: 0 closed, 1 half open, 2 open",
            &["bank", "endpoint"],
        );
        let outbox_pending = IntGauge::new(
            "upi_outbox_pending",
            "Outbox events not yet confirmed by RabbitMQ",
        )
        .expect("valid gauge");
        let _ = registry.register(Box::new(outbox_pending.clone()));
        let outbox_lag_seconds = Gauge::new(
            "upi_outbox_lag_seconds",
            "Age of the oldest outbox event not yet confirmed by RabbitMQ",
        )
        .expect("valid gauge");
        let _ = registry.register(Box::new(outbox_lag_seconds.clone()));
        let outbox_published = IntCounter::new(
            "upi_outbox_published_total",
            "Outbox events published and confirmed by RabbitMQ",
        )
        .expect("valid counter");
        let _ = registry.register(Box::new(outbox_published.clone()));
        let dead_letters = gauge_vec(
            "upi_dead_letter_messages",
            "Messages in the event exchange's dead-letter queue (read by the relay leader)",
            &["queue"],
        );
        let sagas_claimed = counter_from_zero(
            "upi_sagas_claimed_total",
            "Sagas this node's sweep claimed, by why: takeover (another node's lease had run out), handed_back, own_idle",
            "reason",
            &ClaimReason::ALL.map(ClaimReason::label),
        );
        let lease_lost = counter_from_zero(
            "upi_lease_lost_total",
            "Times this node stopped every saga because it could no longer trust its lease",
            "why",
            &LeaseLoss::ALL.map(LeaseLoss::label),
        );
        Metrics {
            txns_created: counter(
                "upi_transactions_created_total",
                "Transactions accepted",
                &["type"],
            ),
            collects: counter(
                "upi_collects_total",
                "Collect requests by what happened to them (REQUESTED, APPROVED, DECLINED, EXPIRED)",
                &["status"],
            ),
            refusals: counter(
                "upi_payments_refused_total",
                "Payments refused at acceptance by a limit, a refund cap or a collect's state",
                &["type", "code"],
            ),
            wait_wakeups: counter(
                "upi_wait_wakeups_total",
                "What woke a ?wait= caller: here, event or poll",
                &["by"],
            ),
            txns_finished: counter(
                "upi_transactions_finished_total",
                "Transactions that reached a terminal status",
                &["type", "status"],
            ),
            sagas_in_flight,
            circuit_state,
            bank_calls: counter(
                "upi_bank_calls_total",
                "Calls to banks by bank, endpoint, operation and outcome",
                &["bank", "endpoint", "operation", "outcome"],
            ),
            bank_call_seconds: histogram(
                "upi_bank_call_duration_seconds",
                "Latency of bank calls",
                &["bank", "endpoint", "operation"],
            ),
            saga_step_seconds: histogram(
                "upi_saga_step_duration_seconds",
                "Time a saga spent in a step (from its checkpoint to the next)",
                &["step"],
            ),
            outbox_pending,
            outbox_lag_seconds,
            outbox_published,
            rabbitmq_errors: counter(
                "upi_rabbitmq_errors_total",
                "RabbitMQ failures by operation",
                &["op"],
            ),
            checkpoint_seconds: histogram(
                "upi_checkpoint_write_duration_seconds",
                "Latency of saga checkpoint writes",
                &["outcome"],
            ),
            http_requests: counter(
                "upi_http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
            ),
            http_seconds: histogram(
                "upi_http_request_duration_seconds",
                "HTTP request latency",
                &["route"],
            ),
            sagas_claimed,
            lease_lost,
            dead_letters,
            registry,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

// --- Redis (issue 5, part 3): cache, idempotency fast path, rate limiter.
// Kept apart from `Metrics` so the families merge independently; `serve`
// registers them into the same registry.

/// Metrics of `adapters::cache`.
#[derive(Clone)]
pub struct CacheMetrics {
    /// Redis calls that failed or timed out, by operation.
    pub redis_errors: IntCounterVec,
    /// Cache lookups by cache (`vpa`, `idempotency`) and result (`hit`, `miss`, `error`).
    pub cache_requests: IntCounterVec,
    /// Requests refused with `429 RATE_LIMITED`.
    pub rate_limited: IntCounter,
}

impl CacheMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> CacheMetrics {
        let redis_errors = IntCounterVec::new(
            Opts::new(
                "upi_redis_errors_total",
                "Redis calls that failed or timed out, by operation",
            ),
            &["op"],
        )
        .expect("valid counter");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "upi_cache_requests_total",
                "Cache lookups by cache and result (hit, miss, error)",
            ),
            &["cache", "result"],
        )
        .expect("valid counter");
        let rate_limited = IntCounter::new(
            "upi_rate_limited_total",
            "Requests refused because their client was over its rate limit",
        )
        .expect("valid counter");
        let _ = registry.register(Box::new(redis_errors.clone()));
        let _ = registry.register(Box::new(cache_requests.clone()));
        let _ = registry.register(Box::new(rate_limited.clone()));
        CacheMetrics {
            redis_errors,
            cache_requests,
            rate_limited,
        }
    }
}
// --- end of Redis metrics.
