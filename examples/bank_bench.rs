//! Load for one Bank API v1 bank (e.g. the simulator), and what it costs.
//!
//! Two modes:
//! - **closed loop** (no `--rate`): `--concurrency` workers each send unique
//!   1-paisa debits back to back for `--seconds`; prints the rate reached.
//! - **open loop** (`--rate N`): N unique 1-paisa ops per second, alternately
//!   a debit and a credit (`--kind mix`, the default there) so balances stay
//!   put, at most `--concurrency` in flight (a send that finds the cap full
//!   is counted as skipped, never queued).
//!
//! Accounts are ACC001..ACC<accounts> (as `bank-sim --seed-accounts` names
//! them). Several `--url`s are used in turn (endpoints of one bank).
//!
//! With `--pid PID` (repeatable) and/or `--database NAME`, it also measures
//! CPU over the `--seconds` after a `--warmup-seconds` run-in: utime + stime
//! of each PID from `/proc/<pid>/stat`, and of every Postgres backend whose
//! `pg_stat_activity.datname` is NAME (read over `--pg`, which must name
//! another database so the reader is not one of them), printed in µs per
//! definitive answer. Backends must live on this machine.
//!
//! ```sh
//! upi-switch bank-sim --code HDFC --port 0 --database-url postgres://postgres@127.0.0.1:5432/bench_x --seed-accounts 200 &
//! cargo run --release --example bank_bench -- --url http://127.0.0.1:PORT --rate 1000 \
//!     --seconds 20 --accounts 200 --pid $(pgrep -n -f 'bank-sim --code HDFC') --database bench_x
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ; 100 on Linux/x86).
const TICKS_PER_SECOND: u64 = 100;

struct Args {
    urls: Vec<String>,
    concurrency: usize,
    seconds: u64,
    warmup_seconds: u64,
    accounts: usize,
    rate: Option<u64>,
    mix: bool,
    pids: Vec<u32>,
    database: Option<String>,
    pg: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        urls: Vec::new(),
        concurrency: 64,
        seconds: 20,
        warmup_seconds: 3,
        accounts: 1000,
        rate: None,
        mix: true,
        pids: Vec::new(),
        database: None,
        pg: "postgres://postgres@127.0.0.1:5432/postgres".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--url" => a.urls.push(value.clone()),
            "--concurrency" => a.concurrency = num()?.max(1) as usize,
            "--seconds" => a.seconds = num()?,
            "--warmup-seconds" => a.warmup_seconds = num()?,
            "--accounts" => a.accounts = num()?.max(1) as usize,
            "--rate" => a.rate = Some(num()?.max(1)),
            "--kind" if value == "mix" => a.mix = true,
            "--kind" if value == "debit" => a.mix = false,
            "--pid" => a.pids.push(num()? as u32),
            "--database" => a.database = Some(value.clone()),
            "--pg" => a.pg = value.clone(),
            other => return Err(format!("unknown flag or value: {other} {value}")),
        }
    }
    if a.urls.is_empty() {
        a.urls.push("http://127.0.0.1:9201".into());
    }
    Ok(a)
}

/// utime + stime of a process (all its threads) in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU of the measured processes and backends at one instant.
struct CpuSample {
    pids: Vec<(u32, u64)>,
    backends: Vec<(u32, u64)>,
    commits: i64,
}

struct Meter {
    pids: Vec<u32>,
    database: Option<(tokio_postgres::Client, String)>,
}

impl Meter {
    async fn new(a: &Args) -> Result<Meter, String> {
        let database = match &a.database {
            None => None,
            Some(name) => {
                let (client, conn) = tokio_postgres::connect(&a.pg, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("--pg {}: {e}", a.pg))?;
                tokio::spawn(conn);
                Some((client, name.clone()))
            }
        };
        Ok(Meter {
            pids: a.pids.clone(),
            database,
        })
    }

    async fn sample(&self) -> Result<CpuSample, String> {
        let pids = self
            .pids
            .iter()
            .map(|&p| (p, cpu_ticks(p).unwrap_or(0)))
            .collect();
        let (mut backends, mut commits) = (Vec::new(), 0);
        if let Some((client, name)) = &self.database {
            let rows = client
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[name],
                )
                .await
                .map_err(|e| e.to_string())?;
            for row in rows {
                let pid: i32 = row.get(0);
                if let Some(ticks) = cpu_ticks(pid as u32) {
                    backends.push((pid as u32, ticks));
                }
            }
            commits = client
                .query_one(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                    &[name],
                )
                .await
                .map_err(|e| e.to_string())?
                .get(0);
        }
        Ok(CpuSample {
            pids,
            backends,
            commits,
        })
    }
}

/// Ticks spent between two samples; a backend born in between counts from zero.
fn spent(before: &[(u32, u64)], after: &[(u32, u64)]) -> u64 {
    after
        .iter()
        .map(|(pid, t)| {
            let t0 = before.iter().find(|(p, _)| p == pid).map_or(0, |(_, t)| *t);
            t.saturating_sub(t0)
        })
        .sum()
}

fn us_per_op(ticks: u64, ops: u64) -> f64 {
    (ticks as f64 * 1e6 / TICKS_PER_SECOND as f64) / ops.max(1) as f64
}

/// The load's shared counters: answers in the measured window, latencies.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    lat_us: Mutex<Vec<u64>>,
}

fn body(run: &str, i: u64, accounts: usize, txn: &str) -> String {
    let width = accounts.to_string().len().max(3);
    let account = 1 + (i as usize).wrapping_mul(7919) % accounts;
    format!(
        r#"{{"op_id":"b{run}-{i}","txn_id":"{txn}","account":"ACC{account:0width$}","amount_paise":1}}"#
    )
}

async fn send(client: &reqwest::Client, url: &str, body: String, tally: &Tally) {
    let t0 = Instant::now();
    let result = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match result {
        Ok(r) if r.status().as_u16() == 200 || r.status().as_u16() == 422 => {
            let _ = r.bytes().await;
            tally.answered.fetch_add(1, Ordering::Relaxed);
            tally
                .lat_us
                .lock()
                .await
                .push(t0.elapsed().as_micros() as u64);
        }
        _ => {
            tally.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn target(a: &Args, i: u64) -> String {
    let url = &a.urls[i as usize % a.urls.len()];
    let kind = if a.mix && i % 2 == 1 {
        "credit"
    } else {
        "debit"
    };
    format!("{url}/v1/{kind}")
}

/// Sends `rate` ops per second until `until`, at most `concurrency` in flight.
async fn open_loop(a: Arc<Args>, client: reqwest::Client, tally: Arc<Tally>, until: Instant) {
    let (run, txn) = ids();
    let rate = a.rate.unwrap_or(1);
    let cap = Arc::new(Semaphore::new(a.concurrency));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            sent += 1;
            let Ok(permit) = cap.clone().try_acquire_owned() else {
                tally.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (client, tally) = (client.clone(), tally.clone());
            let (url, body) = (target(&a, sent), body(&run, sent, a.accounts, &txn));
            tokio::spawn(async move {
                send(&client, &url, body, &tally).await;
                drop(permit);
            });
        }
    }
}

/// `--concurrency` workers, each sending its next op when the last is answered.
async fn closed_loop(a: Arc<Args>, client: reqwest::Client, tally: Arc<Tally>, until: Instant) {
    let (run, txn) = ids();
    let mut workers = Vec::new();
    for w in 0..a.concurrency as u64 {
        let (a, client, tally) = (a.clone(), client.clone(), tally.clone());
        let (run, txn) = (run.clone(), txn.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < until {
                send(
                    &client,
                    &target(&a, i),
                    body(&run, i, a.accounts, &txn),
                    &tally,
                )
                .await;
                i += a.concurrency as u64;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

fn ids() -> (String, String) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    (run[..8].to_string(), uuid::Uuid::new_v4().to_string())
}

async fn bench(a: Args) -> Result<(), String> {
    let a = Arc::new(a);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let meter = Meter::new(&a).await?;
    let tally = Arc::new(Tally::default());
    let measured_from = Instant::now() + Duration::from_secs(a.warmup_seconds);
    let until = measured_from + Duration::from_secs(a.seconds);
    let load = if a.rate.is_some() {
        tokio::spawn(open_loop(a.clone(), client, tally.clone(), until))
    } else {
        tokio::spawn(closed_loop(a.clone(), client, tally.clone(), until))
    };
    tokio::time::sleep_until(measured_from.into()).await;
    // Only the measured window counts: reset what the run-in tallied.
    let counted0 = tally.answered.swap(0, Ordering::Relaxed);
    tally.errors.store(0, Ordering::Relaxed);
    tally.skipped.store(0, Ordering::Relaxed);
    tally.lat_us.lock().await.clear();
    let before = meter.sample().await?;
    let t0 = Instant::now();
    tokio::time::sleep_until(until.into()).await;
    let after = meter.sample().await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let answered = tally.answered.load(Ordering::Relaxed);
    let _ = load.await;
    report(&a, &tally, answered, elapsed, counted0, &before, &after).await;
    Ok(())
}

async fn report(
    a: &Args,
    tally: &Tally,
    answered: u64,
    elapsed: f64,
    warmup_answered: u64,
    before: &CpuSample,
    after: &CpuSample,
) {
    let mut lat = tally.lat_us.lock().await.clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let mode = match a.rate {
        Some(r) => format!("open loop {r}/s, {}", if a.mix { "mix" } else { "debit" }),
        None => format!("closed loop, concurrency {}", a.concurrency),
    };
    println!(
        "ops: {answered} answered in {elapsed:.1}s = {:.0}/s ({mode}), errors {}, skipped {}, \
         latency ms p50 {:.2} p99 {:.2} max {:.2} (run-in {warmup_answered})",
        answered as f64 / elapsed,
        tally.errors.load(Ordering::Relaxed),
        tally.skipped.load(Ordering::Relaxed),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    if a.pids.is_empty() && a.database.is_none() {
        return;
    }
    let procs = spent(&before.pids, &after.pids);
    let backends = spent(&before.backends, &after.backends);
    println!(
        "cpu µs/op: processes {:.1}, backends {:.1} ({} backends), total {:.1}; \
         commits/op {:.3}",
        us_per_op(procs, answered),
        us_per_op(backends, answered),
        after.backends.len(),
        us_per_op(procs + backends, answered),
        (after.commits - before.commits) as f64 / answered.max(1) as f64,
    );
}

#[tokio::main]
async fn main() {
    let result = match args() {
        Ok(a) => bench(a).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("bank_bench: {e}");
        std::process::exit(2);
    }
}
