//! The payment processor simulator (`upi-switch processor-sim`): the processor
//! side of the "Rinha de Backend 2025" contract (`docs/processor-api.md`)
//! with its fee, delay and failure switches. It models an external party for
//! tests and demos, so its payments live in memory (a restart forgets them);
//! amounts are integer cents and every total is exact. The switch never
//! imports it: it reaches it over HTTP like any real processor.
//!
//! Layout: `ledger` (pure rules and exact decimals), `book` (the actor owning
//! the payments and the health-check clock), `http` (routes).

pub mod book;
pub mod http;
pub mod ledger;

use crate::cli::ProcessorSimArgs;
use actix::Actor;
use actix_web::{App, HttpServer, web};
use std::sync::Arc;

/// Runtime switches (configuration, changed through the admin endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub delay_ms: u64,
    pub failure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessorSimError {
    #[error("{0}")]
    BadFee(String),
    #[error("invalid settings: {0}")]
    BadSettings(String),
    #[error("cannot listen on {addr}: {reason} (is another process using that port?)")]
    Bind { addr: String, reason: String },
    #[error("server error: {0}")]
    Server(String),
}

/// Runs a simulated processor until the process is stopped.
pub async fn run(args: ProcessorSimArgs) -> Result<(), ProcessorSimError> {
    let fee = ledger::Fee::parse(&args.fee).map_err(ProcessorSimError::BadFee)?;
    if args.token.is_empty() {
        return Err(ProcessorSimError::BadSettings(
            "--token must not be empty".into(),
        ));
    }
    if args.delay_ms > http::MAX_DELAY_MS {
        return Err(ProcessorSimError::BadSettings(format!(
            "--delay-ms must be at most {}",
            http::MAX_DELAY_MS
        )));
    }
    let (settings, _) = tokio::sync::watch::channel(Settings {
        delay_ms: args.delay_ms,
        failure: args.failure,
    });
    let state = http::SimState {
        book: book::PaymentBook::default().start(),
        settings: Arc::new(settings),
        token: args.token.clone(),
        fee,
    };
    let addr = std::net::SocketAddr::new(args.host, args.port);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::PayloadConfig::new(16 * 1024))
            .configure(http::config)
            .default_service(web::to(http::not_found))
    })
    .workers(2)
    .backlog(4096)
    .bind(addr)
    .map_err(|e| ProcessorSimError::Bind {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    for bound in server.addrs() {
        // Machine-readable line for scripts and tests that start us with --port 0.
        println!("LISTENING {bound}");
    }
    tracing::info!(addrs = ?server.addrs(), fee = %fee.text(), "payment processor simulator listening");
    server
        .run()
        .await
        .map_err(|e| ProcessorSimError::Server(e.to_string()))
}
