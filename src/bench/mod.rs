//! `upi-switch bench`: what one saga costs, component by component. It
//! starts a rig (`crate::rig`, services from `--bin`) or uses a running one
//! (`--target DIR` of `rig up`), and for each rate: an unmeasured warm-up,
//! then `loadgen` open loop for `--duration` (posts only: the switch's
//! database says how each saga ended), then the wait until every saga of the
//! phase has ended. Over that window it counts CPU of every component from
//! `/proc` ([`sampler`]), context switches of the switch's threads, and reads
//! the phase's outcomes and accept→terminal times from the switch's database
//! ([`load`]). A last phase slows the banks down to hold many sagas in flight
//! and reports the switch's RSS per in-flight saga. A progress bar while it
//! runs, a table at the end ([`measure::render`]), JSON with `--json`.
//!
//! The bench measures; it never changes the switch. Its own CPU (sampling) is
//! shown apart, and the machine's whole busy time too, since anything else
//! running on the box (a compiler) is in the box figure but not in the
//! components'.

pub mod analytics;
pub mod load;
pub mod measure;
pub mod merchant;
pub mod procfs;
pub mod sampler;
pub mod target;

use crate::cli::BenchArgs;
use crate::rig::process::Mode;
use crate::rig::{Rig, RigConfig, RigError};
use crate::traffic::shutdown_signal;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use load::LoadSpec;
use measure::{Component, Phase, RssPhase};
use sampler::{PgSampler, Snapshot};
use serde::Serialize;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use target::Target;

/// Why a bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Rig(#[from] RigError),
    #[error("{0}")]
    Run(String),
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
}

/// The JSON `--json` writes.
#[derive(Debug, Serialize)]
struct BenchReport {
    started_at: String,
    host: Host,
    /// The binary the switch and banks ran.
    services_bin: String,
    switch_url: String,
    /// Switch nodes (more than one: behind HAProxy at `switch_url`).
    switch_nodes: usize,
    /// The switch's and the banks' databases.
    databases: [String; 2],
    /// How the load was sent and where accept→terminal comes from.
    method: Vec<&'static str>,
    clk_tck: u64,
    warmup_s: f64,
    phases: Vec<Phase>,
    rss: Option<RssPhase>,
    /// `--analytics`: the ingest's CPU per 1,000 events, per rate.
    analytics: Vec<analytics::AnalyticsPhase>,
}

#[derive(Debug, Serialize)]
struct Host {
    cores: usize,
    loadavg_before: String,
    loadavg_after: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs the bench as `args` say; prints the table, writes the JSON.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    if args.rates.is_empty() || args.rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        return Err(BenchError::Usage(
            "--rates must be numbers above 0, e.g. 300,1000,2000".into(),
        ));
    }
    if args.duration.is_zero() {
        return Err(BenchError::Usage("--duration must be longer than 0".into()));
    }
    // Checked before any rig starts.
    crate::loadgen::mix::Mix::parse(&args.mix).map_err(BenchError::Usage)?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "upi-switch-bench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )),
    };
    std::fs::create_dir_all(dir.join("logs"))
        .map_err(|e| BenchError::Run(format!("cannot create {}: {e}", dir.display())))?;
    if !args.quiet {
        eprintln!("upi-switch bench: state and logs in {}", dir.display());
    }
    let signal = shutdown_signal();
    tokio::pin!(signal);
    if args.merchant {
        let result = tokio::select! {
            r = merchant::run(&args, &dir) => r,
            name = &mut signal => Err(BenchError::Interrupted(name)),
        };
        if result.is_ok() && !args.keep && args.dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return result;
    }
    let mut rig = None;
    let result = tokio::select! {
        r = bench(&args, &dir, &mut rig) => r,
        name = &mut signal => Err(BenchError::Interrupted(name)),
    };
    if let Some(mut rig) = rig {
        rig.teardown()?;
    }
    if result.is_ok() && !args.keep && args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn bench(
    args: &BenchArgs,
    dir: &std::path::Path,
    rig: &mut Option<Rig>,
) -> Result<(), BenchError> {
    let started_at = chrono::Utc::now().to_rfc3339();
    let loadavg_before = loadavg();
    let plan_s: f64 = args.rates.len() as f64 * (args.warmup + args.duration).as_secs_f64() * 1.2
        + if args.rss_rate > 0.0 {
            args.rss_duration.as_secs_f64() + 5.0
        } else {
            0.0
        }
        + if args.target.is_none() { 10.0 } else { 0.0 };
    let bar = progress_bar(!args.quiet && std::io::stderr().is_terminal(), plan_s);
    let ticker = {
        let bar = bar.clone();
        let t0 = Instant::now();
        tokio::spawn(async move {
            loop {
                bar.set_position(t0.elapsed().as_secs());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let target = match &args.target {
        Some(state) => target::from_state(state, dir)?,
        None => {
            bar.set_message("starting the rig");
            let started = start_rig(args, dir).await?;
            let target = target::from_rig(&started, dir)?;
            *rig = Some(started);
            target
        }
    };
    let http = crate::traffic::http_client(Duration::from_secs(10), 8)
        .map_err(|e| BenchError::Run(format!("cannot build an HTTP client: {e}")))?;
    let switch_db = crate::adapters::pg::DbUrl::parse(&target.switch_db)
        .map_err(|e| BenchError::Run(e.to_string()))?
        .connect()
        .await
        .map_err(|e| BenchError::Run(e.to_string()))?;
    let mix = crate::loadgen::mix::Mix::parse(&args.mix).map_err(BenchError::Usage)?;
    if mix.needs_merchants()
        && std::fs::metadata(&target.merchants_file).is_ok_and(|m| m.len() == 0)
    {
        return Err(BenchError::Usage(format!(
            "--mix {mix} sends P2M payments, but the deployment has no merchants (rig --merchants)"
        )));
    }
    let spec = LoadSpec {
        bin: crate::rig::current_bin()?,
        switch_url: target.switch_url.clone(),
        vpas_file: target.vpas_file.clone(),
        merchants_file: target.merchants_file.clone(),
        key_file: target.key_file.clone(),
        mix,
        concurrency: args.concurrency,
        follow: args.loadgen_follow,
    };
    let clk_tck = procfs::clk_tck();
    // RSS first: after heavy phases the allocator keeps what they freed, and
    // new sagas would reuse it without the RSS growing.
    let rss = if args.rss_rate > 0.0 {
        bar.set_message(format!(
            "RSS: {} tx/s, banks +{} ms",
            args.rss_rate, args.rss_bank_latency_ms
        ));
        Some(rss_phase(args, dir, &target, &spec, &http).await?)
    } else {
        None
    };
    let ingest = if args.analytics {
        Some(analytics::Ingest::start(
            &target.bin,
            &target.switch_db,
            &crate::rig::events_exchange_of(&target.switch_db_name),
            &dir.join("logs").join("analytics.log"),
        )?)
    } else {
        None
    };
    let mut ingest_phases = Vec::new();
    let mut phases = Vec::new();
    for rate in &args.rates {
        let before = match &ingest {
            Some(i) => Some(i.mark(&switch_db).await?),
            None => None,
        };
        let phase = run_phase(
            args, dir, &target, &spec, &http, &switch_db, *rate, clk_tck, &bar,
        )
        .await?;
        if let (Some(i), Some(before)) = (&ingest, before) {
            bar.set_message(format!("{rate} tx/s: analytics catching up"));
            let caught_up = i.settle(&switch_db).await?;
            let after = i.mark(&switch_db).await?;
            ingest_phases.push(analytics::Ingest::phase(*rate, before, after, caught_up));
        }
        bar.println(format!(
            "{rate} tx/s: {} terminal, switch-side {:.0} µs/saga, loadgen {:.0} µs/saga",
            phase.terminal,
            phase.switch_side_us_per_saga,
            phase.cpu_us_per_saga.get("loadgen").copied().unwrap_or(0.0)
        ));
        phases.push(phase);
    }
    ticker.abort();
    bar.finish_and_clear();
    let report = BenchReport {
        started_at,
        host: Host {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg_before,
            loadavg_after: loadavg(),
        },
        services_bin: target.bin.clone(),
        switch_url: target.switch_url.clone(),
        switch_nodes: target.node_urls.len(),
        databases: [target.switch_db_name.clone(), target.bank_db_name.clone()],
        method: vec![
            if spec.follow {
                "loadgen follows every payment with ?wait= long-polls"
            } else {
                "loadgen only posts (--no-follow), open loop; accept latency from the intended send time"
            },
            "accept->terminal and terminal counts: the switch's database (transactions.created_at -> updated_at of the phase's terminal rows)",
            "CPU: /proc/PID/stat deltas over the window from the first send to the last saga's end; Postgres backends by pg_stat_activity.datname, sampled every 100 ms; 'switch process' sums every switch node, haproxy (several nodes) is a row of its own outside switch-side",
        ],
        clk_tck,
        warmup_s: args.warmup.as_secs_f64(),
        phases,
        rss,
        analytics: ingest_phases,
    };
    let nodes = match report.switch_nodes {
        1 => String::new(),
        n => format!(" ({n} switch nodes behind haproxy)"),
    };
    println!(
        "== upi-switch bench: services {} at {}{nodes} ({} cores, load {} -> {}) ==",
        report.services_bin,
        report.switch_url,
        report.host.cores,
        report.host.loadavg_before,
        report.host.loadavg_after
    );
    println!("{}", measure::render(&report.phases, report.rss.as_ref()));
    if !report.analytics.is_empty() {
        println!("{}", analytics::render(&report.analytics));
    }
    for m in &report.method {
        println!("  {m}");
    }
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| BenchError::Run(e.to_string()))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| BenchError::Run(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

async fn start_rig(args: &BenchArgs, dir: &std::path::Path) -> Result<Rig, BenchError> {
    let cfg = RigConfig::from_layout(
        &args.layout,
        (200, 0, 0),
        dir,
        "upi-switch bench",
        Mode::Attached,
    )?;
    Ok(Rig::start(cfg).await?)
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    args: &BenchArgs,
    dir: &std::path::Path,
    target: &Target,
    spec: &LoadSpec,
    http: &reqwest::Client,
    switch_db: &tokio_postgres::Client,
    rate: f64,
    clk_tck: u64,
    bar: &ProgressBar,
) -> Result<Phase, BenchError> {
    let file = |what: &str| dir.join(format!("{what}-{rate}.json"));
    let log = |what: &str| dir.join("logs").join(format!("{what}-{rate}.log"));
    let run = |e: String| BenchError::Run(format!("{rate} tx/s: {e}"));
    if !args.warmup.is_zero() {
        bar.set_message(format!("{rate} tx/s: warm-up"));
        load::run_loadgen(spec, rate, args.warmup, &file("warmup"), &log("warmup"))
            .await
            .map_err(run)?;
        load::wait_idle(http, &target.node_urls, args.drain_timeout)
            .await
            .map_err(run)?;
    }
    bar.set_message(format!("{rate} tx/s: measuring"));
    let window_start = procfs::uptime_ticks(clk_tck).unwrap_or(0);
    let before = Snapshot::take(&target.pids);
    let pg = PgSampler::start(
        &target.admin_db,
        &target.switch_db_name,
        &target.bank_db_name,
        window_start,
    )
    .await
    .map_err(run)?;
    let t0 = Instant::now();
    let report = load::run_loadgen(spec, rate, args.duration, &file("loadgen"), &log("loadgen"))
        .await
        .map_err(run)?;
    bar.set_message(format!("{rate} tx/s: draining"));
    let drained = load::wait_idle(http, &target.node_urls, args.drain_timeout).await;
    let window = t0.elapsed();
    let after = Snapshot::take(&target.pids);
    let backends = pg.finish().await;
    // Sagas still running at the drain limit: the phase is reported as far as it got.
    if let Err(e) = &drained {
        bar.println(format!("{rate} tx/s: {e}; reporting what ended"));
    }
    let run_id = report["run_id"].as_str().unwrap_or_default().to_string();
    let with_collects = spec.mix.weight(crate::saga::PaymentType::Collect) > 0;
    let outcomes = load::outcomes(switch_db, &run_id, with_collects)
        .await
        .map_err(run)?;

    let mut ticks = before.delta(&after);
    ticks.extend(backends.totals());
    let loadgen_cpu_s = report["process_cpu_s"].as_f64().unwrap_or(0.0);
    ticks.insert(
        Component::Loadgen,
        (loadgen_cpu_s * clk_tck as f64).round() as u64,
    );
    let sagas = outcomes.terminal;
    let per = |t: u64| measure::us_per_saga(t, clk_tck, sagas);
    // The balancer's row only when there is one.
    let cpu_us_per_saga = Component::ALL
        .iter()
        .filter(|c| **c != Component::Haproxy || target.pids.haproxy.is_some())
        .map(|c| (c.key(), per(ticks.get(c).copied().unwrap_or(0))))
        .collect();
    let switch_side = Component::SWITCH_SIDE
        .iter()
        .map(|c| ticks.get(c).copied().unwrap_or(0))
        .sum();
    let box_busy = after.box_cpu.busy.saturating_sub(before.box_cpu.busy);
    let per_saga = |n: u64| {
        if sagas == 0 {
            0.0
        } else {
            n as f64 / sagas as f64
        }
    };
    let schedule = &report["schedule"];
    let count = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    Ok(Phase {
        rate_asked: rate,
        duration_s: args.duration.as_secs_f64(),
        sends_asked: count(&schedule["scheduled"]),
        sends_out: count(&schedule["sent"]),
        every_send_out: count(&schedule["unsent"]) == 0 && count(&schedule["sent"]) > 0,
        accepted: count(&report["accepted"]),
        send_errors: count(&report["errors"]["send"]),
        terminal: sagas,
        statuses: outcomes.statuses,
        by_type: outcomes.by_type,
        terminal_rate: if outcomes.span_s > 0.0 {
            sagas as f64 / outcomes.span_s
        } else {
            0.0
        },
        accept_ms: load::accept_percentiles(&report),
        accept_to_terminal_ms: outcomes.accept_to_terminal_ms,
        window_s: window.as_secs_f64(),
        cpu_us_per_saga,
        switch_side_us_per_saga: per(switch_side),
        box_us_per_saga: per(box_busy),
        box_cores_busy: box_busy as f64 / clk_tck as f64 / window.as_secs_f64().max(1e-9),
        switch_voluntary_ctxt_per_saga: per_saga(
            after.switch_ctxt.0.saturating_sub(before.switch_ctxt.0),
        ),
        switch_involuntary_ctxt_per_saga: per_saga(
            after.switch_ctxt.1.saturating_sub(before.switch_ctxt.1),
        ),
        pg_processes_seen: backends.processes(),
        drained: drained.is_ok(),
    })
}

/// Slow banks hold sagas in flight: the switch's RSS then, against idle.
async fn rss_phase(
    args: &BenchArgs,
    dir: &std::path::Path,
    target: &Target,
    spec: &LoadSpec,
    http: &reqwest::Client,
) -> Result<RssPhase, BenchError> {
    let run = |e: String| BenchError::Run(format!("RSS phase: {e}"));
    load::wait_idle(http, &target.node_urls, args.drain_timeout)
        .await
        .map_err(run)?;
    // Every node's RSS, summed (the balancer spreads the sagas over them).
    let switch = target.pids.switch.clone();
    let rss = move || -> u64 {
        switch
            .iter()
            .map(|p| procfs::rss_bytes(*p).unwrap_or(0))
            .sum()
    };
    let idle = rss();
    let old = load::set_bank_latency(http, &target.bank_endpoints, &[args.rss_bank_latency_ms])
        .await
        .map_err(run)?;
    let sampled = async {
        let mut child = load::spawn_loadgen(
            spec,
            args.rss_rate,
            args.rss_duration,
            &dir.join("loadgen-rss.json"),
            &dir.join("logs").join("loadgen-rss.log"),
        )?;
        let (mut in_flight, mut loaded) = (0, 0);
        let limit = Instant::now() + args.rss_duration + Duration::from_secs(120);
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > limit {
                return Err("loadgen did not end".to_string());
            }
            if let Some((n, _)) = load::saga_counts(http, &target.node_urls).await
                && n > in_flight
            {
                in_flight = n;
                loaded = rss();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok((in_flight, loaded))
    }
    .await;
    // The banks get their latency back whatever happened.
    let restored = load::set_bank_latency(http, &target.bank_endpoints, &old).await;
    let (in_flight, loaded) = sampled.map_err(run)?;
    restored.map_err(run)?;
    load::wait_idle(http, &target.node_urls, args.drain_timeout)
        .await
        .map_err(run)?;
    Ok(RssPhase {
        rate: args.rss_rate,
        bank_latency_ms: args.rss_bank_latency_ms,
        idle_rss_bytes: idle,
        loaded_rss_bytes: loaded,
        in_flight,
        bytes_per_in_flight_saga: measure::rss_per_saga(idle, loaded, in_flight),
    })
}

/// A bar on stderr over the planned seconds, else one that draws nothing.
fn progress_bar(show: bool, plan_s: f64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar =
        ProgressBar::with_draw_target(Some(plan_s.ceil() as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("bench [{elapsed_precise}] {bar:30} ~{pos}/{len} s  {msg}")
    {
        bar.set_style(style);
    }
    bar
}
