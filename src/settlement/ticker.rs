//! `Settlement`: this node's handle on settlement windows (the operator's
//! close, the cut-off close, finishing closed windows), and the ticker that
//! runs on every node once a second.
//!
//! A close is three durable steps, each safe to repeat and each finished by
//! any node after a crash:
//! 1. an operator's close is **requested** (`close_requested_at`, committed);
//! 2. the **close** transaction (`store::settlement::close_window`): the
//!    window's last journal fixed under the journal table's SHARE lock,
//!    CLOSED `WHERE status = 'OPEN'` (one closer wins, whichever node), the
//!    next window opened, its reconciliation queued;
//! 3. its **finish**: positions, totals and the `settlement.window_closed`
//!    event, written once (`positions_at`).
//!
//! The ticker redoes whatever a crash left: an open window past its cut-off
//! or with a close requested is closed, a closed window without positions is
//! finished. Cut-offs are compared with the database's clock, so nodes with
//! skewed clocks still close one cut-off once.
//!
//! What it does not do: reconcile (`settlement::recon`, woken here).

use super::cutoffs::Cutoffs;
use super::metrics::SettlementMetrics;
use crate::adapters::store::{Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often every node looks at the open window.
const TICK: Duration = Duration::from_secs(1);
/// How often the position gauges are read again.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// Where a test makes the switch die in the middle of an operator's close
/// (`--settlement-crash-after`, hidden): the restarted switch must finish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPoint {
    /// After the close was requested, before the close transaction.
    Request,
    /// After the close transaction, before positions are written.
    Close,
}

/// This node's settlement handle. Cheap to clone.
#[derive(Clone)]
pub struct Settlement {
    pub store: Store,
    pub cutoffs: Cutoffs,
    pub metrics: SettlementMetrics,
    /// Wakes this node's reconciliation runner after a close.
    pub recon_wake: Arc<Notify>,
    /// Names the closer of a cut-off in the audit log.
    pub node_name: String,
    pub crash_after: Option<CrashPoint>,
}

impl Settlement {
    /// The operator's close: closes the open window (an empty one too) and
    /// finishes it; `(closed, opened)`.
    pub async fn close_now(&self, actor: &str) -> Result<(i64, i64), StoreError> {
        let window = self.store.request_close().await?;
        self.crash_if(CrashPoint::Request);
        // Another node's ticker may close it first: either way it is closed.
        self.close(window, actor).await?;
        self.crash_if(CrashPoint::Close);
        self.finish(window).await?;
        Ok((window, window + 1))
    }

    fn crash_if(&self, point: CrashPoint) {
        if self.crash_after == Some(point) {
            tracing::error!(
                ?point,
                "--settlement-crash-after: dying in the middle of a close"
            );
            std::process::abort();
        }
    }

    async fn close(&self, window: i64, actor: &str) -> Result<bool, StoreError> {
        let started = Instant::now();
        let closed = self.store.close_window(window, actor).await?;
        if closed {
            self.metrics
                .close_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.windows_closed.inc();
            tracing::info!(
                window,
                actor,
                close_ms = started.elapsed().as_millis() as u64,
                "settlement window closed"
            );
        }
        Ok(closed)
    }

    /// Writes a closed window's positions and event if nobody has, and wakes
    /// reconciliation.
    pub async fn finish(&self, window: i64) -> Result<(), StoreError> {
        if let Some(netting) = self.store.finish_window(window).await? {
            self.publish_positions(window, &netting.positions);
            self.store.outbox_written.notify_one();
        }
        self.recon_wake.notify_one();
        Ok(())
    }

    fn publish_positions(&self, window: i64, positions: &[super::Position]) {
        self.metrics.last_closed_window.set(window);
        for p in positions {
            self.metrics
                .position_net_paise
                .with_label_values(&[&p.bank_code])
                .set(p.net().0);
        }
    }

    /// One look: finish what a crash left, close the open window when its
    /// cut-off passed or an operator asked.
    async fn tick(&self) -> Result<(), StoreError> {
        for window in self.store.unfinished_windows().await? {
            self.finish(window).await?;
        }
        let open = self.store.open_window().await?;
        let w = &open.window;
        let age = (open.db_now - w.opened_at).num_seconds().max(0);
        self.metrics.open_window_age_seconds.set(age);
        let due = self.cutoffs.next_after(w.opened_at) <= open.db_now;
        if due || w.close_requested {
            let actor = if w.close_requested {
                format!("resumed-close@{}", self.node_name)
            } else {
                format!("cutoff@{}", self.node_name)
            };
            self.close(w.window_id, &actor).await?;
            self.finish(w.window_id).await?;
        }
        Ok(())
    }

    /// The latest finished window's positions, for the gauges.
    async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let latest = self.store.windows(20, None).await?;
        if let Some(w) = latest.iter().find(|w| w.finished) {
            let netting = self.store.netting(w).await?;
            self.publish_positions(w.window_id, &netting.positions);
        }
        Ok(())
    }
}

/// Starts the ticker of this node (on the current runtime).
pub fn spawn(settlement: Settlement) {
    actix::spawn(async move {
        let mut last_gauges: Option<Instant> = None;
        loop {
            if let Err(e) = settlement.tick().await {
                tracing::warn!(error = %e, "settlement ticker: trying again in a second");
            }
            if last_gauges.is_none_or(|t| t.elapsed() >= GAUGES_EVERY) {
                last_gauges = Some(Instant::now());
                if let Err(e) = settlement.refresh_gauges().await {
                    tracing::debug!(error = %e, "settlement gauges not refreshed");
                }
            }
            tokio::time::sleep(TICK).await;
        }
    });
}
