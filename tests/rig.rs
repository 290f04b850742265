//! The rig from the outside: `upi-switch rig up` records a detached deployment
//! exactly as `chaos/lib.sh` reads it and `rig down` takes all of it away
//! (processes and databases); a start that fails leaves nothing behind; and
//! `upi-switch bench` runs end to end and reports every component. Real
//! Postgres, Redis and RabbitMQ; fresh databases; ports picked free.

mod common;

use common::BIN;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A fresh state directory, stopped (`rig down --purge`) and removed when dropped.
struct StateDir(PathBuf);

impl StateDir {
    fn new(what: &str) -> StateDir {
        let dir = std::env::temp_dir().join(format!(
            "upi-rig-test-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        StateDir(dir)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = rig(&["down", "--purge", "--dir", &self.0.display().to_string()]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn upi(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run upi-switch")
}

fn rig(args: &[&str]) -> Output {
    let mut all = vec!["rig"];
    all.extend_from_slice(args);
    upi(&all)
}

fn context(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `KEY=value` lines of deployment.env (values here are bare or single-quoted).
fn env_of(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(dir.join("deployment.env"))
        .expect("deployment.env")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

/// (pgid, sid) of a process.
fn group_and_session(pid: u32) -> (u32, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .expect(")")
        .1
        .split_whitespace()
        .collect();
    (f[2].parse().expect("pgid"), f[3].parse().expect("sid"))
}

/// Live processes whose command line mentions `text`.
fn processes_naming(text: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(text))
                && alive(*pid)
        })
        .collect()
}

fn prefix(what: &str) -> String {
    format!(
        "t_{what}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[tokio::test]
async fn rig_up_records_what_chaos_reads_and_rig_down_takes_it_all_away() {
    let dir = StateDir::new("up");
    let d = dir.0.display().to_string();
    let db_prefix = prefix("rig");
    let up = rig(&[
        "up",
        "--dir",
        &d,
        "--db-prefix",
        &db_prefix,
        "--accounts",
        "4",
        "--frozen",
        "1",
        "--poor",
        "1",
    ]);
    let ctx = context(&up);
    assert_eq!(up.status.code(), Some(0), "{ctx}");

    let env = env_of(&dir.0);
    for key in [
        "BIN",
        "PG",
        "SWITCH_DB_NAME",
        "BANK_DB_NAME",
        "SWITCH_PORT",
        "SWITCH_URL",
        "HDFC_PORT",
        "HDFC_PORT2",
        "ICICI_PORT",
        "BANK_HDFC_URLS",
        "BANK_ICICI_URLS",
        "BANK_HDFC_URL",
        "BANK_ICICI_URL",
        "EXPECTED_TOTAL_PAISE",
        "SWITCH_DB",
        "BANK_DB",
        "BANKS",
        "SERVICES",
        "VPAS_FILE",
        "MERCHANTS_FILE",
    ] {
        assert!(
            env.get(key).is_some_and(|v| !v.is_empty()),
            "no {key}: {ctx}"
        );
    }
    assert_eq!(env["SERVICES"], "switch bank-hdfc bank-icici");
    assert_eq!(
        env["PROCESSOR_DEFAULT_URL"], "",
        "no processors unless asked"
    );
    assert!(env["BANK_HDFC_URLS"].starts_with(&env["BANK_HDFC_URL"]));
    assert_eq!(
        env["EXPECTED_TOTAL_PAISE"],
        // Two merchants per bank (the default) hold as much as a customer.
        (2 * (5 * 10_000_000 + 100)).to_string()
    );
    assert_eq!(
        env["BANK_HDFC_URLS"].split_whitespace().count(),
        2,
        "HDFC has two endpoints"
    );
    for file in [
        "vpas.txt",
        "vpas.tsv",
        "merchants.txt",
        "accounts-hdfc.json",
        "accounts-icici.json",
    ] {
        assert!(dir.path(file).is_file(), "no {file}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path("vpas.tsv"))
            .unwrap()
            .lines()
            .count(),
        12
    );
    assert!(
        std::fs::read_to_string(dir.path("merchants.txt"))
            .unwrap()
            .contains("\nshop01@hdfc  # HDFC ACC005\n"),
        "{ctx}"
    );
    // A rig's load pays many times from few VPAs: the switch runs without daily limits.
    let cmd = std::fs::read_to_string(dir.path("run/switch.cmd")).expect("switch.cmd");
    for flag in [
        "--daily-count-limit\x000\x00",
        "--daily-amount-limit\x000\x00",
    ] {
        assert!(cmd.contains(flag), "{flag:?} in {cmd:?}");
    }
    let mut pids = Vec::new();
    for name in ["switch", "bank-hdfc", "bank-icici"] {
        let pid: u32 = std::fs::read_to_string(dir.path(&format!("run/{name}.pid")))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        assert!(alive(pid), "{name} is not running");
        // Its own session and process group, so `kill -- -PID` reaches just it.
        assert_eq!(group_and_session(pid), (pid, pid), "{name}");
        // The recorded command line is the process's, byte for byte (restarts reuse it).
        let recorded = std::fs::read(dir.path(&format!("run/{name}.cmd"))).expect("cmd");
        assert_eq!(
            std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
            recorded,
            "{name}"
        );
        assert!(dir.path(&format!("run/{name}.env")).is_file());
        assert!(dir.path(&format!("logs/{name}.log")).is_file());
        pids.push(pid);
    }
    // Operator reads take the rig's token (recorded for chaos's scripts).
    let (status, _) = common::get_json(
        &common::http(),
        &format!("{}/v1/ops/banks", env["SWITCH_URL"]),
    )
    .await;
    assert_eq!(status, 401, "the rig's switch runs with authentication");
    let http = common::operator_http(&env["ADMIN_TOKEN"]);
    let (status, banks) =
        common::get_json(&http, &format!("{}/v1/ops/banks", env["SWITCH_URL"])).await;
    assert_eq!(status, 200);
    let health: Vec<&str> = banks["banks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["health"].as_str().unwrap())
        .collect();
    assert_eq!(health, ["UP", "UP"], "{banks}");
    assert_eq!(common::databases_named(&db_prefix).await.len(), 2);

    // A second `up` on the same directory is refused (exit 2) and changes nothing.
    let again = rig(&["up", "--dir", &d, "--db-prefix", &db_prefix]);
    assert_eq!(again.status.code(), Some(2), "{}", context(&again));
    assert!(pids.iter().all(|p| alive(*p)));

    let down = rig(&["down", "--dir", &d]);
    assert_eq!(down.status.code(), Some(0), "{}", context(&down));
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "a service survived rig down"
    );
    assert!(
        common::databases_named(&db_prefix).await.is_empty(),
        "a database survived rig down"
    );
    assert!(!dir.path("deployment.env").exists() && !dir.path("run").exists());
    assert!(
        dir.path("logs/switch.log").is_file(),
        "logs are kept without --purge"
    );
    // Twice is harmless.
    assert_eq!(rig(&["down", "--dir", &d]).status.code(), Some(0));
}

/// `rig up --nodes 3`: three switch nodes on one database behind HAProxy,
/// recorded for the chaos scripts; a payment through the balancer ends within
/// its `?wait=`; the balancer's `/v1/ops/nodes` lists the three nodes alive;
/// `rig down` leaves no process and no database.
#[tokio::test]
async fn rig_up_with_three_nodes_puts_haproxy_in_front_and_rig_down_stops_all() {
    let dir = StateDir::new("nodes");
    let d = dir.0.display().to_string();
    let db_prefix = prefix("nodes");
    let up = rig(&[
        "up",
        "--dir",
        &d,
        "--db-prefix",
        &db_prefix,
        "--accounts",
        "4",
        "--frozen",
        "0",
        "--poor",
        "0",
        "--nodes",
        "3",
    ]);
    let ctx = context(&up);
    assert_eq!(up.status.code(), Some(0), "{ctx}");

    let env = env_of(&dir.0);
    assert_eq!(env["SWITCH_NODES"], "3", "{ctx}");
    assert_eq!(env["SWITCH_NODE_NAMES"], "switch switch-2 switch-3");
    assert_eq!(env["BALANCER"], "haproxy");
    assert_eq!(
        env["SERVICES"],
        "switch switch-2 switch-3 bank-hdfc bank-icici haproxy"
    );
    let nodes: Vec<&str> = env["SWITCH_NODE_URLS"].split_whitespace().collect();
    assert_eq!(nodes.len(), 3, "{ctx}");
    let switch_url = env["SWITCH_URL"].clone();
    assert!(
        !nodes.contains(&switch_url.as_str()),
        "SWITCH_URL is the balancer's"
    );
    assert!(switch_url.ends_with(&format!(":{}", env["SWITCH_PORT"])));
    assert!(dir.path("haproxy.cfg").is_file());
    let mut pids = Vec::new();
    for name in env["SERVICES"].split_whitespace() {
        let pid: u32 = std::fs::read_to_string(dir.path(&format!("run/{name}.pid")))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        assert!(alive(pid), "{name} is not running");
        assert_eq!(group_and_session(pid), (pid, pid), "{name}");
        assert!(dir.path(&format!("logs/{name}.log")).is_file());
        pids.push(pid);
    }
    // Each node has its name and the deployment's one Redis prefix.
    for (k, name) in ["switch", "switch-2", "switch-3"].iter().enumerate() {
        let cmd = std::fs::read(dir.path(&format!("run/{name}.cmd"))).expect("cmd");
        let words: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let after = |flag: &str| {
            words
                .iter()
                .position(|w| w == flag)
                .map(|i| words[i + 1].clone())
        };
        assert_eq!(after("--node-name").as_deref(), Some(*name), "{words:?}");
        assert_eq!(after("--redis-prefix"), Some(env["SWITCH_DB_NAME"].clone()));
        assert!(after("--listen").is_some_and(|l| nodes[k].ends_with(&l[l.rfind(':').unwrap()..])));
    }

    // A payment through the balancer, signed with the rig's client key.
    let key =
        upi_switch::auth::signer::ClientKey::load(std::path::Path::new(&env["CLIENT_KEY_FILE"]))
            .expect("the rig's client key");
    let body = serde_json::json!({
        "type": "P2P", "payer_vpa": "cust01@hdfc", "payee_vpa": "cust02@icici", "amount": "1.00"
    })
    .to_string();
    let http = common::http();
    let request = http
        .post(format!("{switch_url}/v1/transactions?wait=10000"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .header("content-type", "application/json")
        .body(body.clone());
    let resp = key
        .sign_request(
            request,
            "POST",
            "/v1/transactions?wait=10000",
            body.as_bytes(),
        )
        .send()
        .await
        .expect("pay through the balancer");
    let status = resp.status().as_u16();
    let txn: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, txn["status"].as_str()),
        (200, Some("SUCCESS")),
        "{txn}"
    );

    // Every node is registered, alive and named; the balancer reaches one of them.
    let operator = common::operator_http(&env["ADMIN_TOKEN"]);
    let (status, listing) =
        common::get_json(&operator, &format!("{switch_url}/v1/ops/nodes")).await;
    assert_eq!(status, 200, "{listing}");
    let mut alive_names: Vec<&str> = listing["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["alive"] == true)
        .filter_map(|n| n["name"].as_str())
        .collect();
    alive_names.sort_unstable();
    assert_eq!(alive_names, ["switch", "switch-2", "switch-3"], "{listing}");

    let down = rig(&["down", "--dir", &d]);
    assert_eq!(down.status.code(), Some(0), "{}", context(&down));
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "a service survived rig down"
    );
    // Nodes name their database, the balancer and the banks the state directory.
    assert!(
        processes_naming(&d).is_empty() && processes_naming(&db_prefix).is_empty(),
        "processes left"
    );
    assert!(
        common::databases_named(&db_prefix).await.is_empty(),
        "a database survived rig down"
    );
}

#[tokio::test]
async fn a_rig_that_cannot_start_leaves_nothing_behind() {
    let dir = StateDir::new("fail");
    let d = dir.0.display().to_string();
    let db_prefix = prefix("rigfail");
    // The banks start, then the switch refuses its command line.
    let up = rig(&[
        "up",
        "--dir",
        &d,
        "--db-prefix",
        &db_prefix,
        "--",
        "--no-such-flag",
    ]);
    let ctx = context(&up);
    assert_eq!(up.status.code(), Some(1), "{ctx}");
    assert!(
        String::from_utf8_lossy(&up.stderr).contains("switch did not start"),
        "{ctx}"
    );
    assert!(processes_naming(&d).is_empty(), "processes left: {ctx}");
    assert!(
        common::databases_named(&db_prefix).await.is_empty(),
        "databases left: {ctx}"
    );
    assert!(!dir.path("deployment.env").exists(), "{ctx}");
}

/// One `upi-switch bench` run with a fresh database prefix, a state
/// directory (its logs, removed at the end) and its JSON report read back.
struct BenchRun {
    out: Output,
    ctx: String,
    report: Value,
    db_prefix: String,
    _state: StateDir,
}

fn bench(what: &str, args: &[&str]) -> BenchRun {
    let json = std::env::temp_dir().join(format!("{what}-{}.json", uuid::Uuid::new_v4().simple()));
    let db_prefix = prefix(what);
    let state = StateDir::new(what);
    let state_dir = state.0.display().to_string();
    let json_arg = json.display().to_string();
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    argv.extend([
        "--quiet",
        "--dir",
        &state_dir,
        "--db-prefix",
        &db_prefix,
        "--json",
        &json_arg,
    ]);
    let out = upi(&argv);
    let ctx = context(&out);
    let report: Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&json);
    BenchRun {
        out,
        ctx,
        report,
        db_prefix,
        _state: state,
    }
}

#[tokio::test]
async fn bench_runs_end_to_end_and_reports_every_component() {
    let BenchRun {
        out,
        ctx,
        report,
        db_prefix,
        _state,
    } = bench(
        "bench",
        &[
            "--rates",
            "40",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--rss-rate",
            "40",
            "--rss-duration",
            "2s",
            "--rss-bank-latency-ms",
            "300",
            "--accounts",
            "4",
            "--mix",
            "p2p=60,p2m=20,collect=10,refund=10",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let phase = &report["phases"][0];
    // The mix's types, each counted in the switch's database (collects' payments too).
    for kind in ["P2P", "P2M", "COLLECT"] {
        assert!(
            phase["by_type"][kind]["SUCCESS"].as_u64().unwrap_or(0) > 0,
            "no {kind}: {report:#}"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("P2M ok/failed/rev/pend"),
        "{ctx}"
    );
    assert_eq!(phase["rate_asked"], 40.0, "{report:#}");
    assert_eq!(phase["sends_asked"], 80, "{report:#}");
    assert_eq!(phase["every_send_out"], true, "{report:#}");
    assert_eq!(phase["terminal"], phase["accepted"], "{report:#}");
    assert!(phase["terminal"].as_u64().unwrap_or(0) > 0, "{report:#}");
    for key in [
        "switch",
        "switch_pg_backends",
        "rabbitmq",
        "redis",
        "banks",
        "banks_pg_backends",
        "pg_shared",
        "loadgen",
        "bench",
    ] {
        assert!(
            phase["cpu_us_per_saga"][key].is_number(),
            "no cpu_us_per_saga.{key}: {report:#}"
        );
    }
    // Every saga costs the switch and its database something.
    assert!(
        phase["cpu_us_per_saga"]["switch"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    for key in [
        "switch_side_us_per_saga",
        "box_us_per_saga",
        "switch_voluntary_ctxt_per_saga",
        "switch_involuntary_ctxt_per_saga",
        "terminal_rate",
    ] {
        assert!(phase[key].is_number(), "no {key}: {report:#}");
    }
    for p in ["p50", "p90", "p99", "max"] {
        assert!(
            phase["accept_ms"][p].as_f64().unwrap_or(0.0) > 0.0,
            "{report:#}"
        );
    }
    assert!(
        phase["accept_to_terminal_ms"]["p99"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "{report:#}"
    );
    assert!(
        report["rss"]["in_flight"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("switch-side") && table.contains("RSS per in-flight saga"),
        "{ctx}"
    );
    // The rig went away with its databases and its state directory.
    assert!(
        common::databases_named(&db_prefix).await.is_empty(),
        "{ctx}"
    );
    let dbs = report["databases"].as_array().expect("databases");
    assert!(
        dbs.iter()
            .all(|d| d.as_str().is_some_and(|d| d.starts_with(&db_prefix)))
    );
    assert!(processes_naming(&db_prefix).is_empty(), "{ctx}");
}

/// `bench --merchant` runs the contest's test end to end against a rig with
/// two payment processors: every payment posted is answered 2xx and ends at
/// exactly one processor (no lag once forwarding settles), every check
/// compares the three summaries, and the score adds up. A 12 s run sees the
/// ten phases of processor faults, each 1.2 s long.
#[tokio::test]
async fn bench_merchant_runs_the_contest_and_scores_it() {
    let BenchRun {
        out,
        ctx,
        report,
        db_prefix,
        _state,
    } = bench(
        "merchant",
        &[
            "--merchant",
            "--duration",
            "12s",
            "--merchant-users",
            "20",
            "--accounts",
            "4",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let ok = report["posts_ok"].as_i64().unwrap_or(0);
    assert!(ok > 20, "{report:#}");
    assert_eq!(report["posts_failed"], 0, "{report:#}");
    assert!(report["checks"].as_u64().unwrap_or(0) >= 1, "{report:#}");
    let processed =
        report["default"][0].as_i64().unwrap_or(0) + report["fallback"][0].as_i64().unwrap_or(0);
    assert_eq!(
        report["lag_after_drain"], 0,
        "every payment at one processor: {report:#}"
    );
    assert_eq!(report["score"]["lag"], ok - processed, "{report:#}");
    let score = &report["score"];
    let gross = score["gross"].as_f64().unwrap_or(0.0);
    assert!(
        gross > 0.0 && score["fees"].as_f64().unwrap_or(0.0) > 0.0,
        "{report:#}"
    );
    assert!(
        report["post_latency_ms"]["p99_ms"].as_f64().unwrap_or(0.0) > 0.0,
        "{report:#}"
    );
    assert!(
        common::databases_named(&db_prefix).await.is_empty(),
        "the rig's databases are dropped: {ctx}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("score (the contest's)"), "{ctx}");
}
