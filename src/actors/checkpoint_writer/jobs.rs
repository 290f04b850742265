//! What the writer is asked to make durable (`Job`), which statement writes
//! each kind (the sagas' `adapters::store::batch`, merchant forwarding's
//! `merchant::flow_batch`), and how a committed statement answers each job.

use super::{Session, WriteError};
use crate::adapters::store::{CheckpointError, CheckpointWrite, NewTxn};
use crate::adapters::store::{batch, guarded};
use crate::merchant::flow_batch::{self, Accept, Announce, Release};
use crate::saga::guards::Refusal;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use tokio::sync::oneshot;
use uuid::Uuid;

/// What a create did inside the writer (the lookup of an existing key is the
/// caller's: the writer never reads on behalf of one job).
pub(super) enum CreateOutcome {
    Inserted,
    KeyTaken,
    /// Its acceptance checks refused it; nothing was written.
    Refused(Refusal),
}

pub(super) enum Job {
    Create {
        new: Box<NewTxn>,
        reply: oneshot::Sender<Result<CreateOutcome, WriteError>>,
    },
    Checkpoint {
        write: CheckpointWrite,
        reply: oneshot::Sender<Result<i32, CheckpointError>>,
    },
    /// A merchant payment received; answers whether this job inserted it.
    Receive {
        correlation_id: Uuid,
        amount_cents: i64,
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
    /// A merchant send announced; answers the requestedAt to send, `None`
    /// when the claim was lost.
    Announce {
        announce: Announce,
        reply: oneshot::Sender<Result<Option<DateTime<Utc>>, WriteError>>,
    },
    /// A merchant payment accepted; `false` when the claim was lost.
    Accept {
        accept: Accept,
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
    /// A merchant payment handed back; `false` when the claim was lost.
    Release {
        release: Release,
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
}

/// Which statement writes a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Statement {
    Sagas,
    Flows,
}

impl Job {
    /// The row this job writes: at most one job per row in a batch.
    pub(super) fn row(&self) -> (bool, Uuid) {
        match self {
            Job::Create { new, .. } => (true, new.saga.txn_id),
            Job::Checkpoint { write, .. } => (true, write.saga.txn_id),
            Job::Receive { correlation_id, .. } => (false, *correlation_id),
            Job::Announce { announce, .. } => (false, announce.id),
            Job::Accept { accept, .. } => (false, accept.id),
            Job::Release { release, .. } => (false, release.id),
        }
    }

    /// A create with acceptance checks (limits, a refund cap, a collect).
    pub(super) fn is_guarded(&self) -> bool {
        matches!(self, Job::Create { new, .. } if !new.guard.is_empty())
    }

    pub(super) fn statement(&self) -> Statement {
        match self {
            Job::Create { .. } | Job::Checkpoint { .. } | Job::Receive { .. } => Statement::Sagas,
            Job::Announce { .. } | Job::Accept { .. } | Job::Release { .. } => Statement::Flows,
        }
    }

    pub(super) fn fail(self, e: &WriteError) {
        let e = e.clone();
        match self {
            Job::Create { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Job::Receive { reply, .. } | Job::Accept { reply, .. } | Job::Release { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Job::Announce { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Job::Checkpoint { reply, .. } => {
                let _ = reply.send(Err(CheckpointError::Db(e.into())));
            }
        }
    }
}

/// What one committed statement did.
pub(super) enum Written {
    /// The sagas' statement, and the creates its acceptance checks refused.
    Sagas(batch::Written, HashMap<Uuid, Refusal>),
    Flows(flow_batch::Written),
}

/// Writes `jobs` (all of one statement's kind) with that statement.
pub(super) async fn write(s: &Session, jobs: &[Job]) -> Result<Written, tokio_postgres::Error> {
    match jobs.first().map(Job::statement) {
        Some(Statement::Flows) => {
            let mut columns = flow_batch::Columns::default();
            for job in jobs {
                match job {
                    Job::Announce { announce, .. } => columns.announce(announce),
                    Job::Accept { accept, .. } => columns.accept(accept),
                    Job::Release { release, .. } => columns.release(release),
                    _ => {}
                }
            }
            flow_batch::write(&s.client, &s.flows, &columns)
                .await
                .map(Written::Flows)
        }
        _ if jobs.iter().any(Job::is_guarded) => write_guarded(s, jobs).await,
        _ => {
            let refused = HashMap::new();
            let columns = saga_columns(s, jobs, &refused);
            batch::write(&s.client, &s.statement, &columns)
                .await
                .map(|w| Written::Sagas(w, refused))
        }
    }
}

/// The sagas' statement's columns for `jobs`, leaving out the refused.
fn saga_columns(s: &Session, jobs: &[Job], refused: &HashMap<Uuid, Refusal>) -> batch::Columns {
    let mut columns = batch::Columns::owned_by(s.node_id);
    for job in jobs {
        match job {
            Job::Create { new, .. } if !refused.contains_key(&new.saga.txn_id) => {
                columns.create(new)
            }
            Job::Checkpoint { write, .. } => columns.checkpoint(write),
            Job::Receive {
                correlation_id,
                amount_cents,
                ..
            } => columns.merchant_payment(*correlation_id, *amount_cents),
            _ => {}
        }
    }
    columns
}

/// A batch with guarded creates: one transaction that takes the guards'
/// locks, decides each create (`store::guarded`), then runs the sagas'
/// statement without the refused.
async fn write_guarded(s: &Session, jobs: &[Job]) -> Result<Written, tokio_postgres::Error> {
    s.client.batch_execute("BEGIN").await?;
    let result = async {
        let candidates: Vec<guarded::Candidate<'_>> = jobs
            .iter()
            .filter_map(|job| match job {
                Job::Create { new, .. } if !new.guard.is_empty() => Some(guarded::Candidate {
                    txn_id: new.saga.txn_id,
                    key: new.request.guard_key(),
                    guard: &new.guard,
                    amount: new.saga.amount,
                }),
                _ => None,
            })
            .collect();
        let refused = guarded::decide(&s.client, &s.guarded, &candidates).await?;
        let columns = saga_columns(s, jobs, &refused);
        let written = batch::write(&s.client, &s.statement, &columns).await?;
        s.client.batch_execute("COMMIT").await?;
        Ok(Written::Sagas(written, refused))
    }
    .await;
    if result.is_err() && !s.client.is_closed() {
        let _ = s.client.batch_execute("ROLLBACK").await;
    }
    result
}

/// Answers every job from what its committed statement says: a job absent
/// from it was fenced (a stale version, a lost claim, a key or id taken).
pub(super) fn answer(jobs: impl Iterator<Item = Job>, written: &Written) {
    let empty = (HashSet::new(), HashSet::new(), HashSet::new());
    let no_refusals = HashMap::new();
    let refused = match written {
        Written::Sagas(_, refused) => refused,
        Written::Flows(_) => &no_refusals,
    };
    let (created, updated, received) = match written {
        Written::Sagas(w, _) => (
            w.created.iter().copied().collect(),
            w.updated.iter().copied().collect(),
            w.received.iter().copied().collect(),
        ),
        Written::Flows(_) => empty,
    };
    let (announced, accepted, released): (
        HashMap<Uuid, DateTime<Utc>>,
        HashSet<Uuid>,
        HashSet<Uuid>,
    ) = match written {
        Written::Flows(w) => (
            w.announced.iter().copied().collect(),
            w.accepted.iter().copied().collect(),
            w.released.iter().copied().collect(),
        ),
        Written::Sagas(..) => Default::default(),
    };
    for job in jobs {
        match job {
            Job::Create { new, reply } => {
                let outcome = if let Some(r) = refused.get(&new.saga.txn_id) {
                    CreateOutcome::Refused(r.clone())
                } else if created.contains(&new.saga.txn_id) {
                    CreateOutcome::Inserted
                } else {
                    CreateOutcome::KeyTaken
                };
                let _ = reply.send(Ok(outcome));
            }
            Job::Checkpoint { write, reply } => {
                let result = if updated.contains(&write.saga.txn_id) {
                    Ok(write.expected_version + 1)
                } else {
                    Err(CheckpointError::VersionConflict(write.expected_version))
                };
                let _ = reply.send(result);
            }
            Job::Receive {
                correlation_id,
                reply,
                ..
            } => {
                let _ = reply.send(Ok(received.contains(&correlation_id)));
            }
            Job::Announce { announce, reply } => {
                let _ = reply.send(Ok(announced.get(&announce.id).copied()));
            }
            Job::Accept { accept, reply } => {
                let _ = reply.send(Ok(accepted.contains(&accept.id)));
            }
            Job::Release { release, reply } => {
                let _ = reply.send(Ok(released.contains(&release.id)));
            }
        }
    }
}
