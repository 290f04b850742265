//! upi-switch: a real-time payment switch in the style of UPI.
//!
//! # Layout
//! - `domain`   — pure vocabulary: `Paise`, `Vpa`, `BankCode`, op ids.
//! - `saga`     — the pure P2P saga state machine: `(state, event) -> (state, commands)`.
//! - `actors`   — the living system: `TxnRegistry`, `TransactionActor`, `CheckpointWriter`,
//!   the bank supervision tree, `OutboxRelay`.
//! - `http`     — actix-web handlers of the switch API (`docs/api.md`).
//! - `adapters` — Postgres, the Bank API v1 client and wire types.
//! - `banksim`  — the bank simulator (`upi-switch bank-sim`), a separate tool.
//! - `merchant` — merchant payment forwarding to two payment processors (the
//!   "Rinha de Backend 2025" contract): HTTP, Postgres, adapter actors, routing.
//! - `processor_sim` — a payment processor simulator (`upi-switch processor-sim`), a separate tool.
//! - `events`   — the domain events of a transaction (outbox rows, AMQP messages, SSE).
//! - `settlement` — the ledger's windows and netting, the window ticker, reconciliation
//!   against the banks' change feeds, `upi-switch settlement …`.
//! - `verify`   — `upi-switch verify`: the switch's transactions against the banks' feeds.
//! - `loadgen`  — the open-loop load generator (`upi-switch loadgen`), a client tool.
//! - `traffic`  — the client side of the switch API shared by `demo` and `loadgen`.
//! - `contest`  — the Rinha final test as data and arithmetic (schedule, checks, score).
//! - `rig`      — one local deployment (banks, switch, databases) for `demo`, `bench` and `chaos/`.
//! - `bench`    — `upi-switch bench`: load at several rates, CPU per saga for every component.
//! - `analytics` — events → raw store → clean store → daily summaries (`upi-switch analytics`,
//!   `serve --analytics`), served at `/v1/analytics/*`.
//! - `cli`, `telemetry`, `demo` — process entry concerns.
//!
//! Dependencies point one way: http → actors → saga/domain, and actors → adapters.
//! `saga` and `domain` import no actix, tokio, SQL or HTTP.

pub mod actors;
pub mod adapters;
pub mod analytics;
pub mod auth;
pub mod banksim;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod contest;
pub mod demo;
pub mod domain;
pub mod events;
pub mod http;
pub mod loadgen;
pub mod merchant;
pub mod metrics;
pub mod processor_sim;
pub mod rig;
pub mod saga;
pub mod serve;
pub mod settlement;
pub mod telemetry;
pub mod traffic;
pub mod verify;
