//! Command-line interface: one subcommand per mode, each flag with an
//! environment fallback where a deployment would set it. Parsing only; `main`
//! dispatches to one plain function per mode.

use crate::domain::Paise;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SWITCH_DB: &str = "postgres://postgres@127.0.0.1:5432/upi_switch";
pub const DEFAULT_BANK_DB: &str = "postgres://postgres@127.0.0.1:5432/upi_bank";

#[derive(Parser, Debug)]
#[command(
    name = "upi-switch",
    version,
    about = "A real-time payment switch in the style of UPI: sagas as actors, checkpointed to Postgres"
)]
pub struct Cli {
    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// What the rate limiter does when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WhenRedisDown {
    Allow,
    Deny,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the switch: HTTP API, saga actors, resumption of unfinished transactions.
    Serve(ServeArgs),
    /// Apply database migrations (the switch's, or a bank simulator's with --bank) and exit.
    Migrate(MigrateArgs),
    /// Run a simulated bank speaking Bank API v1, with its ledger in Postgres.
    BankSim(BankSimArgs),
    /// Start two simulated banks and the switch, send traffic, print a summary, keep serving.
    Demo(DemoArgs),
    /// Run a payment processor simulator (the "Rinha de Backend 2025" processor contract, in memory).
    ProcessorSim(ProcessorSimArgs),
    /// Check the switch's transactions against every registered bank's change feed and the
    /// money across banks. Exit 0: all agree; 1: violations; 2: could not check.
    Verify(VerifyArgs),
    /// Send P2P payments to a running switch at a constant arrival rate (open loop),
    /// follow each to its end, and report latencies, statuses and errors.
    Loadgen(LoadgenArgs),
    /// A local deployment (two bank simulators, the switch, fresh databases) for the
    /// chaos scripts: `rig up --dir D` starts it detached and records it, `rig down` stops it.
    Rig(RigArgs),
    /// Start a rig (or use a running one), drive it open loop at each rate, and report
    /// latency, CPU per saga for every component, context switches and RSS per in-flight saga.
    Bench(BenchArgs),
    /// Settlement windows of a running switch (operator token): close the open window,
    /// show windows and positions, print a bank's report, show or re-run a reconciliation.
    Settlement(crate::settlement::cli::SettlementArgs),
    /// Ingest the switch's events (RabbitMQ) into the analytics store and its daily
    /// summaries; `analytics rebuild --from D --to D` recomputes days from the raw store.
    Analytics(crate::analytics::AnalyticsArgs),
}

/// Where the switch keeps its state and where it listens.
#[derive(Args, Debug, Clone)]
pub struct SwitchConfig {
    /// Postgres URL of the switch's database (created if missing).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_SWITCH_DB)]
    pub database_url: String,
    /// Redis URL (cache and rate limits; the switch works without it).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    #[command(flatten)]
    pub events: EventBusArgs,
    /// Most outbox events published per relay round.
    #[arg(long, env = "OUTBOX_BATCH", default_value_t = 500)]
    pub outbox_batch: i64,
    /// How often the relay looks for events written by other switch processes, in milliseconds.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 200)]
    pub outbox_poll_ms: u64,
    /// Most Server-Sent Events streams open at once (GET /v1/transactions/{id}/events).
    #[arg(long, env = "MAX_EVENT_STREAMS", default_value_t = 1024)]
    pub max_event_streams: usize,
    /// Address the switch's HTTP API listens on (port 0 picks a free port).
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Most transactions whose sagas run at once; more wait, durably, in Postgres.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Pending transactions (running or waiting) above which new ones get 503 SWITCH_BUSY.
    #[arg(long, env = "MAX_PENDING", default_value_t = 20_000)]
    pub max_pending: usize,
    /// Limit of one P2P or COLLECT payment, in rupees (`0`: none).
    #[arg(long, env = "TXN_LIMIT", default_value = "100000.00", value_parser = rupees_flag)]
    pub txn_limit: Paise,
    /// Limit of one P2M payment, in rupees, unless its MCC has its own (`0`: none).
    #[arg(long, env = "P2M_TXN_LIMIT", default_value = "100000.00", value_parser = rupees_flag)]
    pub p2m_txn_limit: Paise,
    /// Limit of one P2M payment to merchants of one MCC: `6012=500000.00`
    /// (repeatable; in the environment, comma-separated).
    #[arg(long = "mcc-limit", env = "MCC_LIMITS", value_delimiter = ',', value_parser = mcc_limit_flag)]
    pub mcc_limits: Vec<(String, Paise)>,
    /// Most one payer VPA may pay in an IST day (P2P, P2M, COLLECT), in rupees (`0`: none).
    #[arg(long, env = "DAILY_AMOUNT_LIMIT", default_value = "100000.00", value_parser = rupees_flag)]
    pub daily_amount_limit: Paise,
    /// Most payments by one payer VPA in an IST day (`0`: none).
    #[arg(long, env = "DAILY_COUNT_LIMIT", default_value_t = 20)]
    pub daily_count_limit: i64,
    /// Deadline of each debit or credit call, in milliseconds.
    #[arg(long, env = "BANK_TIMEOUT_MS", default_value_t = 2_000)]
    pub bank_timeout_ms: u64,
    /// How long a debit or credit may stay unconfirmed (inquired, retried)
    /// before it is fenced with a reverse: NPCI's payment response time
    /// (15 s since 16 June 2025).
    #[arg(long, env = "PAYMENT_TIMEOUT_MS", default_value_t = 15_000)]
    pub payment_timeout_ms: u64,
    /// Deadline of one status inquiry call: NPCI's check-status response
    /// time (10 s since 16 June 2025).
    #[arg(long, env = "STATUS_CHECK_TIMEOUT_MS", default_value_t = 10_000)]
    pub status_check_timeout_ms: u64,
    /// Deadline of one reverse call (it is retried until answered): NPCI's
    /// reversal response time (10 s since 16 June 2025).
    #[arg(long, env = "REVERSAL_TIMEOUT_MS", default_value_t = 10_000)]
    pub reversal_timeout_ms: u64,
    /// The debit's own deadline, when it must differ from `--payment-timeout-ms`.
    #[arg(long, env = "DEBIT_DEADLINE_MS")]
    pub debit_deadline_ms: Option<u64>,
    /// The credit's own deadline, when it must differ from `--payment-timeout-ms`.
    #[arg(long, env = "CREDIT_DEADLINE_MS")]
    pub credit_deadline_ms: Option<u64>,
    /// Longest pause between retries of one bank step, in milliseconds.
    #[arg(long, env = "RETRY_MAX_MS", default_value_t = 5_000)]
    pub retry_max_ms: u64,
    /// Postgres connections in the switch's pool (reads, registrations,
    /// merchant forwarding; saga writes have the group-commit writer's own).
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 32)]
    pub db_pool_size: usize,
    /// Saga writes (new transactions and checkpoints) that may wait for the
    /// group-commit writer; a new transaction finding it full gets 503 SWITCH_BUSY.
    #[arg(long, env = "WRITER_QUEUE", default_value_t = 8_192)]
    pub writer_queue: usize,
    /// Most saga writes committed by one group-commit statement.
    #[arg(long, env = "WRITER_MAX_BATCH", default_value_t = 1_024)]
    pub writer_max_batch: usize,
    /// If set, admin endpoints require `Authorization: Bearer <token>`.
    #[arg(long, env = "ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Turn client signing, ownership and operator tokens off (local
    /// experiments only): logged as a warning, and `/readyz` says
    /// `"auth":"off"`. Without it, `serve` needs `--admin-token`.
    #[arg(long, env = "UPI_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Hosts bank endpoints may point at: IP networks (`10.1.0.0/16`),
    /// addresses or host names (repeatable; in the environment
    /// comma-separated). Default: loopback only. Anything else is refused
    /// at registration (`422 ENDPOINT_NOT_ALLOWED`): the switch would call it.
    #[arg(long = "bank-url-allow", env = "BANK_URL_ALLOW", value_delimiter = ',',
          default_values_t = crate::domain::url_allow::LOOPBACK.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    pub bank_url_allow: Vec<String>,
    /// This node's name for operators (`GET /v1/ops/nodes`); default host:port it listens on.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// When the open settlement window closes: IST times of day `HH:MM,HH:MM,…`
    /// (default every 2 hours from 01:00), or `every:<N>s` (tests, chaos runs).
    /// Every node of one database must be given the same.
    #[arg(long, env = "SETTLEMENT_CUTOFFS",
          default_value = "01:00,03:00,05:00,07:00,09:00,11:00,13:00,15:00,17:00,19:00,21:00,23:00",
          value_parser = crate::settlement::cutoffs::Cutoffs::parse)]
    pub settlement_cutoffs: crate::settlement::cutoffs::Cutoffs,
    /// Test hook: die (abort) in the middle of an operator's close, after this step.
    #[arg(long, hide = true, value_enum)]
    pub settlement_crash_after: Option<crate::settlement::ticker::CrashPoint>,
    /// How long this node's hold on its sagas lasts without a renewal (renewed
    /// every fifth of it); after that, other nodes on the same database claim them.
    #[arg(long, env = "LEASE_MS", default_value_t = 5_000)]
    pub lease_ms: u64,
    /// On SIGTERM/SIGINT: how long the sagas running here may take to finish
    /// before they are stopped and handed back to the other nodes.
    #[arg(long, env = "DRAIN_GRACE_MS", default_value_t = 5_000)]
    pub drain_grace_ms: u64,
    /// How often each bank endpoint's /v1/health is probed, in milliseconds.
    #[arg(long, env = "PROBE_INTERVAL_MS", default_value_t = 1_000)]
    pub probe_interval_ms: u64,
    /// Circuit breaker: consecutive failures that open an endpoint's circuit.
    #[arg(long, env = "BREAKER_CONSECUTIVE_FAILURES", default_value_t = 5)]
    pub breaker_consecutive_failures: u32,
    /// Circuit breaker: failure share (0-1) over the window that opens it.
    #[arg(long, env = "BREAKER_FAILURE_RATE", default_value_t = 0.5)]
    pub breaker_failure_rate: f64,
    /// Circuit breaker: outcomes in the sliding window.
    #[arg(long, env = "BREAKER_WINDOW", default_value_t = 50)]
    pub breaker_window: usize,
    /// Circuit breaker: fewest outcomes before the failure rate counts.
    #[arg(long, env = "BREAKER_MIN_CALLS", default_value_t = 20)]
    pub breaker_min_calls: usize,
    /// Circuit breaker: how long an open circuit waits before trial calls.
    #[arg(long, env = "BREAKER_COOL_DOWN_MS", default_value_t = 2_000)]
    pub breaker_cool_down_ms: u64,
    /// Circuit breaker: trial successes that close a half-open circuit.
    #[arg(long, env = "BREAKER_TRIAL_SUCCESSES", default_value_t = 3)]
    pub breaker_trial_successes: u32,
    /// Most calls in flight per bank endpoint (bulkhead).
    #[arg(long, env = "BANK_MAX_IN_FLIGHT", default_value_t = 512)]
    pub bank_max_in_flight: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Merchant forwarding: base URL of the default (cheaper) payment processor.
    #[arg(
        long,
        env = "PROCESSOR_DEFAULT_URL",
        default_value = "http://127.0.0.1:8001"
    )]
    pub processor_default_url: String,
    /// Merchant forwarding: base URL of the fallback (dearer) payment processor.
    #[arg(
        long,
        env = "PROCESSOR_FALLBACK_URL",
        default_value = "http://127.0.0.1:8002"
    )]
    pub processor_fallback_url: String,
    /// Merchant forwarding: deadline of one POST to a processor, in milliseconds.
    #[arg(long, env = "PROCESSOR_TIMEOUT_MS", default_value_t = 6_000)]
    pub processor_timeout_ms: u64,
    /// Merchant forwarding: a processor slower than this (ms) is passed over while the other is fast.
    #[arg(long, env = "PROCESSOR_SLOW_MS", default_value_t = 1_000)]
    pub processor_slow_ms: u64,
    /// Merchant forwarding: a processor whose oldest call has waited more than
    /// this (ms) and 3× its usual latency is "in doubt" (it may have just
    /// slowed down): new payments go to the other while that one is fast.
    #[arg(long, env = "PROCESSOR_DOUBT_MS", default_value_t = 150)]
    pub processor_doubt_ms: u64,
    /// Merchant forwarding: most payments being forwarded at once (more wait in Postgres).
    #[arg(long, env = "MAX_FORWARDS", default_value_t = 256)]
    pub max_forwards: usize,
    // --- Redis (cache, idempotency fast path, rate limits); the switch works without it.
    /// Namespace of every Redis key (`<prefix>:vpa:…`); one prefix per switch database.
    #[arg(long, env = "REDIS_PREFIX", default_value = "upi")]
    pub redis_prefix: String,
    /// Longest wait for one Redis call, in milliseconds; past it the switch goes on without Redis.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 75)]
    pub redis_timeout_ms: u64,
    /// How long a resolved VPA stays in the Redis cache, in milliseconds (0 = no VPA cache).
    #[arg(long, env = "VPA_CACHE_TTL_MS", default_value_t = 60_000)]
    pub vpa_cache_ttl_ms: u64,
    /// How long this process keeps a VPA it resolved, in memory in front of
    /// Redis, in milliseconds (0 = off). A change made through this switch is
    /// seen at once; one made through another switch process within this long.
    #[arg(long, env = "VPA_LOCAL_TTL_MS", default_value_t = 1_000)]
    pub vpa_local_ttl_ms: u64,
    /// Rate limit per client (X-Client-Id, else peer IP): tokens refilled per second (0 = no limit).
    #[arg(long, env = "RATE_LIMIT_PER_SEC", default_value_t = 0.0)]
    pub rate_limit_per_sec: f64,
    /// Rate limit: bucket size, the burst a client may send at once (0 = one second's worth).
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 0)]
    pub rate_limit_burst: u32,
    /// Rate limit: what to do when Redis cannot be asked (allow the request, or deny it with 503).
    #[arg(long, env = "RATE_LIMIT_WHEN_REDIS_DOWN", value_enum, default_value_t = WhenRedisDown::Allow)]
    pub rate_limit_when_redis_down: WhenRedisDown,
    /// Run the analytics ingest (what `upi-switch analytics` runs) in this process too.
    #[arg(long, env = "ANALYTICS_INGEST")]
    pub analytics: bool,
    #[command(flatten)]
    pub analytics_ingest: crate::analytics::IngestFlags,
}

/// Where domain events travel: the switch publishes there, the analytics
/// ingest consumes from there.
#[derive(Args, Debug, Clone)]
pub struct EventBusArgs {
    /// RabbitMQ URL (domain events).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// RabbitMQ topic exchange the outbox relay publishes domain events to.
    #[arg(long, env = "EVENTS_EXCHANGE", default_value = "upi.events")]
    pub events_exchange: String,
}

impl EventBusArgs {
    pub fn config(&self) -> crate::adapters::amqp::AmqpConfig {
        crate::adapters::amqp::AmqpConfig {
            url: self.amqp_url.clone(),
            exchange: self.events_exchange.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub switch: SwitchConfig,
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Postgres URL to migrate (created if missing).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_SWITCH_DB)]
    pub database_url: String,
    /// Apply the bank simulator's schema instead of the switch's.
    #[arg(long)]
    pub bank: bool,
}

#[derive(Args, Debug, Clone)]
pub struct BankSimArgs {
    /// Bank code this simulator serves (2-12 of A-Z0-9). One process per code and database.
    #[arg(long)]
    pub code: String,
    /// TCP port to listen on (0 picks a free one; the chosen address is printed as `LISTENING <addr>`).
    #[arg(long, default_value_t = 9101)]
    pub port: u16,
    /// Another endpoint of the same bank (repeatable): same ledger, its own faults
    /// (`PUT /admin/faults` on that port changes only that endpoint).
    #[arg(long)]
    pub extra_port: Vec<u16>,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Postgres URL of the ledger database (created if missing; banks share it, keyed by code).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_BANK_DB)]
    pub database_url: String,
    /// JSON list of accounts to seed on first start:
    /// [{"account":"ACC001","name":"Alice Rao","balance_paise":10000000,"status":"ACTIVE"|"FROZEN"}].
    #[arg(long, conflicts_with = "seed_accounts")]
    pub accounts: Option<PathBuf>,
    /// Seed N accounts (ACC001, ACC002, …) on first start instead of --accounts.
    #[arg(long)]
    pub seed_accounts: Option<u32>,
    /// Opening balance of each account made by --seed-accounts, in paise.
    #[arg(long, default_value_t = 10_000_000)]
    pub balance_paise: i64,
    /// Fault: latency added to every /v1 request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fault: random extra latency, 0..=jitter_ms.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Fault: share (0-1) of requests answered 503 without applying.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fault: share (0-1) of movements applied and committed, then answered 503.
    #[arg(long, default_value_t = 0.0)]
    pub lost_reply_rate: f64,
    /// Fault: hold money movements unanswered until cleared via PUT /admin/faults.
    #[arg(long)]
    pub hang: bool,
    /// Fault: longest a held movement waits before it is refused with 503 (not applied).
    #[arg(long, default_value_t = 300_000)]
    pub max_hang_ms: u64,
    /// Fault: start fully down (every /v1 endpoint answers 503).
    #[arg(long)]
    pub down: bool,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    pub switch: SwitchConfig,
    /// Postgres URL for the two simulated banks' ledgers.
    #[arg(
        long,
        env = "BANK_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/upi_demo_banks"
    )]
    pub bank_database_url: String,
    /// How many transactions to send.
    #[arg(long, default_value_t = 3_000)]
    pub transactions: usize,
    /// Transactions in flight from the demo client at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// First port of the two simulated banks (HDFC on it, ICICI on the next).
    #[arg(long, default_value_t = 9101)]
    pub bank_port: u16,
    /// Payment types and their weights (as loadgen's `--mix`): by default every
    /// type, P2P, P2M to the demo's merchants, collect requests approved, refunds.
    #[arg(long, default_value = crate::loadgen::mix::ALL_TYPES)]
    pub mix: String,
    /// Exit after the summary instead of leaving the switch and banks running.
    #[arg(long)]
    pub exit: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ProcessorSimArgs {
    /// TCP port to listen on (0 picks a free one; the chosen address is printed as `LISTENING <addr>`).
    #[arg(long, default_value_t = 8001)]
    pub port: u16,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Fee charged per payment, as a decimal fraction of its amount (e.g. 0.05).
    #[arg(long)]
    pub fee: String,
    /// Value the `X-Rinha-Token` header must carry on /admin endpoints.
    #[arg(long, env = "RINHA_TOKEN", default_value = "123")]
    pub token: String,
    /// Fault at start: delay before every POST /payments is answered, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Fault at start: every POST /payments fails with 500 and stores nothing.
    #[arg(long)]
    pub failure: bool,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Postgres URL of the switch's database (read only; never created or migrated).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_SWITCH_DB)]
    pub database_url: String,
    /// Sum of every balance across the banks before any payment (e.g. the seed): the
    /// balances now must add up to it. Without it the opening total is computed, not checked.
    #[arg(long)]
    pub expected_total_paise: Option<i64>,
    /// Wait up to this many seconds for PENDING transactions to finish before reading
    /// (0: read at once). Whatever is still PENDING then is reported stuck.
    #[arg(long, default_value_t = 0)]
    pub wait_secs: u64,
    /// Examples listed per kind of violation (in the table and in the JSON report).
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Deadline of each request to a bank, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub bank_timeout_ms: u64,
    /// Attempts of each request to one bank endpoint before the next endpoint is tried.
    #[arg(long, default_value_t = 3)]
    pub bank_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pairing {
    /// Payer and payee drawn at random (seeded by --seed), never the same.
    Random,
    /// Every VPA pays in turn, to each of the others in turn.
    RoundRobin,
}

#[derive(Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// Base URL of the switch.
    #[arg(long, env = "SWITCH_URL", default_value = "http://127.0.0.1:8080")]
    pub switch: String,
    /// A client key file (`client.json`, as `rig up` writes it) to sign
    /// every call with; without one, calls go unsigned (a switch started
    /// `--insecure-no-auth`).
    #[arg(long, env = "CLIENT_KEY_FILE", value_parser = non_empty_path)]
    pub key_file: Option<std::path::PathBuf>,
    /// Arrivals per second. Sends are scheduled at fixed intervals from the start,
    /// whatever the answers (open loop); latency counts from the scheduled time.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to send: `30s`, `2m`, `500ms`, or plain seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Most transactions in flight at once (from its POST until it is terminal or
    /// given up); each has at most one request open. A send that finds no free
    /// slot waits, and that wait counts in its latency.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// A VPA that pays and is paid (repeat it; at least two VPAs in all, with --vpas).
    #[arg(long = "vpa", value_name = "VPA")]
    pub vpa: Vec<String>,
    /// A file of VPAs, one per line (blank lines and `#` comments are skipped).
    #[arg(long = "vpas", value_name = "FILE")]
    pub vpas_file: Option<PathBuf>,
    /// Amount of each payment in rupees (`1.00`), or a range its amounts are drawn from (`1.00..5.00`).
    #[arg(long, default_value = "1.00")]
    pub amount: String,
    /// How payers and payees are paired.
    #[arg(long, value_enum, default_value_t = Pairing::Random)]
    pub pairing: Pairing,
    /// Payment types and their weights, any subset of the four:
    /// `p2p=70,p2m=20,collect=5,refund=5`. P2M pays a merchant (--merchant);
    /// REFUND asks back half of an earlier SUCCESS P2P/P2M of this run (a P2P
    /// or P2M instead while none is known); COLLECT requests, then approves.
    #[arg(long, default_value = "p2p=100")]
    pub mix: String,
    /// A merchant VPA that P2M payments go to (repeat it; or --merchants FILE):
    /// one registered with `"merchant":true` and an MCC.
    #[arg(long = "merchant", value_name = "VPA")]
    pub merchant: Vec<String>,
    /// A file of merchant VPAs, one per line (like --vpas; a rig writes merchants.txt).
    #[arg(long = "merchants", value_name = "FILE")]
    pub merchants_file: Option<PathBuf>,
    /// Seed of the random choices (pairs, amounts); drawn when not given, and reported.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Deadline of each POST; each status poll gets its wait plus this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// `?wait=` of each status poll (100ms to 30s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub poll_wait: Duration,
    /// How long after the sending ends accepted transactions are still followed;
    /// those not terminal by then are reported PENDING.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Write a JSON report (arguments, timestamps, schedule, statuses, errors, latencies) here.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// No progress bar and no start line (the summary is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Exit non-zero if any request failed or any accepted transaction was still
    /// PENDING at the drain timeout.
    #[arg(long)]
    pub fail_on_errors: bool,
    /// Only post: do not follow payments to their end (statuses are those of the
    /// answers; the switch's database has the outcomes). The cheapest load.
    #[arg(long)]
    pub no_follow: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RigArgs {
    #[command(subcommand)]
    pub command: RigCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RigCommand {
    /// Start a deployment whose services outlive this command, recorded in --dir
    /// (deployment.env, run/NAME.cmd|pid|env, logs/NAME.log, vpas.txt, vpas.tsv).
    Up(RigUpArgs),
    /// Stop the deployment recorded in --dir (SIGTERM, then SIGKILL) and drop its databases.
    Down(RigDownArgs),
}

/// How a rig is laid out: databases, accounts, bank latency, the switch's extra flags.
#[derive(Args, Debug, Clone)]
pub struct RigLayoutArgs {
    /// PostgreSQL server (no database name): the rig creates two fresh databases on it.
    #[arg(
        long,
        env = "RIG_PG",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub pg: String,
    /// Prefix of the fresh databases' names: `<prefix>_<random>_switch`, `…_banks`.
    #[arg(long, default_value = "upi_rig")]
    pub db_prefix: String,
    /// Accounts (and VPAs) per bank, 2-999 [default: rig up 20, bench 200].
    #[arg(long)]
    pub accounts: Option<usize>,
    /// Frozen accounts per bank: payments to them end REVERSED [default: rig up 2, bench 0].
    #[arg(long)]
    pub frozen: Option<usize>,
    /// Accounts holding ₹1.00 per bank: payments from them end FAILED [default: rig up 2, bench 0].
    #[arg(long)]
    pub poor: Option<usize>,
    /// Merchants per bank (`shop01@hdfc`…: registered with `"merchant":true`
    /// and MCC 5411, listed in merchants.txt), what P2M payments go to.
    #[arg(long, default_value_t = 2)]
    pub merchants: usize,
    /// Every bank request takes this many ms plus 0..this of jitter (bank-sim flags, so it survives restarts).
    #[arg(long, default_value_t = 0)]
    pub bank_latency: u64,
    /// Register the banks' endpoints with `"http2": true`: the switch then
    /// reaches each over one HTTP/2 (cleartext) connection.
    #[arg(long)]
    pub bank_http2: bool,
    /// The switch's Postgres pool (each node's).
    #[arg(long, default_value_t = 16)]
    pub db_pool_size: usize,
    /// Switch nodes, 1-16: `switch`, `switch-2`, … on one database and one
    /// Redis prefix. More than one puts HAProxy in front of them on the
    /// switch's port (needs the `haproxy` binary: `apt-get install haproxy`).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// The binary the services run (`serve`, `bank-sim`, `migrate`); default: this one.
    #[arg(long = "bin", value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// RUST_LOG of the services.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
    /// Added to the switch's command line (`upi-switch serve …`), after `--`.
    #[arg(last = true, value_name = "SERVE_ARGS")]
    pub serve_args: Vec<String>,
}

impl RigLayoutArgs {
    /// (accounts, frozen, poor), each from its flag or else from `defaults`.
    pub fn accounts(&self, defaults: (usize, usize, usize)) -> (usize, usize, usize) {
        (
            self.accounts.unwrap_or(defaults.0),
            self.frozen.unwrap_or(defaults.1),
            self.poor.unwrap_or(defaults.2),
        )
    }
}

#[derive(Args, Debug, Clone)]
pub struct RigUpArgs {
    /// State directory: deployment.env, run/, logs/, vpas.txt, vpas.tsv, accounts-*.json.
    #[arg(long, env = "CHAOS_DIR")]
    pub dir: PathBuf,
    /// Name of the program in log lines and in the logs' start headers.
    #[arg(long, default_value = "upi-switch rig", hide = true)]
    pub prog: String,
    /// Also start the two payment processors of merchant forwarding
    /// (`processor-sim`, fees 7% and 10%, token 123) and point the switch at
    /// them; `deployment.env` names them.
    #[arg(long)]
    pub processors: bool,
    #[command(flatten)]
    pub layout: RigLayoutArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RigDownArgs {
    /// State directory of the deployment.
    #[arg(long, env = "CHAOS_DIR")]
    pub dir: PathBuf,
    /// Also remove the state directory (logs and reports included).
    #[arg(long)]
    pub purge: bool,
    /// Seconds a service gets to stop on SIGTERM before SIGKILL.
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
    /// Name of the program in log lines.
    #[arg(long, default_value = "upi-switch rig", hide = true)]
    pub prog: String,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Arrival rates to run, in tx/s, one measured phase each, in this order.
    #[arg(long, value_delimiter = ',', default_values_t = vec![300.0, 1000.0, 2000.0])]
    pub rates: Vec<f64>,
    /// Measured time per rate.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured load at the same rate before each measured phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The load generator's most transactions in flight.
    #[arg(long, default_value_t = 4096)]
    pub concurrency: usize,
    /// Longest wait after the sends for the phase's sagas to end.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Use the running deployment recorded in this directory (`rig up --dir`) instead of starting one.
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// RSS phase: arrival rate while the banks are slow (0: no RSS phase).
    #[arg(long, default_value_t = 800.0)]
    pub rss_rate: f64,
    /// RSS phase: latency the banks add to every request (PUT /admin/faults), in ms.
    #[arg(long, default_value_t = 500)]
    pub rss_bank_latency_ms: u64,
    /// RSS phase: how long it sends.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub rss_duration: Duration,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Where the rig's logs and the phases' loadgen reports go (default: a fresh temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the state directory after a successful run (it is always kept after a failure).
    #[arg(long)]
    pub keep: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Also run the analytics ingest (`upi-switch analytics`) as a process of its own and
    /// report its CPU seconds per 1,000 events, per rate.
    #[arg(long)]
    pub analytics: bool,
    /// Let loadgen follow every payment with `?wait=` long-polls (its old, dearer way)
    /// instead of only posting.
    #[arg(long)]
    pub loadgen_follow: bool,
    /// The payment types loadgen sends, as its `--mix` (`p2p=70,p2m=20,collect=5,refund=5`;
    /// P2M goes to the rig's merchants). The table then shows each type's statuses.
    #[arg(long, default_value = "p2p=100")]
    pub mix: String,
    /// Instead of payments: the "Rinha de Backend 2025" final test against
    /// merchant forwarding (two payment processors, users ramping up, ten
    /// phases of processor faults, a consistency check every 10 s) for
    /// --duration (the contest ran 300s), with its score.
    #[arg(long)]
    pub merchant: bool,
    /// --merchant: virtual users at the end of the ramp (the contest: 603).
    #[arg(long, default_value_t = 603)]
    pub merchant_users: u32,
    #[command(flatten)]
    pub layout: RigLayoutArgs,
}

/// The switch's flags (`SwitchConfig`) that `matches` got on the command line
/// (not defaults, not the environment, which a child inherits anyway), rendered
/// back as arguments, except those named in `skip`: how the demo hands its
/// switch flags on to the switch it starts as a child process.
pub fn given_switch_args(matches: &clap::ArgMatches, skip: &[&str]) -> Vec<String> {
    let switch = SwitchConfig::augment_args(clap::Command::new("serve"));
    let mut out = Vec::new();
    for arg in switch.get_arguments() {
        let name = arg.get_id().as_str();
        if skip.contains(&name)
            || matches.value_source(name) != Some(clap::parser::ValueSource::CommandLine)
        {
            continue;
        }
        let Ok(Some(values)) = matches.try_get_raw(name) else {
            continue;
        };
        let long = arg.get_long().unwrap_or(name);
        for value in values {
            out.push(format!("--{long}"));
            out.push(value.to_string_lossy().into_owned());
        }
    }
    out
}

/// A duration: whole `ms`, `s`, `m` or `h` (`500ms`, `30s`, `2m`), or plain seconds (`30`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration like 500ms, 30s, 2m, 1h or 30 (seconds)");
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// A rupee amount flag (`"1000.00"`, exact), `0` for none.
fn rupees_flag(text: &str) -> Result<Paise, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b == b'0' || b == b'.') && t.starts_with('0') {
        return Ok(Paise(0));
    }
    Paise::parse_rupees(t, Paise(i64::MAX))
        .map_err(|e| format!("{e} (rupees with at most two decimals, e.g. 1000.00; 0 for none)"))
}

/// `MCC=AMOUNT`, e.g. `6012=500000.00`.
fn mcc_limit_flag(text: &str) -> Result<(String, Paise), String> {
    let (mcc, amount) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected MCC=AMOUNT, e.g. 6012=500000.00"))?;
    let mcc = mcc.trim();
    if mcc.len() != 4 || !mcc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{mcc:?}: an MCC is 4 digits"));
    }
    Ok((mcc.to_string(), rupees_flag(amount)?))
}

/// A path; an empty one (an unset variable in a script) is no path.
fn non_empty_path(text: &str) -> Result<std::path::PathBuf, String> {
    if text.trim().is_empty() {
        Err("an empty path".into())
    } else {
        Ok(std::path::PathBuf::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_humane_units() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "",
            "s",
            "1.5s",
            "-3s",
            "10 parsecs",
            "3d",
            "ms",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_duration(&format!("{}h", u64::MAX / 1000)).is_err());
    }
}
