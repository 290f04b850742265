//! `upi-switch loadgen`: an open-loop load generator for a running switch.
//!
//! Arrivals are scheduled at fixed intervals from the start (arrival `i` at
//! `t0 + i / --rate`) for `--duration`, whatever the switch answers. Each
//! arrival posts one payment between two of the given VPAs (never one to
//! itself) with its own Idempotency-Key (`<run id>-<i>`), then follows it with
//! `GET /v1/transactions/{id}?wait=` long-polls until it is terminal or the
//! drain deadline (`--drain-timeout` after the sending ends) passes. Its type
//! is drawn from `--mix` ([`mix`]): P2P (the default, and all there was
//! before), P2M to a `--merchant`, REFUND of half of an earlier SUCCESS P2P or
//! P2M of this run, COLLECT (request, then approve); [`send`] sends each.
//!
//! `--concurrency` caps the transactions in flight (a slot is taken at the
//! send and given back when following ends), which also caps open requests
//! and the connection pool. A send that finds no slot, or a scheduler that
//! wakes late, goes out behind its intended time: latency is measured from
//! the intended time, so that wait is counted, not hidden (no coordinated
//! omission), and late sends are counted with their lag. Arrivals still
//! waiting for a slot when the duration ends are never sent (`unsent`).
//!
//! With `--no-follow` it only posts (the switch's database has the outcomes):
//! the load `bench` uses, cheap enough that the rig measures the switch and
//! not its client. The whole run is one thread: the scheduler batches its
//! wakes (`schedule::pace`) and the posts go through [`wire`], a small HTTP/1.1
//! client; the status polls use reqwest.
//!
//! The measuring and reporting is pure and lives in [`report`]; the pieces it
//! shares with the demo (payment body, following, histograms) in `crate::traffic`.

pub mod mix;
pub mod report;
mod schedule;
mod send;
pub mod wire;

use crate::cli::{LoadgenArgs, Pairing};
use crate::domain::{MAX_WIRE_PAISE, Paise, Vpa};
use crate::saga::PaymentType;
use crate::traffic::{
    self, Counters, Kinds, Latency, Pairs, Poll, shutdown_signal, transport_text,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mix::{Mix, Originals};
use report::{
    ErrorsReport, Latencies, Lateness, Report, RunArgs, Schedule, ScheduleReport, TypeReport,
};
use schedule::{Sending, send_all};
use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Shortest `--poll-wait`: a shorter one would poll a pending transaction in a busy loop.
const MIN_POLL_WAIT: Duration = Duration::from_millis(100);
/// Pause after a failed status poll.
const POLL_PAUSE: Duration = Duration::from_millis(200);
/// Longest wait for `GET /healthz` before the run starts.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);
/// After the drain deadline, how long payment tasks get to end on their own
/// (on top of --request-timeout) before they are abandoned.
const HARD_STOP_GRACE: Duration = Duration::from_secs(5);

/// Why a load run could not run, or failed its check.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read the VPA file {path}: {source}")]
    VpaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build an HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("the switch at {url} does not answer GET /healthz: {why}")]
    Unreachable { url: String, why: String },
    #[error("cannot write the report {path}: {why}")]
    Report { path: PathBuf, why: String },
    #[error("cannot run the load thread: {0}")]
    Runtime(String),
    #[error("the run had {0} (--fail-on-errors)")]
    Failed(String),
}

/// The amounts payments are drawn from, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub low: Paise,
    pub high: Paise,
}

impl Amounts {
    /// `1.00` (every payment that much) or `1.00..5.00` (drawn from that range).
    pub fn parse(text: &str) -> Result<Amounts, String> {
        let one = |t: &str| {
            Paise::parse_rupees(t.trim(), Paise(MAX_WIRE_PAISE))
                .map_err(|e| format!("--amount {text:?}: {e}"))
        };
        let (low, high) = match text.split_once("..") {
            Some((a, b)) => (one(a)?, one(b)?),
            None => (one(text)?, one(text)?),
        };
        if low > high {
            return Err(format!("--amount {text:?}: the range is empty"));
        }
        Ok(Amounts { low, high })
    }

    /// The amount a random `draw` picks.
    pub fn nth(&self, draw: u64) -> Paise {
        let span = (self.high.0 - self.low.0) as u64 + 1;
        Paise(self.low.0 + (draw % span) as i64)
    }
}

/// The VPAs of `--vpa` and the lines of `--vpas FILE`, checked, without
/// repeats (VPAs compare case-insensitively, so a repeat could pay itself).
pub fn collect_vpas(flags: &[String], file_text: Option<&str>) -> Result<Vec<Vpa>, String> {
    let vpas = vpa_list(flags, file_text)?;
    if vpas.len() < 2 {
        return Err(format!(
            "need at least two different VPAs (--vpa alice@hdfc --vpa bob@icici, or --vpas FILE); got {}",
            vpas.len()
        ));
    }
    Ok(vpas)
}

/// VPAs of flags and a file's lines (blank lines and `#` comments skipped), checked, without repeats.
fn vpa_list(flags: &[String], file_text: Option<&str>) -> Result<Vec<Vpa>, String> {
    let lines = file_text
        .into_iter()
        .flat_map(str::lines)
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty());
    let mut vpas: Vec<Vpa> = Vec::new();
    for text in flags.iter().map(|f| f.trim()).chain(lines) {
        let vpa = Vpa::parse(text).ok_or_else(|| format!("{text:?} is not a VPA (handle@psp)"))?;
        if !vpas.contains(&vpa) {
            vpas.push(vpa);
        }
    }
    Ok(vpas)
}

/// The text of an optional list file.
fn read_list(path: Option<&PathBuf>) -> Result<Option<String>, LoadgenError> {
    path.map(|path| {
        std::fs::read_to_string(path).map_err(|source| LoadgenError::VpaFile {
            path: path.clone(),
            source,
        })
    })
    .transpose()
}

/// The run's settings, checked.
struct Config {
    run_id: String,
    switch: String,
    schedule: Schedule,
    concurrency: usize,
    vpas: Vec<Vpa>,
    pairs: Pairs,
    pairing: Pairing,
    amounts: Amounts,
    mix: Mix,
    /// Payees of P2M payments.
    merchants: Vec<Vpa>,
    seed: u64,
    request_timeout: Duration,
    poll: Poll,
    drain_timeout: Duration,
    note: String,
    /// Follow each payment to its end (else only post).
    follow: bool,
}

impl Config {
    fn new(args: &LoadgenArgs) -> Result<Config, LoadgenError> {
        let usage = LoadgenError::Usage;
        let switch = args.switch.trim().trim_end_matches('/').to_string();
        if !(switch.starts_with("http://") || switch.starts_with("https://")) {
            return Err(usage(format!(
                "--switch must be an http:// or https:// URL (got {:?})",
                args.switch
            )));
        }
        let schedule = Schedule::new(args.rate, args.duration).map_err(usage)?;
        if args.concurrency == 0 {
            return Err(usage("--concurrency must be at least 1".into()));
        }
        if args.request_timeout.is_zero() {
            return Err(usage("--request-timeout must be longer than 0".into()));
        }
        if args.poll_wait < MIN_POLL_WAIT || args.poll_wait > traffic::MAX_POLL_WAIT {
            return Err(usage(format!(
                "--poll-wait must be from {} ms to {} s (the switch's longest ?wait=)",
                MIN_POLL_WAIT.as_millis(),
                traffic::MAX_POLL_WAIT.as_secs()
            )));
        }
        let file_text = read_list(args.vpas_file.as_ref())?;
        let vpas = collect_vpas(&args.vpa, file_text.as_deref()).map_err(usage)?;
        let mix = Mix::parse(&args.mix).map_err(usage)?;
        let merchants_text = read_list(args.merchants_file.as_ref())?;
        let merchants = vpa_list(&args.merchant, merchants_text.as_deref()).map_err(usage)?;
        if mix.needs_merchants() && merchants.is_empty() {
            return Err(usage(format!(
                "--mix {mix} sends P2M payments: name their payees with --merchant VPA or --merchants FILE \
                 (VPAs registered with \"merchant\":true and an MCC)"
            )));
        }
        let pairs = Pairs::new(vpas.len())
            .ok_or_else(|| usage("need at least two different VPAs".into()))?;
        let amounts = Amounts::parse(&args.amount).map_err(usage)?;
        let run_id = format!("lg-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Ok(Config {
            note: format!("loadgen {run_id}"),
            run_id,
            switch,
            schedule,
            concurrency: args.concurrency,
            vpas,
            pairs,
            pairing: args.pairing,
            amounts,
            mix,
            merchants,
            seed: args
                .seed
                .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0),
            request_timeout: args.request_timeout,
            poll: Poll {
                wait: args.poll_wait,
                slack: args.request_timeout,
                pause: POLL_PAUSE,
            },
            drain_timeout: args.drain_timeout,
            follow: !args.no_follow,
        })
    }

    /// Payer and payee of arrival `i`.
    fn pair(&self, i: u64) -> (&Vpa, &Vpa) {
        let k = match self.pairing {
            Pairing::RoundRobin => i,
            Pairing::Random => traffic::mix(self.seed, i),
        };
        let (a, b) = self.pairs.nth(k);
        (&self.vpas[a], &self.vpas[b])
    }

    /// Amount of arrival `i` (its own random stream, apart from the pairs').
    fn amount(&self, i: u64) -> Paise {
        self.amounts.nth(traffic::mix(!self.seed, i))
    }

    /// The type arrival `i` is drawn as (a stream of its own).
    fn kind(&self, i: u64) -> PaymentType {
        self.mix.pick(traffic::mix(self.seed.rotate_left(17), i))
    }

    /// Arrival `i`'s draw for everything else: the merchant, the refund, a fallback.
    fn draw(&self, i: u64) -> u64 {
        traffic::mix(self.seed.rotate_left(41), i)
    }

    /// Payer and payee of arrival `i` when it is a payment of `kind` (P2M: to
    /// a merchant, from a payer that is not that merchant).
    fn parties(&self, kind: PaymentType, i: u64) -> (&Vpa, &Vpa) {
        let (payer, payee) = self.pair(i);
        if kind != PaymentType::P2M || self.merchants.is_empty() {
            return (payer, payee);
        }
        let merchant = &self.merchants[(self.draw(i) % self.merchants.len() as u64) as usize];
        if payer == merchant {
            (payee, merchant)
        } else {
            (payer, merchant)
        }
    }

    fn run_args(&self, args: &LoadgenArgs) -> RunArgs {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        RunArgs {
            argv: std::env::args().collect(),
            switch: self.switch.clone(),
            rate: self.schedule.rate(),
            duration_ms: ms(self.schedule.duration()),
            concurrency: self.concurrency,
            vpas: self.vpas.iter().map(|v| v.as_str().to_string()).collect(),
            amount: args.amount.clone(),
            mix: self.mix.to_string(),
            merchants: self
                .merchants
                .iter()
                .map(|v| v.as_str().to_string())
                .collect(),
            pairing: self.pairing,
            seed: self.seed,
            request_timeout_ms: ms(self.request_timeout),
            poll_wait_ms: ms(self.poll.wait),
            drain_timeout_ms: ms(self.drain_timeout),
            fail_on_errors: args.fail_on_errors,
            follow: self.follow,
        }
    }
}

/// Latencies and final statuses, recorded by the payment tasks.
struct Tally {
    /// How late each send went out (its task's start − its intended time).
    lateness: Lateness,
    lag: Latency,
    accept: Latency,
    accept_service: Latency,
    accept_to_terminal: Latency,
    end_to_end: Latency,
    statuses: BTreeMap<String, u64>,
    /// Sends, acceptances, statuses and errors of each payment type.
    by_type: BTreeMap<&'static str, TypeReport>,
    /// Refund arrivals sent as a P2P or P2M: no refundable payment was known yet.
    refund_fallbacks: u64,
}

impl Tally {
    fn of(&mut self, kind: PaymentType) -> &mut TypeReport {
        self.by_type.entry(kind.as_str()).or_default()
    }
}

/// What every payment task shares.
struct Shared {
    cfg: Config,
    /// Status polls (`?wait=`), the preflight.
    http: reqwest::Client,
    /// Posts: the lean client.
    posts: wire::Pool,
    /// The client key every call is signed with, when given.
    signer: Option<Arc<crate::auth::signer::ClientKey>>,
    /// When the drain ends: following stops here.
    drain_deadline: Instant,
    counters: Counters,
    tally: Mutex<Tally>,
    send_errors: Kinds,
    follow_errors: Kinds,
    reasons: Kinds,
    stop: watch::Receiver<Option<&'static str>>,
    /// SUCCESS P2P/P2M payments of this run that refunds may ask back.
    originals: Mutex<Originals>,
    /// With `--no-follow`: accepted P2P/P2M payments whose end is not known
    /// yet, oldest first (a refund looks one of them up when it needs one).
    unconfirmed: Mutex<VecDeque<(String, Paise)>>,
}

impl Shared {
    fn tally(&self, f: impl FnOnce(&mut Tally)) {
        if let Ok(mut t) = self.tally.lock() {
            f(&mut t);
        }
    }
}

/// Runs a load test as `args` say; prints the summary, writes the report.
/// The whole run happens on one thread with a single-threaded runtime of its
/// own (so the scheduler's pace, `schedule::pace`, is the only clock that wakes it
/// while it sends); the caller's runtime only waits for the result.
pub async fn run(args: LoadgenArgs) -> Result<(), LoadgenError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("loadgen".into())
        .spawn(move || {
            let outcome = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run_here(args)),
                Err(e) => Err(LoadgenError::Runtime(e.to_string())),
            };
            let _ = done.send(outcome);
        })
        .map_err(|e| LoadgenError::Runtime(e.to_string()))?;
    result
        .await
        .unwrap_or_else(|_| Err(LoadgenError::Runtime("the load thread panicked".into())))
}

async fn run_here(args: LoadgenArgs) -> Result<(), LoadgenError> {
    let cfg = Config::new(&args)?;
    let http = traffic::http_client(cfg.request_timeout, cfg.concurrency)?;
    preflight(&http, &cfg.switch).await?;
    let signer = match &args.key_file {
        Some(path) => Some(Arc::new(
            crate::auth::signer::ClientKey::load(path)
                .map_err(|e| LoadgenError::Usage(e.to_string()))?,
        )),
        None => None,
    };
    let endpoint = wire::Endpoint::resolve(&cfg.switch)
        .await
        .map_err(LoadgenError::Usage)?
        .signed_by(signer.clone());
    let posts = wire::Pool::new(endpoint, cfg.concurrency, cfg.request_timeout);
    let run_args = cfg.run_args(&args);

    let (stop_tx, stop) = watch::channel(None::<&'static str>);
    let signals = tokio::spawn(async move {
        let name = shutdown_signal().await;
        let _ = stop_tx.send(Some(name));
    });
    let show = !args.quiet && std::io::stdout().is_terminal();
    if !args.quiet {
        eprintln!(
            "upi-switch loadgen {}: {} tx/s for {:.1} s ({} sends) to {}, concurrency {}, {} VPAs, mix {}, seed {}",
            cfg.run_id,
            cfg.schedule.rate(),
            cfg.schedule.duration().as_secs_f64(),
            cfg.schedule.arrivals(),
            cfg.switch,
            cfg.concurrency,
            cfg.vpas.len(),
            cfg.mix,
            cfg.seed
        );
    }
    let started_at = chrono::Utc::now();
    let late_threshold = cfg.schedule.late_threshold();
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        drain_deadline: t0 + cfg.schedule.duration() + cfg.drain_timeout,
        cfg,
        http,
        signer,
        posts,
        counters: Counters::default(),
        tally: Mutex::new(Tally {
            lateness: Lateness::new(late_threshold),
            lag: Latency::new(),
            accept: Latency::new(),
            accept_service: Latency::new(),
            accept_to_terminal: Latency::new(),
            end_to_end: Latency::new(),
            statuses: BTreeMap::new(),
            by_type: BTreeMap::new(),
            refund_fallbacks: 0,
        }),
        send_errors: Kinds::default(),
        follow_errors: Kinds::default(),
        reasons: Kinds::default(),
        stop,
        originals: Mutex::new(Originals::new(send::KEEP_ORIGINALS)),
        unconfirmed: Mutex::new(VecDeque::new()),
    });
    let bar = progress_bar(show, shared.cfg.schedule.arrivals());
    let ticker = tokio::spawn(tick_progress(shared.clone(), bar.clone()));
    let mut sending = send_all(shared.clone(), t0).await;
    bar.set_prefix("draining");
    let hard_stop = shared.drain_deadline + shared.cfg.request_timeout;
    let abandoned = drain(&mut sending.tasks, hard_stop).await;
    ticker.abort();
    bar.finish_and_clear();
    signals.abort();

    let ended_at = chrono::Utc::now();
    let report = build_report(
        &shared,
        run_args,
        &sending,
        abandoned,
        (started_at, ended_at),
        t0.elapsed(),
    );
    println!("{}", report.render());
    if let Some(path) = &args.report {
        write_report(path, &report)?;
    }
    if args.fail_on_errors {
        let mut wrong = Vec::new();
        if report.errors.total > 0 {
            wrong.push(format!("{} failed request(s)", report.errors.total));
        }
        if report.pending() > 0 {
            wrong.push(format!(
                "{} transaction(s) still PENDING at the drain timeout",
                report.pending()
            ));
        }
        if !wrong.is_empty() {
            return Err(LoadgenError::Failed(wrong.join(" and ")));
        }
    }
    Ok(())
}

/// The switch answers at all (a typo in --switch is found before the run).
async fn preflight(http: &reqwest::Client, switch: &str) -> Result<(), LoadgenError> {
    http.get(format!("{switch}/healthz"))
        .timeout(PREFLIGHT_TIMEOUT)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| LoadgenError::Unreachable {
            url: switch.to_string(),
            why: transport_text(&e),
        })
}

/// Waits for the payment tasks, which end by the drain deadline on their own;
/// any still running at `hard_stop` (+ a grace) is aborted and counted.
async fn drain(tasks: &mut JoinSet<()>, hard_stop: Instant) -> u64 {
    let limit = hard_stop + HARD_STOP_GRACE;
    loop {
        match tokio::time::timeout_at(limit.into(), tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => return 0,
            Err(_) => {
                let left = tasks.len() as u64;
                tasks.abort_all();
                return left;
            }
        }
    }
}

fn build_report(
    shared: &Shared,
    args: RunArgs,
    sending: &Sending,
    abandoned: u64,
    (started_at, ended_at): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    elapsed: Duration,
) -> Report {
    let schedule = &shared.cfg.schedule;
    // Milliseconds to the microsecond.
    let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
    let tally = match shared.tally.lock() {
        Ok(t) => t,
        // A task panicked while recording: what it recorded is still the best we have.
        Err(poisoned) => poisoned.into_inner(),
    };
    Report {
        run_id: shared.cfg.run_id.clone(),
        started_at: started_at.to_rfc3339(),
        ended_at: ended_at.to_rfc3339(),
        elapsed_s: elapsed.as_millis() as f64 / 1000.0,
        // Stopped while sending, or later while draining.
        interrupted: sending
            .interrupted
            .clone()
            .or_else(|| shared.stop.borrow().map(str::to_string)),
        args,
        schedule: ScheduleReport {
            asked_rate: schedule.rate(),
            duration_s: schedule.duration().as_secs_f64(),
            send_window_s: sending.window.as_secs_f64(),
            scheduled: schedule.arrivals(),
            sent: sending.sent,
            unsent: sending.unsent,
            achieved_send_rate: 0.0,
            late_sends: tally.lateness.late,
            late_threshold_ms: ms(tally.lateness.threshold),
            max_lag_ms: ms(tally.lateness.max_lag),
            lag_ms: tally.lag.summary(),
        },
        accepted: shared.counters.read().accepted,
        achieved_accept_rate: 0.0,
        terminal: 0,
        statuses: tally.statuses.clone(),
        by_type: tally
            .by_type
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        refund_fallbacks: tally.refund_fallbacks,
        reasons: shared.reasons.snapshot(),
        errors: ErrorsReport::new(
            shared.send_errors.snapshot(),
            shared.follow_errors.snapshot(),
        ),
        latency_ms: Latencies {
            accept: tally.accept.summary(),
            accept_service: tally.accept_service.summary(),
            accept_to_terminal: tally.accept_to_terminal.summary(),
            end_to_end: tally.end_to_end.summary(),
        },
        abandoned,
        process_cpu_s: traffic::process_cpu().as_secs_f64(),
        cpu_us_per_send: 0.0,
        warnings: Vec::new(),
    }
    .finish()
}

fn write_report(path: &PathBuf, report: &Report) -> Result<(), LoadgenError> {
    let fail = |why: String| LoadgenError::Report {
        path: path.clone(),
        why,
    };
    let text = serde_json::to_string_pretty(report).map_err(|e| fail(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| fail(e.to_string()))
}

/// A progress bar on stdout when it is a terminal, else one that draws nothing.
fn progress_bar(show: bool, arrivals: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(arrivals), ProgressDrawTarget::stdout());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {bar:30} {pos}/{len} sent  {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix("sending");
    bar
}

/// Every 250 ms: sent, accepted, terminal, errors and the send rate over the last second.
async fn tick_progress(shared: Arc<Shared>, bar: ProgressBar) {
    let mut recent: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let c = shared.counters.read();
        recent.push_back((now, c.sent));
        while recent.len() > 5 {
            recent.pop_front();
        }
        let rate = match recent.front() {
            Some((then, sent)) if now > *then => {
                (c.sent - sent) as f64 / (now - *then).as_secs_f64()
            }
            _ => 0.0,
        };
        bar.set_position(c.sent);
        bar.set_message(format!(
            "accepted {}  terminal {}  errors {}  {rate:.0} tx/s",
            c.accepted, c.terminal, c.errors
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_and_stay_in_range() {
        let one = Amounts::parse("1.00").unwrap();
        assert_eq!(one.nth(12345), Paise(100));
        let range = Amounts::parse("1.00..1.05").unwrap();
        let drawn: std::collections::BTreeSet<i64> =
            (0..1000).map(|i| range.nth(traffic::mix(9, i)).0).collect();
        assert_eq!(drawn, (100..=105).collect());
        for bad in ["0", "1.001", "abc", "5.00..1.00", "-1", ".."] {
            assert!(Amounts::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vpas_are_checked_and_deduplicated() {
        let flags = vec!["alice@hdfc".to_string(), "ALICE@hdfc".to_string()];
        let err = collect_vpas(&flags, None).unwrap_err();
        assert!(err.contains("at least two different VPAs"), "{err}");
        let file = "# team\nbob@icici\n\ncarol@icici  # frozen\nalice@hdfc\n";
        let vpas = collect_vpas(&flags, Some(file)).unwrap();
        let names: Vec<&str> = vpas.iter().map(Vpa::as_str).collect();
        assert_eq!(names, ["alice@hdfc", "bob@icici", "carol@icici"]);
        assert!(collect_vpas(&["nope".to_string()], Some("bob@icici")).is_err());
    }

    /// `upi-switch loadgen <line>` parsed as the binary would (`line` split at blanks).
    fn args(line: &str) -> LoadgenArgs {
        use clap::Parser;
        let argv = ["upi-switch", "loadgen"]
            .into_iter()
            .chain(line.split_whitespace());
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Loadgen(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn configured_pairs_never_pay_oneself() {
        for pairing in ["random", "round-robin"] {
            let cfg = Config::new(&args(&format!(
                "--vpa al@xx --vpa bo@yy --vpa cy@zz --pairing {pairing}"
            )))
            .unwrap();
            for i in 0..1000 {
                let (payer, payee) = cfg.pair(i);
                assert_ne!(payer, payee, "{pairing} {i}");
            }
        }
        let rr = Config::new(&args("--vpa al@xx --vpa bo@yy --pairing round-robin")).unwrap();
        let firsts: Vec<(&str, &str)> = (0..4)
            .map(|i| {
                let (a, b) = rr.pair(i);
                (a.as_str(), b.as_str())
            })
            .collect();
        assert_eq!(
            firsts,
            [
                ("al@xx", "bo@yy"),
                ("bo@yy", "al@xx"),
                ("al@xx", "bo@yy"),
                ("bo@yy", "al@xx")
            ]
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let argv = "--vpa al@xx --vpa bo@yy --vpa cy@zz --seed 7 --amount 1.00..9.99";
        let (a, b) = (
            Config::new(&args(argv)).unwrap(),
            Config::new(&args(argv)).unwrap(),
        );
        for i in 0..100 {
            assert_eq!(a.pair(i), b.pair(i));
            assert_eq!(a.amount(i), b.amount(i));
        }
        assert_ne!(a.run_id, b.run_id, "each run has its own keys");
    }

    #[test]
    fn bad_settings_are_refused_before_anything_is_sent() {
        let err = |line: &str| match Config::new(&args(line)) {
            Err(e) => e.to_string(),
            Ok(_) => format!("{line:?} was accepted"),
        };
        assert!(err("--vpa al@xx").contains("two different VPAs"));
        for (flag, value, says) in [
            ("--rate", "0", "--rate"),
            ("--duration", "0s", "--duration"),
            ("--concurrency", "0", "--concurrency"),
            ("--poll-wait", "31s", "--poll-wait"),
            ("--poll-wait", "0", "--poll-wait"),
            ("--switch", "127.0.0.1:8080", "--switch"),
            ("--amount", "0.00", "--amount"),
            ("--vpa", "nobody", "not a VPA"),
        ] {
            let e = err(&format!("--vpa al@xx --vpa bo@yy {flag} {value}"));
            assert!(e.contains(says), "{flag} {value}: {e}");
        }
        let missing = args("--vpa al@xx --vpas /nonexistent/vpas.txt");
        assert!(matches!(
            Config::new(&missing),
            Err(LoadgenError::VpaFile { .. })
        ));
    }
}
