//! Reconciliation of closed windows against every bank's change feed
//! (Bank API v1 `GET /v1/ops`). One runner per database: every node starts
//! one, and only the holder of a session advisory lock works (like the
//! outbox relay); the others wait to take over.
//!
//! A run, for the oldest window whose run is not done:
//! 1. `as_of` = the database's now (transactions terminal by then are judged);
//! 2. each registered bank's feed is read from its durable cursor to its
//!    end, a page (at most `FEED_PAGE` ops) at a time, each page staged with
//!    the moved cursor in one transaction (`store::recon::stage_page`);
//! 3. every unjudged op is judged in SQL by batches of `JUDGE_BATCH`
//!    (ops of transactions not terminal yet stay unjudged: carried);
//! 4. the window's journals are checked by batches for a debit and a
//!    credit in the staged feeds (`MISSING_AT_BANK`);
//! 5. done: counts, metrics, a `settlement.mismatch` event if any.
//!
//! Every step is idempotent: a runner killed anywhere is replaced by one
//! that redoes the run from its cursors. Memory is bounded by one page.
//!
//! What it does not do: change anything at a bank, or judge an op twice.

use super::metrics::SettlementMetrics;
use crate::adapters::bank_api::FeedPage;
use crate::adapters::bank_client::BankClient;
use crate::adapters::store::{BankRecord, Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Ops per feed page (the most Bank API v1 allows).
const FEED_PAGE: u32 = 1000;
/// Pages read from one bank in one run at most (a feed growing faster than
/// it is read is finished by the next run).
const MAX_PAGES_PER_RUN: u32 = 100_000;
/// Ops judged per statement.
const JUDGE_BATCH: i64 = 5_000;
/// Journals checked for missing ops per statement.
const MISSING_BATCH: i64 = 5_000;
/// Deadline of one feed request.
const FEED_TIMEOUT: Duration = Duration::from_secs(10);
/// The runner's advisory lock: one runner per database.
const LEADER_LOCK: i64 = 0x5245_434f_4e43_494c; // "RECONCIL"
/// Pause after a failed run before it is tried again.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// Look for queued runs at least this often (other nodes queue them too).
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ReconError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bank {bank}: its feed could not be read: {detail}")]
    Feed { bank: String, detail: String },
}

/// What a finished run found.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    pub window_id: i64,
    pub feed_ops: i64,
    pub matched: i64,
    pub mismatches: i64,
    pub elapsed: Duration,
}

/// Starts this node's runner (it works only while it leads).
pub fn spawn(store: Store, metrics: SettlementMetrics, wake: Arc<Notify>) {
    actix::spawn(async move {
        loop {
            let Some(lock) = lead(&store).await else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            tracing::info!("reconciliation runner leads");
            loop {
                if lock.simple_query("SELECT 1").await.is_err() {
                    tracing::warn!("reconciliation runner lost its lock connection");
                    break;
                }
                match store.next_recon_run().await {
                    Ok(Some(window)) => match run(&store, &metrics, window).await {
                        Ok(s) => tracing::info!(
                            window = s.window_id,
                            feed_ops = s.feed_ops,
                            matched = s.matched,
                            mismatches = s.mismatches,
                            elapsed_ms = s.elapsed.as_millis() as u64,
                            "reconciliation run done"
                        ),
                        Err(e) => {
                            tracing::warn!(window, error = %e, "reconciliation run failed; trying again");
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                    },
                    Ok(None) => {
                        let _ = tokio::time::timeout(POLL, wake.notified()).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reconciliation runner cannot read its runs");
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        }
    });
}

/// The lock connection when this process leads, taken out of the pool so
/// the lock dies with it.
async fn lead(store: &Store) -> Option<deadpool_postgres::ClientWrapper> {
    let obj = store.pool.get().await.ok()?;
    let got: bool = obj
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
        .await
        .ok()?
        .get(0);
    got.then(|| deadpool_postgres::Object::take(obj))
}

/// One run of window `window_id`'s reconciliation, to the end.
pub async fn run(
    store: &Store,
    metrics: &SettlementMetrics,
    window_id: i64,
) -> Result<RunSummary, ReconError> {
    let started = Instant::now();
    let as_of = store.start_recon(window_id).await?;
    let http = BankClient::http_client();
    let mut feed_ops = 0;
    for bank in store.banks().await? {
        feed_ops += read_feed(store, metrics, &http, &bank).await?;
    }
    // Judge every op not judged yet (carried ones too), by keyset batches.
    let mut from = (String::new(), -1i64);
    loop {
        let judged = store
            .judge_batch(window_id, as_of, from.clone(), JUDGE_BATCH)
            .await?;
        metrics
            .recon_ops
            .with_label_values(&["MATCHED"])
            .inc_by(judged.matched.max(0) as u64);
        match judged.last {
            Some(last) if judged.seen >= JUDGE_BATCH => from = last,
            _ => break,
        }
    }
    // The window's payments: each must have its debit and credit at the banks.
    if let Some(w) = store.window(window_id).await? {
        store.clear_missing_at_bank(window_id).await?;
        let last = w.last_journal_id.unwrap_or(w.after_journal_id);
        let mut after = w.after_journal_id;
        while after < last {
            let (max, seen, _missing) = store
                .missing_at_bank(window_id, after, last, MISSING_BATCH)
                .await?;
            match max {
                Some(m) if seen > 0 => after = m,
                _ => break,
            }
        }
    }
    let (done, by_kind) = store.finish_recon(window_id).await?;
    for (kind, n) in &by_kind {
        metrics
            .recon_ops
            .with_label_values(&[kind])
            .inc_by((*n).max(0) as u64);
    }
    metrics.recon_runs.inc();
    metrics.recon_last_window.set(window_id);
    metrics
        .recon_last_mismatch_ppm
        .set(crate::adapters::store::recon::ppm(
            done.mismatch_count,
            done.matched + done.mismatch_count,
        ));
    Ok(RunSummary {
        window_id,
        feed_ops,
        matched: done.matched,
        mismatches: done.mismatch_count,
        elapsed: started.elapsed(),
    })
}

/// Reads `bank`'s feed from its cursor to its end, staging page by page;
/// the number of ops read.
async fn read_feed(
    store: &Store,
    metrics: &SettlementMetrics,
    http: &reqwest::Client,
    bank: &BankRecord,
) -> Result<i64, ReconError> {
    let mut endpoints = bank.endpoints.clone();
    endpoints.sort_by_key(|e| e.priority);
    let clients: Vec<BankClient> = endpoints
        .iter()
        .map(|e| BankClient::new(http.clone(), &e.url, FEED_TIMEOUT))
        .collect();
    let mut cursor = store.recon_cursor(&bank.code).await?;
    let mut read = 0i64;
    for _ in 0..MAX_PAGES_PER_RUN {
        let page = page_from_any(&clients, cursor)
            .await
            .map_err(|detail| ReconError::Feed {
                bank: bank.code.clone(),
                detail,
            })?;
        let n = page.ops.len();
        if n == 0 {
            break;
        }
        store
            .stage_page(&bank.code, &page.ops, page.next_after_seq)
            .await?;
        metrics
            .recon_feed_ops
            .with_label_values(&[&bank.code])
            .inc_by(n as u64);
        read += n as i64;
        cursor = page.next_after_seq;
        if n < FEED_PAGE as usize {
            break;
        }
    }
    Ok(read)
}

/// One page from the first endpoint that answers.
async fn page_from_any(clients: &[BankClient], after: i64) -> Result<FeedPage, String> {
    let mut last = String::from("no endpoint");
    for c in clients {
        match c.feed_page(after, FEED_PAGE).await {
            Ok(page) if page.ops.iter().all(|o| o.seq > after) => return Ok(page),
            Ok(_) => last = format!("{} answered ops at or before seq {after}", c.base_url()),
            Err(e) => last = format!("{}: {e}", c.base_url()),
        }
    }
    Err(last)
}
