//! What the writer is asked to make durable (`Job`), which statement writes
//! each kind (the sagas' `adapters::store::batch`, merchant forwarding's
//! `merchant::flow_batch`), and how a committed statement answers each job.

use super::{Session, WriteError};
use crate::adapters::store::batch;
use crate::adapters::store::{CheckpointError, CheckpointWrite, NewTxn};
use crate::merchant::flow_batch::{self, Accept, Announce, Release};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use tokio::sync::oneshot;
use uuid::Uuid;

/// What a create did inside the writer (the lookup of an existing key is the
/// caller's: the writer never reads on behalf of one job).
pub(super) enum CreateOutcome {
    Inserted,
    KeyTaken,
}

pub(super) enum Job {
    Create {
        new: NewTxn,
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
    Sagas(batch::Written),
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
        _ => {
            let mut columns = batch::Columns::owned_by(s.node_id);
            for job in jobs {
                match job {
                    Job::Create { new, .. } => columns.create(new),
                    Job::Checkpoint { write, .. } => columns.checkpoint(write),
                    Job::Receive {
                        correlation_id,
                        amount_cents,
                        ..
                    } => columns.merchant_payment(*correlation_id, *amount_cents),
                    _ => {}
                }
            }
            batch::write(&s.client, &s.statement, &columns)
                .await
                .map(Written::Sagas)
        }
    }
}

/// Answers every job from what its committed statement says: a job absent
/// from it was fenced (a stale version, a lost claim, a key or id taken).
pub(super) fn answer(jobs: impl Iterator<Item = Job>, written: &Written) {
    let empty = (HashSet::new(), HashSet::new(), HashSet::new());
    let (created, updated, received) = match written {
        Written::Sagas(w) => (
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
        Written::Sagas(_) => Default::default(),
    };
    for job in jobs {
        match job {
            Job::Create { new, reply } => {
                let outcome = if created.contains(&new.saga.txn_id) {
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
