//! `CheckpointWriter`: group commit of everything the switch writes on its
//! hot paths. The accept path (`POST /v1/transactions`) hands it new
//! transactions, saga actors hand it checkpoints, merchant forwarding the
//! payments it receives (`POST /payments`) and its fenced writes (announce,
//! accept, release); it writes whatever queued while its previous commit ran
//! as one statement per kind (`adapters::store::batch` for the sagas',
//! `merchant::flow_batch` for forwarding's) on a connection of its own, and
//! answers each caller only once that statement has committed.
//!
//! Layout: this file (the handle, the loop, commits and splits), `jobs`
//! (the kinds of job, which statement writes each, and the answers).
//!
//! It is an actor in the Tokio sense: it owns its connection and prepared
//! statement, callers hold a cloneable handle and get their answer through a
//! oneshot. It runs on an arbiter (thread) of its own, and opens its
//! connection there, so the statement's I/O never crosses threads.
//!
//! Rules:
//! - **Bounded**: the queue holds at most `queue` jobs (a new transaction
//!   that finds it full is refused at once: `503 SWITCH_BUSY`; a checkpoint
//!   waits for room, bounded by the saga's own retry deadline) and a batch at
//!   most `max_batch`.
//! - **No timer**: a batch is what queued while the previous one committed;
//!   an idle writer commits a lone job at once.
//! - **Per-row fencing**: a stale checkpoint is absent from the statement's
//!   answer and fails only its own saga (`VersionConflict`). A statement that
//!   fails as a whole (a bad row, a constraint) is retried job by job, so one
//!   bad job cannot fail the others.
//! - **Nothing answered before it is durable**; a connection lost mid-batch
//!   answers every job of it with an error (the outcome is unknown to them:
//!   a saga retries with the same expected version and is fenced if the batch
//!   did commit; a client retries with the same idempotency key).

mod jobs;

use crate::adapters::pg::{DbError, DbUrl};
use crate::adapters::store::batch;
use crate::adapters::store::{
    CheckpointError, CheckpointWrite, Created, NewTxn, Store, StoreError,
};
use crate::merchant::flow_batch::{self, Accept, Announce, Release};
use chrono::{DateTime, Utc};
use jobs::{CreateOutcome, Job, answer, write};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Bounds of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Jobs waiting at most (new transactions beyond it are refused).
    pub queue: usize,
    /// Jobs written by one statement at most.
    pub max_batch: usize,
    /// This node: the owner of the sagas it creates (`transactions.owner`).
    pub node_id: Uuid,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 8_192,
            max_batch: 1_024,
            node_id: Uuid::nil(),
        }
    }
}

/// Longest pause between two attempts to reconnect.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(2);

/// Why the writer could not make a job durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the checkpoint writer's queue is full")]
    Busy,
    #[error("the checkpoint writer is not running")]
    Stopped,
    #[error("the batch was not committed: {0}")]
    NotCommitted(String),
}

impl From<WriteError> for StoreError {
    fn from(e: WriteError) -> Self {
        StoreError::Db(DbError::Pool(e.to_string()))
    }
}

/// Metrics of the writer.
#[derive(Clone)]
pub struct WriterMetrics {
    /// Jobs per committed statement.
    pub batch_size: Histogram,
    /// Time of one statement (round trip and commit).
    pub commit_seconds: Histogram,
    /// Jobs waiting for the writer.
    pub queued: IntGauge,
    /// Statements that failed as a whole and were retried job by job.
    pub split_batches: IntCounter,
}

impl WriterMetrics {
    pub fn register(registry: &Registry) -> WriterMetrics {
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "upi_writer_batch_size",
                "Saga writes (creates and checkpoints) per group-commit statement",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("valid histogram");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "upi_writer_commit_duration_seconds",
                "Time of one group-commit statement, round trip and commit",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .expect("valid histogram");
        let queued = IntGauge::new("upi_writer_queued", "Saga writes waiting for the writer")
            .expect("valid gauge");
        let split_batches = IntCounter::new(
            "upi_writer_split_batches_total",
            "Group-commit statements that failed whole and were retried job by job",
        )
        .expect("valid counter");
        let _ = registry.register(Box::new(batch_size.clone()));
        let _ = registry.register(Box::new(commit_seconds.clone()));
        let _ = registry.register(Box::new(queued.clone()));
        let _ = registry.register(Box::new(split_batches.clone()));
        WriterMetrics {
            batch_size,
            commit_seconds,
            queued,
            split_batches,
        }
    }
}

/// Handle to the writer. Cheap to clone.
#[derive(Clone)]
pub struct CheckpointWriter {
    tx: mpsc::Sender<Job>,
    /// Reads the earlier transaction of a key that was taken.
    store: Store,
    metrics: WriterMetrics,
}

impl CheckpointWriter {
    /// Starts the writer on `arbiter`; it connects (and reconnects) there.
    pub fn start(
        arbiter: &actix::ArbiterHandle,
        db: DbUrl,
        store: Store,
        cfg: WriterConfig,
        metrics: WriterMetrics,
    ) -> CheckpointWriter {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let notify = store.clone();
        arbiter.spawn(run(db, rx, cfg, metrics.clone(), notify));
        CheckpointWriter { tx, store, metrics }
    }

    /// Queues a job of a client request: refused at once when the queue is
    /// full (the client gets `503` and retries; nothing was written).
    fn offer(&self, job: Job) -> Result<(), WriteError> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Busy,
            mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
        })?;
        self.count_queued();
        Ok(())
    }

    /// Publishes how many jobs wait (after a caller queued one).
    fn count_queued(&self) {
        let queued = self.tx.max_capacity() - self.tx.capacity();
        self.metrics.queued.set(queued as i64);
    }

    /// Creates the transaction (row, checkpoint 1, outbox event) unless its
    /// idempotency key exists; then reports the earlier one. Refused at once
    /// with `Busy` when the writer is saturated.
    pub async fn create(&self, new: NewTxn) -> Result<Created, WriteError> {
        let (reply, rx) = oneshot::channel();
        let request = new.request.clone();
        self.offer(Job::Create {
            new: Box::new(new),
            reply,
        })?;
        match rx.await.map_err(|_| WriteError::Stopped)?? {
            CreateOutcome::Inserted => Ok(Created::New),
            CreateOutcome::Refused(r) => Ok(Created::Refused(r)),
            // The key's owner committed before our insert gave up; read it.
            CreateOutcome::KeyTaken => self
                .store
                .by_idempotency_key(&request)
                .await
                .map_err(|e| WriteError::NotCommitted(e.to_string()))?
                .ok_or_else(|| WriteError::NotCommitted("idempotency key vanished".into())),
        }
    }

    /// Records a merchant payment (`POST /payments`) unless its correlationId
    /// was received before; `true` when this call inserted it. Refused at
    /// once with `Busy` when the writer is saturated.
    pub async fn receive(
        &self,
        correlation_id: Uuid,
        amount_cents: i64,
    ) -> Result<bool, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.offer(Job::Receive {
            correlation_id,
            amount_cents,
            reply,
        })?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    /// Announces a merchant send durably before it leaves; the requestedAt
    /// to send, or `None` when the claim was lost (nothing may be sent).
    pub async fn announce(&self, announce: Announce) -> Result<Option<DateTime<Utc>>, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.wait_offer(Job::Announce { announce, reply }).await?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    /// Records that a processor has a merchant payment (final); `false` when
    /// the claim was lost.
    pub async fn accept(&self, accept: Accept) -> Result<bool, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.wait_offer(Job::Accept { accept, reply }).await?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    /// Hands a merchant payment back, due again later; `false` when the claim
    /// was lost.
    pub async fn release(&self, release: Release) -> Result<bool, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.wait_offer(Job::Release { release, reply }).await?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    /// Queues a job of the switch's own work: waits for room when the queue
    /// is full (the caller's own deadlines bound the wait).
    async fn wait_offer(&self, job: Job) -> Result<(), WriteError> {
        self.tx.send(job).await.map_err(|_| WriteError::Stopped)?;
        self.count_queued();
        Ok(())
    }

    /// Makes a checkpoint durable; returns the new version. Waits for room in
    /// the queue when it is full (the saga's retry deadline bounds the wait).
    pub async fn save(&self, write: CheckpointWrite) -> Result<i32, CheckpointError> {
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.wait_offer(Job::Checkpoint { write, reply }).await {
            return Err(CheckpointError::Db(e.into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(CheckpointError::Db(WriteError::Stopped.into())))
    }
}

/// The connection and its prepared statements.
struct Session {
    client: tokio_postgres::Client,
    /// The sagas' statement (creates, checkpoints, merchant payments received).
    statement: tokio_postgres::Statement,
    /// Merchant forwarding's fenced writes (announce, accept, release).
    flows: tokio_postgres::Statement,
    /// The acceptance checks of guarded creates.
    guarded: crate::adapters::store::guarded::Statements,
    node_id: Uuid,
}

async fn open(db: &DbUrl, node_id: Uuid) -> Result<Session, DbError> {
    let client = db.connect().await?;
    // A batch statement is large but simple: JIT compilation would cost more
    // than it saves. Its rows are found by their keys: with seq scans priced
    // out, its plans use the keys whatever the tables' sizes were when they
    // were planned (see `pg::FRESH_PLANS` for the pool's answer).
    client
        .batch_execute("SET jit = off; SET enable_seqscan = off")
        .await?;
    let statement = client.prepare(batch::SQL).await?;
    let flows = client.prepare(flow_batch::SQL).await?;
    let guarded = crate::adapters::store::guarded::Statements::prepare(&client).await?;
    Ok(Session {
        client,
        statement,
        flows,
        guarded,
        node_id,
    })
}

async fn run(
    db: DbUrl,
    mut rx: mpsc::Receiver<Job>,
    cfg: WriterConfig,
    metrics: WriterMetrics,
    store: Store,
) {
    let max_batch = cfg.max_batch.max(1);
    let mut session: Option<Session> = None;
    let mut pause = Duration::from_millis(50);
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    let mut deferred: Vec<Job> = Vec::new();
    loop {
        if session.as_ref().is_none_or(|s| s.client.is_closed()) {
            match open(&db, cfg.node_id).await {
                Ok(s) => {
                    session = Some(s);
                    pause = Duration::from_millis(50);
                }
                Err(e) => {
                    tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "checkpoint writer cannot connect; refusing writes meanwhile");
                    // Whatever waits now is answered, not kept without bound.
                    let failed = WriteError::NotCommitted(e.to_string());
                    for job in deferred.drain(..) {
                        job.fail(&failed);
                    }
                    while let Ok(job) = rx.try_recv() {
                        job.fail(&failed);
                    }
                    metrics.queued.set(0);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                    continue;
                }
            }
        }
        // Jobs held back from the last batch (a second write of the same
        // saga) go first, then whatever queued meanwhile.
        jobs.append(&mut deferred);
        if jobs.is_empty() {
            if rx.recv_many(&mut jobs, max_batch).await == 0 {
                return; // every handle dropped: shutting down
            }
        } else {
            while jobs.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        metrics.queued.set(rx.len() as i64);
        // One write per saga per statement: a second one (a zombie beside the
        // live actor) waits for the next batch, where its version decides.
        let mut seen = HashSet::with_capacity(jobs.len());
        let mut i = 0;
        while i < jobs.len() {
            if seen.insert(jobs[i].row()) {
                i += 1;
            } else {
                deferred.push(jobs.swap_remove(i));
            }
        }
        let Some(s) = session.as_ref() else { continue };
        commit(s, &mut jobs, &metrics).await;
        if s.client.is_closed() {
            session = None;
        }
        store.outbox_written.notify_one();
    }
}

/// Writes `jobs` and answers each: one statement per kind present (the
/// sagas' and merchant forwarding's), each committed on its own.
async fn commit(s: &Session, jobs: &mut Vec<Job>, metrics: &WriterMetrics) {
    let (mut flows, mut sagas): (Vec<Job>, Vec<Job>) = jobs
        .drain(..)
        .partition(|j| j.statement() == jobs::Statement::Flows);
    for group in [&mut sagas, &mut flows] {
        if !group.is_empty() {
            commit_group(s, group, metrics).await;
        }
    }
}

/// Writes `jobs` (one statement's kind) and answers each; splits a
/// statement that fails whole.
async fn commit_group(s: &Session, jobs: &mut Vec<Job>, metrics: &WriterMetrics) {
    let started = Instant::now();
    let result = write(s, jobs).await;
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(written) => {
            metrics.batch_size.observe(jobs.len() as f64);
            answer(jobs.drain(..), &written);
        }
        // The server refused the statement (the connection is fine): one job
        // may be at fault; write them one by one so only it fails.
        Err(e) if e.as_db_error().is_some() && jobs.len() > 1 && !s.client.is_closed() => {
            metrics.split_batches.inc();
            tracing::warn!(error = %crate::adapters::pg::pg_message(&e), jobs = jobs.len(), "group commit failed whole; writing its jobs one by one");
            for job in jobs.drain(..) {
                let mut one = vec![job];
                match write(s, &one).await {
                    Ok(written) => {
                        metrics.batch_size.observe(1.0);
                        answer(one.drain(..), &written);
                    }
                    Err(e) => fail_all(&mut one, &e),
                }
            }
        }
        Err(e) => fail_all(jobs, &e),
    }
}

fn fail_all(jobs: &mut Vec<Job>, e: &tokio_postgres::Error) {
    let failed = WriteError::NotCommitted(crate::adapters::pg::pg_message(e));
    tracing::warn!(error = %failed, jobs = jobs.len(), "saga writes not committed");
    for job in jobs.drain(..) {
        job.fail(&failed);
    }
}
