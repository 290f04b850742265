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
