//! `upi-switch demo`: the README's first command. This module owns the show,
//! not the deployment: the rig (`crate::rig`) starts two simulated banks
//! (HDFC, ICICI) and the switch as child processes of this very executable
//! and registers the banks, 60 people's VPAs and 4 merchants'; the demo then
//! sends a burst of payments of every type (`--mix`, [`send`]: P2P, P2M to
//! the merchants, collect requests approved, refunds of earlier payments)
//! measured from the client's side (accept and end-to-end latency,
//! throughput, HTTP errors), prints a summary ([`summary`]) by status and by
//! type with a money check (the sum over both banks is the same before and
//! after, and each ledger moved exactly as the `SUCCESS` transactions say),
//! and then — unless `--exit` — keeps the rig serving until Ctrl-C. The
//! switch runs the analytics ingest (`serve --analytics`), and the summary
//! ends with today's numbers from the analytics API ([`analytics`]).
//!
//! The rig is torn down whenever the demo ends, however it ends (error,
//! Ctrl-C/SIGTERM, panic). The demo's own logs and the services' go to files
//! in a fresh temporary directory, so the terminal shows only progress and the
//! summary. Running it twice against the same databases works: the banks keep
//! the ledgers of the first run, every payment has a fresh idempotency key,
//! and only this run's transactions are counted.

mod analytics;
mod send;
mod summary;

use crate::adapters::bank_client::BankClient;
use crate::cli::{DemoArgs, LogFormat};
use crate::loadgen::mix::Mix;
use crate::rig::layout::{Account, BANKS, Kind};
use crate::rig::process::Mode;
use crate::rig::{Databases, Rig, RigConfig};
use crate::traffic::{self, Counters, Kinds, Poll, shutdown_signal, transport_text};
use futures::StreamExt;
use send::{Ctx, Outcome, follow_one, plan, show_progress};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use summary::Summary;
use tokio::sync::watch;

/// Switch flags the rig sets itself (the demo's others go on to `serve`).
pub const RIG_SETS: &[&str] = &["database_url", "listen", "admin_token", "analytics"];

/// Accounts (and VPAs) per bank: `ACC001`… ↔ `user001@hdfc`…
const ACCOUNTS_PER_BANK: usize = 30;
/// Accounts `ACC025`–`ACC027` are frozen: payments to them end `REVERSED`.
const FROZEN: std::ops::RangeInclusive<usize> = 25..=27;
/// Accounts `ACC028`–`ACC030` hold ₹1.00: payments from them end `FAILED`.
const POOR: std::ops::RangeInclusive<usize> = 28..=30;
/// Merchants per bank (`ACC031`… ↔ `shop1@hdfc`…), what P2M payments go to.
const MERCHANT_NAMES: [&str; 2] = ["Chai Point", "Kirana Mart"];
const RICH_BALANCE_PAISE: i64 = 5_000_000; // ₹50,000.00
const POOR_BALANCE_PAISE: i64 = 100; // ₹1.00
/// Share of payments sent to a frozen payee (→ REVERSED, PAYEE_ACCOUNT_FROZEN).
const FROZEN_SHARE: f64 = 0.08;
/// Share of payments sent from a poor payer (→ FAILED, INSUFFICIENT_FUNDS).
const POOR_SHARE: f64 = 0.07;
/// Ordinary payments: ₹1.00 to ₹500.00, so a ₹50,000 balance lasts many runs.
const AMOUNT_PAISE: std::ops::RangeInclusive<i64> = 100..=50_000;
/// Payments from poor payers always exceed their ₹1.00.
const POOR_AMOUNT_PAISE: std::ops::RangeInclusive<i64> = 1_000..=50_000;

/// How long one transaction is followed before it is reported still `PENDING`.
const FOLLOW_LIMIT: Duration = Duration::from_secs(120);
/// How each transaction is followed: `?wait=` of each status poll, slack, pause after a failure.
const POLL: Poll = Poll {
    wait: Duration::from_secs(10),
    slack: Duration::from_secs(15),
    pause: Duration::from_millis(250),
};
/// Attempts of one `POST /v1/transactions` (same idempotency key) on 429/5xx/transport errors.
const POST_ATTEMPTS: u32 = 6;
/// How long the demo waits for sagas left by an earlier run before it measures balances.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

const FIRST_NAMES: [&str; 15] = [
    "Aarav",
    "Priya",
    "Rohan",
    "Ananya",
    "Vikram",
    "Meera",
    "Arjun",
    "Kavya",
    "Siddharth",
    "Ishita",
    "Kabir",
    "Nisha",
    "Aditya",
    "Lakshmi",
    "Farhan",
];
const LAST_NAMES: [&str; 8] = [
    "Sharma", "Iyer", "Reddy", "Banerjee", "Patel", "Khan", "Menon", "Gill",
];
const NOTES: [&str; 6] = [
    "chai",
    "rent",
    "dinner",
    "auto fare",
    "groceries",
    "movie tickets",
];

type DemoResult<T> = Result<T, String>;

/// Runs the demo. `serve_args` are the switch flags given on its command line;
/// `log_format` applies to the log file of this process.
pub async fn run(
    args: DemoArgs,
    serve_args: Vec<String>,
    databases: DemoDatabases,
    log_format: LogFormat,
) -> DemoResult<()> {
    let concurrency = args.concurrency.max(1);
    let mix = Mix::parse(&args.mix)?;
    if args.transactions == 0 {
        return Err("--transactions must be at least 1".into());
    }
    if args.bank_port == u16::MAX {
        return Err(
            "--bank-port must leave room for a second port (ICICI uses --bank-port + 1)".into(),
        );
    }
    // A taken --listen port is found out first, before any child is started.
    if args.switch.listen.port() != 0 {
        std::net::TcpListener::bind(args.switch.listen).map_err(|e| {
            format!(
                "cannot listen on {}: {e} (is another process using that port? pick another with --listen, \
                 or --listen 127.0.0.1:0 for a free one)",
                args.switch.listen
            )
        })?;
    }
    let dir = std::env::temp_dir().join(format!(
        "upi-switch-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the demo's directory {}: {e}", dir.display()))?;
    init_logging(&dir.join("demo.log"), log_format)?;

    // Ctrl-C / SIGTERM, observed by every phase below.
    let (stop_tx, mut stop) = watch::channel(None::<&'static str>);
    actix_web::rt::spawn(async move {
        let name = shutdown_signal().await;
        let _ = stop_tx.send(Some(name));
    });

    eprintln!("upi-switch demo: logs in {}", dir.display());

    // 1. The rig: ledgers and switch databases (migrated once), both banks, the
    //    switch, the registrations, both banks UP.
    let people = people();
    let cfg = RigConfig {
        bin: crate::rig::current_bin().map_err(|e| e.to_string())?,
        dir: dir.clone(),
        prog: "upi-switch demo".into(),
        mode: Mode::Attached,
        databases: match databases {
            DemoDatabases::Fresh => Databases::Fresh {
                pg: server_of(&args.switch.database_url),
                prefix: "upi_demo".into(),
            },
            DemoDatabases::Named => Databases::Given {
                switch: args.switch.database_url.clone(),
                banks: args.bank_database_url.clone(),
            },
        },
        accounts: people.clone(),
        hdfc_endpoints: 1,
        bank_port: args.bank_port,
        switch_listen: args.switch.listen,
        nodes: 1,
        bank_latency_ms: 0,
        bank_http2: false,
        processors: false,
        db_pool_size: None,
        admin_token: args.switch.admin_token.clone(),
        // The analytics ingest runs in the switch: the summary ends with it.
        serve_args: serve_args
            .into_iter()
            .chain(["--analytics".to_string()])
            .collect(),
        rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        verbose: false,
    };
    let mut rig = guard(&mut stop, async {
        Rig::start(cfg).await.map_err(|e| {
            let hint = if args.bank_port != 0 && e.to_string().contains("cannot listen") {
                " (try --bank-port 0 to pick free ports)"
            } else {
                ""
            };
            format!("{e}{hint}")
        })
    })
    .await?;
    let logs = dir.join("logs");
    match databases {
        DemoDatabases::Fresh => eprintln!(
            "  databases  {}, {}  (fresh; dropped at exit)",
            rig.switch_db_name, rig.bank_db_name
        ),
        DemoDatabases::Named => eprintln!(
            "  databases  {}, {}  (as named; kept at exit: what earlier runs left in them stays)",
            rig.switch_db, rig.bank_db
        ),
    }
    for bank in &rig.banks {
        eprintln!(
            "  bank {:<5} {}  (log: {}/{}.log)",
            bank.code,
            bank.urls.join(" "),
            logs.display(),
            bank.service
        );
    }
    let switch_url = rig.switch_url.clone();
    eprintln!(
        "  switch     {switch_url}  (log: {}/switch.log)",
        logs.display()
    );
    eprintln!(
        "  registered {} banks and {} VPAs ({} of them merchants, MCC {})",
        BANKS.len(),
        people.len(),
        people.iter().filter(|p| p.kind == Kind::Merchant).count(),
        crate::loadgen::mix::MERCHANT_MCC
    );
    let bank_urls: Vec<String> = rig.banks.iter().map(|b| b.urls[0].clone()).collect();

    let http = traffic::operator_client(
        Duration::from_secs(30),
        concurrency + 8,
        rig.cfg.admin_token.as_deref(),
    )
    .map_err(|e| format!("cannot build an HTTP client: {e}"))?;

    // 2. A quiet switch, then the balances before.
    if let Err(why) = guard(&mut stop, async { Ok(wait_idle(&http, &switch_url).await) }).await? {
        eprintln!("  note: {why}; the money check may be off by transactions of an earlier run");
    }
    let before = guard(&mut stop, read_ledgers(&http, &bank_urls)).await?;
    for warning in seed_warnings(&before, &people) {
        eprintln!("  note: {warning}");
    }

    // 3. Traffic.
    let plans = plan(&people, args.transactions, &mix);
    eprintln!(
        "  sending {} payments (mix {mix}), {concurrency} at a time",
        plans.len()
    );
    let ctx = Ctx {
        http: &http,
        signer: rig.client_key.as_ref(),
        switch_url: &switch_url,
        people: &people,
        progress: Counters::default(),
        errors: Kinds::default(),
        originals: std::sync::Mutex::new((
            crate::loadgen::mix::Originals::new(10_000),
            Default::default(),
        )),
    };
    let traffic_started = Instant::now();
    let outbox = OutboxWatch::start(http.clone(), switch_url.clone());
    let outcomes = guard(&mut stop, async {
        let traffic = futures::stream::iter(plans.iter())
            .map(|p| follow_one(&ctx, p))
            .buffer_unordered(concurrency)
            .collect::<Vec<Outcome>>();
        tokio::pin!(traffic);
        let tty = std::io::stderr().is_terminal();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                outcomes = &mut traffic => {
                    show_progress(&ctx.progress, plans.len(), traffic_started.elapsed(), tty, true);
                    return Ok(outcomes);
                }
                _ = tick.tick() => show_progress(&ctx.progress, plans.len(), traffic_started.elapsed(), tty, false),
            }
        }
    })
    .await?;
    let traffic_elapsed = traffic_started.elapsed();

    // 4. Balances after, and the summary.
    if let Err(why) = guard(&mut stop, async { Ok(wait_idle(&http, &switch_url).await) }).await? {
        eprintln!("  note: {why}");
    }
    let after = guard(&mut stop, read_ledgers(&http, &bank_urls)).await?;
    let errors = ctx.errors.snapshot();
    let summary = Summary::new(
        &outcomes,
        &errors,
        traffic_elapsed,
        concurrency,
        &before,
        &after,
        &people,
    );
    println!("{}", summary.render());
    println!("{}", outbox.finish().await);
    println!("{}", supervisor_health(&http, &switch_url).await);
    println!("{}", analytics::today(&http, &switch_url).await);
    let verdict = summary.verdict();

    // 5. Keep serving until Ctrl-C, unless told to exit.
    if !args.exit {
        println!();
        println!(
            "{}",
            how_to_look(
                &switch_url,
                &bank_urls,
                &summary,
                &dir,
                rig.cfg.admin_token.as_deref(),
                rig.client_key.is_some(),
            )
        );
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.wait_for(Option::is_some) => {
                    eprintln!("\nupi-switch demo: stopping the switch and the banks");
                    break;
                }
                _ = check.tick() => if let Some(service) = rig.exited() {
                    rig.teardown().map_err(|e| e.to_string())?;
                    return Err(format!("the {service} stopped; the rest was stopped too"));
                },
            }
        }
    }
    rig.teardown().map_err(|e| e.to_string())?;
    verdict
}

/// Which databases the demo runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoDatabases {
    /// `upi_demo_<random>_switch` and `…_banks`, on the server of the
    /// (default) switch database URL, dropped at exit.
    Fresh,
    /// The URLs given by flag or environment, created if missing and kept.
    Named,
}

/// `postgres://user@host:port` of a database URL (its database name dropped).
fn server_of(url: &str) -> String {
    let without_query = url.split('?').next().unwrap_or(url);
    match without_query.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => server.into(),
        _ => without_query.trim_end_matches('/').into(),
    }
}

/// Logs of this process go to a file: the terminal is for the summary.
fn init_logging(path: &Path, format: LogFormat) -> DemoResult<()> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create log file {}: {e}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file));
    // Already initialised (e.g. in a test process): keep the first.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// Runs `work` unless a stop signal comes first.
async fn guard<T>(
    stop: &mut watch::Receiver<Option<&'static str>>,
    work: impl Future<Output = DemoResult<T>>,
) -> DemoResult<T> {
    tokio::select! {
        result = work => result,
        signal = stop.wait_for(Option::is_some) => {
            let name = signal.ok().and_then(|s| *s).unwrap_or("a signal");
            Err(format!("interrupted by {name}; the switch and the banks were stopped"))
        }
    }
}

// ---------------------------------------------------------------------------
// People: accounts, VPAs and what each one is for
// ---------------------------------------------------------------------------

/// The demo's accounts: `user001@hdfc`…, ordinary ones rich, the last six
/// of each bank frozen or poor, then two merchants per bank (`shop1@hdfc`…).
pub(super) fn people() -> Vec<Account> {
    let mut list = Vec::new();
    for (b, bank) in BANKS.iter().enumerate() {
        for i in 1..=ACCOUNTS_PER_BANK {
            let kind = if FROZEN.contains(&i) {
                Kind::Frozen
            } else if POOR.contains(&i) {
                Kind::Poor
            } else {
                Kind::Ordinary
            };
            let n = b * ACCOUNTS_PER_BANK + i;
            list.push(Account {
                bank: b,
                account: format!("ACC{i:03}"),
                vpa: format!("user{i:03}@{}", bank.psp),
                name: format!(
                    "{} {}",
                    FIRST_NAMES[n % FIRST_NAMES.len()],
                    LAST_NAMES[(n / 3) % LAST_NAMES.len()]
                ),
                balance_paise: if kind == Kind::Poor {
                    POOR_BALANCE_PAISE
                } else {
                    RICH_BALANCE_PAISE
                },
                kind,
            });
        }
        for (k, name) in MERCHANT_NAMES.iter().enumerate() {
            list.push(Account {
                bank: b,
                account: format!("ACC{:03}", ACCOUNTS_PER_BANK + k + 1),
                vpa: format!("shop{}@{}", k + 1, bank.psp),
                name: (*name).to_string(),
                balance_paise: RICH_BALANCE_PAISE,
                kind: Kind::Merchant,
            });
        }
    }
    list
}

// ---------------------------------------------------------------------------
// The switch over HTTP
// ---------------------------------------------------------------------------

/// Waits (bounded) until the switch runs no saga and has none waiting, as seen
/// twice in a row. `Err` says what is still going on.
async fn wait_idle(http: &reqwest::Client, switch: &str) -> Result<(), String> {
    let deadline = Instant::now() + IDLE_LIMIT;
    let mut quiet = 0;
    let mut last = String::from("the switch's /readyz did not answer");
    loop {
        match http.get(format!("{switch}/readyz")).send().await {
            Ok(resp) => {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let sagas = &body["checks"]["sagas"];
                let in_flight = sagas["in_flight"].as_u64();
                let backlog = sagas["backlog"].as_u64();
                if in_flight == Some(0) && backlog == Some(0) {
                    quiet += 1;
                    if quiet >= 2 {
                        return Ok(());
                    }
                } else {
                    quiet = 0;
                    last = match (in_flight, backlog) {
                        (Some(i), Some(b)) => {
                            format!("the switch still runs {i} saga(s) with {b} waiting")
                        }
                        _ => format!("the switch is not ready: {body}"),
                    };
                }
            }
            Err(e) => last = format!("the switch's /readyz failed: {}", transport_text(&e)),
        }
        if Instant::now() >= deadline {
            return Err(format!("{last} after {} s", IDLE_LIMIT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A bank's ledger as `GET /admin/balances` shows it.
struct Ledger {
    total: i64,
    /// account → (balance in paise, status)
    accounts: BTreeMap<String, (i64, String)>,
}

async fn read_ledgers(http: &reqwest::Client, bank_urls: &[String]) -> DemoResult<Vec<Ledger>> {
    let mut ledgers = Vec::new();
    for (bank, url) in BANKS.iter().zip(bank_urls) {
        let code = bank.code;
        let what = format!("reading {code}'s balances ({url}/admin/balances)");
        let bank = BankClient::new(http.clone(), url, Duration::from_secs(30));
        let balances = match bank.balances().await {
            Ok(Some(b)) => b,
            Ok(None) => return Err(format!("{what}: 404")),
            Err(e) => return Err(format!("{what}: {e}")),
        };
        let accounts = balances
            .accounts
            .into_iter()
            .map(|a| (a.account, (a.balance_paise, a.status)))
            .collect();
        ledgers.push(Ledger {
            total: balances.total_paise,
            accounts,
        });
    }
    Ok(ledgers)
}

/// Differences between the ledgers found and the demo's seed (a database
/// seeded by something else): the demo still runs, but says so.
fn seed_warnings(ledgers: &[Ledger], people: &[Account]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (bank, ledger) in BANKS.iter().zip(ledgers) {
        let code = bank.code;
        let mut odd = Vec::new();
        for p in people.iter().filter(|p| p.bank().code == code) {
            let want = if p.kind == Kind::Frozen {
                "FROZEN"
            } else {
                "ACTIVE"
            };
            match ledger.accounts.get(&p.account) {
                None => odd.push(format!("{} missing", p.account)),
                Some((_, status)) if status != want => {
                    odd.push(format!("{} is {status}", p.account))
                }
                Some((balance, _))
                    if p.kind == Kind::Poor && *balance >= *POOR_AMOUNT_PAISE.start() =>
                {
                    odd.push(format!("{} is not poor", p.account))
                }
                Some((balance, _))
                    if p.kind == Kind::Ordinary && *balance < *AMOUNT_PAISE.end() * 10 =>
                {
                    odd.push(format!("{} is nearly empty", p.account))
                }
                _ => {}
            }
        }
        if !odd.is_empty() {
            odd.truncate(5);
            warnings.push(format!(
                "bank {code}'s ledger differs from the demo's seed ({}); some payments may end differently \
                 (use a fresh --bank-database-url for a clean run)",
                odd.join(", ")
            ));
        }
    }
    warnings
}

/// The supervisors' view (`GET /v1/ops/banks`), one line per endpoint.
/// Samples `GET /v1/ops/outbox` while traffic runs: how far domain events
/// trail their checkpoints under the demo's load.
struct OutboxWatch {
    http: reqwest::Client,
    switch: String,
    worst: Arc<Mutex<(i64, f64, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl OutboxWatch {
    const EVERY: Duration = Duration::from_millis(200);

    fn start(http: reqwest::Client, switch: String) -> OutboxWatch {
        let worst = Arc::new(Mutex::new((0i64, 0f64, 0u64)));
        let (h, s, w) = (http.clone(), switch.clone(), worst.clone());
        let task = tokio::spawn(async move {
            loop {
                if let Some(o) = outbox_status(&h, &s).await
                    && let Ok(mut w) = w.lock()
                {
                    w.0 = w.0.max(o["pending"].as_i64().unwrap_or(0));
                    w.1 = w.1.max(o["lag_seconds"].as_f64().unwrap_or(0.0));
                    w.2 += 1;
                }
                tokio::time::sleep(Self::EVERY).await;
            }
        });
        OutboxWatch {
            http,
            switch,
            worst,
            task,
        }
    }

    /// Stops sampling, waits (up to 30 s) for the outbox to drain, and says how it went.
    async fn finish(self) -> String {
        self.task.abort();
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(o) = outbox_status(&self.http, &self.switch).await {
                last = o;
                if last["pending"] == 0 {
                    break;
                }
            }
            tokio::time::sleep(Self::EVERY).await;
        }
        let (pending, lag, samples) = self.worst.lock().map(|w| *w).unwrap_or_default();
        format!(
            "== events (GET /v1/ops/outbox) ==\n\
             published to RabbitMQ:        {}  (still pending: {})\n\
             during traffic:               max {pending} pending, max lag {:.0} ms ({samples} samples every {} ms)",
            last["published"].as_u64().unwrap_or(0),
            last["pending"].as_i64().unwrap_or(-1),
            lag * 1000.0,
            Self::EVERY.as_millis(),
        )
    }
}

async fn outbox_status(http: &reqwest::Client, switch: &str) -> Option<Value> {
    let resp = http
        .get(format!("{switch}/v1/ops/outbox"))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

async fn supervisor_health(http: &reqwest::Client, switch: &str) -> String {
    let body: Value = match http.get(format!("{switch}/v1/ops/banks")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => return format!("bank health: unavailable ({})", transport_text(&e)),
    };
    let mut out = vec!["== bank health (GET /v1/ops/banks) ==".to_string()];
    for bank in body["banks"].as_array().into_iter().flatten() {
        out.push(format!(
            "{:<30}{}",
            format!("bank {}:", bank["code"].as_str().unwrap_or("?")),
            bank["health"].as_str().unwrap_or("?")
        ));
        for e in bank["endpoints"].as_array().into_iter().flatten() {
            out.push(format!(
                "  {:<28}circuit {}  success {:.1}%  p50 {:.1} ms  p99 {:.1} ms  in flight {}",
                e["url"].as_str().unwrap_or("?"),
                e["circuit"].as_str().unwrap_or("?"),
                e["success_rate"].as_f64().unwrap_or(0.0) * 100.0,
                e["latency_ms_p50"].as_f64().unwrap_or(0.0),
                e["latency_ms_p99"].as_f64().unwrap_or(0.0),
                e["in_flight"].as_u64().unwrap_or(0)
            ));
        }
    }
    out.join("\n")
}

fn how_to_look(
    switch: &str,
    bank_urls: &[String],
    summary: &Summary,
    dir: &Path,
    token: Option<&str>,
    signed: bool,
) -> String {
    let txn = summary.sample_txn.as_deref().unwrap_or("<txn_id>");
    let bearer = token.map_or(String::new(), |t| {
        format!(" -H 'Authorization: Bearer {t}'")
    });
    let mut lines = vec![
        format!(
            "The switch is still running at {switch} (Ctrl-C stops it and the banks). Look around:"
        ),
        format!(
            "  # the operators' console (sign in with the operator token{}): {switch}/console",
            token.map_or(String::new(), |t| format!(" {t}"))
        ),
        format!("  # the API's reference (OpenAPI, Swagger UI): {switch}/docs"),
        "  # operators' view (the demo's operator token):".to_string(),
        format!("  curl -s{bearer} {switch}/v1/ops/banks"),
        format!("  curl -s{bearer} '{switch}/v1/ops/audit?limit=5'"),
        format!("  curl -s {switch}/metrics | grep '^upi_'"),
        format!("  curl -s {switch}/readyz"),
    ];
    if signed {
        let key = dir.join("client.json");
        lines.extend([
            format!(
                "  # client calls are signed; the demo's client key is {} — e.g. a minute of payments:",
                key.display()
            ),
            format!(
                "  upi-switch loadgen --switch {switch} --key-file {} --vpa {} --vpa user001@hdfc --rate 5 --duration 60s",
                key.display(),
                summary.sample_vpa
            ),
            format!("  # (the last payment the demo made: {txn})"),
        ]);
    } else {
        lines.extend([
            format!("  curl -s {switch}/v1/transactions/{txn}"),
            format!(
                "  curl -s -X POST {switch}/v1/vpa/validate --json '{{\"vpa\":\"{}\"}}'",
                summary.sample_vpa
            ),
        ]);
    }
    for (bank, url) in BANKS.iter().zip(bank_urls) {
        lines.push(format!(
            "  curl -s {url}/admin/balances      # {}",
            bank.code
        ));
    }
    lines.push(format!("Logs: {}", dir.display()));
    lines.join("\n")
}
