//! Settlement on several nodes of one database: two switch nodes race to
//! close every cut-off (`every:1s`) while payments turn SUCCESS on both.
//! Each cut-off closes exactly one window, none closes before its cut-off,
//! the windows tile the journal, one is open, and each close is audited
//! once.

mod common;

use common::{FAST, SwitchProc, World, post_burst};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_close_each_cutoff_once_and_never_early() {
    let cutoffs = ["--settlement-cutoffs", "every:1s"];
    let world = World::start(&[FAST, &cutoffs].concat(), &[], &[]).await;
    let second = SwitchProc::start(
        &world.switch_db.url,
        &[
            FAST,
            &cutoffs,
            &["--redis-prefix", &world.switch.redis_prefix],
        ]
        .concat(),
    );
    let nodes = [world.switch.url.as_str(), second.url.as_str()];
    let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"});
    // Four seconds of payments over both nodes: four cut-offs or so.
    let mut txns = Vec::new();
    for _ in 0..16 {
        for (status, answer) in post_burst(&world.http, &nodes, 10, "/v1/transactions", &body).await
        {
            assert!(status == 202 || status == 200, "{status} {answer}");
            txns.push(answer["txn_id"].as_str().expect("txn_id").to_string());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for txn in &txns {
        world.wait_terminal(txn, Duration::from_secs(30)).await;
    }
    // Let the last payments' window close at its cut-off too.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let db = world.switch_db.client().await;
    let row = db
        .query_one(
            "SELECT
               (SELECT count(*) FROM settlement_windows WHERE status = 'CLOSED'),
               (SELECT count(*) FROM settlement_windows WHERE status = 'OPEN'),
               -- closed before the first whole second after it opened (its cut-off)
               (SELECT count(*) FROM settlement_windows WHERE status = 'CLOSED'
                  AND closed_at < to_timestamp(floor(extract(epoch FROM opened_at)) + 1)),
               -- two windows whose cut-off is the same second
               (SELECT count(*) FROM (SELECT floor(extract(epoch FROM opened_at)) + 1 AS cutoff
                  FROM settlement_windows WHERE status = 'CLOSED'
                  GROUP BY 1 HAVING count(*) > 1) d),
               -- journals not in exactly one window
               (SELECT count(*) FROM ledger_journals j WHERE (SELECT count(*) FROM settlement_windows w
                  WHERE j.id > w.after_journal_id AND j.id <= coalesce(w.last_journal_id, 9e18)) <> 1),
               (SELECT count(*) FROM ledger_journals),
               (SELECT count(*) FROM transactions WHERE status = 'SUCCESS'),
               (SELECT count(*) FROM audit_log WHERE action = 'settlement.close')",
            &[],
        )
        .await
        .expect("check");
    let got: Vec<i64> = (0..8).map(|i| row.get(i)).collect();
    let (closed, open, early, doubled, misplaced, journals, success, audited) = (
        got[0], got[1], got[2], got[3], got[4], got[5], got[6], got[7],
    );
    assert!(
        closed >= 4,
        "{closed} windows closed in about 7 s of every:1s"
    );
    assert_eq!(
        (open, early, doubled, misplaced),
        (1, 0, 0, 0),
        "one open window, none closed early or twice, every journal in one window"
    );
    assert_eq!(journals, success);
    assert_eq!(audited, closed, "each close audited once");
}
