//! What the bench asks of the outside world besides `/proc`: `upi-switch
//! loadgen` runs as a child (its CPU is its own, its JSON report gives the
//! sends and accept latencies), the switch's `/readyz` says when it is idle
//! and how many sagas are in flight, the switch's database says how each
//! phase's sagas ended and how long they took, and the bank simulators'
//! `PUT /admin/faults` slows the banks down for the RSS phase. Every wait is
//! bounded.

use super::measure::Percentiles;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How a phase's load is sent.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub bin: PathBuf,
    pub switch_url: String,
    pub vpas_file: PathBuf,
    /// Merchant VPAs (P2M payees), a `--merchants` file.
    pub merchants_file: PathBuf,
    /// Signs loadgen's calls (a switch with authentication).
    pub key_file: Option<PathBuf>,
    /// Payment types and weights (loadgen's `--mix`).
    pub mix: crate::loadgen::mix::Mix,
    pub concurrency: usize,
    /// Follow every payment with `?wait=` long-polls (the old, dearer way).
    pub follow: bool,
}

/// Runs `loadgen` at `rate` for `duration` to its end (bounded); returns its report.
pub async fn run_loadgen(
    spec: &LoadSpec,
    rate: f64,
    duration: Duration,
    report: &Path,
    log: &Path,
) -> Result<Value, String> {
    let mut child = spawn_loadgen(spec, rate, duration, report, log)?;
    let limit = duration + Duration::from_secs(120);
    let status = tokio::time::timeout(limit, child.wait())
        .await
        .map_err(|_| format!("loadgen did not end within {} s", limit.as_secs()))?
        .map_err(|e| format!("waiting for loadgen: {e}"))?;
    let text = std::fs::read_to_string(report).map_err(|e| {
        format!(
            "loadgen ({status}) wrote no report {}: {e} (log: {})",
            report.display(),
            log.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("loadgen's report {}: {e}", report.display()))
}

/// Starts `loadgen` (killed if the returned child is dropped).
pub fn spawn_loadgen(
    spec: &LoadSpec,
    rate: f64,
    duration: Duration,
    report: &Path,
    log: &Path,
) -> Result<tokio::process::Child, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = tokio::process::Command::new(&spec.bin);
    cmd.arg("loadgen")
        .args(["--switch", &spec.switch_url])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &format!("{}ms", duration.as_millis())])
        .args(["--concurrency", &spec.concurrency.to_string()])
        .arg("--vpas")
        .arg(&spec.vpas_file)
        .args(["--amount", "1.00..5.00", "--quiet", "--report"])
        .arg(report)
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .stderr(err)
        .kill_on_drop(true);
    if let Some(key) = &spec.key_file {
        cmd.arg("--key-file").arg(key);
    }
    if !spec.follow {
        cmd.arg("--no-follow");
    }
    if !spec.mix.is_p2p_only() {
        cmd.args(["--mix", &spec.mix.to_string()])
            .arg("--merchants")
            .arg(&spec.merchants_file);
    }
    // It must not outlive a bench that is killed.
    crate::rig::process::die_with_parent(cmd.as_std_mut());
    cmd.spawn()
        .map_err(|e| format!("cannot start {} loadgen: {e}", spec.bin.display()))
}

/// The saga counts of every node, summed, from each node's `/readyz`: (in
/// flight, backlog); `None` if a node did not say.
pub async fn saga_counts(http: &reqwest::Client, nodes: &[String]) -> Option<(u64, u64)> {
    let mut sum = (0, 0);
    for node in nodes {
        let (n, b) = node_saga_counts(http, node).await?;
        sum = (sum.0 + n, sum.1 + b);
    }
    Some(sum)
}

/// One node's saga counts from its `/readyz`: (in flight, backlog).
async fn node_saga_counts(http: &reqwest::Client, switch: &str) -> Option<(u64, u64)> {
    let resp = http
        .get(format!("{switch}/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let body: Value = resp.json().await.ok()?;
    let sagas = &body["checks"]["sagas"];
    Some((sagas["in_flight"].as_u64()?, sagas["backlog"].as_u64()?))
}

/// Waits until no switch node runs a saga or has one waiting (seen twice in
/// a row), at most `limit`. `Err` says what was still going on.
pub async fn wait_idle(
    http: &reqwest::Client,
    nodes: &[String],
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut quiet = 0;
    let mut last = None;
    loop {
        match saga_counts(http, nodes).await {
            Some((0, 0)) => {
                quiet += 1;
                if quiet >= 2 {
                    return Ok(());
                }
            }
            other => {
                quiet = 0;
                last = other;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the switch was not idle after {} s (in flight, backlog: {last:?})",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How one phase's transactions ended, from the switch's database.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    pub statuses: BTreeMap<String, u64>,
    /// The same by payment type.
    pub by_type: BTreeMap<String, BTreeMap<String, u64>>,
    pub terminal: u64,
    pub accept_to_terminal_ms: Percentiles,
    /// Seconds from the first `created_at` to the last terminal `updated_at`.
    pub span_s: f64,
}

/// The phase's transactions: those whose Idempotency-Key starts with the
/// run's id, and with `collects` the payments of its approved collect
/// requests (keyed the same way; their payments have no key of their own).
const OF_RUN: &str = "idempotency_key LIKE $1";
const OF_RUN_WITH_COLLECTS: &str = "(idempotency_key LIKE $1 OR txn_id IN \
     (SELECT txn_id FROM collects WHERE idempotency_key LIKE $1 AND txn_id IS NOT NULL))";

/// Reads the transactions of run `run_id` (see [`OF_RUN_WITH_COLLECTS`]).
pub async fn outcomes(
    client: &tokio_postgres::Client,
    run_id: &str,
    collects: bool,
) -> Result<Outcomes, String> {
    let pattern = format!("{run_id}-%");
    let of_run = if collects {
        OF_RUN_WITH_COLLECTS
    } else {
        OF_RUN
    };
    let pg = |e: tokio_postgres::Error| crate::adapters::pg::pg_message(&e);
    let mut out = Outcomes::default();
    for row in client
        .query(
            &format!(
                "SELECT type, status, count(*) FROM transactions WHERE {of_run} GROUP BY type, status"
            ),
            &[&pattern],
        )
        .await
        .map_err(pg)?
    {
        let (kind, status, n): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        if status != "PENDING" {
            out.terminal += n as u64;
        }
        *out.statuses.entry(status.clone()).or_default() += n as u64;
        *out.by_type.entry(kind).or_default().entry(status).or_default() += n as u64;
    }
    let row = client
        .query_one(
            &format!("SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY ms), max(ms), \
                    extract(epoch FROM max(updated_at) - min(created_at))::float8 \
             FROM (SELECT created_at, updated_at, \
                          extract(epoch FROM updated_at - created_at)::float8 * 1000 AS ms \
                   FROM transactions WHERE {of_run} AND status <> 'PENDING') t"),
            &[&pattern],
        )
        .await
        .map_err(pg)?;
    let p: Option<Vec<f64>> = row.get(0);
    if let Some(p) = p.filter(|p| p.len() == 3) {
        out.accept_to_terminal_ms = Percentiles {
            p50: p[0],
            p90: p[1],
            p99: p[2],
            max: row.get::<_, Option<f64>>(1).unwrap_or(0.0),
        };
    }
    out.span_s = row.get::<_, Option<f64>>(2).unwrap_or(0.0);
    Ok(out)
}

/// Sets `latency_ms` (and no jitter) on every bank endpoint; returns what each had.
pub async fn set_bank_latency(
    http: &reqwest::Client,
    endpoints: &[String],
    latency_ms: &[u64],
) -> Result<Vec<u64>, String> {
    let mut before = Vec::new();
    for (url, ms) in endpoints.iter().zip(latency_ms.iter().cycle()) {
        let old: Value = match http.get(format!("{url}/admin/faults")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(e) => return Err(format!("GET {url}/admin/faults: {e}")),
        };
        before.push(old["latency_ms"].as_u64().unwrap_or(0));
        let resp = http
            .put(format!("{url}/admin/faults"))
            .json(&json!({ "latency_ms": ms }))
            .send()
            .await
            .map_err(|e| format!("PUT {url}/admin/faults: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("PUT {url}/admin/faults answered {}", resp.status()));
        }
    }
    Ok(before)
}

/// The accept latency of a loadgen report.
pub fn accept_percentiles(report: &Value) -> Percentiles {
    let a = &report["latency_ms"]["accept"];
    let f = |k: &str| a[k].as_f64().unwrap_or(0.0);
    Percentiles {
        p50: f("p50_ms"),
        p90: f("p90_ms"),
        p99: f("p99_ms"),
        max: f("max_ms"),
    }
}
