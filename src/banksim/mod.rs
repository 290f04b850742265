//! The bank simulator (`upi-switch bank-sim`): a bank adapter that implements
//! Bank API v1 completely, with its ledger in Postgres and injectable faults.
//! It is a test and demo tool beside the switch, not part of it: the switch
//! only ever reaches it through `adapters::bank_client`, like any other bank.
//!
//! Layout: `ledger` (pure rules), `writer` (the single writer that batches:
//! queue, group commit, reload), `op_index` (which op ids may exist, so a
//! batch of new ops reads nothing first), `sql` (the writer's prepared
//! statements), `store` (seeding and the read side), `faults` (fault settings
//! and gate), `http` (routes).

pub mod faults;
pub mod http;
pub mod ledger;
pub mod op_index;
pub mod sql;
pub mod store;
pub mod writer;

use crate::adapters::pg::{self, DbError, DbUrl, Schema};
use crate::cli::BankSimArgs;
use crate::domain::BankCode;
use actix_web::{App, HttpServer, web};
use std::sync::Arc;
use store::{BankStore, SeedAccount};
use writer::{StartError, Writer};

#[derive(Debug, thiserror::Error)]
pub enum BankSimError {
    #[error("invalid --code {0:?}: a bank code is 2-12 of A-Z and 0-9")]
    BadCode(String),
    #[error("cannot read accounts file {path}: {reason}")]
    AccountsFile { path: String, reason: String },
    #[error("invalid fault settings: {0}")]
    BadFaults(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}: {reason} (is another process using that port?)")]
    Bind { addr: String, reason: String },
    #[error("server error: {0}")]
    Server(String),
}

fn seed_list(args: &BankSimArgs) -> Result<Vec<SeedAccount>, BankSimError> {
    if let Some(path) = &args.accounts {
        let err = |reason: String| BankSimError::AccountsFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let list: Vec<SeedAccount> = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        for a in &list {
            if a.account.is_empty() || a.account.len() > 64 {
                return Err(err(format!(
                    "account {:?} must be 1-64 characters",
                    a.account
                )));
            }
            if a.status != "ACTIVE" && a.status != "FROZEN" {
                return Err(err(format!(
                    "account {}: status must be ACTIVE or FROZEN",
                    a.account
                )));
            }
        }
        return Ok(list);
    }
    let n = args.seed_accounts.unwrap_or(0);
    let width = n.to_string().len().max(3);
    Ok((1..=n)
        .map(|i| SeedAccount {
            account: format!("ACC{i:0width$}"),
            name: format!("Customer {i}"),
            balance_paise: args.balance_paise,
            status: "ACTIVE".into(),
        })
        .collect())
}

/// Runs a simulated bank until the process is stopped.
pub async fn run(args: BankSimArgs) -> Result<(), BankSimError> {
    let code = BankCode::parse(&args.code)
        .ok_or_else(|| BankSimError::BadCode(args.code.clone()))?
        .to_string();
    let initial = faults::Faults {
        latency_ms: args.latency_ms,
        jitter_ms: args.jitter_ms,
        error_rate: args.error_rate,
        lost_reply_rate: args.lost_reply_rate,
        hang: args.hang,
        max_hang_ms: args.max_hang_ms,
        down: args.down,
    };
    initial.validate().map_err(BankSimError::BadFaults)?;
    let seeds = seed_list(&args)?;
    let pool = pg::prepare(&args.database_url, Schema::Bank, 16).await?;
    let store = BankStore {
        pool,
        code: code.clone(),
    };
    let seeded = store.seed_if_empty(&seeds).await?;
    if seeded > 0 {
        tracing::info!(bank = %code, seeded, "seeded accounts");
    }
    let writer = Writer::start(DbUrl::parse(&args.database_url)?, code.clone()).await?;
    // One listener per endpoint of this bank, all on the same ledger and
    // writer; each endpoint has its own faults (so one can brown out alone).
    let ports: Vec<u16> = std::iter::once(args.port)
        .chain(args.extra_port.iter().copied())
        .collect();
    let mut servers = Vec::new();
    for port in ports {
        let (faults_tx, faults_rx) = tokio::sync::watch::channel(initial.clone());
        let state = http::BankState {
            initial_faults: initial.clone(),
            code: code.clone(),
            store: store.clone(),
            writer: writer.clone(),
            faults_tx: Arc::new(faults_tx),
            faults: faults_rx,
        };
        let addr = std::net::SocketAddr::new(args.host, port);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(web::PayloadConfig::new(64 * 1024))
                .configure(http::config)
                .default_service(web::to(http::not_found))
        })
        .workers(args.workers.max(1))
        // HTTP/1.1, and HTTP/2 over cleartext for clients that know to use it.
        .bind_auto_h2c(addr)
        .map_err(|e| BankSimError::Bind {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        for bound in server.addrs() {
            // Machine-readable line for scripts and tests that start us with --port 0.
            println!("LISTENING {bound}");
        }
        tracing::info!(bank = %code, addrs = ?server.addrs(), "bank simulator listening");
        servers.push(server.run());
    }
    for result in futures::future::join_all(servers).await {
        result.map_err(|e| BankSimError::Server(e.to_string()))?;
    }
    Ok(())
}
