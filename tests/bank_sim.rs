//! Integration tests of the bank simulator (`upi-switch bank-sim`), over HTTP,
//! against real child processes and a real Postgres database per test.
//!
//! Covers every rule of Bank API v1 (`docs/bank-api.md`): debit and
//! credit answers, replays, `OP_ID_CONFLICT`, every decline code and its
//! finality, reverses (of applied, declined and never-seen ops, tombstones,
//! `AMOUNT_MISMATCH`, refusals), inquiry, the change feed and its paging,
//! accounts and health; malformed input (400, nothing changes); 50 concurrent
//! copies of one debit (money moves once); durability across `kill -9` in the
//! middle of a stream of movements (no applied op lost, money conserved, the
//! feed continues); a movement whose client leaves at once is still applied;
//! the fault injection of `/admin/faults` (read, merge, reset) and `--down`; the
//! switch's `BankClient` against a live simulator; and, driving the single
//! writer directly (module `writer`), what one batch may hold, replays after
//! the writer restarts, and plans that stay key lookups without statistics.

mod common;

use common::{
    BankProc, TempFile, TestDb, balances, feed, get_json, http, post_json, post_raw, put_json,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn new_txn() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn mv(op_id: &str, txn_id: &str, account: &str, amount_paise: i64) -> Value {
    json!({"op_id": op_id, "txn_id": txn_id, "account": account, "amount_paise": amount_paise})
}

fn rev(op_id: &str, original_op_id: &str, txn_id: &str, amount_paise: i64) -> Value {
    json!({"op_id": op_id, "original_op_id": original_op_id, "txn_id": txn_id, "amount_paise": amount_paise})
}

fn applied(op_id: &str, account: &str, amount_paise: i64) -> Value {
    json!({"op_id": op_id, "status": "APPLIED", "account": account, "amount_paise": amount_paise})
}

fn declined(op_id: &str, code: &str) -> Value {
    json!({"op_id": op_id, "status": "DECLINED", "code": code})
}

fn reverse_answer(op_id: &str, original_op_id: &str, status: &str) -> Value {
    json!({"op_id": op_id, "status": status, "original_op_id": original_op_id})
}

fn op_view(
    op_id: &str,
    kind: Option<&str>,
    status: &str,
    account: Option<&str>,
    amount_paise: i64,
    code: Option<&str>,
    original_op_id: Option<&str>,
) -> Value {
    json!({
        "op_id": op_id, "kind": kind, "status": status, "account": account,
        "amount_paise": amount_paise, "code": code, "original_op_id": original_op_id,
    })
}

async fn debit(c: &reqwest::Client, bank: &BankProc, body: &Value) -> (u16, Value) {
    post_json(c, &format!("{}/v1/debit", bank.url), body).await
}

async fn credit(c: &reqwest::Client, bank: &BankProc, body: &Value) -> (u16, Value) {
    post_json(c, &format!("{}/v1/credit", bank.url), body).await
}

async fn reverse(c: &reqwest::Client, bank: &BankProc, body: &Value) -> (u16, Value) {
    post_json(c, &format!("{}/v1/reverse", bank.url), body).await
}

async fn inquiry(c: &reqwest::Client, bank: &BankProc, op_id: &str) -> (u16, Value) {
    get_json(c, &format!("{}/v1/ops/{op_id}", bank.url)).await
}

async fn balance(c: &reqwest::Client, bank: &BankProc, account: &str) -> i64 {
    let (map, _) = balances(c, &bank.url).await;
    *map.get(account)
        .unwrap_or_else(|| panic!("no account {account}"))
}

/// Balances, total and the whole feed: "nothing changed" means this is equal.
async fn snapshot(
    c: &reqwest::Client,
    bank: &BankProc,
) -> (BTreeMap<String, i64>, i64, Vec<Value>) {
    let (map, total) = balances(c, &bank.url).await;
    (map, total, feed(c, &bank.url).await)
}

async fn set_faults(c: &reqwest::Client, bank: &BankProc, patch: Value) -> Value {
    let (status, body) = put_json(c, &format!("{}/admin/faults", bank.url), &patch).await;
    assert_eq!(status, 200, "PUT /admin/faults {patch}: {body}");
    body
}

/// Starts a bank seeded from an `--accounts` file:
/// ACC001 (₹1000), ACC002 (₹0), FRZ001 (₹500, FROZEN).
fn start_with_accounts(db: &TestDb) -> (BankProc, TempFile) {
    let accounts = json!([
        {"account": "ACC001", "name": "Asha Rao", "balance_paise": 100_000, "status": "ACTIVE"},
        {"account": "ACC002", "name": "Bala Iyer", "balance_paise": 0, "status": "ACTIVE"},
        {"account": "FRZ001", "name": "Frozen Holder", "balance_paise": 50_000, "status": "FROZEN"},
    ]);
    let path = std::env::temp_dir().join(format!(
        "bank-sim-accounts-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, accounts.to_string()).expect("write accounts file");
    let file = TempFile(path);
    let bank = BankProc::start(
        "HDFC",
        &db.url,
        &["--accounts", file.0.to_str().expect("utf-8 path")],
    );
    (bank, file)
}

fn seeded(db: &TestDb, extra: &[&str]) -> BankProc {
    let mut args = vec!["--seed-accounts", "3", "--balance-paise", "100000"];
    args.extend_from_slice(extra);
    BankProc::start("HDFC", &db.url, &args)
}

/// Polls an inquiry until it answers 200 with `status`, for at most `within`.
async fn wait_for_status(
    c: &reqwest::Client,
    bank: &BankProc,
    op_id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = inquiry(c, bank, op_id).await;
        if code == 200 && body["status"] == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{op_id} not {status} within {within:?}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_seqs_strictly_increasing(entries: &[Value]) {
    let seqs: Vec<i64> = entries
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    for pair in seqs.windows(2) {
        assert!(
            pair[0] < pair[1],
            "feed seqs not strictly increasing: {seqs:?}"
        );
    }
}

fn feed_ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["op_id"].as_str().expect("op_id").to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// 1. The rules of Bank API v1
// ---------------------------------------------------------------------------

#[tokio::test]
async fn debit_and_credit_apply_and_replay_identically() {
    let db = TestDb::new("bs_move");
    let (bank, _file) = start_with_accounts(&db);
    let c = http();
    let t = new_txn();

    let (s, b) = debit(&c, &bank, &mv("d1", &t, "ACC001", 15_075)).await;
    assert_eq!((s, b.clone()), (200, applied("d1", "ACC001", 15_075)));
    let replay = debit(&c, &bank, &mv("d1", &t, "ACC001", 15_075)).await;
    assert_eq!(replay, (s, b), "a replay gets the same status and body");
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000 - 15_075);

    let (s, b) = credit(&c, &bank, &mv("c1", &t, "ACC002", 2_500)).await;
    assert_eq!((s, b.clone()), (200, applied("c1", "ACC002", 2_500)));
    assert_eq!(
        credit(&c, &bank, &mv("c1", &t, "ACC002", 2_500)).await,
        (s, b)
    );
    assert_eq!(balance(&c, &bank, "ACC002").await, 2_500);

    // A debit of exactly the balance is allowed; the balance reaches zero, never below.
    let (s, b) = debit(&c, &bank, &mv("d2", &t, "ACC001", 84_925)).await;
    assert_eq!((s, b), (200, applied("d2", "ACC001", 84_925)));
    assert_eq!(balance(&c, &bank, "ACC001").await, 0);
    let (s, b) = debit(&c, &bank, &mv("d3", &t, "ACC001", 1)).await;
    assert_eq!((s, b), (422, declined("d3", "INSUFFICIENT_FUNDS")));
    assert_eq!(balance(&c, &bank, "ACC001").await, 0);

    // The longest op_id (64 characters of the whole alphabet) is accepted.
    let long_id = format!("{}Zz9.-_:", "a".repeat(57));
    assert_eq!(long_id.len(), 64);
    let (s, b) = credit(&c, &bank, &mv(&long_id, &t, "ACC001", 1)).await;
    assert_eq!((s, b), (200, applied(&long_id, "ACC001", 1)));

    // A body field not named in the spec is ignored.
    let mut body = mv("c2", &t, "ACC002", 100);
    body["note"] = json!("ignored");
    let (s, b) = credit(&c, &bank, &body).await;
    assert_eq!((s, b), (200, applied("c2", "ACC002", 100)));

    let (map, total) = balances(&c, &bank.url).await;
    assert_eq!(map["ACC001"], 1);
    assert_eq!(map["ACC002"], 2_600);
    assert_eq!(map["FRZ001"], 50_000);
    assert_eq!(total, 150_000 - 100_000 + 2_500 + 1 + 100);
}

#[tokio::test]
async fn op_id_conflicts_are_refused_and_change_nothing() {
    let db = TestDb::new("bs_conflict");
    let (bank, _file) = start_with_accounts(&db);
    let c = http();
    let t = new_txn();

    assert_eq!(
        debit(&c, &bank, &mv("d1", &t, "ACC001", 1_000)).await.0,
        200
    );
    assert_eq!(
        debit(&c, &bank, &mv("dx", &t, "ACC002", 1_000)).await.0,
        422
    );
    let before = snapshot(&c, &bank).await;

    let conflicts: Vec<(&str, Value)> = vec![
        ("debit", mv("d1", &t, "ACC002", 1_000)),  // other account
        ("debit", mv("d1", &t, "ACC001", 1_001)),  // other amount
        ("credit", mv("d1", &t, "ACC001", 1_000)), // other kind
        ("debit", mv("d1", &new_txn(), "ACC001", 1_000)), // other txn_id
        ("reverse", rev("d1", "zz", &t, 1_000)),   // other kind (reverse)
        // A declined op is used up too: other parameters conflict, they are not retried.
        ("debit", mv("dx", &t, "ACC002", 999)),
        ("credit", mv("dx", &t, "ACC002", 1_000)),
    ];
    for (path, body) in &conflicts {
        let (s, b) = post_json(&c, &format!("{}/v1/{path}", bank.url), body).await;
        assert_eq!(s, 409, "{path} {body}: {b}");
        assert_eq!(b["code"], "OP_ID_CONFLICT", "{path} {body}: {b}");
    }
    assert_eq!(snapshot(&c, &bank).await, before, "a 409 changes nothing");
    assert_eq!(
        inquiry(&c, &bank, "zz").await.0,
        404,
        "the conflicting reverse left no tombstone"
    );

    // The original answers are unchanged.
    assert_eq!(
        debit(&c, &bank, &mv("d1", &t, "ACC001", 1_000)).await,
        (200, applied("d1", "ACC001", 1_000))
    );
    assert_eq!(
        debit(&c, &bank, &mv("dx", &t, "ACC002", 1_000)).await,
        (422, declined("dx", "INSUFFICIENT_FUNDS"))
    );
    assert_eq!(snapshot(&c, &bank).await, before);
}

#[tokio::test]
async fn declines_are_final_even_when_the_balance_would_now_allow_them() {
    let db = TestDb::new("bs_decline");
    let (bank, _file) = start_with_accounts(&db);
    let c = http();
    let t = new_txn();

    // INSUFFICIENT_FUNDS, then money arrives: the replay stays declined.
    let first = debit(&c, &bank, &mv("dn1", &t, "ACC002", 5_000)).await;
    assert_eq!(first, (422, declined("dn1", "INSUFFICIENT_FUNDS")));
    assert_eq!(
        credit(&c, &bank, &mv("c1", &t, "ACC002", 10_000)).await.0,
        200
    );
    assert_eq!(
        debit(&c, &bank, &mv("dn1", &t, "ACC002", 5_000)).await,
        first
    );
    assert_eq!(balance(&c, &bank, "ACC002").await, 10_000);

    // ACCOUNT_NOT_FOUND, for debit and credit.
    let nf_d = debit(&c, &bank, &mv("nf1", &t, "NOPE01", 100)).await;
    assert_eq!(nf_d, (422, declined("nf1", "ACCOUNT_NOT_FOUND")));
    let nf_c = credit(&c, &bank, &mv("nf2", &t, "NOPE01", 100)).await;
    assert_eq!(nf_c, (422, declined("nf2", "ACCOUNT_NOT_FOUND")));
    assert_eq!(debit(&c, &bank, &mv("nf1", &t, "NOPE01", 100)).await, nf_d);
    assert_eq!(credit(&c, &bank, &mv("nf2", &t, "NOPE01", 100)).await, nf_c);

    // ACCOUNT_FROZEN, for debit (even with enough balance) and credit.
    let fr_d = debit(&c, &bank, &mv("fr1", &t, "FRZ001", 100)).await;
    assert_eq!(fr_d, (422, declined("fr1", "ACCOUNT_FROZEN")));
    let fr_c = credit(&c, &bank, &mv("fr2", &t, "FRZ001", 100)).await;
    assert_eq!(fr_c, (422, declined("fr2", "ACCOUNT_FROZEN")));
    assert_eq!(debit(&c, &bank, &mv("fr1", &t, "FRZ001", 100)).await, fr_d);
    assert_eq!(credit(&c, &bank, &mv("fr2", &t, "FRZ001", 100)).await, fr_c);
    assert_eq!(balance(&c, &bank, "FRZ001").await, 50_000);

    // Declined ops are recorded: inquiry and feed show them with their code.
    let (s, b) = inquiry(&c, &bank, "dn1").await;
    assert_eq!(
        (s, b),
        (
            200,
            op_view(
                "dn1",
                Some("DEBIT"),
                "DECLINED",
                Some("ACC002"),
                5_000,
                Some("INSUFFICIENT_FUNDS"),
                None
            )
        )
    );
    let (s, b) = inquiry(&c, &bank, "fr2").await;
    assert_eq!(
        (s, b),
        (
            200,
            op_view(
                "fr2",
                Some("CREDIT"),
                "DECLINED",
                Some("FRZ001"),
                100,
                Some("ACCOUNT_FROZEN"),
                None
            )
        )
    );
    let entries = feed(&c, &bank.url).await;
    assert_eq!(
        feed_ids(&entries),
        ["dn1", "c1", "nf1", "nf2", "fr1", "fr2"]
    );
    let codes: Vec<&Value> = entries.iter().map(|e| &e["code"]).collect();
    assert_eq!(
        codes,
        [
            &json!("INSUFFICIENT_FUNDS"),
            &Value::Null,
            &json!("ACCOUNT_NOT_FOUND"),
            &json!("ACCOUNT_NOT_FOUND"),
            &json!("ACCOUNT_FROZEN"),
            &json!("ACCOUNT_FROZEN")
        ]
    );
    let (_, total) = balances(&c, &bank.url).await;
    assert_eq!(total, 150_000 + 10_000);
}

#[tokio::test]
async fn reverse_undoes_an_applied_op_exactly_once() {
    let db = TestDb::new("bs_reverse");
    let (bank, _file) = start_with_accounts(&db);
    let c = http();
    let t = new_txn();

    // Reverse of an applied debit: REVERSED, balance restored.
    assert_eq!(
        debit(&c, &bank, &mv("d1", &t, "ACC001", 20_000)).await.0,
        200
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 80_000);
    let r1 = reverse(&c, &bank, &rev("r1", "d1", &t, 20_000)).await;
    assert_eq!(r1, (200, reverse_answer("r1", "d1", "REVERSED")));
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000);
    assert_eq!(
        reverse(&c, &bank, &rev("r1", "d1", &t, 20_000)).await,
        r1,
        "replayed reverse"
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000);
    assert_eq!(
        inquiry(&c, &bank, "d1").await,
        (
            200,
            op_view(
                "d1",
                Some("DEBIT"),
                "REVERSED",
                Some("ACC001"),
                20_000,
                None,
                None
            )
        )
    );
    assert_eq!(
        inquiry(&c, &bank, "r1").await,
        (
            200,
            op_view(
                "r1",
                Some("REVERSE"),
                "APPLIED",
                Some("ACC001"),
                20_000,
                None,
                Some("d1")
            )
        )
    );
    // The original's replay still gets its original answer, and moves nothing.
    assert_eq!(
        debit(&c, &bank, &mv("d1", &t, "ACC001", 20_000)).await,
        (200, applied("d1", "ACC001", 20_000))
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000);

    // A second reverse with a new op_id: 200 REVERSED again, recorded as NOOP.
    let r2 = reverse(&c, &bank, &rev("r2", "d1", &t, 20_000)).await;
    assert_eq!(r2, (200, reverse_answer("r2", "d1", "REVERSED")));
    assert_eq!(
        inquiry(&c, &bank, "r2").await,
        (
            200,
            op_view(
                "r2",
                Some("REVERSE"),
                "NOOP",
                Some("ACC001"),
                20_000,
                None,
                Some("d1")
            )
        )
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000);

    // Reverse of an applied credit whose money is gone: the balance goes negative.
    assert_eq!(
        credit(&c, &bank, &mv("c1", &t, "ACC002", 30_000)).await.0,
        200
    );
    assert_eq!(
        debit(&c, &bank, &mv("d2", &t, "ACC002", 30_000)).await.0,
        200
    );
    let r3 = reverse(&c, &bank, &rev("r3", "c1", &t, 30_000)).await;
    assert_eq!(r3, (200, reverse_answer("r3", "c1", "REVERSED")));
    assert_eq!(balance(&c, &bank, "ACC002").await, -30_000);
    assert_eq!(
        inquiry(&c, &bank, "c1").await,
        (
            200,
            op_view(
                "c1",
                Some("CREDIT"),
                "REVERSED",
                Some("ACC002"),
                30_000,
                None,
                None
            )
        )
    );
    assert_eq!(
        inquiry(&c, &bank, "r3").await,
        (
            200,
            op_view(
                "r3",
                Some("REVERSE"),
                "APPLIED",
                Some("ACC002"),
                30_000,
                None,
                Some("c1")
            )
        )
    );

    // Reverse of a declined op: NOOP, nothing moves, the original stays DECLINED.
    assert_eq!(
        debit(&c, &bank, &mv("dd", &t, "ACC002", 1)).await,
        (422, declined("dd", "INSUFFICIENT_FUNDS"))
    );
    let r4 = reverse(&c, &bank, &rev("r4", "dd", &t, 1)).await;
    assert_eq!(r4, (200, reverse_answer("r4", "dd", "NOOP")));
    assert_eq!(reverse(&c, &bank, &rev("r4", "dd", &t, 1)).await, r4);
    assert_eq!(
        inquiry(&c, &bank, "r4").await,
        (
            200,
            op_view(
                "r4",
                Some("REVERSE"),
                "NOOP",
                Some("ACC002"),
                1,
                None,
                Some("dd")
            )
        )
    );
    assert_eq!(inquiry(&c, &bank, "dd").await.1["status"], "DECLINED");
    assert_eq!(balance(&c, &bank, "ACC002").await, -30_000);

    // Refusals change nothing and do not use the op_id up.
    let before = snapshot(&c, &bank).await;
    let (s, b) = reverse(&c, &bank, &rev("r5", "d2", &t, 29_999)).await;
    assert_eq!((s, &b["code"]), (409, &json!("AMOUNT_MISMATCH")), "{b}");
    let (s, b) = reverse(&c, &bank, &rev("r6", "r6", &t, 30_000)).await;
    assert_eq!(
        (s, &b["code"]),
        (400, &json!("BAD_REQUEST")),
        "original_op_id == op_id: {b}"
    );
    let (s, b) = reverse(&c, &bank, &rev("r7", "r1", &t, 20_000)).await;
    assert_eq!(
        (s, &b["code"]),
        (400, &json!("BAD_REQUEST")),
        "original is a reverse op: {b}"
    );
    // A reverse op_id reused with other parameters is an OP_ID_CONFLICT.
    for body in [
        rev("r1", "c1", &t, 20_000),
        rev("r1", "d1", &t, 19_999),
        rev("r1", "d1", &new_txn(), 20_000),
    ] {
        let (s, b) = reverse(&c, &bank, &body).await;
        assert_eq!(
            (s, &b["code"]),
            (409, &json!("OP_ID_CONFLICT")),
            "{body}: {b}"
        );
    }
    assert_eq!(snapshot(&c, &bank).await, before);
    for op in ["r5", "r6", "r7"] {
        assert_eq!(
            inquiry(&c, &bank, op).await.0,
            404,
            "{op} was refused, so not recorded"
        );
    }
    let r5 = reverse(&c, &bank, &rev("r5", "d2", &t, 30_000)).await;
    assert_eq!(r5, (200, reverse_answer("r5", "d2", "REVERSED")));
    assert_eq!(balance(&c, &bank, "ACC002").await, 0);

    // Money: only applied, unreversed movements changed the total (c1, d2 reversed; d1 reversed).
    let (map, total) = balances(&c, &bank.url).await;
    assert_eq!(map["ACC001"], 100_000);
    assert_eq!(total, 150_000);
}

#[tokio::test]
async fn reverse_of_a_never_seen_op_fences_it_with_a_tombstone() {
    let db = TestDb::new("bs_tomb");
    let (bank, _file) = start_with_accounts(&db);
    let c = http();
    let t = new_txn();
    let before = balances(&c, &bank.url).await;

    let r1 = reverse(&c, &bank, &rev("r1", "ghost", &t, 7_000)).await;
    assert_eq!(r1, (200, reverse_answer("r1", "ghost", "NOOP")));
    assert_eq!(reverse(&c, &bank, &rev("r1", "ghost", &t, 7_000)).await, r1);
    assert_eq!(
        inquiry(&c, &bank, "ghost").await,
        (
            200,
            op_view(
                "ghost",
                None,
                "DECLINED",
                None,
                7_000,
                Some("ALREADY_REVERSED"),
                None
            )
        ),
        "a tombstone: kind and account unknown"
    );
    assert_eq!(
        inquiry(&c, &bank, "r1").await,
        (
            200,
            op_view(
                "r1",
                Some("REVERSE"),
                "NOOP",
                None,
                7_000,
                None,
                Some("ghost")
            )
        )
    );

    // AMOUNT_MISMATCH against the tombstone; nothing changes.
    let snap = snapshot(&c, &bank).await;
    let (s, b) = reverse(&c, &bank, &rev("r2", "ghost", &t, 7_001)).await;
    assert_eq!((s, &b["code"]), (409, &json!("AMOUNT_MISMATCH")), "{b}");
    assert_eq!(snapshot(&c, &bank).await, snap);
    assert_eq!(inquiry(&c, &bank, "r2").await.0, 404);

    // Fencing it again is harmless.
    assert_eq!(
        reverse(&c, &bank, &rev("r3", "ghost", &t, 7_000)).await,
        (200, reverse_answer("r3", "ghost", "NOOP"))
    );

    // The late original is declined ALREADY_REVERSED and moves no money, for good.
    let late_txn = new_txn();
    let late = debit(&c, &bank, &mv("ghost", &late_txn, "ACC001", 7_000)).await;
    assert_eq!(late, (422, declined("ghost", "ALREADY_REVERSED")));
    assert_eq!(
        debit(&c, &bank, &mv("ghost", &late_txn, "ACC001", 7_000)).await,
        late
    );
    let (s, b) = inquiry(&c, &bank, "ghost").await;
    assert_eq!(
        (s, &b["status"], &b["code"]),
        (200, &json!("DECLINED"), &json!("ALREADY_REVERSED"))
    );

    // Same for a late credit.
    assert_eq!(
        reverse(&c, &bank, &rev("r4", "ghost2", &t, 500)).await,
        (200, reverse_answer("r4", "ghost2", "NOOP"))
    );
    let late = credit(&c, &bank, &mv("ghost2", &t, "ACC002", 500)).await;
    assert_eq!(late, (422, declined("ghost2", "ALREADY_REVERSED")));

    // A late original with another amount than the tombstone's is a conflict.
    assert_eq!(
        reverse(&c, &bank, &rev("r5", "ghost3", &t, 500)).await.0,
        200
    );
    let (s, b) = debit(&c, &bank, &mv("ghost3", &t, "ACC001", 600)).await;
    assert_eq!((s, &b["code"]), (409, &json!("OP_ID_CONFLICT")), "{b}");
    assert_eq!(
        debit(&c, &bank, &mv("ghost3", &t, "ACC001", 500)).await,
        (422, declined("ghost3", "ALREADY_REVERSED"))
    );

    assert_eq!(balances(&c, &bank.url).await, before, "no money moved");

    // The feed: reverses with a null account; a fenced op appears only once it arrived.
    let entries = feed(&c, &bank.url).await;
    assert_seqs_strictly_increasing(&entries);
    assert_eq!(
        feed_ids(&entries),
        ["r1", "r3", "ghost", "r4", "ghost2", "r5", "ghost3"]
    );
    assert_eq!(entries[0]["kind"], "REVERSE");
    assert_eq!(entries[0]["status"], "NOOP");
    assert_eq!(entries[0]["account"], Value::Null);
    assert_eq!(entries[0]["original_op_id"], "ghost");
    assert_eq!(entries[2]["kind"], "DEBIT");
    assert_eq!(entries[2]["status"], "DECLINED");
    assert_eq!(entries[2]["code"], "ALREADY_REVERSED");
}

#[tokio::test]
async fn inquiry_accounts_and_health() {
    let db = TestDb::new("bs_read");
    let (bank, _file) = start_with_accounts(&db);
    let c = http();
    let t = new_txn();

    assert_eq!(
        inquiry(&c, &bank, "never").await,
        (404, json!({"op_id": "never", "status": "UNKNOWN"}))
    );

    assert_eq!(
        debit(&c, &bank, &mv("d1", &t, "ACC001", 1_234)).await.0,
        200
    );
    assert_eq!(
        inquiry(&c, &bank, "d1").await,
        (
            200,
            op_view(
                "d1",
                Some("DEBIT"),
                "APPLIED",
                Some("ACC001"),
                1_234,
                None,
                None
            )
        )
    );
    assert_eq!(credit(&c, &bank, &mv("c1", &t, "ACC002", 99)).await.0, 200);
    assert_eq!(
        inquiry(&c, &bank, "c1").await,
        (
            200,
            op_view(
                "c1",
                Some("CREDIT"),
                "APPLIED",
                Some("ACC002"),
                99,
                None,
                None
            )
        )
    );
    assert_eq!(reverse(&c, &bank, &rev("r1", "c1", &t, 99)).await.0, 200);
    assert_eq!(
        inquiry(&c, &bank, "c1").await,
        (
            200,
            op_view(
                "c1",
                Some("CREDIT"),
                "REVERSED",
                Some("ACC002"),
                99,
                None,
                None
            )
        )
    );
    // Inquiry is read-only: it never creates a tombstone.
    assert_eq!(inquiry(&c, &bank, "never").await.0, 404);
    assert_eq!(
        reverse(&c, &bank, &rev("r2", "never", &t, 5)).await,
        (200, reverse_answer("r2", "never", "NOOP"))
    );

    assert_eq!(
        get_json(&c, &format!("{}/v1/accounts/ACC001", bank.url)).await,
        (
            200,
            json!({"account": "ACC001", "name": "Asha Rao", "status": "ACTIVE"})
        )
    );
    assert_eq!(
        get_json(&c, &format!("{}/v1/accounts/FRZ001", bank.url)).await,
        (
            200,
            json!({"account": "FRZ001", "name": "Frozen Holder", "status": "FROZEN"})
        )
    );
    let (s, b) = get_json(&c, &format!("{}/v1/accounts/NOPE01", bank.url)).await;
    assert_eq!((s, &b["code"]), (404, &json!("ACCOUNT_NOT_FOUND")), "{b}");

    assert_eq!(
        get_json(&c, &format!("{}/v1/health", bank.url)).await,
        (200, json!({"status": "UP"}))
    );

    // Every answer, whatever its status, is JSON.
    let answers = [
        c.get(format!("{}/v1/health", bank.url)).send().await,
        c.get(format!("{}/v1/ops/d1", bank.url)).send().await,
        c.get(format!("{}/v1/ops/never-seen", bank.url))
            .send()
            .await,
        c.get(format!("{}/v1/accounts/NOPE01", bank.url))
            .send()
            .await,
        c.post(format!("{}/v1/debit", bank.url))
            .json(&mv("d9", &t, "NOPE01", 1))
            .send()
            .await,
        c.post(format!("{}/v1/debit", bank.url))
            .json(&mv("d1", &t, "ACC001", 1))
            .send()
            .await,
        c.post(format!("{}/v1/debit", bank.url))
            .body("{")
            .send()
            .await,
    ];
    let statuses: Vec<u16> = answers
        .iter()
        .map(|r| r.as_ref().expect("answer").status().as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 404, 404, 422, 409, 400]);
    for answer in answers {
        let answer = answer.expect("answer");
        let ct = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            ct.starts_with("application/json"),
            "{} {ct:?}",
            answer.status()
        );
    }
}

#[tokio::test]
async fn feed_lists_every_op_in_order_and_pages() {
    let db = TestDb::new("bs_feed");
    let (bank, _file) = start_with_accounts(&db);
    let c = http();
    let t1 = new_txn();
    let t2 = new_txn();

    let (s, page) = get_json(&c, &format!("{}/v1/ops?after_seq=0&limit=10", bank.url)).await;
    assert_eq!((s, page), (200, json!({"ops": [], "next_after_seq": 0})));

    assert_eq!(debit(&c, &bank, &mv("d1", &t1, "ACC001", 500)).await.0, 200);
    assert_eq!(debit(&c, &bank, &mv("d2", &t1, "ACC002", 500)).await.0, 422);
    assert_eq!(
        credit(&c, &bank, &mv("c1", &t2, "ACC002", 700)).await.0,
        200
    );
    assert_eq!(reverse(&c, &bank, &rev("r1", "d1", &t2, 500)).await.0, 200);
    assert_eq!(credit(&c, &bank, &mv("c2", &t2, "ACC001", 1)).await.0, 200);

    let entries = feed(&c, &bank.url).await;
    assert_seqs_strictly_increasing(&entries);
    assert_eq!(feed_ids(&entries), ["d1", "d2", "c1", "r1", "c2"]);
    for e in &entries {
        let mut keys: Vec<&str> = e
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "account",
                "amount_paise",
                "at",
                "code",
                "kind",
                "op_id",
                "original_op_id",
                "seq",
                "status",
                "txn_id"
            ],
            "{e}"
        );
        let at = e["at"].as_str().expect("at");
        assert!(at.ends_with('Z'), "at is UTC: {at}");
        chrono::DateTime::parse_from_rfc3339(at)
            .unwrap_or_else(|err| panic!("at {at:?} is not RFC 3339: {err}"));
    }
    let strip = |e: &Value| {
        let mut e = e.clone();
        let obj = e.as_object_mut().expect("object");
        obj.remove("seq");
        obj.remove("at");
        e
    };
    // d1 was reversed later: it keeps its place (seq) with its new status.
    assert_eq!(
        strip(&entries[0]),
        json!({"op_id": "d1", "kind": "DEBIT", "status": "REVERSED", "account": "ACC001", "amount_paise": 500,
               "txn_id": t1, "code": null, "original_op_id": null})
    );
    assert_eq!(
        strip(&entries[1]),
        json!({"op_id": "d2", "kind": "DEBIT", "status": "DECLINED", "account": "ACC002", "amount_paise": 500,
               "txn_id": t1, "code": "INSUFFICIENT_FUNDS", "original_op_id": null})
    );
    assert_eq!(
        strip(&entries[2]),
        json!({"op_id": "c1", "kind": "CREDIT", "status": "APPLIED", "account": "ACC002", "amount_paise": 700,
               "txn_id": t2, "code": null, "original_op_id": null})
    );
    assert_eq!(
        strip(&entries[3]),
        json!({"op_id": "r1", "kind": "REVERSE", "status": "APPLIED", "account": "ACC001", "amount_paise": 500,
               "txn_id": t2, "code": null, "original_op_id": "d1"})
    );

    // Paging with a limit: each page continues where the last ended.
    let seqs: Vec<i64> = entries
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    let mut after = 0;
    let mut paged = Vec::new();
    let mut pages = 0;
    loop {
        let (s, page) = get_json(
            &c,
            &format!("{}/v1/ops?after_seq={after}&limit=2", bank.url),
        )
        .await;
        assert_eq!(s, 200, "{page}");
        let ops = page["ops"].as_array().expect("ops").clone();
        assert!(ops.len() <= 2);
        if ops.is_empty() {
            assert_eq!(
                page["next_after_seq"], after,
                "an empty page keeps after_seq"
            );
            break;
        }
        assert_eq!(
            page["next_after_seq"],
            ops.last().expect("last")["seq"],
            "next_after_seq is the last seq"
        );
        after = page["next_after_seq"].as_i64().expect("next_after_seq");
        paged.extend(ops);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, entries);

    // Starting in the middle, and beyond the end.
    let (_, page) = get_json(
        &c,
        &format!("{}/v1/ops?after_seq={}&limit=100", bank.url, seqs[2]),
    )
    .await;
    assert_eq!(feed_ids(page["ops"].as_array().expect("ops")), ["r1", "c2"]);
    let beyond = seqs[4] + 1000;
    let (s, page) = get_json(&c, &format!("{}/v1/ops?after_seq={beyond}", bank.url)).await;
    assert_eq!(
        (s, page),
        (200, json!({"ops": [], "next_after_seq": beyond}))
    );

    // Bad paging parameters are refused.
    for query in ["after_seq=-1", "limit=0", "limit=abc", "after_seq=x"] {
        let (s, b) = get_json(&c, &format!("{}/v1/ops?{query}", bank.url)).await;
        assert_eq!(
            (s, &b["code"]),
            (400, &json!("BAD_REQUEST")),
            "{query}: {b}"
        );
    }
}

#[tokio::test]
async fn feed_limit_defaults_to_100_and_is_capped_at_1000() {
    let db = TestDb::new("bs_cap");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    const OPS: usize = 1_010;
    for chunk in (0..OPS).collect::<Vec<_>>().chunks(50) {
        let answers = futures::future::join_all(chunk.iter().map(|i| {
            let body = mv(&format!("cap-{i}"), &t, "ACC001", 1);
            let c = c.clone();
            let url = format!("{}/v1/credit", bank.url);
            async move { post_json(&c, &url, &body).await.0 }
        }))
        .await;
        assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    }

    let (s, page) = get_json(&c, &format!("{}/v1/ops", bank.url)).await;
    assert_eq!(s, 200);
    assert_eq!(
        page["ops"].as_array().expect("ops").len(),
        100,
        "default limit"
    );
    let (s, page) = get_json(&c, &format!("{}/v1/ops?after_seq=0&limit=5000", bank.url)).await;
    assert_eq!(s, 200);
    let ops = page["ops"].as_array().expect("ops");
    assert_eq!(ops.len(), 1000, "limit is capped at 1000");
    assert_seqs_strictly_increasing(ops);
    assert_eq!(page["next_after_seq"], ops[999]["seq"]);
    let all = feed(&c, &bank.url).await;
    assert_eq!(all.len(), OPS);
    assert_seqs_strictly_increasing(&all);
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000 + OPS as i64);
}

// ---------------------------------------------------------------------------
// 2. Malformed input
// ---------------------------------------------------------------------------

#[tokio::test]
async fn malformed_requests_are_refused_and_change_nothing() {
    let db = TestDb::new("bs_bad");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    assert_eq!(debit(&c, &bank, &mv("ok1", &t, "ACC001", 100)).await.0, 200);
    assert_eq!(reverse(&c, &bank, &rev("okr", "ok0", &t, 100)).await.0, 200);
    let before = snapshot(&c, &bank).await;

    let long_op = "a".repeat(65);
    let long_acc = "A".repeat(65);
    let mut moves: Vec<String> = vec![
        "{".into(),
        "not json".into(),
        String::new(),
        "[]".into(),
        "null".into(),
        format!(r#"{{"txn_id":"{t}","account":"ACC001","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m1","account":"ACC001","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001"}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":null}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":100.5}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":100.0}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":1e2}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":"100"}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":-100}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":0}}"#),
        format!(
            r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":10000000000001}}"#
        ),
        format!(
            r#"{{"op_id":"m1","txn_id":"{t}","account":"ACC001","amount_paise":99999999999999999999}}"#
        ),
        format!(r#"{{"op_id":"","txn_id":"{t}","account":"ACC001","amount_paise":100}}"#),
        format!(r#"{{"op_id":"{long_op}","txn_id":"{t}","account":"ACC001","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m 1","txn_id":"{t}","account":"ACC001","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m#1","txn_id":"{t}","account":"ACC001","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m/1","txn_id":"{t}","account":"ACC001","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m\u00e91","txn_id":"{t}","account":"ACC001","amount_paise":100}}"#),
        format!(r#"{{"op_id":123,"txn_id":"{t}","account":"ACC001","amount_paise":100}}"#),
        r#"{"op_id":"m1","txn_id":"not-a-uuid","account":"ACC001","amount_paise":100}"#.into(),
        r#"{"op_id":"m1","txn_id":"","account":"ACC001","amount_paise":100}"#.into(),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m1","txn_id":"{t}","account":"{long_acc}","amount_paise":100}}"#),
    ];
    // The same malformed bodies against the op_id of an existing op are refused too.
    moves.push(format!(
        r#"{{"op_id":"ok1","txn_id":"{t}","account":"ACC001","amount_paise":100.0}}"#
    ));
    let reverses: Vec<String> = vec![
        "{".into(),
        format!(r#"{{"op_id":"m2","txn_id":"{t}","amount_paise":100}}"#),
        format!(r#"{{"original_op_id":"ok1","txn_id":"{t}","amount_paise":100}}"#),
        r#"{"op_id":"m2","original_op_id":"ok1","amount_paise":100}"#.into(),
        format!(r#"{{"op_id":"m2","original_op_id":"ok1","txn_id":"{t}"}}"#),
        format!(r#"{{"op_id":"m2","original_op_id":"ok1","txn_id":"{t}","amount_paise":100.0}}"#),
        format!(r#"{{"op_id":"m2","original_op_id":"ok1","txn_id":"{t}","amount_paise":0}}"#),
        format!(r#"{{"op_id":"m2","original_op_id":"ok1","txn_id":"{t}","amount_paise":-100}}"#),
        format!(
            r#"{{"op_id":"m2","original_op_id":"ok1","txn_id":"{t}","amount_paise":10000000000001}}"#
        ),
        format!(r#"{{"op_id":"m2","original_op_id":"o#1","txn_id":"{t}","amount_paise":100}}"#),
        format!(r#"{{"op_id":"m2","original_op_id":"","txn_id":"{t}","amount_paise":100}}"#),
        format!(
            r#"{{"op_id":"m2","original_op_id":"{long_op}","txn_id":"{t}","amount_paise":100}}"#
        ),
        format!(r#"{{"op_id":"m 2","original_op_id":"ok1","txn_id":"{t}","amount_paise":100}}"#),
        r#"{"op_id":"m2","original_op_id":"ok1","txn_id":"nope","amount_paise":100}"#.into(),
    ];

    let mut cases: Vec<(&str, &str)> = Vec::new();
    for body in &moves {
        cases.push(("debit", body));
        cases.push(("credit", body));
    }
    for body in &reverses {
        cases.push(("reverse", body));
    }
    for (path, body) in cases {
        let (s, b) = post_raw(&c, &format!("{}/v1/{path}", bank.url), body).await;
        assert_eq!(s, 400, "{path} {body}: {b}");
        assert_eq!(b["code"], "BAD_REQUEST", "{path} {body}: {b}");
        assert!(b["detail"].is_string(), "{path} {body}: {b}");
    }
    assert_eq!(snapshot(&c, &bank).await, before, "a 400 changes nothing");
    assert_eq!(inquiry(&c, &bank, "m1").await.0, 404);
    assert_eq!(inquiry(&c, &bank, "m2").await.0, 404);

    // The op_ids were not used up; 10^13 itself is a valid amount.
    assert_eq!(
        debit(&c, &bank, &mv("m1", &t, "ACC001", 100)).await,
        (200, applied("m1", "ACC001", 100))
    );
    assert_eq!(
        debit(&c, &bank, &mv("m3", &t, "ACC001", 10_000_000_000_000)).await,
        (422, declined("m3", "INSUFFICIENT_FUNDS"))
    );
    assert_eq!(
        reverse(&c, &bank, &rev("m2", "ok1", &t, 100)).await,
        (200, reverse_answer("m2", "ok1", "REVERSED"))
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000 - 100);
}

// ---------------------------------------------------------------------------
// 3. Concurrent copies of one request
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_identical_debits_move_money_once() {
    let db = TestDb::new("bs_conc");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    let body = mv("same-op", &t, "ACC002", 3_333);
    let url = format!("{}/v1/debit", bank.url);
    let answers = futures::future::join_all((0..50).map(|_| post_json(&c, &url, &body))).await;
    for answer in &answers {
        assert_eq!(answer, &(200, applied("same-op", "ACC002", 3_333)));
    }
    let (map, total) = balances(&c, &bank.url).await;
    assert_eq!(map["ACC002"], 100_000 - 3_333);
    assert_eq!(total, 300_000 - 3_333);
    let entries = feed(&c, &bank.url).await;
    assert_eq!(feed_ids(&entries), ["same-op"]);

    // Concurrent copies of a reverse also act once.
    let body = rev("same-rev", "same-op", &t, 3_333);
    let url = format!("{}/v1/reverse", bank.url);
    let answers = futures::future::join_all((0..50).map(|_| post_json(&c, &url, &body))).await;
    for answer in &answers {
        assert_eq!(
            answer,
            &(200, reverse_answer("same-rev", "same-op", "REVERSED"))
        );
    }
    assert_eq!(balances(&c, &bank.url).await.1, 300_000);
    assert_eq!(
        feed_ids(&feed(&c, &bank.url).await),
        ["same-op", "same-rev"]
    );
}

// ---------------------------------------------------------------------------
// 4. Durability across kill -9
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Applied,
    Declined,
    Unknown,
}

#[derive(Debug, Clone)]
struct SentOp {
    op_id: String,
    is_debit: bool,
    account: String,
    amount: i64,
    answer: Answer,
}

/// xorshift64*: a tiny deterministic generator that can live across awaits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn worker(
    id: usize,
    client: reqwest::Client,
    base: String,
    accounts: Vec<String>,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<SentOp> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut sent = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let op_id = format!("w{id}-{n}");
        let is_debit = rng.below(2) == 0;
        let account = accounts[rng.below(accounts.len() as u64) as usize].clone();
        let amount = 1 + rng.below(8_000) as i64;
        let body = mv(&op_id, &new_txn(), &account, amount);
        let path = if is_debit { "debit" } else { "credit" };
        let result = client
            .post(format!("{base}/v1/{path}"))
            .json(&body)
            .send()
            .await;
        let (answer, transport_error) = match result {
            Err(_) => (Answer::Unknown, true),
            Ok(resp) => {
                let status = resp.status().as_u16();
                match (status, resp.json::<Value>().await) {
                    (200, Ok(b)) if b == applied(&op_id, &account, amount) => {
                        (Answer::Applied, false)
                    }
                    (422, Ok(b)) if b["status"] == "DECLINED" => (Answer::Declined, false),
                    (_, Err(_)) => (Answer::Unknown, true),
                    _ => (Answer::Unknown, false),
                }
            }
        };
        sent.push(SentOp {
            op_id,
            is_debit,
            account,
            amount,
            answer,
        });
        done.fetch_add(1, Ordering::SeqCst);
        if transport_error {
            break; // the bank is gone
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_stream_loses_no_applied_op_and_conserves_money() {
    let db = TestDb::new("bs_kill");
    let mut bank = BankProc::start(
        "HDFC",
        &db.url,
        &["--seed-accounts", "20", "--balance-paise", "20000"],
    );
    let c = http();
    let (start, start_total) = balances(&c, &bank.url).await;
    assert_eq!(start.len(), 20);
    let accounts: Vec<String> = start.keys().cloned().collect();

    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|id| {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client");
            tokio::spawn(worker(
                id,
                client,
                bank.url.clone(),
                accounts.clone(),
                done.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Let a thousand movements through, then kill the bank while requests are in flight.
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(Ordering::SeqCst) < 1_000 {
        assert!(Instant::now() < deadline, "workers made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bank.kill9();
    stop.store(true, Ordering::SeqCst);
    let mut sent: Vec<SentOp> = Vec::new();
    for w in workers {
        sent.extend(w.await.expect("worker"));
    }
    bank.restart();

    // Resolve every outcome with inquiry.
    let mut applied_ops: Vec<&SentOp> = Vec::new();
    let mut recorded = 0usize;
    let mut unknown_applied = 0usize;
    let mut unknown = 0usize;
    for op in &sent {
        let (s, b) = inquiry(&c, &bank, &op.op_id).await;
        match op.answer {
            Answer::Applied => {
                let kind = if op.is_debit { "DEBIT" } else { "CREDIT" };
                assert_eq!(
                    (s, b),
                    (
                        200,
                        op_view(
                            &op.op_id,
                            Some(kind),
                            "APPLIED",
                            Some(&op.account),
                            op.amount,
                            None,
                            None
                        )
                    ),
                    "an op answered 200 APPLIED survived kill -9"
                );
                applied_ops.push(op);
                recorded += 1;
            }
            Answer::Declined => {
                assert_eq!(
                    (s, &b["status"]),
                    (200, &json!("DECLINED")),
                    "{}: {b}",
                    op.op_id
                );
                recorded += 1;
            }
            Answer::Unknown => {
                unknown += 1;
                match s {
                    200 if b["status"] == "APPLIED" => {
                        assert_eq!(b["amount_paise"], op.amount);
                        assert_eq!(b["account"], op.account.as_str());
                        applied_ops.push(op);
                        unknown_applied += 1;
                        recorded += 1;
                    }
                    200 => {
                        assert_eq!(b["status"], "DECLINED", "{}: {b}", op.op_id);
                        recorded += 1;
                    }
                    404 => assert_eq!(b["status"], "UNKNOWN"),
                    other => panic!("inquiry of {}: {other} {b}", op.op_id),
                }
            }
        }
    }
    assert!(sent.len() >= 1_000, "sent {}", sent.len());
    assert!(unknown >= 1, "the kill interrupted at least one worker");
    eprintln!(
        "kill -9 test: {} ops sent, {} applied ({} of them with unknown outcome), {} unknown",
        sent.len(),
        applied_ops.len(),
        unknown_applied,
        unknown
    );

    // Every balance is its start plus applied credits minus applied debits.
    let mut expected = start.clone();
    let mut net = 0i64;
    for op in &applied_ops {
        let delta = if op.is_debit { -op.amount } else { op.amount };
        *expected.get_mut(&op.account).expect("account") += delta;
        net += delta;
    }
    let (after, after_total) = balances(&c, &bank.url).await;
    assert_eq!(after, expected, "balances after kill -9 and restart");
    assert_eq!(
        after_total,
        start_total + net,
        "money conserved apart from applied movements"
    );
    assert!(
        after.values().all(|b| *b >= 0),
        "no debit took a balance below zero"
    );

    // The feed holds exactly the recorded ops, and continues after the restart.
    let entries = feed(&c, &bank.url).await;
    assert_seqs_strictly_increasing(&entries);
    assert_eq!(entries.len(), recorded);
    let max_seq = entries
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .max()
        .unwrap_or(0);
    let t = new_txn();
    assert_eq!(
        debit(&c, &bank, &mv("after-restart", &t, "ACC001", 1))
            .await
            .0,
        200
    );
    let entries = feed(&c, &bank.url).await;
    assert_seqs_strictly_increasing(&entries);
    let last = entries.last().expect("entry");
    assert_eq!(last["op_id"], "after-restart");
    assert!(
        last["seq"].as_i64().expect("seq") > max_seq,
        "{last} after {max_seq}"
    );
}

#[tokio::test]
async fn replays_after_kill9_and_restart_are_answered_from_the_database() {
    let db = TestDb::new("bs_replay");
    let (mut bank, _file) = start_with_accounts(&db);
    let c = http();
    let t = new_txn();
    let sent: Vec<(&str, Value)> = vec![
        ("debit", mv("d1", &t, "ACC001", 1_000)),
        ("credit", mv("c1", &t, "ACC002", 2_000)),
        ("debit", mv("d2", &t, "ACC002", 999_999)),
        ("reverse", rev("r1", "c1", &t, 2_000)),
        ("reverse", rev("r2", "x1", &t, 300)),
    ];
    let mut answers = Vec::new();
    for (path, body) in &sent {
        answers.push(post_json(&c, &format!("{}/v1/{path}", bank.url), body).await);
    }
    let before = snapshot(&c, &bank).await;

    bank.restart();
    let c = http(); // no pooled connection to the dead process
    for ((path, body), answer) in sent.iter().zip(&answers) {
        let again = post_json(&c, &format!("{}/v1/{path}", bank.url), body).await;
        assert_eq!(&again, answer, "{path} {body} after the restart");
    }
    assert_eq!(
        snapshot(&c, &bank).await,
        before,
        "the replays changed nothing"
    );
    let (s, b) = debit(&c, &bank, &mv("x1", &t, "ACC001", 300)).await;
    assert_eq!(
        (s, b),
        (422, declined("x1", "ALREADY_REVERSED")),
        "the tombstone survived too"
    );
}

// ---------------------------------------------------------------------------
// 5. Fault injection
// ---------------------------------------------------------------------------

#[tokio::test]
async fn faults_can_be_read_patched_and_are_validated() {
    let db = TestDb::new("bs_fset");
    let bank = seeded(&db, &[]);
    let c = http();
    let url = format!("{}/admin/faults", bank.url);
    let defaults = json!({
        "latency_ms": 0, "jitter_ms": 0, "error_rate": 0.0, "lost_reply_rate": 0.0,
        "hang": false, "max_hang_ms": 300_000, "down": false,
    });
    assert_eq!(get_json(&c, &url).await, (200, defaults.clone()));

    // A partial patch keeps the other fields.
    let mut expected = defaults.clone();
    expected["jitter_ms"] = json!(5);
    expected["max_hang_ms"] = json!(1_000);
    assert_eq!(
        set_faults(&c, &bank, json!({"jitter_ms": 5, "max_hang_ms": 1_000})).await,
        expected
    );
    assert_eq!(get_json(&c, &url).await, (200, expected.clone()));

    for bad in [
        json!({"error_rate": 1.5}),
        json!({"error_rate": -0.1}),
        json!({"lost_reply_rate": 2}),
        json!({"unknown_field": 1}),
        json!({"latency_ms": -1}),
        json!({"latency_ms": 3_600_001}),
        json!({"max_hang_ms": 99_999_999}),
        json!({"hang": "yes"}),
        json!([]),
    ] {
        let (s, b) = put_json(&c, &url, &bad).await;
        assert_eq!((s, &b["code"]), (400, &json!("BAD_REQUEST")), "{bad}: {b}");
    }
    let (s, b) = post_raw(&c, &url, "{").await; // wrong method: not a route
    assert_ne!(s, 200, "{b}");
    assert_eq!(
        get_json(&c, &url).await,
        (200, expected),
        "refused patches change nothing"
    );
}

#[tokio::test]
async fn fault_error_rate_refuses_without_applying() {
    let db = TestDb::new("bs_ferr");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    let before = balances(&c, &bank.url).await;
    set_faults(&c, &bank, json!({"error_rate": 1.0})).await;

    let (s, b) = debit(&c, &bank, &mv("e1", &t, "ACC001", 100)).await;
    assert_eq!((s, &b["code"]), (503, &json!("UNAVAILABLE")), "{b}");
    let (s, _) = credit(&c, &bank, &mv("e2", &t, "ACC001", 100)).await;
    assert_eq!(s, 503);
    let (s, _) = reverse(&c, &bank, &rev("e3", "e9", &t, 100)).await;
    assert_eq!(s, 503);
    assert_eq!(inquiry(&c, &bank, "e1").await.0, 503, "reads fail too");

    set_faults(&c, &bank, json!({"error_rate": 0.0})).await;
    for op in ["e1", "e2", "e3", "e9"] {
        assert_eq!(
            inquiry(&c, &bank, op).await,
            (404, json!({"op_id": op, "status": "UNKNOWN"}))
        );
    }
    assert_eq!(balances(&c, &bank.url).await, before);
    assert!(feed(&c, &bank.url).await.is_empty());
    // The op_id was not used: it applies now.
    assert_eq!(
        debit(&c, &bank, &mv("e1", &t, "ACC001", 100)).await,
        (200, applied("e1", "ACC001", 100))
    );
}

#[tokio::test]
async fn fault_lost_reply_applies_but_answers_503() {
    let db = TestDb::new("bs_flost");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    set_faults(&c, &bank, json!({"lost_reply_rate": 1.0})).await;

    let (s, b) = debit(&c, &bank, &mv("l1", &t, "ACC001", 2_000)).await;
    assert_eq!((s, &b["code"]), (503, &json!("UNAVAILABLE")), "{b}");
    // Reads are not affected by lost replies: the op is there, and money moved.
    assert_eq!(
        inquiry(&c, &bank, "l1").await,
        (
            200,
            op_view(
                "l1",
                Some("DEBIT"),
                "APPLIED",
                Some("ACC001"),
                2_000,
                None,
                None
            )
        )
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 98_000);
    // A replay while the fault lasts is lost too, and moves nothing more.
    assert_eq!(
        debit(&c, &bank, &mv("l1", &t, "ACC001", 2_000)).await.0,
        503
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 98_000);

    set_faults(&c, &bank, json!({"lost_reply_rate": 0.0})).await;
    assert_eq!(
        debit(&c, &bank, &mv("l1", &t, "ACC001", 2_000)).await,
        (200, applied("l1", "ACC001", 2_000))
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 98_000);
    assert_eq!(feed_ids(&feed(&c, &bank.url).await), ["l1"]);
}

#[tokio::test]
async fn fault_down_refuses_every_v1_endpoint() {
    let db = TestDb::new("bs_fdown");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    assert_eq!(debit(&c, &bank, &mv("d0", &t, "ACC001", 100)).await.0, 200);
    let before = snapshot(&c, &bank).await;
    set_faults(&c, &bank, json!({"down": true})).await;

    let gets = [
        "/v1/health",
        "/v1/ops/d0",
        "/v1/ops?after_seq=0",
        "/v1/accounts/ACC001",
    ];
    for path in gets {
        let (s, b) = get_json(&c, &format!("{}{path}", bank.url)).await;
        assert_eq!(s, 503, "{path}: {b}");
    }
    let posts = [
        ("debit", mv("d1", &t, "ACC001", 100)),
        ("credit", mv("c1", &t, "ACC001", 100)),
        ("reverse", rev("r1", "d0", &t, 100)),
    ];
    for (path, body) in &posts {
        let (s, b) = post_json(&c, &format!("{}/v1/{path}", bank.url), body).await;
        assert_eq!(s, 503, "{path}: {b}");
    }

    set_faults(&c, &bank, json!({"down": false})).await;
    assert_eq!(
        snapshot(&c, &bank).await,
        before,
        "nothing was applied while down"
    );
    for path in gets {
        let (s, b) = get_json(&c, &format!("{}{path}", bank.url)).await;
        assert_eq!(s, 200, "{path}: {b}");
    }
    assert_eq!(
        get_json(&c, &format!("{}/v1/health", bank.url)).await,
        (200, json!({"status": "UP"}))
    );
    assert_eq!(debit(&c, &bank, &mv("d1", &t, "ACC001", 100)).await.0, 200);
}

#[tokio::test]
async fn a_movement_is_applied_even_if_its_client_leaves_at_once() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::new("bs_leave");
    let bank = seeded(&db, &[]);
    let c = http();
    let body = mv("d1", &new_txn(), "ACC001", 10).to_string();
    let request = format!(
        "POST /v1/debit HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let addr = bank.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(request.as_bytes()).await.expect("send");
    drop(socket); // gone before any answer

    wait_for_status(&c, &bank, "d1", "APPLIED", Duration::from_secs(10)).await;
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000 - 10);
}

#[tokio::test]
async fn fault_latency_delays_but_succeeds() {
    let db = TestDb::new("bs_flat");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    set_faults(&c, &bank, json!({"latency_ms": 300})).await;

    let started = Instant::now();
    let answer = debit(&c, &bank, &mv("s1", &t, "ACC001", 100)).await;
    let elapsed = started.elapsed();
    assert_eq!(answer, (200, applied("s1", "ACC001", 100)));
    assert!(
        elapsed >= Duration::from_millis(300),
        "latency injected: {elapsed:?}"
    );

    let started = Instant::now();
    assert_eq!(inquiry(&c, &bank, "s1").await.0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "reads are delayed too"
    );

    set_faults(&c, &bank, json!({"latency_ms": 0, "jitter_ms": 50})).await;
    assert_eq!(debit(&c, &bank, &mv("s2", &t, "ACC001", 100)).await.0, 200);
    assert_eq!(balance(&c, &bank, "ACC001").await, 99_800);
}

#[tokio::test]
async fn fault_hang_holds_movements_until_cleared() {
    let db = TestDb::new("bs_fhang");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    set_faults(&c, &bank, json!({"hang": true})).await;

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let err = impatient
        .post(format!("{}/v1/debit", bank.url))
        .json(&mv("h1", &t, "ACC001", 4_000))
        .send()
        .await
        .expect_err("a held request gets no answer");
    assert!(err.is_timeout(), "{err}");
    // Reads are not held; the op has not been applied yet.
    assert_eq!(inquiry(&c, &bank, "h1").await.0, 404);
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000);

    // Clearing the fault lets the held request (still travelling) proceed.
    set_faults(&c, &bank, json!({"hang": false})).await;
    let view = wait_for_status(&c, &bank, "h1", "APPLIED", Duration::from_secs(10)).await;
    assert_eq!(
        view,
        op_view(
            "h1",
            Some("DEBIT"),
            "APPLIED",
            Some("ACC001"),
            4_000,
            None,
            None
        )
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 96_000);
    assert_eq!(
        debit(&c, &bank, &mv("h1", &t, "ACC001", 4_000)).await,
        (200, applied("h1", "ACC001", 4_000))
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 96_000);
}

#[tokio::test]
async fn fault_hang_gives_up_after_max_hang_ms_without_applying() {
    let db = TestDb::new("bs_fmaxh");
    let bank = seeded(&db, &[]);
    let c = http();
    let t = new_txn();
    set_faults(&c, &bank, json!({"hang": true, "max_hang_ms": 300})).await;

    let (s, b) = debit(&c, &bank, &mv("h1", &t, "ACC001", 4_000)).await;
    assert_eq!((s, &b["code"]), (503, &json!("UNAVAILABLE")), "{b}");
    assert_eq!(inquiry(&c, &bank, "h1").await.0, 404);
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000);

    set_faults(&c, &bank, json!({"hang": false})).await;
    assert_eq!(
        inquiry(&c, &bank, "h1").await.0,
        404,
        "the refused request stays unapplied"
    );
    assert_eq!(
        debit(&c, &bank, &mv("h1", &t, "ACC001", 4_000)).await,
        (200, applied("h1", "ACC001", 4_000))
    );
    assert_eq!(balance(&c, &bank, "ACC001").await, 96_000);
}

#[tokio::test]
async fn flag_down_starts_the_bank_refusing() {
    let db = TestDb::new("bs_fflag");
    let bank = seeded(&db, &["--down"]);
    let c = http();
    let t = new_txn();
    assert_eq!(
        get_json(&c, &format!("{}/v1/health", bank.url)).await.0,
        503
    );
    assert_eq!(debit(&c, &bank, &mv("d1", &t, "ACC001", 100)).await.0, 503);
    assert_eq!(
        get_json(&c, &format!("{}/admin/faults", bank.url)).await.1["down"],
        true
    );

    set_faults(&c, &bank, json!({"down": false})).await;
    assert_eq!(
        get_json(&c, &format!("{}/v1/health", bank.url)).await,
        (200, json!({"status": "UP"}))
    );
    assert_eq!(inquiry(&c, &bank, "d1").await.0, 404);
    assert_eq!(debit(&c, &bank, &mv("d1", &t, "ACC001", 100)).await.0, 200);
}

#[tokio::test]
async fn delete_faults_resets_to_the_faults_the_bank_started_with() {
    let db = TestDb::new("bs_freset");
    let bank = seeded(&db, &["--latency-ms", "7"]);
    let c = http();
    let url = format!("{}/admin/faults", bank.url);
    let started = get_json(&c, &url).await.1;
    assert_eq!(started["latency_ms"], 7, "{started}");

    // PUT merges: a hang set by one patch survives an unrelated patch.
    set_faults(&c, &bank, json!({"hang": true, "down": true})).await;
    let merged = set_faults(&c, &bank, json!({"error_rate": 0.5})).await;
    assert_eq!(
        (&merged["hang"], &merged["down"]),
        (&json!(true), &json!(true))
    );

    // DELETE puts back exactly the start-up faults, and the bank serves again.
    let resp = c.delete(&url).send().await.expect("DELETE /admin/faults");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body, started);
    assert_eq!(get_json(&c, &url).await, (200, started));
    let t = new_txn();
    assert_eq!(debit(&c, &bank, &mv("r1", &t, "ACC001", 100)).await.0, 200);
}

// ---------------------------------------------------------------------------
// The switch's BankClient against a live simulator
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bank_client_folds_answers_into_outcomes() {
    use upi_switch::adapters::bank_api::{
        DeclineCode, MoveRequest, OpKind, OpStatus, ReverseRequest,
    };
    use upi_switch::adapters::bank_client::{
        BankClient, InquiryOutcome, MoveOutcome, ReverseOutcome, Unknown,
    };

    let db = TestDb::new("bs_client");
    let (mut bank, _file) = start_with_accounts(&db);
    let c = http();
    let client = BankClient::new(
        BankClient::http_client(),
        &format!("{}/", bank.url),
        Duration::from_secs(5),
    );
    let t = new_txn();
    let req = |op: &str, acc: &str, amt: i64| MoveRequest {
        op_id: op.into(),
        txn_id: t.clone(),
        account: acc.into(),
        amount_paise: amt,
    };
    let rreq = |op: &str, orig: &str, amt: i64| ReverseRequest {
        op_id: op.into(),
        original_op_id: orig.into(),
        txn_id: t.clone(),
        amount_paise: amt,
    };

    assert!(client.health().await);
    assert_eq!(
        client.debit(&req("d1", "ACC001", 1_000)).await,
        MoveOutcome::Applied
    );
    assert_eq!(
        client.debit(&req("d1", "ACC001", 1_000)).await,
        MoveOutcome::Applied,
        "replay"
    );
    assert_eq!(
        client.credit(&req("c1", "ACC002", 500)).await,
        MoveOutcome::Applied
    );
    assert_eq!(
        client.debit(&req("d2", "ACC002", 10_000)).await,
        MoveOutcome::Declined(DeclineCode::InsufficientFunds)
    );
    assert_eq!(
        client.credit(&req("c2", "NOPE01", 1)).await,
        MoveOutcome::Declined(DeclineCode::AccountNotFound)
    );
    assert_eq!(
        client.debit(&req("d3", "FRZ001", 1)).await,
        MoveOutcome::Declined(DeclineCode::AccountFrozen)
    );
    // A 409 is a bug on the caller's side, never a definitive answer.
    match client.debit(&req("d1", "ACC001", 999)).await {
        MoveOutcome::Unknown(Unknown::MaybeApplied(detail)) => {
            assert!(detail.contains("409"), "{detail}")
        }
        other => panic!("conflict: {other:?}"),
    }

    match client.inquire("d1").await {
        InquiryOutcome::Found(view) => {
            assert_eq!(view.op_id, "d1");
            assert_eq!(view.kind, Some(OpKind::Debit));
            assert_eq!(view.status, OpStatus::Applied);
            assert_eq!(view.account.as_deref(), Some("ACC001"));
            assert_eq!(view.amount_paise, 1_000);
        }
        other => panic!("inquiry d1: {other:?}"),
    }
    assert_eq!(client.inquire("nope").await, InquiryOutcome::NotFound);

    assert_eq!(
        client.reverse(&rreq("r1", "d1", 1_000)).await,
        ReverseOutcome::Reversed
    );
    assert_eq!(
        client.reverse(&rreq("r2", "d1", 1_000)).await,
        ReverseOutcome::Reversed,
        "again"
    );
    assert_eq!(
        client.reverse(&rreq("r3", "d2", 10_000)).await,
        ReverseOutcome::Noop,
        "declined"
    );
    assert_eq!(
        client.reverse(&rreq("r4", "ghost", 77)).await,
        ReverseOutcome::Noop,
        "never seen"
    );
    assert_eq!(
        client.debit(&req("ghost", "ACC001", 77)).await,
        MoveOutcome::Declined(DeclineCode::AlreadyReversed)
    );
    match client.inquire("ghost").await {
        InquiryOutcome::Found(view) => assert_eq!(view.code, Some(DeclineCode::AlreadyReversed)),
        other => panic!("inquiry ghost: {other:?}"),
    }
    assert_eq!(balance(&c, &bank, "ACC001").await, 100_000);

    // A lost reply: applied, but the client can only say "maybe".
    set_faults(&c, &bank, json!({"lost_reply_rate": 1.0})).await;
    match client.debit(&req("d4", "ACC001", 300)).await {
        MoveOutcome::Unknown(u @ Unknown::MaybeApplied(_)) => assert!(u.maybe_delivered()),
        other => panic!("lost reply: {other:?}"),
    }
    assert!(matches!(
        client.reverse(&rreq("r5", "nothing", 5)).await,
        ReverseOutcome::Unknown(Unknown::MaybeApplied(_))
    ));
    set_faults(&c, &bank, json!({"lost_reply_rate": 0.0})).await;
    match client.inquire("d4").await {
        InquiryOutcome::Found(view) => assert_eq!(view.status, OpStatus::Applied),
        other => panic!("inquiry d4: {other:?}"),
    }
    assert_eq!(
        client.debit(&req("d4", "ACC001", 300)).await,
        MoveOutcome::Applied
    );

    // No answer before the deadline: maybe applied (and here it is, once released).
    set_faults(&c, &bank, json!({"hang": true})).await;
    let hasty = BankClient::new(
        BankClient::http_client(),
        &bank.url,
        Duration::from_millis(300),
    );
    match hasty.debit(&req("d7", "ACC001", 10)).await {
        MoveOutcome::Unknown(Unknown::MaybeApplied(detail)) => {
            assert!(detail.contains("deadline"), "{detail}")
        }
        other => panic!("hung bank: {other:?}"),
    }
    assert_eq!(client.inquire("d7").await, InquiryOutcome::NotFound);
    set_faults(&c, &bank, json!({"hang": false})).await;
    wait_for_status(&c, &bank, "d7", "APPLIED", Duration::from_secs(10)).await;
    assert_eq!(
        client.debit(&req("d7", "ACC001", 10)).await,
        MoveOutcome::Applied
    );

    // Down: 503 is unknown, health false.
    set_faults(&c, &bank, json!({"down": true})).await;
    assert!(!client.health().await);
    assert!(matches!(
        client.debit(&req("d5", "ACC001", 1)).await,
        MoveOutcome::Unknown(Unknown::MaybeApplied(_))
    ));
    assert!(matches!(
        client.inquire("d4").await,
        InquiryOutcome::Unknown(Unknown::MaybeApplied(_))
    ));
    set_faults(&c, &bank, json!({"down": false})).await;

    // A killed bank: the connection cannot be opened, so nothing was delivered.
    // (A fresh client, so no pooled connection to the dead process is reused.)
    bank.kill9();
    let fresh = BankClient::new(BankClient::http_client(), &bank.url, Duration::from_secs(5));
    match fresh.debit(&req("d6", "ACC001", 1)).await {
        MoveOutcome::Unknown(u @ Unknown::NotDelivered(_)) => assert!(!u.maybe_delivered()),
        other => panic!("killed bank: {other:?}"),
    }
    assert!(matches!(
        fresh.reverse(&rreq("r6", "d6", 1)).await,
        ReverseOutcome::Unknown(Unknown::NotDelivered(_))
    ));
    assert!(matches!(
        fresh.inquire("d6").await,
        InquiryOutcome::Unknown(Unknown::NotDelivered(_))
    ));
    assert!(!fresh.health().await);
}

// ---------------------------------------------------------------------------
// 6. The single writer: its batches and its plans
// ---------------------------------------------------------------------------

mod writer {
    //! The writer driven directly (no HTTP), so a test decides what lands in
    //! one batch: on the test's single-threaded runtime, requests submitted
    //! together by `join!` are all queued before the writer task runs again.

    use super::TestDb;
    use upi_switch::adapters::bank_api::{
        DeclineCode, MoveAnswer, MoveRequest, OpStatus, ReverseAnswer, ReverseRequest,
    };
    use upi_switch::adapters::pg::{self, DbUrl, Schema};
    use upi_switch::banksim::ledger::{Reply, Request};
    use upi_switch::banksim::sql;
    use upi_switch::banksim::store::{BankStore, SeedAccount};
    use upi_switch::banksim::writer::{StartError, WriteError, Writer};

    pub const CODE: &str = "HDFC";
    /// One transaction for every op here: a replay must repeat it exactly.
    const TXN: &str = "7f2c1d4e-8a3b-4c5d-9e6f-0a1b2c3d4e5f";

    /// A migrated database with `accounts` accounts ACC001.. of ₹1,000 at HDFC.
    pub async fn seeded_bank(db: &TestDb, accounts: usize) -> BankStore {
        let pool = pg::prepare(&db.url, Schema::Bank, 2)
            .await
            .expect("migrate");
        let store = BankStore {
            pool,
            code: CODE.into(),
        };
        let seeds: Vec<SeedAccount> = (1..=accounts)
            .map(|i| SeedAccount {
                account: format!("ACC{i:03}"),
                name: format!("Customer {i}"),
                balance_paise: 100_000,
                status: "ACTIVE".into(),
            })
            .collect();
        store.seed_if_empty(&seeds).await.expect("seed");
        store
    }

    /// A fresh database with `accounts` accounts and the bank's writer on it.
    pub async fn started(prefix: &str, accounts: usize) -> (TestDb, BankStore, Writer) {
        let db = TestDb::new(prefix);
        let store = seeded_bank(&db, accounts).await;
        let writer = start_writer(&db).await;
        (db, store, writer)
    }

    /// Starts the bank's writer, waiting while a previous one's session ends.
    pub async fn start_writer(db: &TestDb) -> Writer {
        let url = DbUrl::parse(&db.url).expect("url");
        for _ in 0..100 {
            match Writer::start(url.clone(), CODE.into()).await {
                Ok(writer) => return writer,
                Err(StartError::AlreadyServed(_)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(e) => panic!("writer: {e}"),
            }
        }
        panic!("the previous writer never let go of the bank");
    }

    pub fn debit(op_id: &str, amount_paise: i64) -> Request {
        Request::Debit(MoveRequest {
            op_id: op_id.into(),
            txn_id: TXN.into(),
            account: "ACC001".into(),
            amount_paise,
        })
    }

    pub fn reverse(op_id: &str, original_op_id: &str, amount_paise: i64) -> Request {
        Request::Reverse(ReverseRequest {
            op_id: op_id.into(),
            original_op_id: original_op_id.into(),
            txn_id: TXN.into(),
            amount_paise,
        })
    }

    pub fn moved(reply: &Reply) -> &MoveAnswer {
        match reply {
            Reply::Moved(answer) => answer,
            other => panic!("not a debit/credit answer: {other:?}"),
        }
    }

    pub fn reversed(reply: &Reply) -> &ReverseAnswer {
        match reply {
            Reply::Reversed(answer) => answer,
            other => panic!("not a reverse answer: {other:?}"),
        }
    }

    /// (op_id, seq, status) of every row of the bank, by op id.
    pub async fn rows(db: &TestDb) -> Vec<(String, Option<i64>, String)> {
        let client = db.client().await;
        client
            .query(
                "SELECT op_id, seq, status FROM bank_ops WHERE bank_code = $1 ORDER BY op_id",
                &[&CODE],
            )
            .await
            .expect("rows")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    pub async fn balance(store: &BankStore) -> i64 {
        store
            .account("ACC001")
            .await
            .expect("read")
            .expect("ACC001")
            .balance_paise
    }

    #[tokio::test]
    async fn one_batch_holds_a_debit_and_its_reverse_in_either_order() {
        let (db, store, writer) = started("bs_wbatch", 1).await;

        // Debit first: applied, then undone, in the same commit.
        let (d, r) = tokio::join!(
            writer.submit(debit("d1", 500)),
            writer.submit(reverse("r1", "d1", 500))
        );
        let (d, r) = (d.expect("d1"), r.expect("r1"));
        assert_eq!(moved(&d).status, OpStatus::Applied);
        assert_eq!(reversed(&r).status, OpStatus::Reversed);

        // Reverse first: a tombstone, so the debit behind it is declined.
        let (r, d) = tokio::join!(
            writer.submit(reverse("r2", "d2", 700)),
            writer.submit(debit("d2", 700))
        );
        let (r, d) = (r.expect("r2"), d.expect("d2"));
        assert_eq!(reversed(&r).status, OpStatus::Noop);
        assert_eq!(moved(&d).code, Some(DeclineCode::AlreadyReversed));

        assert_eq!(balance(&store).await, 100_000, "no money moved in the end");
        assert_eq!(
            rows(&db).await,
            vec![
                ("d1".into(), Some(1), "REVERSED".into()),
                ("d2".into(), Some(4), "DECLINED".into()),
                ("r1".into(), Some(2), "APPLIED".into()),
                ("r2".into(), Some(3), "NOOP".into()),
            ],
            "one row per op, seqs gap-free in the order applied"
        );
    }

    #[tokio::test]
    async fn replays_after_the_writer_restarts_are_answered_from_the_database() {
        let (db, store, writer) = started("bs_wreplay", 1).await;
        let first_debit = writer.submit(debit("d1", 300)).await.expect("d1");
        let first_reverse = writer
            .submit(reverse("r9", "d9", 40))
            .await
            .expect("fence d9");
        drop(writer);

        let writer = start_writer(&db).await;
        let (d, r, late) = tokio::join!(
            writer.submit(debit("d1", 300)),
            writer.submit(reverse("r9", "d9", 40)),
            writer.submit(debit("d9", 40))
        );
        assert_eq!(d.expect("replay d1"), first_debit);
        assert_eq!(r.expect("replay r9"), first_reverse);
        assert_eq!(
            moved(&late.expect("d9")).code,
            Some(DeclineCode::AlreadyReversed)
        );
        assert_eq!(balance(&store).await, 100_000 - 300, "d1 moved money once");
    }

    #[tokio::test]
    async fn an_op_id_the_index_holds_but_the_database_lacks_is_a_new_op() {
        let (db, store, writer) = started("bs_wghost", 1).await;
        writer
            .submit(reverse("r1", "d1", 500))
            .await
            .expect("fence d1");
        // The tombstone goes behind the writer's back; its index still holds d1.
        let client = db.client().await;
        let gone = client
            .execute("DELETE FROM bank_ops WHERE op_id = 'd1'", &[])
            .await
            .expect("delete");
        assert_eq!(gone, 1);

        let d = writer.submit(debit("d1", 500)).await.expect("d1");
        assert_eq!(
            moved(&d).status,
            OpStatus::Applied,
            "maybe present, read, absent: new"
        );
        assert_eq!(balance(&store).await, 100_000 - 500);
        assert_eq!(
            writer.submit(debit("d1", 500)).await.expect("replay"),
            d,
            "and from now on it is a replay"
        );
    }

    #[tokio::test]
    async fn an_op_the_index_does_not_know_is_never_written_over() {
        let (db, store, writer) = started("bs_wrogue", 1).await;
        // A tombstone for d7 written behind the writer's back: its index lacks it.
        let client = db.client().await;
        client
            .execute(
                "INSERT INTO bank_ops (bank_code, op_id, status, answer, amount_paise, txn_id,
                                       code, at)
                 VALUES ('HDFC', 'd7', 'DECLINED', 'DECLINED', 500, $1, 'ALREADY_REVERSED', now())",
                &[&TXN],
            )
            .await
            .expect("insert");

        // The writer takes d7 for new; its plain INSERT fails the batch, not the row.
        let refused = writer.submit(debit("d7", 500)).await;
        assert!(
            matches!(&refused, Err(WriteError::Unavailable(why)) if why.contains("duplicate key")),
            "{refused:?}"
        );
        assert_eq!(balance(&store).await, 100_000, "nothing moved");

        // Reloaded from the database, it now answers from the tombstone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let answer = loop {
            match writer.submit(debit("d7", 500)).await {
                Ok(reply) => break reply,
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(moved(&answer).code, Some(DeclineCode::AlreadyReversed));
        assert_eq!(balance(&store).await, 100_000);
    }

    /// The plans of the read and of both writes, as the writer's session makes them.
    async fn plans(client: &tokio_postgres::Client, name: &str) -> [String; 3] {
        client
            .batch_execute(&format!(
                "PREPARE {name}_read(text, text[]) AS {};
                 PREPARE {name}_new AS {};
                 PREPARE {name}_any AS {}",
                sql::read_ops_sql(),
                sql::persist_new_sql(),
                sql::persist_any_sql()
            ))
            .await
            .expect("prepare");
        let explain = |sql: String| async move {
            let rows = client.query(&sql, &[]).await.expect("explain");
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let empties = |n| vec!["'{}'"; n].join(", ");
        [
            explain(format!("EXPLAIN EXECUTE {name}_read('HDFC', '{{d1,d2}}')")).await,
            explain(format!(
                "EXPLAIN EXECUTE {name}_new('HDFC', {})",
                empties(15)
            ))
            .await,
            explain(format!(
                "EXPLAIN EXECUTE {name}_any('HDFC', {})",
                empties(16)
            ))
            .await,
        ]
    }

    #[tokio::test]
    async fn the_writer_plans_key_lookups_with_or_without_statistics() {
        let (db, _store, writer) = started("bs_wplan", 200).await;
        for i in 0..50 {
            writer
                .submit(debit(&format!("d{i}"), 1))
                .await
                .expect("debit");
        }
        let client = db.client().await;
        client.batch_execute(sql::SESSION).await.expect("session");
        for (name, analyze) in [("bare", ""), ("analyzed", "ANALYZE")] {
            client.batch_execute(analyze).await.expect("analyze");
            let [read, new, any] = plans(&client, name).await;
            assert!(
                read.contains("Index Scan using bank_ops_pkey")
                    && read.contains("Index Cond: ((bank_code = $1) AND (op_id = w.op_id))")
                    && !read.contains("Seq Scan")
                    && !read.contains("Bitmap"),
                "{name}: read_ops is one primary-key lookup per op id:\n{read}"
            );
            for (plan, arbiters) in [(&new, 1), (&any, 2)] {
                assert_eq!(
                    plan.matches("Conflict Arbiter Indexes: bank_").count(),
                    arbiters,
                    "{name}: conflicts resolved by key:\n{plan}"
                );
                assert!(
                    !plan.contains("Scan on bank_") && !plan.contains("Index Scan"),
                    "{name}: a write reads no table:\n{plan}"
                );
            }
        }
    }
}
