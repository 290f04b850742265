//! `upi-switch loadgen` end to end: the real binary sends open-loop traffic to
//! a real switch and two bank simulators (child processes, fresh databases),
//! and its JSON report is checked against what the switch itself recorded.
//! Behaviour only: no assertion on how fast anything was.

mod common;

use common::{BIN, World};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest a loadgen run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(180);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    report: Value,
}

impl Run {
    fn context(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- report\n{:#}",
            self.code, self.stdout, self.stderr, self.report
        )
    }
}

/// Runs `upi-switch loadgen --switch URL --quiet --report <tmp> <args>` to its
/// end; `args` are split at blanks.
async fn loadgen(switch_url: &str, args: &str) -> Run {
    let report_path = std::env::temp_dir().join(format!(
        "loadgen-report-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["loadgen", "--switch", switch_url, "--quiet", "--report"])
        .arg(&report_path)
        .args(args.split_whitespace())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .expect("loadgen finished in time")
        .expect("loadgen ran");
    let report = std::fs::read_to_string(&report_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&report_path);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Counts by status of the switch's own transactions table.
async fn switch_statuses(world: &World) -> BTreeMap<String, u64> {
    let db = world.switch_db.client().await;
    db.query(
        "SELECT status, count(*) FROM transactions GROUP BY status",
        &[],
    )
    .await
    .expect("statuses")
    .iter()
    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
    .collect()
}

#[tokio::test]
async fn loadgen_follows_every_payment_and_its_report_matches_the_switch() {
    let world = World::start(&[], &[], &[]).await;
    // Ordinary, poor (dave: FAILED as payer) and frozen (carol: REVERSED as payee) accounts.
    let run = loadgen(
        &world.switch.url,
        "--rate 50 --duration 3s --concurrency 32 --seed 42 --drain-timeout 60s --fail-on-errors \
         --vpa alice@hdfc --vpa bob@icici --vpa carol@icici --vpa dave@hdfc --vpa erin@hdfc \
         --vpa frank@icici",
    )
    .await;
    let ctx = run.context();
    assert_eq!(run.code, Some(0), "{ctx}");
    let r = &run.report;

    // The report has what it promises.
    for field in ["run_id", "started_at", "ended_at", "elapsed_s", "warnings"] {
        assert!(!r[field].is_null(), "no {field}: {ctx}");
    }
    assert_eq!(r["args"]["rate"], 50.0, "{ctx}");
    assert_eq!(r["args"]["duration_ms"], 3000, "{ctx}");
    assert_eq!(r["args"]["seed"], 42, "{ctx}");
    assert_eq!(r["args"]["vpas"].as_array().map(Vec::len), Some(6), "{ctx}");
    let s = &r["schedule"];
    for field in [
        "achieved_send_rate",
        "late_sends",
        "late_threshold_ms",
        "max_lag_ms",
    ] {
        assert!(s[field].is_number(), "no schedule.{field}: {ctx}");
    }
    assert_eq!(u(&s["scheduled"]), 150, "{ctx}");
    for which in [
        "accept",
        "accept_service",
        "accept_to_terminal",
        "end_to_end",
    ] {
        for field in ["count", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms"] {
            assert!(
                r["latency_ms"][which][field].is_number(),
                "no latency_ms.{which}.{field}: {ctx}"
            );
        }
    }

    // Counts add up: every send was accepted or counted as an error, and every
    // accepted transaction was followed to a terminal status.
    let sent = u(&s["sent"]);
    let accepted = u(&r["accepted"]);
    assert_eq!(sent + u(&s["unsent"]), 150, "{ctx}");
    assert_eq!(accepted, sent - u(&r["errors"]["send"]), "{ctx}");
    assert_eq!(u(&r["errors"]["total"]), 0, "{ctx}");
    assert_eq!(u(&r["statuses"]["PENDING"]), 0, "{ctx}");
    assert_eq!(u(&r["terminal"]), accepted, "{ctx}");
    assert_eq!(u(&r["latency_ms"]["accept"]["count"]), accepted, "{ctx}");
    assert_eq!(
        u(&r["latency_ms"]["end_to_end"]["count"]),
        accepted,
        "{ctx}"
    );
    assert_eq!(r["abandoned"], 0, "{ctx}");
    assert!(run.stdout.contains("== upi-switch loadgen"), "{ctx}");

    // The switch agrees, status by status, and holds nothing else.
    let db = switch_statuses(&world).await;
    let reported: BTreeMap<String, u64> = r["statuses"]
        .as_object()
        .expect("statuses")
        .iter()
        .map(|(k, v)| (k.clone(), u(v)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(reported, db, "{ctx}");
    assert_eq!(db.values().sum::<u64>(), accepted, "{ctx}");
    // Each payment had its own key, prefixed with the run id.
    let run_id = r["run_id"].as_str().expect("run_id");
    let keyed: i64 = world
        .switch_db
        .client()
        .await
        .query_one(
            "SELECT count(DISTINCT idempotency_key) FROM transactions WHERE idempotency_key LIKE $1",
            &[&format!("{run_id}-%")],
        )
        .await
        .expect("keys")
        .get(0);
    assert_eq!(keyed as u64, accepted, "{ctx}");
}

#[tokio::test]
async fn a_rate_the_switch_cannot_follow_is_reported_as_late() {
    // Every payment touches HDFC, which takes 200 ms per call; with one
    // transaction in flight at a time, at most a handful of the 200 sends
    // asked for in 2 s can go out, each behind its schedule.
    let world = World::start(&[], &["--latency-ms", "200"], &[]).await;
    let run = loadgen(
        &world.switch.url,
        "--rate 100 --duration 2s --concurrency 1 --vpa alice@hdfc --vpa bob@icici",
    )
    .await;
    let ctx = run.context();
    assert_eq!(run.code, Some(0), "{ctx}");
    let s = &run.report["schedule"];
    assert_eq!(u(&s["scheduled"]), 200, "{ctx}");
    assert!(u(&s["late_sends"]) > 0, "{ctx}");
    assert!(u(&s["unsent"]) > 0, "{ctx}");
    assert!(u(&s["sent"]) >= 1, "{ctx}");
    let warnings = run.report["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("could not keep the asked rate"))),
        "{ctx}"
    );
    assert!(run.stdout.contains("WARNING: could not keep"), "{ctx}");
    // Late, not lost: what was sent was still followed to its end.
    assert_eq!(u(&run.report["statuses"]["PENDING"]), 0, "{ctx}");
    assert_eq!(u(&run.report["terminal"]), u(&s["sent"]), "{ctx}");
}

#[tokio::test]
async fn refused_payments_are_errors_by_kind_and_fail_the_run_when_asked() {
    let world = World::start(&[], &[], &[]).await;
    // zed@hdfc is not registered: every payment is refused with 422 UNKNOWN_VPA.
    let run = loadgen(
        &world.switch.url,
        "--rate 20 --duration 1s --vpa alice@hdfc --vpa zed@hdfc --fail-on-errors",
    )
    .await;
    let ctx = run.context();
    assert_eq!(run.code, Some(1), "{ctx}");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("upi-switch: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{ctx}");
    assert!(errors[0].contains("--fail-on-errors"), "{ctx}");
    let r = &run.report;
    let sent = u(&r["schedule"]["sent"]);
    assert!(sent > 0, "{ctx}");
    assert_eq!(u(&r["accepted"]), 0, "{ctx}");
    assert_eq!(u(&r["errors"]["send"]), sent, "{ctx}");
    assert_eq!(
        u(&r["errors"]["send_by_kind"]["POST 422 UNKNOWN_VPA"]),
        sent,
        "{ctx}"
    );
    assert!(switch_statuses(&world).await.is_empty(), "{ctx}");
}

#[tokio::test]
async fn no_switch_ends_in_one_clear_line() {
    let run = loadgen(
        "http://127.0.0.1:1",
        "--vpa alice@hdfc --vpa bob@icici --duration 1s",
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.context());
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("upi-switch: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.context());
    assert!(errors[0].contains("does not answer"), "{}", errors[0]);
    assert!(run.report.is_null(), "no report without a run");
}

#[tokio::test]
async fn a_mix_sends_every_payment_type_and_its_report_matches_the_switch() {
    let world = World::start(&[], &[], &[]).await;
    // A merchant on ICICI's third account (frank's: so frank pays no one here).
    let (status, body) = common::put_json(
        &world.http,
        &format!("{}/v1/admin/vpas/grocer@icici", world.switch.url),
        &serde_json::json!({"bank_code": "ICICI", "account": "ACC003", "name": "Grocer",
                            "merchant": true, "mcc": "5411"}),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let run = loadgen(
        &world.switch.url,
        "--rate 40 --duration 3s --concurrency 32 --seed 7 --drain-timeout 60s --fail-on-errors \
         --mix p2p=40,p2m=30,collect=15,refund=15 --merchant grocer@icici --amount 1.00..3.00 \
         --vpa alice@hdfc --vpa bob@icici --vpa erin@hdfc",
    )
    .await;
    let ctx = run.context();
    assert_eq!(run.code, Some(0), "{ctx}");
    let r = &run.report;
    assert_eq!(
        r["args"]["mix"], "p2p=40,p2m=30,collect=15,refund=15",
        "{ctx}"
    );
    assert_eq!(u(&r["errors"]["total"]), 0, "{ctx}");
    assert!(run.stdout.contains("by type"), "{ctx}");
    let by_type = r["by_type"].as_object().expect("by_type");
    for kind in ["P2P", "P2M", "COLLECT", "REFUND"] {
        let t = &by_type[kind];
        assert!(u(&t["sent"]) > 0, "no {kind} sent: {ctx}");
        assert_eq!(u(&t["accepted"]), u(&t["sent"]), "{kind}: {ctx}");
        assert_eq!(u(&t["statuses"]["PENDING"]), 0, "{kind}: {ctx}");
    }
    let sent: u64 = by_type.values().map(|t| u(&t["sent"])).sum();
    assert_eq!(sent, u(&r["schedule"]["sent"]), "{ctx}");

    // The switch holds the same payments, type by type and status by status.
    let db = world.switch_db.client().await;
    let rows = db
        .query(
            "SELECT type, status, count(*) FROM transactions GROUP BY 1, 2",
            &[],
        )
        .await
        .expect("by type");
    for row in rows {
        let (kind, status, n): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            u(&by_type[&kind]["statuses"][&status]),
            n as u64,
            "{kind} {status}: {ctx}"
        );
    }
    // Refunds never ask back more than their original; each approved collect is a COLLECT payment.
    let over: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT o.txn_id FROM transactions o \
             JOIN transactions r ON r.original_txn_id = o.txn_id \
             GROUP BY o.txn_id, o.amount_paise HAVING sum(r.amount_paise) > o.amount_paise) x",
            &[],
        )
        .await
        .expect("refund sums")
        .get(0);
    assert_eq!(over, 0, "{ctx}");
    let approved: i64 = db
        .query_one(
            "SELECT count(*) FROM collects c JOIN transactions t ON t.txn_id = c.txn_id \
             WHERE c.status = 'APPROVED' AND t.type = 'COLLECT'",
            &[],
        )
        .await
        .expect("collects")
        .get(0);
    assert_eq!(approved as u64, u(&by_type["COLLECT"]["accepted"]), "{ctx}");
}

#[test]
fn a_mix_with_p2m_needs_merchants() {
    let out = std::process::Command::new(BIN)
        .args([
            "loadgen", "--vpa", "al@xx", "--vpa", "bo@yy", "--mix", "p2m=1",
        ])
        .output()
        .expect("loadgen ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--merchant VPA or --merchants FILE"),
        "{stderr}"
    );
    let out = std::process::Command::new(BIN)
        .args([
            "loadgen",
            "--vpa",
            "al@xx",
            "--vpa",
            "bo@yy",
            "--mix",
            "p2p=1,bogus=2",
        ])
        .output()
        .expect("loadgen ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown payment type \"bogus\""),
        "{stderr}"
    );
}
