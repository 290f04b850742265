//! `upi-switch bench --merchant`: the "Rinha de Backend 2025" final test
//! against merchant forwarding. It starts a rig with the two payment
//! processors (simulators with the final round's fees), then runs the test
//! as the contest's k6 script does (`crate::contest`): virtual users ramping
//! from 1 to `--merchant-users`, each posting one payment then thinking 1 s;
//! a checker every 10 s comparing the switch's summary with both
//! processors' over `[now − 15 s, now − 2 s]`; the processors' delays and
//! failures changing in ten phases. At the end it prints the contest's score
//! and what it cost: p99 of `POST /payments`, inconsistencies, lag, and CPU
//! of the switch (process and Postgres backends) and of the processors.
//!
//! Like the rest of the bench it measures and never changes the switch.

use super::BenchError;
use super::procfs;
use super::sampler::PgSampler;
use crate::cli::BenchArgs;
use crate::contest::{self, CHECK_EVERY, CHECK_FROM, CHECK_TO, Check, Count, Load, PHASES};
use crate::rig::process::Mode;
use crate::rig::{PROCESSOR_TOKEN, Rig, RigConfig};
use crate::traffic::Latency;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What one merchant run printed, as JSON.
#[derive(Debug, Serialize)]
struct MerchantReport {
    started_at: String,
    duration_s: f64,
    max_users: u32,
    posts_ok: u64,
    posts_failed: u64,
    post_latency_ms: crate::traffic::LatencySummary,
    checks: usize,
    inconsistencies: i64,
    /// Checks that found a difference: (seconds into the run, default diff, fallback diff).
    inconsistent_checks: Vec<(f64, i64, i64)>,
    default: (i64, String),
    fallback: (i64, String),
    score: ScoreReport,
    /// After waiting for forwarding to settle: payments no processor has.
    lag_after_drain: i64,
    cpu_s: Vec<(&'static str, f64)>,
    cpu_us_per_payment: Vec<(&'static str, f64)>,
}

#[derive(Debug, Serialize)]
struct ScoreReport {
    gross: f64,
    fees: f64,
    bonus: f64,
    fine: f64,
    net: f64,
    lag: i64,
}

/// Runs the merchant test as `args` say; prints the result, writes `--json`.
pub async fn run(args: &BenchArgs, dir: &std::path::Path) -> Result<(), BenchError> {
    let mut cfg = RigConfig::from_layout(
        &args.layout,
        (20, 0, 0),
        dir,
        "upi-switch bench",
        Mode::Attached,
    )?;
    cfg.processors = true;
    let mut rig = Rig::start(cfg).await?;
    let result = contest_run(args, &rig).await;
    rig.teardown()?;
    result
}

struct Ctx {
    http: reqwest::Client,
    switch: String,
    processors: [String; 2],
    t0: Instant,
    load: Load,
    ok: AtomicU64,
    failed: AtomicU64,
    latency: Mutex<Latency>,
}

async fn contest_run(args: &BenchArgs, rig: &Rig) -> Result<(), BenchError> {
    let run = |e: String| BenchError::Run(format!("merchant: {e}"));
    let [default_url, fallback_url] = <[String; 2]>::try_from(rig.processors.clone())
        .map_err(|_| run("the rig has no processors".into()))?;
    let load = Load {
        max_users: args.merchant_users.max(1),
        duration: args.duration,
        ..Load::default()
    };
    let http = crate::traffic::http_client(Duration::from_secs(10), load.max_users as usize + 16)
        .map_err(|e| run(e.to_string()))?;
    let ctx = Arc::new(Ctx {
        http,
        switch: rig.switch_url.clone(),
        processors: [default_url, fallback_url],
        t0: Instant::now(),
        load,
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latency: Mutex::new(Latency::new()),
    });
    // Setup as the contest's: both processors and the switch forget everything.
    for p in &ctx.processors {
        admin(
            &ctx.http,
            "POST",
            &format!("{p}/admin/purge-payments"),
            None,
        )
        .await
        .map_err(run)?;
    }
    // The switch's purge is an operator's call: with the rig's token.
    let operator =
        crate::traffic::operator_client(Duration::from_secs(30), 1, rig.cfg.admin_token.as_deref())
            .map_err(|e| run(e.to_string()))?;
    post_ok(&operator, &format!("{}/purge-payments", ctx.switch), None)
        .await
        .map_err(run)?;
    set_phase(&ctx, &PHASES[0]).await.map_err(run)?;
    let started_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let from = Utc::now();

    // Every switch node's CPU (one, or several behind the balancer).
    let switch_pids = rig.switch_pids();
    let processor_pids: Vec<u32> = ["processor-default", "processor-fallback"]
        .iter()
        .filter_map(|s| rig.pid(s))
        .collect();
    let clk_tck = procfs::clk_tck();
    let ticks = |pids: &[u32]| -> u64 {
        pids.iter()
            .filter_map(|p| procfs::stat(*p))
            .map(|s| s.cpu_ticks)
            .sum()
    };
    let (switch0, processors0) = (ticks(&switch_pids), ticks(&processor_pids));
    let pg = PgSampler::start(
        &format!("{}/postgres", rig.pg),
        &rig.switch_db_name,
        &rig.bank_db_name,
        procfs::uptime_ticks(clk_tck).unwrap_or(0),
    )
    .await
    .map_err(run)?;

    let stages = tokio::spawn(stages(ctx.clone()));
    let checker = tokio::spawn(checker(ctx.clone()));
    users(ctx.clone()).await;
    stages.abort();
    let checks = checker.await.unwrap_or_default();
    let elapsed = ctx.t0.elapsed();

    // The contest's teardown: the processors' summaries at once.
    let to = Utc::now();
    let totals = [
        processor_summary(&ctx, 0, from, to).await.map_err(run)?,
        processor_summary(&ctx, 1, from, to).await.map_err(run)?,
    ];
    let switch_cpu = ticks(&switch_pids).saturating_sub(switch0);
    let processors_cpu = ticks(&processor_pids).saturating_sub(processors0);
    let backends = pg.finish().await.totals();
    let switch_pg: u64 = backends
        .iter()
        .filter(|(c, _)| **c == super::measure::Component::SwitchBackends)
        .map(|(_, t)| *t)
        .sum();

    let (ok, failed) = (
        ctx.ok.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
    );
    let latency = ctx.latency.lock().await.summary();
    let inconsistencies: i64 = checks.iter().map(|(_, c)| c.inconsistencies()).sum();
    let outcome = contest::Outcome {
        successes: ok,
        failures: failed,
        p99_ms: latency.p99_ms,
        default: totals[0].0,
        fallback: totals[1].0,
        default_fee: totals[0].1,
        fallback_fee: totals[1].1,
        inconsistencies,
    };
    let score = contest::score(&outcome);
    // Then what forwarding catches up with (not part of the contest's score).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = [
        processor_summary(&ctx, 0, from, Utc::now())
            .await
            .map_err(run)?,
        processor_summary(&ctx, 1, from, Utc::now())
            .await
            .map_err(run)?,
    ];
    let lag_after_drain = ok as i64 - settled[0].0.requests - settled[1].0.requests;
    let secs = |t: u64| t as f64 / clk_tck as f64;
    let cpu_s = vec![
        ("switch process", secs(switch_cpu)),
        ("switch's pg backends", secs(switch_pg)),
        ("processors (simulators)", secs(processors_cpu)),
    ];
    let per_payment = |s: f64| if ok == 0 { 0.0 } else { s * 1e6 / ok as f64 };
    let report = MerchantReport {
        started_at,
        duration_s: elapsed.as_secs_f64(),
        max_users: ctx.load.max_users,
        posts_ok: ok,
        posts_failed: failed,
        post_latency_ms: latency,
        checks: checks.len(),
        inconsistencies,
        inconsistent_checks: checks
            .iter()
            .filter(|(_, c)| c.inconsistencies() > 0)
            .map(|(at, c)| {
                (
                    *at,
                    c.switch_default.requests - c.default.requests,
                    c.switch_fallback.requests - c.fallback.requests,
                )
            })
            .collect(),
        default: (totals[0].0.requests, cents(totals[0].0.amount_cents)),
        fallback: (totals[1].0.requests, cents(totals[1].0.amount_cents)),
        score: ScoreReport {
            gross: score.gross,
            fees: score.fees,
            bonus: score.bonus,
            fine: score.fine,
            net: score.net,
            lag: score.lag,
        },
        lag_after_drain,
        cpu_us_per_payment: cpu_s.iter().map(|(k, s)| (*k, per_payment(*s))).collect(),
        cpu_s,
    };
    println!("{}", render(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| run(e.to_string()))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| run(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

fn cents(c: i64) -> String {
    crate::domain::Paise(c).to_rupees()
}

fn render(r: &MerchantReport) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<32}{v}\n"));
    line(
        "run",
        format!(
            "{:.0} s, 1 -> {} users, each posting then thinking 1 s",
            r.duration_s, r.max_users
        ),
    );
    line(
        "POST /payments",
        format!("{} answered 2xx, {} not", r.posts_ok, r.posts_failed),
    );
    line("latency (2xx) ms", r.post_latency_ms.line());
    line(
        "checks / inconsistencies",
        format!("{} / {}", r.checks, r.inconsistencies),
    );
    for (at, d, f) in &r.inconsistent_checks {
        line(
            "  inconsistent at",
            format!("{at:.0} s: default {d:+}, fallback {f:+}"),
        );
    }
    line(
        "processed default / fallback",
        format!(
            "{} (₹{}) / {} (₹{})",
            r.default.0, r.default.1, r.fallback.0, r.fallback.1
        ),
    );
    line(
        "score (the contest's)",
        format!(
            "gross ₹{:.2} - fees ₹{:.2}, bonus {:.0}%, fine {:.0}% => net ₹{:.2}",
            r.score.gross,
            r.score.fees,
            r.score.bonus * 100.0,
            r.score.fine * 100.0,
            r.score.net
        ),
    );
    line(
        "lag at the end / after 5 s",
        format!("{} / {}", r.score.lag, r.lag_after_drain),
    );
    for ((k, s), (_, us)) in r.cpu_s.iter().zip(&r.cpu_us_per_payment) {
        line(
            &format!("CPU {k}"),
            format!("{s:.2} s, {us:.0} µs per payment"),
        );
    }
    out
}

/// The ramp of users: a new one whenever the schedule asks for more.
async fn users(ctx: Arc<Ctx>) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut started = 0u32;
    loop {
        let elapsed = ctx.t0.elapsed();
        if elapsed >= ctx.load.duration {
            break;
        }
        while started < ctx.load.users_at(elapsed) {
            started += 1;
            tasks.spawn(user(ctx.clone()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while tasks.join_next().await.is_some() {}
}

/// One virtual user: post a payment, think, until the run's end.
async fn user(ctx: Arc<Ctx>) {
    let amount = cents(ctx.load.amount_cents);
    while ctx.t0.elapsed() < ctx.load.duration {
        let body = format!(
            r#"{{"correlationId":"{}","amount":{amount}}}"#,
            uuid::Uuid::new_v4()
        );
        let started = Instant::now();
        let answer = ctx
            .http
            .post(format!("{}/payments", ctx.switch))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match answer {
            Ok(r) if matches!(r.status().as_u16(), 200 | 201 | 202 | 204) => {
                ctx.latency.lock().await.record(started.elapsed());
                ctx.ok.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                ctx.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(ctx.load.think).await;
    }
}

/// Applies each phase of processor faults at its time.
async fn stages(ctx: Arc<Ctx>) {
    for phase in PHASES.iter().skip(1) {
        let at = ctx.t0 + ctx.load.phase_start(phase);
        tokio::time::sleep_until(at.into()).await;
        if let Err(e) = set_phase(&ctx, phase).await {
            eprintln!("upi-switch bench: merchant: setting a phase failed: {e}");
        }
    }
}

async fn set_phase(ctx: &Ctx, p: &contest::Phase) -> Result<(), String> {
    let settings = [
        (0, p.default_delay_ms, p.default_failure),
        (1, p.fallback_delay_ms, p.fallback_failure),
    ];
    for (i, delay, failure) in settings {
        let base = &ctx.processors[i];
        let delay_body = serde_json::json!({ "delay": delay });
        let failure_body = serde_json::json!({ "failure": failure });
        admin(
            &ctx.http,
            "PUT",
            &format!("{base}/admin/configurations/delay"),
            Some(&delay_body),
        )
        .await?;
        admin(
            &ctx.http,
            "PUT",
            &format!("{base}/admin/configurations/failure"),
            Some(&failure_body),
        )
        .await?;
    }
    Ok(())
}

/// The contest's checker: every 10 s, the three summaries of `[now − 15 s,
/// now − 2 s]`, asked at once. Returns (seconds into the run, check) for each.
async fn checker(ctx: Arc<Ctx>) -> Vec<(f64, Check)> {
    let mut checks = Vec::new();
    // The contest's checker starts with the run.
    while ctx.t0.elapsed() < ctx.load.duration {
        let now = Utc::now();
        let from = now - chrono::Duration::from_std(CHECK_FROM).unwrap_or_default();
        let to = now - chrono::Duration::from_std(CHECK_TO).unwrap_or_default();
        let at = ctx.t0.elapsed().as_secs_f64();
        let (d, f, s) = tokio::join!(
            processor_summary(&ctx, 0, from, to),
            processor_summary(&ctx, 1, from, to),
            switch_summary(&ctx, from, to),
        );
        match (d, f, s) {
            (Ok((default, _)), Ok((fallback, _)), Ok([switch_default, switch_fallback])) => {
                checks.push((
                    at,
                    Check {
                        default,
                        fallback,
                        switch_default,
                        switch_fallback,
                    },
                ));
            }
            (d, f, s) => eprintln!(
                "upi-switch bench: merchant: a check could not read every summary: {:?} {:?} {:?}",
                d.err(),
                f.err(),
                s.err()
            ),
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
    checks
}

fn iso(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A processor's admin summary: its count and amount, and its fee.
async fn processor_summary(
    ctx: &Ctx,
    i: usize,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> Result<(Count, f64), String> {
    let url = format!(
        "{}/admin/payments-summary?from={}&to={}",
        ctx.processors[i],
        iso(from),
        iso(to)
    );
    let body = get_json(&ctx.http, &url, Some(PROCESSOR_TOKEN)).await?;
    Ok((
        count(&body["totalRequests"], &body["totalAmount"])?,
        body["feePerTransaction"].as_f64().unwrap_or(0.0),
    ))
}

async fn switch_summary(
    ctx: &Ctx,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> Result<[Count; 2], String> {
    let url = format!(
        "{}/payments-summary?from={}&to={}",
        ctx.switch,
        iso(from),
        iso(to)
    );
    let body = get_json(&ctx.http, &url, None).await?;
    Ok([
        count(
            &body["default"]["totalRequests"],
            &body["default"]["totalAmount"],
        )?,
        count(
            &body["fallback"]["totalRequests"],
            &body["fallback"]["totalAmount"],
        )?,
    ])
}

/// A count and an amount (a JSON number read exactly from its text).
fn count(requests: &Value, amount: &Value) -> Result<Count, String> {
    let requests = requests
        .as_i64()
        .ok_or_else(|| format!("totalRequests {requests}"))?;
    let text = amount.to_string();
    let amount_cents = crate::domain::Paise::parse_rupees(
        text.trim_matches('"'),
        crate::domain::Paise(crate::domain::MAX_WIRE_PAISE),
    )
    .map(|p| p.0)
    .or_else(|_| {
        if requests == 0 {
            Ok(0)
        } else {
            Err(format!("totalAmount {text}"))
        }
    })?;
    Ok(Count {
        requests,
        amount_cents,
    })
}

async fn get_json(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<Value, String> {
    let mut request = http.get(url);
    if let Some(t) = token {
        request = request.header("X-Rinha-Token", t);
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        return Err(format!("GET {url}: {}", answer.status()));
    }
    answer.json().await.map_err(|e| e.to_string())
}

async fn admin(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<(), String> {
    let mut request = match method {
        "PUT" => http.put(url),
        _ => http.post(url),
    }
    .header("X-Rinha-Token", PROCESSOR_TOKEN);
    if let Some(b) = body {
        request = request.json(b);
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("{method} {url}: {}", answer.status()))
    }
}

async fn post_ok(http: &reqwest::Client, url: &str, body: Option<&Value>) -> Result<(), String> {
    admin(http, "POST", url, body).await
}
