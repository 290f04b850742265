//! The saga against real banks: every end state, banks that are down, lose
//! replies or hang, and a switch killed with `kill -9` mid-flight. After each
//! story the banks' own change feeds must agree with every transaction's
//! status, and the money across both banks must be conserved.

mod common;

use common::{FAST, World, op_statuses, put_json};
use serde_json::Value;
use std::time::Duration;

async fn set_faults(world: &World, bank_url: &str, faults: Value) {
    let (status, body) = put_json(&world.http, &format!("{bank_url}/admin/faults"), &faults).await;
    assert_eq!(status, 200, "set faults: {body}");
}

/// Checks every transaction against both banks' feeds, and that the total
/// across banks equals `total_before`.
async fn assert_ledgers_agree(world: &World, txns: &[Value], total_before: i64) {
    world.assert_banks_agree(txns).await;
    assert_eq!(
        total(world).await,
        total_before,
        "money across banks is conserved"
    );
}

async fn total(world: &World) -> i64 {
    common::balances(&world.http, &world.hdfc.url).await.1
        + common::balances(&world.http, &world.icici.url).await.1
}

fn states(txn: &Value) -> Vec<String> {
    txn["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|x| x["state"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn success_moves_money_once() {
    let world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    let (status, txn) = world
        .pay("alice@hdfc", "bob@icici", "150.75", Some(10_000))
        .await;
    assert_eq!(status, 200, "{txn}");
    assert_eq!(txn["status"], "SUCCESS");
    assert_eq!(states(&txn), ["PENDING", "DEBITED", "SUCCESS"]);
    let (hdfc, _) = common::balances(&world.http, &world.hdfc.url).await;
    let (icici, _) = common::balances(&world.http, &world.icici.url).await;
    assert_eq!(hdfc["ACC001"], common::START_BALANCE - 15_075);
    assert_eq!(icici["ACC001"], common::START_BALANCE + 15_075);
    assert_ledgers_agree(&world, &[txn], before).await;
}

#[tokio::test]
async fn insufficient_funds_fails_with_reason_and_moves_nothing() {
    let world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    let (_, txn) = world
        .pay("dave@hdfc", "bob@icici", "10.00", Some(10_000))
        .await;
    assert_eq!(txn["status"], "FAILED", "{txn}");
    assert_eq!(txn["reason"]["code"], "INSUFFICIENT_FUNDS");
    assert_ledgers_agree(&world, &[txn], before).await;
}

#[tokio::test]
async fn frozen_payee_account_reverses_the_debit() {
    let world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    let (_, txn) = world
        .pay("alice@hdfc", "carol@icici", "99.99", Some(10_000))
        .await;
    assert_eq!(txn["status"], "REVERSED", "{txn}");
    assert_eq!(txn["reason"]["code"], "PAYEE_ACCOUNT_FROZEN");
    assert_eq!(
        states(&txn),
        ["PENDING", "DEBITED", "REVERSING", "REVERSED"]
    );
    let (hdfc, _) = common::balances(&world.http, &world.hdfc.url).await;
    assert_eq!(
        hdfc["ACC001"],
        common::START_BALANCE,
        "the payer got the money back"
    );
    assert_ledgers_agree(&world, &[txn], before).await;
}

#[tokio::test]
async fn unknown_payee_account_reverses_the_debit() {
    let world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    let (_, txn) = world
        .pay("alice@hdfc", "ghost@icici", "5", Some(10_000))
        .await;
    assert_eq!(txn["status"], "REVERSED", "{txn}");
    assert_eq!(txn["reason"]["code"], "PAYEE_ACCOUNT_NOT_FOUND");
    assert_ledgers_agree(&world, &[txn], before).await;
}

#[tokio::test]
async fn payer_bank_down_fails_without_a_debit() {
    let mut world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    world.hdfc.kill9();
    let (_, txn) = world
        .pay("alice@hdfc", "bob@icici", "20.00", Some(15_000))
        .await;
    assert_eq!(txn["status"], "FAILED", "{txn}");
    assert_eq!(txn["reason"]["code"], "BANK_UNAVAILABLE");
    world.hdfc.restart();
    let id = txn["txn_id"].as_str().expect("id");
    let ops = op_statuses(&world.http, &world.hdfc.url).await;
    assert!(
        !ops.contains_key(&format!("{id}:debit")),
        "the payer's bank never saw a debit"
    );
    assert_ledgers_agree(&world, &[txn], before).await;
}

#[tokio::test]
async fn payee_bank_losing_its_reply_is_resolved_by_inquiry() {
    let world = World::start(FAST, &[], &["--lost-reply-rate", "1.0"]).await;
    let before = total(&world).await;
    let (_, txn) = world
        .pay("alice@hdfc", "bob@icici", "42.00", Some(15_000))
        .await;
    assert_eq!(txn["status"], "SUCCESS", "{txn}");
    assert!(
        states(&txn).contains(&"CREDIT_UNKNOWN".to_string()),
        "{txn}"
    );
    let (icici, _) = common::balances(&world.http, &world.icici.url).await;
    assert_eq!(
        icici["ACC001"],
        common::START_BALANCE + 4_200,
        "credited exactly once"
    );
    assert_ledgers_agree(&world, &[txn], before).await;
}

#[tokio::test]
async fn payee_bank_down_past_the_deadline_reverses() {
    let mut world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    world.icici.kill9();
    let (_, txn) = world
        .pay("alice@hdfc", "bob@icici", "77.00", Some(20_000))
        .await;
    assert_eq!(txn["status"], "REVERSED", "{txn}");
    assert_eq!(txn["reason"]["code"], "PAYEE_BANK_UNAVAILABLE");
    world.icici.restart();
    assert_ledgers_agree(&world, &[txn], before).await;
}

#[tokio::test]
async fn payee_answering_503_is_fenced_when_it_returns() {
    let world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    set_faults(&world, &world.icici.url, serde_json::json!({"down": true})).await;
    let (status, accepted) = world.pay("alice@hdfc", "bob@icici", "31.00", None).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["txn_id"].as_str().expect("id").to_string();
    // Past the credit deadline the saga fences, and waits: a debited
    // transaction never fails while its outcome is unknown.
    let mut fencing = false;
    for _ in 0..100 {
        let (_, txn) = common::get_json(
            &world.http,
            &format!("{}/v1/transactions/{id}", world.switch.url),
        )
        .await;
        assert_eq!(txn["status"], "PENDING", "{txn}");
        if states(&txn).contains(&"CREDIT_FENCING".to_string()) {
            fencing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fencing, "the saga fences the credit after its deadline");
    set_faults(&world, &world.icici.url, serde_json::json!({"down": false})).await;
    let txn = world.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(txn["status"], "REVERSED", "{txn}");
    assert_eq!(txn["reason"]["code"], "CREDIT_UNCONFIRMED");
    assert_ledgers_agree(&world, &[txn], before).await;
}

#[tokio::test]
async fn bank_that_hangs_then_recovers() {
    let world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    set_faults(&world, &world.icici.url, serde_json::json!({"hang": true})).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (status, accepted) = world.pay("alice@hdfc", "bob@icici", "10.00", None).await;
        assert_eq!(status, 202, "{accepted}");
        ids.push(accepted["txn_id"].as_str().expect("id").to_string());
    }
    // Hang past the credit deadline, so fences are held too.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    set_faults(&world, &world.icici.url, serde_json::json!({"hang": false})).await;
    let mut txns = Vec::new();
    for id in &ids {
        txns.push(world.wait_terminal(id, Duration::from_secs(30)).await);
    }
    for txn in &txns {
        assert_ne!(
            txn["status"], "FAILED",
            "a debited transaction never fails: {txn}"
        );
    }
    assert_ledgers_agree(&world, &txns, before).await;
}

#[tokio::test]
async fn switch_killed_mid_flight_resumes_every_saga() {
    let mut world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    // Credits hang, so the sagas are caught between debit and credit.
    set_faults(&world, &world.icici.url, serde_json::json!({"hang": true})).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let payee = if i % 5 == 0 {
            "carol@icici"
        } else {
            "bob@icici"
        };
        let (status, accepted) = world.pay("alice@hdfc", payee, "3.00", None).await;
        assert_eq!(status, 202, "{accepted}");
        ids.push(accepted["txn_id"].as_str().expect("id").to_string());
    }
    // Wait until every debit is at the payer's bank.
    for _ in 0..100 {
        let ops = op_statuses(&world.http, &world.hdfc.url).await;
        if ids
            .iter()
            .all(|id| ops.contains_key(&format!("{id}:debit")))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.switch.kill9();
    // The held credits now go through, with nobody to hear the answer.
    set_faults(&world, &world.icici.url, serde_json::json!({"hang": false})).await;
    world.switch.restart();
    let mut txns = Vec::new();
    for id in &ids {
        txns.push(world.wait_terminal(id, Duration::from_secs(30)).await);
    }
    let statuses: Vec<&str> = txns
        .iter()
        .map(|t| t["status"].as_str().unwrap_or_default())
        .collect();
    assert!(
        statuses.iter().all(|s| *s != "FAILED"),
        "debited sagas never fail: {statuses:?}"
    );
    assert!(
        world.switch.log().contains("resuming saga"),
        "the restarted switch resumed sagas"
    );
    assert_ledgers_agree(&world, &txns, before).await;
}

/// Polls (bounded) until `check` holds on the switch's database.
async fn wait_db(world: &World, what: &str, sql: &str, check: impl Fn(i64) -> bool) {
    let client = world.switch_db.client().await;
    for _ in 0..300 {
        let n: i64 = client.query_one(sql, &[]).await.expect(what).get(0);
        if check(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let activity: Vec<String> = client
        .query(
            "SELECT coalesce(wait_event_type, '-') || ' ' || state || ' ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 80) \
             FROM pg_stat_activity WHERE datname = current_database()",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    panic!("{what}: never true; activity: {activity:#?}");
}

/// The switch dies (`kill -9`) while the group-commit writer's statement for a
/// batch of hundreds of new transactions is in flight: sent, not committed,
/// waiting for a lock on the outbox that a test connection holds. Whatever
/// Postgres then does with that orphaned statement
/// (commit or roll back), every payment is afterwards exactly once: retried
/// with its key it names one transaction, every transaction ends, and the
/// banks agree with each of them, money conserved.
#[tokio::test]
async fn switch_killed_while_a_large_batch_commits_leaves_each_payment_once() {
    const BATCH: usize = 400;
    let mut world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    let lock_a = world.switch_db.client().await;
    let lock_c = world.switch_db.client().await;
    // A holds the outbox: the writer's next statement waits for it before it
    // writes anything (its plan locks every table it writes at the start).
    lock_a
        .batch_execute("BEGIN; LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock A");
    let http = world.http.clone();
    let post = |key: String, payer: &'static str, payee: &'static str| {
        let http = http.clone();
        let url = format!("{}/v1/transactions", world.switch.url);
        async move {
            let _ = http
                .post(url)
                .header("Idempotency-Key", key)
                .json(&serde_json::json!({"type": "P2P", "payer_vpa": payer, "payee_vpa": payee, "amount": "0.25"}))
                .timeout(Duration::from_secs(60))
                .send()
                .await;
        }
    };
    let keys: Vec<String> = (0..=BATCH).map(|i| format!("kill-batch-{i}")).collect();
    let pair = |i: usize| {
        if i.is_multiple_of(2) {
            ("alice@hdfc", "bob@icici")
        } else {
            ("erin@hdfc", "frank@icici")
        }
    };
    // Batch 1 (one payment) stops mid-statement, waiting for A.
    let (payer, payee) = pair(0);
    let first = tokio::spawn(post(keys[0].clone(), payer, payee));
    // (The statement's text is longer than pg_stat_activity keeps: match its start.)
    let writer_waits = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                        AND query LIKE '%WITH c AS (%'";
    wait_db(&world, "batch 1 waits", writer_waits, |n| n == 1).await;
    // C queues for the outbox behind batch 1: it is granted right after batch 1 commits.
    let queued = tokio::spawn(async move {
        lock_c
            .batch_execute("BEGIN; LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock C");
        lock_c
    });
    wait_db(
        &world,
        "C queues",
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND query LIKE 'BEGIN; LOCK TABLE outbox%'",
        |n| n == 1,
    )
    .await;
    // The other payments queue in the writer while batch 1 waits.
    let mut rest = Vec::new();
    for (i, key) in keys.iter().enumerate().skip(1) {
        let (payer, payee) = pair(i);
        rest.push(tokio::spawn(post(key.clone(), payer, payee)));
    }
    // All of them wait in the writer's queue before A lets go.
    let waiting = "upi_writer_queued ";
    let mut seen = 0.0;
    for _ in 0..300 {
        let text = world.metrics_text().await;
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix(waiting))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        seen = n;
        if n as usize >= BATCH {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen as usize >= BATCH, "{seen} jobs queued behind batch 1");
    // A lets go: batch 1 commits, C takes the outbox, and the next batch (the
    // rest, queued meanwhile) is sent and waits behind C.
    lock_a.batch_execute("COMMIT").await.expect("unlock A");
    let lock_c = queued.await.expect("C");
    wait_db(&world, "the large batch waits", writer_waits, |n| n == 1).await;
    let uncommitted: i64 = world
        .switch_db
        .client()
        .await
        .query_one("SELECT count(*) FROM transactions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        uncommitted, 1,
        "only batch 1 is committed while the large one waits"
    );
    world.switch.kill9();
    lock_c.batch_execute("COMMIT").await.expect("unlock C");
    let _ = first.await;
    for r in rest {
        let _ = r.await;
    }
    world.switch.restart();
    // Either outcome of the orphaned statement is allowed; say which one this was.
    let after_kill = world.txn_count().await;
    assert!(
        after_kill == 1 || after_kill == keys.len() as i64,
        "the large batch is all or nothing: {after_kill} rows"
    );
    println!(
        "the orphaned batch of {BATCH} {}",
        if after_kill == 1 {
            "rolled back"
        } else {
            "committed"
        }
    );

    // Every key, sent again, names exactly one transaction.
    let mut ids = std::collections::BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (payer, payee) = pair(i);
        let (status, body) = world.pay_with_key(key, payer, payee, "0.25", None).await;
        assert!(status == 200 || status == 202, "{key}: {status} {body}");
        ids.insert(body["txn_id"].as_str().expect("txn_id").to_string());
    }
    assert_eq!(ids.len(), keys.len(), "one transaction per key");
    assert_eq!(world.txn_count().await, keys.len() as i64, "and no other");
    let mut txns = Vec::new();
    for id in &ids {
        txns.push(world.wait_terminal(id, Duration::from_secs(60)).await);
    }
    assert_ledgers_agree(&world, &txns, before).await;
}

/// Endpoints registered with `"http2": true` are reached over HTTP/2
/// (cleartext, prior knowledge: a bank that spoke only HTTP/1.1 would fail
/// every call), all the calls to one endpoint sharing its connection; the
/// registration shows the flag, and money moves exactly as over HTTP/1.1.
#[tokio::test]
async fn banks_registered_as_http2_are_paid_over_http2() {
    let world = World::start(FAST, &[], &[]).await;
    let before = total(&world).await;
    for (code, url) in [("HDFC", &world.hdfc.url), ("ICICI", &world.icici.url)] {
        let (status, body) = put_json(
            &world.http,
            &format!("{}/v1/admin/banks/{code}", world.switch.url),
            &serde_json::json!({"name": code, "endpoints": [{"url": url, "priority": 0, "http2": true}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["endpoints"][0]["http2"], true, "{body}");
    }
    let mut txns = Vec::new();
    let sends = (0..20).map(|_| world.pay("alice@hdfc", "bob@icici", "1.25", Some(10_000)));
    for (status, txn) in futures::future::join_all(sends).await {
        assert_eq!(status, 200, "{txn}");
        assert_eq!(txn["status"], "SUCCESS", "{txn}");
        txns.push(txn);
    }
    let (frozen_status, reversed) = world
        .pay("alice@hdfc", "carol@icici", "2.00", Some(10_000))
        .await;
    assert_eq!(frozen_status, 200, "{reversed}");
    assert_eq!(reversed["status"], "REVERSED");
    txns.push(reversed);
    assert_ledgers_agree(&world, &txns, before).await;
}
