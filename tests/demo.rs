//! `upi-switch demo` end to end: the real binary starts two bank simulators and
//! the switch as its children (the rig), sends payments, and prints a
//! summary whose lines this test reads. Every end state must show up and the
//! money check must pass.

mod common;

use common::{BIN, TestDb};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the demo may run before the test stops it.
const LIMIT: Duration = Duration::from_secs(180);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `upi-switch <args>` to its end, or stops it after `LIMIT`.
fn run_bounded(args: &[&str]) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        // Only what the test names: no database URLs from the environment.
        .env_remove("DATABASE_URL")
        .env_remove("BANK_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn upi-switch");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            // SIGTERM first, so the demo stops its bank children; then SIGKILL.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Run {
        code: status.and_then(|s| s.code()),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// The number on the summary line `label: N`.
fn count(stdout: &str, label: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let (l, value) = line.split_once(':')?;
        if l.trim() != label {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

fn value<'a>(stdout: &'a str, label: &str) -> Option<&'a str> {
    stdout.lines().find_map(|line| {
        let (l, value) = line.split_once(':')?;
        (l.trim() == label).then(|| value.trim())
    })
}

#[test]
fn demo_sends_payments_and_money_is_conserved() {
    let switch_db = TestDb::new("demo_switch");
    let bank_db = TestDb::new("demo_banks");
    // Both rounds share the switch database, so they share a Redis prefix too.
    let redis_prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let args = [
        "demo",
        "--redis-prefix",
        &redis_prefix,
        "--transactions",
        "150",
        "--concurrency",
        "16",
        "--exit",
        "--listen",
        "127.0.0.1:0",
        "--bank-port",
        "0",
        "--database-url",
        &switch_db.url,
        "--bank-database-url",
        &bank_db.url,
    ];
    // Twice against the same databases: the second run finds the ledgers of
    // the first and still shows every end state.
    for round in 1..=2 {
        let run = run_bounded(&args);
        let context = format!(
            "round {round}, exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            run.code, run.stdout, run.stderr
        );
        assert_eq!(run.code, Some(0), "demo failed: {context}");
        let out = &run.stdout;
        assert!(out.contains("== upi-switch demo summary =="), "{context}");
        assert_eq!(count(out, "transactions sent"), Some(150), "{context}");
        assert_eq!(count(out, "accepted"), Some(150), "{context}");
        for status in ["SUCCESS", "FAILED", "REVERSED"] {
            let n = count(out, &format!("status {status}")).unwrap_or(0);
            assert!(n > 0, "no {status} transactions: {context}");
        }
        assert_eq!(count(out, "status PENDING"), Some(0), "{context}");
        let terminal: u64 = ["SUCCESS", "FAILED", "REVERSED"]
            .iter()
            .filter_map(|s| count(out, &format!("status {s}")))
            .sum();
        assert_eq!(terminal, 150, "{context}");
        assert!(
            count(out, "reason INSUFFICIENT_FUNDS").unwrap_or(0) > 0,
            "{context}"
        );
        assert!(
            count(out, "reason PAYEE_ACCOUNT_FROZEN").unwrap_or(0) > 0,
            "{context}"
        );
        for label in [
            "accept latency ms",
            "end-to-end latency ms",
            "throughput tx/s",
            "http errors",
        ] {
            assert!(value(out, label).is_some(), "no {label:?} line: {context}");
        }
        // Every payment type has its line; the default mix sends P2M and collects
        // (refunds, 5%, may all fall back to payments in a run this short).
        for kind in ["P2P", "P2M", "COLLECT", "REFUND"] {
            assert!(
                value(out, &format!("type {kind}")).is_some(),
                "no {kind} line: {context}"
            );
        }
        for kind in ["P2P", "P2M"] {
            let n = count(out, &format!("type {kind}")).unwrap_or(0);
            assert!(n > 0, "no {kind} payment: {context}");
        }
        assert_eq!(value(out, "money conserved"), Some("yes"), "{context}");
        assert!(
            value(out, "ledgers match SUCCESS").is_some_and(|v| v.starts_with("yes")),
            "{context}"
        );
        // The demo ends with today's numbers from the analytics API (its
        // switch runs the ingest): both rounds' payments, none pending.
        assert!(out.contains("== analytics, today IST"), "{context}");
        assert!(
            count(out, "transactions").is_some_and(|n| n >= 150 * round),
            "{context}"
        );
        assert!(
            value(out, "transactions").is_some_and(|v| v.ends_with("pending 0)")),
            "{context}"
        );
        // --exit: no invitation to look around.
        assert!(!out.contains("Ctrl-C stops it"), "{context}");
        assert!(
            run.stderr.contains("(as named; kept at exit"),
            "named databases are said to be kept: {context}"
        );
        remove_logs(&run.stderr);
    }
    // The rig's event exchange of this (named, kept) database.
    upi_switch::rig::delete_exchange(upi_switch::rig::events_exchange_of(&switch_db.name));
}

#[test]
fn demo_without_database_urls_uses_fresh_databases_and_drops_them() {
    let redis_prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let run = run_bounded(&[
        "demo",
        "--redis-prefix",
        &redis_prefix,
        "--transactions",
        "60",
        "--concurrency",
        "8",
        "--exit",
        "--listen",
        "127.0.0.1:0",
        "--bank-port",
        "0",
    ]);
    let context = format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    assert_eq!(run.code, Some(0), "{context}");
    assert_eq!(
        value(&run.stdout, "money conserved"),
        Some("yes"),
        "{context}"
    );
    // "  databases  upi_demo_<tag>_switch, upi_demo_<tag>_banks  (fresh; dropped at exit)"
    let line = run
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("databases"))
        .unwrap_or_else(|| panic!("no databases line: {context}"));
    assert!(line.ends_with("(fresh; dropped at exit)"), "{line}");
    let names: Vec<&str> = line
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .filter(|w| w.starts_with("upi_demo_"))
        .collect();
    assert_eq!(names.len(), 2, "{line}");
    let tag = names[0]
        .strip_suffix("_switch")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(names[1], format!("{tag}_banks"), "{line}");
    let left = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(common::databases_named(tag));
    assert!(
        left.is_empty(),
        "dropped at exit, yet still there: {left:?}"
    );
    remove_logs(&run.stderr);
}

/// Removes the directory the demo named on `upi-switch demo: logs in DIR`.
fn remove_logs(stderr: &str) {
    if let Some(dir) = stderr
        .lines()
        .find_map(|l| l.strip_prefix("upi-switch demo: logs in "))
        .filter(|d| d.contains("upi-switch-demo-"))
    {
        let _ = std::fs::remove_dir_all(dir.trim());
    }
}

#[test]
fn demo_with_postgres_down_ends_in_one_clear_line() {
    let run = run_bounded(&[
        "demo",
        "--exit",
        "--listen",
        "127.0.0.1:0",
        "--bank-port",
        "0",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/nowhere",
        "--bank-database-url",
        "postgres://postgres@127.0.0.1:1/nowhere",
    ]);
    assert_eq!(
        run.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("upi-switch: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "stderr:\n{}", run.stderr);
    assert!(
        errors[0].contains("cannot reach PostgreSQL"),
        "{}",
        errors[0]
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    remove_logs(&run.stderr);
}
