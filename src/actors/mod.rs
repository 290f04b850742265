//! The living system: actors that own state and talk by messages.
//!
//! - `TxnRegistry` starts, bounds and resumes `TransactionActor`s.
//! - `TransactionActor` interprets one saga: checkpoint, then bank calls.
//! - `BankRouter` maps bank codes to their `BankHealthSupervisor`.
//! - `BankHealthSupervisor` (one per bank) starts, restarts, probes and ranks
//!   its `PspAdapterActor`s (one per endpoint: breaker, bulkhead, statistics).
//! - `CheckpointWriter` group-commits every saga write (creates and
//!   checkpoints) and answers each when its batch is durable.
//! - `OutboxRelay` publishes the outbox's domain events to RabbitMQ;
//!   `dead_letters` (a task of its session) reads the dead-letter queue's depth.
//! - `collect_expiry` (a task, not an actor: it has no messages) writes
//!   expired collect requests down.
//!
//! No actor shares mutable business state with another; no `Arc<Mutex<…>>`.

pub mod bank_router;
pub mod bank_supervisor;
pub mod checkpoint_writer;
pub mod collect_expiry;
pub mod dead_letters;
pub mod health_history;
pub mod outbox_relay;
pub mod psp_adapter;
pub mod registry;
pub mod transaction;
