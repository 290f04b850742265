//! Prometheus metrics of settlement and reconciliation, registered in the
//! switch's registry (`GET /metrics`).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The verdicts of `upi_recon_ops_total`: `MATCHED` and the mismatch kinds
/// of `recon_mismatches.kind`.
const RECON_VERDICTS: [&str; 5] = [
    "MATCHED",
    "MISSING_AT_SWITCH",
    "AMOUNT_MISMATCH",
    "STATUS_MISMATCH",
    "MISSING_AT_BANK",
];

#[derive(Clone)]
pub struct SettlementMetrics {
    /// Age of the open window, in seconds.
    pub open_window_age_seconds: IntGauge,
    /// Windows this node closed.
    pub windows_closed: IntCounter,
    /// Time of one close transaction (lock, bound, next window), seconds.
    pub close_seconds: Histogram,
    /// The latest finished window's net per bank, in paise.
    pub position_net_paise: IntGaugeVec,
    /// The latest finished window's id.
    pub last_closed_window: IntGauge,
    /// Ops judged by reconciliation runs of this node, by verdict
    /// (`MATCHED` or the mismatch kind; `MISSING_AT_BANK` counts expected ops).
    pub recon_ops: IntCounterVec,
    /// Feed ops read from the banks, by bank.
    pub recon_feed_ops: IntCounterVec,
    /// The latest run's mismatches per million ops compared.
    pub recon_last_mismatch_ppm: IntGauge,
    /// The latest run's window.
    pub recon_last_window: IntGauge,
    /// Reconciliation runs finished.
    pub recon_runs: IntCounter,
}

impl SettlementMetrics {
    pub fn register(registry: &Registry) -> SettlementMetrics {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid counter");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let close_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "upi_settlement_close_duration_seconds",
                "Time of one window close (journal lock, bound, next window), seconds",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
        )
        .expect("valid histogram");
        let _ = registry.register(Box::new(close_seconds.clone()));
        let position_net_paise = IntGaugeVec::new(
            Opts::new(
                "upi_settlement_position_net_paise",
                "Net position per bank of the latest finished window (paise; positive: the bank receives)",
            ),
            &["bank"],
        )
        .expect("valid gauge");
        let _ = registry.register(Box::new(position_net_paise.clone()));
        let recon_ops = counter_vec(
            "upi_recon_ops_total",
            "Ops judged by reconciliation, by verdict (MATCHED or the mismatch kind)",
            "verdict",
        );
        // Every verdict exists from the start at 0, so a node's first
        // mismatch is an increase that alerts can see.
        for verdict in RECON_VERDICTS {
            recon_ops.with_label_values(&[verdict]);
        }
        SettlementMetrics {
            open_window_age_seconds: gauge(
                "upi_settlement_open_window_age_seconds",
                "Age of the open settlement window",
            ),
            windows_closed: counter(
                "upi_settlement_windows_closed_total",
                "Settlement windows closed by this node",
            ),
            close_seconds,
            position_net_paise,
            last_closed_window: gauge(
                "upi_settlement_last_finished_window",
                "Id of the latest settlement window whose positions are written",
            ),
            recon_ops,
            recon_feed_ops: counter_vec(
                "upi_recon_feed_ops_total",
                "Ops read from the banks' change feeds by reconciliation",
                "bank",
            ),
            recon_last_mismatch_ppm: gauge(
                "upi_recon_last_mismatch_ppm",
                "Mismatches per million ops compared, latest reconciliation run",
            ),
            recon_last_window: gauge(
                "upi_recon_last_window",
                "Window of the latest finished reconciliation run",
            ),
            recon_runs: counter("upi_recon_runs_total", "Reconciliation runs finished"),
        }
    }
}
