//! `upi-switch verify` against real banks and a real switch: payments of every
//! end state verify clean (exit 0, counts in the table and the JSON); then each
//! kind of violation is planted in the test's own throwaway data — the switch's
//! database edited behind a stopped switch, a bank's balance edited, a
//! movement posted straight to a bank — and verify must exit 1 naming it.
//! A switch database that cannot be read is exit 2.

mod common;

use common::{BIN, FAST, World, post_json};
use serde_json::{Value, json};
use std::time::Duration;

struct Run {
    code: i32,
    stdout: String,
    report: Value,
}

/// Runs `upi-switch verify` on the world's switch database (bounded in time).
async fn verify(world: &World, extra: &[String]) -> Run {
    let json_path =
        std::env::temp_dir().join(format!("verify-{}.json", uuid::Uuid::new_v4().simple()));
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["verify", "--database-url", &world.switch_db.url, "--json"])
        .arg(&json_path)
        .args(["--bank-timeout-ms", "2000", "--bank-attempts", "2"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("verify finished within 60 s")
        .expect("verify ran");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&json_path);
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout,
        report,
    };
    eprintln!(
        "verify {extra:?} exited {}:\n{}{}",
        run.code,
        run.stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

/// How many violations of `kind` the JSON report counts.
fn count(run: &Run, kind: &str) -> u64 {
    run.report["violations"][kind]["count"]
        .as_u64()
        .unwrap_or(0)
}

/// Asserts exit 1 and that `kind` is named, in the table and in the JSON, for `txn` if given.
fn assert_names(run: &Run, kind: &str, txn: Option<&str>) {
    assert_eq!(run.code, 1, "verify must fail on {kind}:\n{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("  {kind}:")),
        "the table names {kind}:\n{}",
        run.stdout
    );
    assert!(count(run, kind) >= 1, "the JSON counts {kind}");
    if let Some(txn) = txn {
        let examples = run.report["violations"][kind]["examples"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            examples.iter().any(|v| v["txn_id"] == txn),
            "{kind} names {txn}: {examples:?}"
        );
    }
}

/// The value of the first table line labelled `label`.
fn table_value<'a>(table: &'a str, label: &str) -> Option<&'a str> {
    table
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(':'))
        .map(str::trim)
}

/// A bank's summary in the JSON report (`Null` when it is not there).
fn bank_in(report: &Value, code: &str) -> Value {
    report["banks"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["code"] == code))
        .cloned()
        .unwrap_or_default()
}

/// Runs `sql` with the transaction id as `$1`.
async fn on_txn(db: &tokio_postgres::Client, sql: &str, id: &str) {
    db.execute(sql, &[&id])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn total(world: &World) -> i64 {
    common::balances(&world.http, &world.hdfc.url).await.1
        + common::balances(&world.http, &world.icici.url).await.1
}

#[tokio::test]
async fn verify_passes_a_clean_run_and_names_every_planted_violation() {
    let mut world = World::start(FAST, &[], &[]).await;
    let opening = total(&world).await;
    let mut ids = std::collections::BTreeMap::new();
    for (name, payer, payee, amount, status) in [
        ("success", "alice@hdfc", "bob@icici", "150.75", "SUCCESS"),
        ("success2", "erin@hdfc", "frank@icici", "10.00", "SUCCESS"),
        ("failed", "dave@hdfc", "bob@icici", "10.00", "FAILED"),
        ("reversed", "alice@hdfc", "carol@icici", "99.99", "REVERSED"),
    ] {
        let (code, body) = world.pay(payer, payee, amount, Some(10_000)).await;
        assert!(code == 200 || code == 202, "{code} {body}");
        let id = body["txn_id"].as_str().expect("txn_id").to_string();
        let txn = world.wait_terminal(&id, Duration::from_secs(30)).await;
        assert_eq!(txn["status"], status, "{txn}");
        ids.insert(name, id);
    }
    // Verify reads a quiet switch; stopped, it also cannot resume what we set PENDING.
    world.switch.kill9();
    let expected = ["--expected-total-paise".to_string(), opening.to_string()];

    let clean = verify(&world, &expected).await;
    assert_eq!(clean.code, 0, "a clean run verifies:\n{}", clean.stdout);
    for (label, value) in [
        ("  SUCCESS", "2  (₹160.75)"),
        ("  FAILED", "1  (₹10.00)"),
        ("  REVERSED", "1  (₹99.99)"),
        ("  PENDING", "0  (₹0.00)"),
        ("  DEBIT REVERSED", "1"),
        ("  CREDIT DECLINED", "1"),
        ("feeds' net, all banks", "₹0.00"),
        ("violations", "none"),
    ] {
        assert_eq!(
            table_value(&clean.stdout, label),
            Some(value),
            "table line {label:?}:\n{}",
            clean.stdout
        );
    }
    let r = &clean.report;
    assert_eq!(r["transactions"]["SUCCESS"]["count"], 2, "{r}");
    assert_eq!(r["transactions"]["FAILED"]["count"], 1);
    assert_eq!(r["transactions"]["REVERSED"]["count"], 1);
    assert_eq!(r["money"]["balance_paise"], opening);
    assert_eq!(r["money"]["opening_paise"], opening);
    assert_eq!(r["violation_count"], 0);
    let hdfc = bank_in(r, "HDFC");
    assert_eq!(hdfc["by_outcome"]["DEBIT APPLIED"], 2, "{hdfc}");
    assert_eq!(hdfc["by_outcome"]["DEBIT DECLINED"], 1, "{hdfc}");
    assert_eq!(hdfc["by_outcome"]["REVERSE APPLIED"], 1, "{hdfc}");

    // Tampering with the switch's own (throwaway) database: terminal statuses
    // are guarded by a trigger, which the planting switches off.
    let db = world.switch_db.client().await;
    db.batch_execute("ALTER TABLE transactions DISABLE TRIGGER transactions_terminal_is_final")
        .await
        .expect("disable trigger");
    let set = |column: &'static str| {
        format!("UPDATE transactions SET {column} = $2 WHERE txn_id = $1::text::uuid")
    };
    // A flipped status also disagrees with the ledger: a journal of a
    // payment no longer SUCCESS, or a SUCCESS payment without one.
    for (txn, status, kind, ledger_kind) in [
        ("success", "FAILED", "failed_moved_money", "settled_wrongly"),
        ("failed", "SUCCESS", "success_not_settled", "settled_never"),
        (
            "success",
            "REVERSED",
            "reversed_not_undone",
            "settled_wrongly",
        ),
        (
            "reversed",
            "SUCCESS",
            "success_not_settled",
            "settled_never",
        ),
        ("success", "PENDING", "stuck", "settled_wrongly"),
    ] {
        let id = &ids[txn];
        let was: String = db
            .query_one(
                "SELECT status FROM transactions WHERE txn_id = $1::text::uuid",
                &[id],
            )
            .await
            .expect("status")
            .get(0);
        db.execute(&set("status"), &[id, &status])
            .await
            .expect("plant");
        let run = verify(&world, &expected).await;
        assert_names(&run, kind, Some(id));
        assert_names(&run, ledger_kind, Some(id));
        assert_eq!(
            run.report["violation_count"], 2,
            "only {kind} and {ledger_kind}: {}",
            run.stdout
        );
        if kind == "stuck" {
            assert!(run.stdout.contains("PENDING for "), "{}", run.stdout);
            assert!(run.stdout.contains("last step SUCCESS"), "{}", run.stdout);
            // --wait-secs waits (bounded) for it to finish; nothing runs it, so it stays stuck.
            let started = std::time::Instant::now();
            let wait = ["--wait-secs".to_string(), "1".to_string()];
            let run = verify(&world, &wait).await;
            assert!(started.elapsed() >= Duration::from_secs(1));
            assert_names(&run, kind, Some(id));
        }
        db.execute(&set("status"), &[id, &was])
            .await
            .expect("restore");
    }

    // An amount that is not the one the banks moved.
    let id = &ids["success"];
    on_txn(
        &db,
        "UPDATE transactions SET amount_paise = amount_paise + 1 WHERE txn_id = $1::text::uuid",
        id,
    )
    .await;
    let run = verify(&world, &expected).await;
    assert_names(&run, "amount_mismatch", Some(id));
    assert_eq!(
        count(&run, "amount_mismatch"),
        2,
        "its debit and its credit"
    );
    on_txn(
        &db,
        "UPDATE transactions SET amount_paise = amount_paise - 1 WHERE txn_id = $1::text::uuid",
        id,
    )
    .await;

    // A balance changed behind the feed: only the expected total can show it.
    let bank_db = world.bank_db.client().await;
    let nudge = "UPDATE bank_accounts SET balance_paise = balance_paise + $1 \
                 WHERE bank_code = 'HDFC' AND account = 'ACC003'";
    bank_db
        .execute(nudge, &[&500i64])
        .await
        .expect("plant balance");
    let run = verify(&world, &expected).await;
    assert_names(&run, "money_not_conserved", None);
    assert!(run.stdout.contains("expected total is ₹"), "{}", run.stdout);
    let unchecked = verify(&world, &[]).await;
    assert_eq!(
        unchecked.code, 0,
        "without an expected total a balance edited behind the feed is not visible:\n{}",
        unchecked.stdout
    );
    assert_eq!(unchecked.report["money"]["opening_paise"], opening + 500);
    bank_db
        .execute(nudge, &[&-500i64])
        .await
        .expect("restore balance");

    // A transaction the switch forgot: its bank ops become orphans.
    let id = &ids["success2"];
    on_txn(
        &db,
        "DELETE FROM txn_checkpoints WHERE txn_id = $1::text::uuid",
        id,
    )
    .await;
    on_txn(
        &db,
        "DELETE FROM transactions WHERE txn_id = $1::text::uuid",
        id,
    )
    .await;
    let run = verify(&world, &expected).await;
    assert_names(&run, "orphan_op", None);
    assert_eq!(count(&run, "orphan_op"), 2, "its debit and its credit");
    assert!(
        run.stdout.contains(&format!("op {id}:debit")),
        "{}",
        run.stdout
    );
    assert_eq!(count(&run, "money_not_conserved"), 0, "money still adds up");

    // A debit posted straight to a bank, naming no transaction: an orphan, and
    // money gone from the banks (the feeds no longer net to zero).
    let stray = uuid::Uuid::new_v4();
    let (code, body) = post_json(
        &world.http,
        &format!("{}/v1/debit", world.hdfc.url),
        &json!({"op_id": format!("{stray}:debit"), "txn_id": stray.to_string(),
                "account": "ACC003", "amount_paise": 700}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let none: &[String] = &[];
    for extra in [&expected[..], none] {
        let run = verify(&world, extra).await;
        assert_names(&run, "orphan_op", None);
        assert_eq!(count(&run, "orphan_op"), 3);
        assert_names(&run, "money_not_conserved", None);
        assert!(run.stdout.contains("feeds net to -₹7.00"), "{}", run.stdout);
    }
}

#[tokio::test]
async fn verify_that_cannot_read_exits_2() {
    let db = common::TestDb::new("verify_missing");
    // The database does not exist (and verify must not create it).
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(["verify", "--database-url", &db.url])
            .output(),
    )
    .await
    .expect("verify finished")
    .expect("verify ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("verify could not check"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test]
async fn verify_reads_a_bank_at_an_endpoint_that_answers_and_exits_2_when_none_does() {
    let mut world = World::start(FAST, &[], &[]).await;
    world.switch.kill9();
    // HDFC's first endpoint is dead; its second (the same ledger) answers.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let endpoints = json!([{"url": dead, "priority": 0}, {"url": world.hdfc.url, "priority": 1}]);
    world
        .switch_db
        .client()
        .await
        .execute(
            "UPDATE banks SET endpoints = $1 WHERE code = 'HDFC'",
            &[&endpoints],
        )
        .await
        .expect("endpoints");
    let run = verify(&world, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let hdfc = bank_in(&run.report, "HDFC");
    assert_eq!(hdfc["endpoint"], world.hdfc.url.as_str(), "{hdfc}");

    world.icici.kill9();
    let run = verify(&world, &[]).await;
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(
        run.report,
        Value::Null,
        "no report when nothing could be checked"
    );
}

/// `POST path` with an Idempotency-Key and a JSON body; (status, body).
async fn post_keyed(world: &World, path: &str, body: &Value) -> (u16, Value) {
    common::post_keyed(&world.http, &format!("{}{path}", world.switch.url), body).await
}

/// Posts a payment of any type and waits for its end; its txn_id.
async fn paid(world: &World, body: Value, want: &str) -> String {
    let (code, answer) = post_keyed(world, "/v1/transactions", &body).await;
    assert!(code == 200 || code == 202, "{code} {answer} for {body}");
    let id = answer["txn_id"].as_str().expect("txn_id").to_string();
    let txn = world.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(txn["status"], want, "{txn}");
    id
}

/// A collect request from `payee` to `payer`; its collect_id.
async fn collect(world: &World, payer: &str, payee: &str, amount: &str) -> String {
    let body =
        json!({"payer_vpa": payer, "payee_vpa": payee, "amount": amount, "expires_in_s": 300});
    let (code, answer) = post_keyed(world, "/v1/collects", &body).await;
    assert_eq!(code, 201, "{answer}");
    answer["collect_id"]
        .as_str()
        .expect("collect_id")
        .to_string()
}

#[tokio::test]
async fn verify_checks_refunds_and_collects_and_names_each_broken_promise() {
    let mut world = World::start(FAST, &[], &[]).await;
    let opening = total(&world).await;
    let (status, body) = common::put_json(
        &world.http,
        &format!("{}/v1/admin/vpas/shop@icici", world.switch.url),
        &json!({"bank_code": "ICICI", "account": "ACC003", "name": "Shop",
                "merchant": true, "mcc": "5411"}),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let p2m = json!({"type": "P2M", "payer_vpa": "alice@hdfc", "payee_vpa": "shop@icici",
                     "amount": "10.00", "merchant_ref": "order-1"});
    let p2m = paid(&world, p2m, "SUCCESS").await;
    let refund = |amount: &str| json!({"type": "REFUND", "original_txn_id": p2m, "amount": amount});
    let refund1 = paid(&world, refund("4.00"), "SUCCESS").await;
    let refund2 = paid(&world, refund("6.00"), "SUCCESS").await;
    let (code, over) = post_keyed(&world, "/v1/transactions", &refund("0.01")).await;
    assert_eq!(
        (code, over["code"].as_str()),
        (422, Some("REFUND_EXCEEDS_ORIGINAL")),
        "{over}"
    );
    let p2p = json!({"type": "P2P", "payer_vpa": "erin@hdfc", "payee_vpa": "bob@icici", "amount": "3.00"});
    let p2p = paid(&world, p2p, "SUCCESS").await;
    let approved = collect(&world, "erin@hdfc", "bob@icici", "7.00").await;
    let (code, answer) = post_keyed(
        &world,
        &format!("/v1/collects/{approved}/approve"),
        &json!({}),
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    let collect_txn = answer["txn_id"].as_str().expect("txn_id").to_string();
    let txn = world
        .wait_terminal(&collect_txn, Duration::from_secs(30))
        .await;
    assert_eq!(
        (txn["status"].as_str(), txn["type"].as_str()),
        (Some("SUCCESS"), Some("COLLECT"))
    );
    let declined = collect(&world, "alice@hdfc", "bob@icici", "2.00").await;
    let (code, answer) = post_keyed(
        &world,
        &format!("/v1/collects/{declined}/decline"),
        &json!({}),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    world.switch.kill9();
    let expected = ["--expected-total-paise".to_string(), opening.to_string()];

    let clean = verify(&world, &expected).await;
    assert_eq!(
        clean.code, 0,
        "refunds and collects verify clean:\n{}",
        clean.stdout
    );
    assert_eq!(clean.report["violation_count"], 0);
    assert_eq!(
        clean.report["by_type"]["REFUND"]["SUCCESS"], 2,
        "{}",
        clean.report
    );
    assert_eq!(clean.report["by_type"]["COLLECT"]["SUCCESS"], 1);
    assert_eq!(clean.report["collects"]["DECLINED"], 1);
    assert_eq!(
        table_value(&clean.stdout, "collect requests"),
        Some("APPROVED 1, DECLINED 1")
    );

    // Planting: the schema's own guards are switched off in this throwaway database.
    let db = world.switch_db.client().await;
    db.batch_execute(
        "ALTER TABLE transactions DISABLE TRIGGER transactions_terminal_is_final; \
         ALTER TABLE collects DISABLE TRIGGER collects_final_is_final; \
         ALTER TABLE transactions DROP CONSTRAINT transactions_key_or_collect",
    )
    .await
    .expect("guards off");
    let id = |s: &str| s.to_string();
    let plants: Vec<(&str, String, String, String)> = vec![
        // The second refund asks back more than is left (₹6.01 + ₹4.00 of ₹10.00).
        (
            "refund_over_original",
            format!("UPDATE transactions SET amount_paise = 601 WHERE txn_id = '{refund2}'"),
            format!("UPDATE transactions SET amount_paise = 600 WHERE txn_id = '{refund2}'"),
            id(&p2m),
        ),
        // A refund paid into another account than the original's payer's.
        (
            "refund_wrong_parties",
            format!("UPDATE transactions SET payee_account = 'ACC003' WHERE txn_id = '{refund1}'"),
            format!("UPDATE transactions SET payee_account = 'ACC001' WHERE txn_id = '{refund1}'"),
            id(&refund1),
        ),
        // A refund of a collect's payment.
        (
            "refund_not_refundable",
            format!(
                "UPDATE transactions SET original_txn_id = '{collect_txn}' WHERE txn_id = '{refund1}'"
            ),
            format!("UPDATE transactions SET original_txn_id = '{p2m}' WHERE txn_id = '{refund1}'"),
            id(&refund1),
        ),
        // An approved collect for another amount than its payment's.
        (
            "collect_payment_mismatch",
            format!("UPDATE collects SET amount_paise = 701 WHERE collect_id = '{approved}'"),
            format!("UPDATE collects SET amount_paise = 700 WHERE collect_id = '{approved}'"),
            id(&collect_txn),
        ),
        // A COLLECT payment no collect names.
        (
            "collect_txn_unlinked",
            format!("UPDATE transactions SET type = 'COLLECT' WHERE txn_id = '{p2p}'"),
            format!("UPDATE transactions SET type = 'P2P' WHERE txn_id = '{p2p}'"),
            id(&p2p),
        ),
        // A declined collect that a payment names.
        (
            "unapproved_collect_paid",
            format!(
                "UPDATE transactions SET collect_id = '{declined}' WHERE txn_id = '{collect_txn}'"
            ),
            format!(
                "UPDATE transactions SET collect_id = '{approved}' WHERE txn_id = '{collect_txn}'"
            ),
            id(&collect_txn),
        ),
    ];
    for (kind, plant, restore, txn) in plants {
        db.batch_execute(&plant)
            .await
            .unwrap_or_else(|e| panic!("{plant}: {e}"));
        let run = verify(&world, &expected).await;
        assert_names(&run, kind, Some(&txn));
        db.batch_execute(&restore)
            .await
            .unwrap_or_else(|e| panic!("{restore}: {e}"));
    }
    let again = verify(&world, &expected).await;
    assert_eq!(again.code, 0, "restored:\n{}", again.stdout);
}
