//! `bench --analytics`: what the analytics ingest costs. The bench starts
//! `upi-switch analytics` as a process of its own on the deployment's
//! database and event exchange, and for each rate reads its CPU from
//! `/proc/PID/stat` and the events it stored (`analytics_state`) before and
//! after the phase (warm-up included in both), once it has caught up. The
//! figure is its process's CPU seconds per 1,000 events; its Postgres work is
//! in the switch database's backends ("pg switch" of the table).

use super::BenchError;
use super::procfs;
use serde::Serialize;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for the ingest to store the events of a phase.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

/// The ingest process the bench started.
pub struct Ingest {
    child: Child,
}

/// Its counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    cpu_ticks: u64,
    events: i64,
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyticsPhase {
    pub rate: f64,
    /// Events the ingest stored in the phase (warm-up included).
    pub events: i64,
    /// Its process's CPU over them, in seconds.
    pub cpu_s: f64,
    pub cpu_s_per_1000_events: f64,
    /// Whether it caught up with every event before the limit.
    pub caught_up: bool,
}

impl Ingest {
    pub fn start(
        bin: &str,
        switch_db: &str,
        exchange: &str,
        log: &std::path::Path,
    ) -> Result<Ingest, BenchError> {
        let log = std::fs::File::create(log)
            .map_err(|e| BenchError::Run(format!("cannot create {}: {e}", log.display())))?;
        let child = Command::new(bin)
            .args([
                "analytics",
                "--database-url",
                switch_db,
                "--events-exchange",
                exchange,
            ])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| BenchError::Run(format!("cannot start the analytics ingest: {e}")))?;
        Ok(Ingest { child })
    }

    pub async fn mark(&self, db: &tokio_postgres::Client) -> Result<Mark, BenchError> {
        let events = stored(db).await?;
        let cpu_ticks = procfs::stat(self.child.id()).map_or(0, |s| s.cpu_ticks);
        Ok(Mark { cpu_ticks, events })
    }

    /// Waits until the count of stored events holds still for a second.
    pub async fn settle(&self, db: &tokio_postgres::Client) -> Result<bool, BenchError> {
        let started = Instant::now();
        let mut last = stored(db).await?;
        while started.elapsed() < CATCH_UP_LIMIT {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = stored(db).await?;
            if now == last {
                return Ok(true);
            }
            last = now;
        }
        Ok(false)
    }

    pub fn phase(rate: f64, before: Mark, after: Mark, caught_up: bool) -> AnalyticsPhase {
        let clk_tck = procfs::clk_tck().max(1);
        let events = after.events - before.events;
        let cpu_s = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / clk_tck as f64;
        AnalyticsPhase {
            rate,
            events,
            cpu_s,
            cpu_s_per_1000_events: if events > 0 {
                cpu_s * 1000.0 / events as f64
            } else {
                0.0
            },
            caught_up,
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn stored(db: &tokio_postgres::Client) -> Result<i64, BenchError> {
    db.query_one("SELECT events_ingested FROM analytics_state", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| BenchError::Run(format!("reading analytics_state: {e}")))
}

/// The lines the bench prints under its table.
pub fn render(phases: &[AnalyticsPhase]) -> String {
    let mut out =
        vec!["analytics ingest (upi-switch analytics, its own process; /proc CPU):".to_string()];
    for p in phases {
        out.push(format!(
            "  {:>6} tx/s: {} events, {:.2} CPU s = {:.3} CPU s per 1000 events{}",
            p.rate,
            p.events,
            p.cpu_s,
            p.cpu_s_per_1000_events,
            if p.caught_up {
                ""
            } else {
                " (still catching up at the limit)"
            }
        ));
    }
    out.join("\n")
}
