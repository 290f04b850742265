//! The living system: actors that own state and talk by messages.
//!
//! - `TxnRegistry` starts, bounds and resumes `TransactionActor`s.
//! - `TransactionActor` interprets one saga: checkpoint, then bank calls.
//! - `BankDirectory` owns the registered banks' endpoint clients.
//!
//! No actor shares mutable business state with another; no `Arc<Mutex<…>>`.

pub mod bank_directory;
pub mod registry;
pub mod transaction;
