//! Settlement, ledger and reconciliation (issue 15), against real Postgres,
//! real bank simulators and a real switch: the ledger balances and is
//! append-only; windows close atomically (a payment racing closes lands in
//! exactly one window; a close killed midway is finished once after
//! restart); positions net to zero and match the payments; the report's
//! CSV; reconciliation is clean (0 ppm) and finds a planted rogue debit by
//! its op_id and nothing else; every new path wants the operator token.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use upi_switch::domain::Paise;

const TOKEN: &str = "settle-operator-token";

async fn close(world: &World) -> (String, String) {
    let (status, body) = post_json(
        &world.http,
        &format!("{}/v1/admin/settlement/close", world.switch.url),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "close: {body}");
    (
        body["closed"].as_str().expect("closed").to_string(),
        body["opened"].as_str().expect("opened").to_string(),
    )
}

async fn get(world: &World, path: &str) -> (u16, Value) {
    get_json(&world.http, &format!("{}{path}", world.switch.url)).await
}

/// Pays and waits for the end; the terminal document.
async fn paid(world: &World, payer: &str, payee: &str, amount: &str) -> Value {
    let (status, body) = world.pay(payer, payee, amount, Some(10_000)).await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let id = body["txn_id"].as_str().expect("txn_id").to_string();
    world.wait_terminal(&id, Duration::from_secs(20)).await
}

async fn refund(world: &World, original: &str, amount: &str) -> Value {
    let resp = world
        .http
        .post(format!("{}/v1/transactions?wait=10000", world.switch.url))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"type": "REFUND", "original_txn_id": original, "amount": amount}))
        .send()
        .await
        .expect("refund");
    let body: Value = resp.json().await.expect("json");
    let id = body["txn_id"].as_str().expect("txn_id").to_string();
    world.wait_terminal(&id, Duration::from_secs(20)).await
}

fn paise(text: &Value) -> i64 {
    let s = text.as_str().expect("decimal string");
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let p = Paise::parse_rupees(s, Paise(i64::MAX))
        .map(|p| p.0)
        .unwrap_or(0);
    if neg { -p } else { p }
}

/// Waits until window `id`'s reconciliation is DONE.
async fn reconciled(world: &World, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(world, &format!("/v1/reconciliation/{id}")).await;
        if status == 200 && body["status"] == "DONE" {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "reconciliation of {id} not done: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn success_posts_a_balanced_journal_and_nothing_else_does_and_the_ledger_is_append_only() {
    let world = World::start(FAST, &[], &[]).await;
    let ok = paid(&world, "alice@hdfc", "bob@icici", "10.00").await;
    assert_eq!(ok["status"], "SUCCESS");
    let failed = paid(&world, "dave@hdfc", "bob@icici", "5.00").await; // balance 0
    assert_eq!(failed["status"], "FAILED");
    let reversed = paid(&world, "alice@hdfc", "ghost@icici", "3.00").await; // no account
    assert_eq!(reversed["status"], "REVERSED");
    let back = refund(&world, ok["txn_id"].as_str().expect("id"), "4.00").await;
    assert_eq!(back["status"], "SUCCESS");

    let (status, balances) = get(&world, "/v1/ledger/balances").await;
    assert_eq!(status, 200, "{balances}");
    assert_eq!(balances["total"], "0.00");
    let of = |bank: &str| {
        balances["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .find(|a| a["bank_code"] == bank)
            .map(|a| a["balance"].clone())
    };
    // HDFC paid 10.00 and got 4.00 back; ICICI the other way round.
    assert_eq!(of("HDFC"), Some(json!("-6.00")));
    assert_eq!(of("ICICI"), Some(json!("6.00")));

    let db = world.switch_db.client().await;
    let journals: i64 = db
        .query_one("SELECT count(*) FROM ledger_journals", &[])
        .await
        .expect("q")
        .get(0);
    assert_eq!(
        journals, 2,
        "one journal per SUCCESS, none for FAILED or REVERSED"
    );
    let unbalanced: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT journal_id FROM ledger_postings GROUP BY journal_id
             HAVING sum(CASE direction WHEN 'DEBIT' THEN amount_paise ELSE -amount_paise END) <> 0
                 OR count(*) <> 2) u",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    assert_eq!(unbalanced, 0);
    for sql in [
        "UPDATE ledger_journals SET amount_paise = 1",
        "DELETE FROM ledger_postings",
        "TRUNCATE ledger_journals",
    ] {
        let err = db.batch_execute(sql).await.expect_err(sql);
        assert!(format!("{err:?}").contains("append-only"), "{sql}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_close_nets_the_window_and_reports_each_bank_side() {
    let world = World::start(FAST, &[], &[]).await;
    let a = paid(&world, "alice@hdfc", "bob@icici", "150.75").await;
    paid(&world, "bob@icici", "erin@hdfc", "20.00").await;
    paid(&world, "alice@hdfc", "erin@hdfc", "1.25").await; // within HDFC
    assert_eq!(a["status"], "SUCCESS");
    let (closed, opened) = close(&world).await;
    assert_eq!((closed.as_str(), opened.as_str()), ("1", "2"));

    let (_, list) = get(&world, "/v1/settlement/windows").await;
    let windows = list["windows"].as_array().expect("windows");
    assert_eq!(windows[0]["window_id"], "2");
    assert_eq!(windows[0]["status"], "OPEN");
    assert_eq!(windows[1]["status"], "CLOSED");

    let (status, w) = get(&world, "/v1/settlement/windows/1").await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["txn_count"], 3);
    assert_eq!(w["gross"], "172.00");
    let positions = w["positions"].as_array().expect("positions");
    let nets: i64 = positions.iter().map(|p| paise(&p["net"])).sum();
    assert_eq!(nets, 0, "{w}");
    let hdfc = positions
        .iter()
        .find(|p| p["bank_code"] == "HDFC")
        .expect("HDFC");
    assert_eq!(
        (hdfc["debits"].clone(), hdfc["credits"].clone()),
        (json!("152.00"), json!("21.25"))
    );
    assert_eq!(hdfc["net"], "-130.75");
    assert_eq!(hdfc["txn_count"], 3);

    let resp = world
        .http
        .get(format!(
            "{}/v1/settlement/windows/1/report.csv?bank=HDFC",
            world.switch.url
        ))
        .send()
        .await
        .expect("report");
    assert_eq!(resp.status().as_u16(), 200);
    let csv = resp.text().await.expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "txn_id,type,direction,amount,counterparty_bank,settled_at"
    );
    assert_eq!(lines.len(), 1 + 4, "{csv}"); // the HDFC→HDFC payment is two lines
    assert!(
        lines[1].starts_with(&format!(
            "{},P2P,DEBIT,150.75,ICICI,",
            a["txn_id"].as_str().expect("id")
        )),
        "{csv}"
    );
    assert_eq!(csv.matches(",CREDIT,").count(), 2, "{csv}");

    // An empty window closes too; the open one has no positions yet.
    assert_eq!(close(&world).await, ("2".to_string(), "3".to_string()));
    let (_, empty) = get(&world, "/v1/settlement/windows/2").await;
    assert_eq!(
        (empty["txn_count"].clone(), empty["gross"].clone()),
        (json!(0), json!("0.00"))
    );

    // Client mistakes are 4xx with codes.
    for (path, code, status) in [
        ("/v1/settlement/windows/99", "UNKNOWN_WINDOW", 404),
        ("/v1/settlement/windows/abc", "UNKNOWN_WINDOW", 404),
        ("/v1/settlement/windows/1/report.csv", "INVALID_QUERY", 400),
        (
            "/v1/settlement/windows/1/report.csv?bank=hd fc",
            "INVALID_BANK_CODE",
            400,
        ),
        (
            "/v1/settlement/windows/1/report.csv?bank=HDFC&bank=ICICI",
            "INVALID_QUERY",
            400,
        ),
        (
            "/v1/settlement/windows/1/report.csv?bank=NOBANK",
            "UNKNOWN_BANK",
            404,
        ),
        ("/v1/settlement/windows?limit=0", "INVALID_QUERY", 400),
        ("/v1/reconciliation/3", "NO_RECONCILIATION", 404),
    ] {
        let (got, body) = get(&world, path).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    let (got, body) = post_json(
        &world.http,
        &format!("{}/v1/admin/reconciliation/run", world.switch.url),
        &json!({"window_id": "3"}),
    )
    .await;
    assert_eq!(
        (got, body["code"].as_str()),
        (409, Some("WINDOW_OPEN")),
        "{body}"
    );

    // The close is in the audit log.
    let (_, audit) = get(&world, "/v1/ops/audit").await;
    let closes = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "settlement.close")
        .count();
    assert_eq!(closes, 2, "{audit}");
}

/// Payments turning SUCCESS while windows close: each journal is in exactly
/// one window, the windows' counts add up to the SUCCESS payments, and each
/// window's positions are the netting of its own payments.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_racing_closes_land_in_exactly_one_window() {
    let world = World::start(FAST, &[], &[]).await;
    let url = world.switch.url.clone();
    let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"});
    // Six rounds of 40 concurrent payments, each round racing two closes
    // (and the sagas of earlier rounds still turning SUCCESS): the race
    // does not depend on how fast this machine is.
    let mut answers = Vec::new();
    let urls = [url.as_str()];
    for _ in 0..6 {
        let (round, ()) = tokio::join!(
            post_burst(&world.http, &urls, 40, "/v1/transactions", &body),
            async {
                close(&world).await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                close(&world).await;
            }
        );
        answers.extend(round);
    }
    for (status, body) in answers {
        assert!(status == 202 || status == 200, "{status} {body}");
        world
            .wait_terminal(
                body["txn_id"].as_str().expect("id"),
                Duration::from_secs(30),
            )
            .await;
    }
    close(&world).await;

    let db = world.switch_db.client().await;
    let check = db
        .query_one(
            "SELECT (SELECT count(*) FROM transactions WHERE status = 'SUCCESS'),
                    (SELECT count(*) FROM ledger_journals),
                    (SELECT sum(txn_count)::int8 FROM settlement_windows WHERE status = 'CLOSED'),
                    (SELECT count(*) FROM ledger_journals j WHERE (SELECT count(*) FROM settlement_windows w
                        WHERE j.id > w.after_journal_id AND j.id <= coalesce(w.last_journal_id, 9e18)) <> 1),
                    (SELECT count(*) FROM settlement_windows w JOIN settlement_windows n
                        ON n.window_id = w.window_id + 1 WHERE n.after_journal_id <> w.last_journal_id),
                    (SELECT count(*) FROM settlement_windows WHERE status = 'OPEN')",
            &[],
        )
        .await
        .expect("check");
    let (success, journals, settled, misplaced, gaps, open): (i64, i64, i64, i64, i64, i64) = (
        check.get(0),
        check.get(1),
        check.get(2),
        check.get(3),
        check.get(4),
        check.get(5),
    );
    assert_eq!(success, 240);
    assert_eq!(
        (journals, settled, misplaced, gaps, open),
        (success, success, 0, 0, 1)
    );
    // The closes really cut through the payments: they landed in several windows.
    let filled: i64 = db
        .query_one(
            "SELECT count(*) FROM settlement_windows WHERE status = 'CLOSED' AND txn_count > 0",
            &[],
        )
        .await
        .expect("filled")
        .get(0);
    assert!(filled >= 2, "the payments landed in {filled} window(s)");

    // Netting property, against the database: each closed window's
    // positions are the pure netting of its own journals.
    let windows = db
        .query("SELECT window_id, after_journal_id, last_journal_id FROM settlement_windows WHERE status = 'CLOSED'", &[])
        .await
        .expect("windows");
    for w in windows {
        let (id, after, last): (i64, i64, i64) = (w.get(0), w.get(1), w.get(2));
        let rows = db
            .query("SELECT payer_bank, payee_bank, amount_paise FROM ledger_journals WHERE id > $1 AND id <= $2", &[&after, &last])
            .await
            .expect("journals");
        let legs: Vec<(String, String, Paise)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), Paise(r.get(2))))
            .collect();
        let expected = upi_switch::settlement::net_positions(
            legs.iter().map(|(a, b, m)| (a.as_str(), b.as_str(), *m)),
        );
        let (_, detail) = get(&world, &format!("/v1/settlement/windows/{id}")).await;
        let got: Vec<(String, i64)> = detail["positions"]
            .as_array()
            .expect("positions")
            .iter()
            .map(|p| {
                (
                    p["bank_code"].as_str().unwrap_or_default().to_string(),
                    paise(&p["net"]),
                )
            })
            .collect();
        let want: Vec<(String, i64)> = expected
            .iter()
            .map(|p| (p.bank_code.clone(), p.net().0))
            .collect();
        assert_eq!(
            got, want,
            "window {id} ({after}, {last}]: {detail} {legs:?}"
        );
    }
}

/// kill -9 between the steps of an operator's close: the restarted switch
/// finishes it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_close_killed_midway_is_finished_once_after_restart() {
    let mut world = World::start(FAST, &[], &[]).await;
    let db_url = world.switch_db.url.clone();
    for (point, window) in [("close", "1"), ("request", "2")] {
        paid(&world, "alice@hdfc", "bob@icici", "2.00").await;
        world.switch.kill9();
        world.switch = SwitchProc::start(&db_url, &["--settlement-crash-after", point]);
        let answer = world
            .http
            .post(format!("{}/v1/admin/settlement/close", world.switch.url))
            .json(&json!({}))
            .send()
            .await;
        assert!(
            answer.is_err() || answer.is_ok_and(|r| r.status().is_server_error()),
            "the switch died mid-close"
        );
        world.switch.restart();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, w) = get(&world, &format!("/v1/settlement/windows/{window}")).await;
            if status == 200 && w["status"] == "CLOSED" && w["txn_count"] == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "window {window} not finished after {point}: {w}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let db = world.switch_db.client().await;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM settlement_windows),
                    (SELECT count(*) FROM settlement_windows WHERE status = 'OPEN'),
                    (SELECT count(*) FROM settlement_positions),
                    (SELECT count(*) FROM audit_log WHERE action = 'settlement.close')",
            &[],
        )
        .await
        .expect("q");
    let counts: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        counts,
        (3, 1, 4, 2),
        "two closes, each once: two banks' positions each"
    );
    let r1 = reconciled(&world, "1").await;
    assert_eq!(r1["mismatches"], json!([]), "{r1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciliation_is_clean_then_finds_a_rogue_debit_by_its_op_id_and_nothing_else() {
    let exchange = TestExchange::new();
    let events = EventCollector::bound(&exchange.name, "settlement.#").await;
    let world = World::start(
        &[FAST, &["--events-exchange", &exchange.name]].concat(),
        &[],
        &[],
    )
    .await;
    let ok = paid(&world, "alice@hdfc", "bob@icici", "10.00").await;
    paid(&world, "alice@hdfc", "ghost@icici", "3.00").await; // REVERSED
    paid(&world, "dave@hdfc", "bob@icici", "5.00").await; // FAILED (declined)
    refund(&world, ok["txn_id"].as_str().expect("id"), "2.50").await;
    let (first, _) = close(&world).await;
    let clean = reconciled(&world, &first).await;
    assert_eq!(clean["mismatches"], json!([]), "{clean}");
    assert_eq!(clean["mismatch_ppm"], 0);
    // Debit and credit of two SUCCESS, the REVERSED one's debit, credit and
    // reverse, the FAILED one's declined debit.
    assert_eq!(clean["matched"], 8, "{clean}");

    // Money moved behind the switch's back, then business as usual.
    let rogue_op = format!("rogue-{}:debit", uuid::Uuid::new_v4());
    let (status, body) = post_json(
        &world.http,
        &format!("{}/v1/debit", world.hdfc.url),
        &json!({"op_id": rogue_op, "txn_id": uuid::Uuid::new_v4().to_string(), "account": "ACC003", "amount_paise": 700}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    paid(&world, "bob@icici", "alice@hdfc", "1.00").await;
    let (second, _) = close(&world).await;
    let found = reconciled(&world, &second).await;
    let mismatches = found["mismatches"].as_array().expect("mismatches");
    assert_eq!(mismatches.len(), 1, "{found}");
    assert_eq!(mismatches[0]["kind"], "MISSING_AT_SWITCH");
    assert_eq!(mismatches[0]["op_id"], json!(rogue_op));
    assert_eq!(mismatches[0]["bank_code"], "HDFC");
    assert_eq!(found["matched"], 2);
    assert_eq!(found["mismatch_ppm"], 333_333);

    // A re-run finds the same, and only that.
    let (status, _) = post_json(
        &world.http,
        &format!("{}/v1/admin/reconciliation/run", world.switch.url),
        &json!({"window_id": second}),
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = reconciled(&world, &second).await;
    assert_eq!(
        again["mismatches"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    assert!(
        world
            .metrics_text()
            .await
            .contains("upi_recon_last_mismatch_ppm 333333")
    );

    // Both closes and the mismatch reached RabbitMQ.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got: Vec<String> = events.snapshot().into_iter().map(|(id, _)| id).collect();
        let closed = got
            .iter()
            .filter(|id| id.starts_with("settlement.window_closed:"))
            .count();
        if closed >= 2
            && got
                .iter()
                .any(|id| id.starts_with(&format!("settlement.mismatch:{second}:")))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "settlement events missing: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed_event = events
        .snapshot()
        .into_iter()
        .find(|(id, _)| id == "settlement.window_closed:1")
        .expect("event")
        .1;
    assert_eq!(
        closed_event["positions"].as_array().map(Vec::len),
        Some(2),
        "{closed_event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windows_close_by_themselves_at_their_cutoffs() {
    let world = World::start(
        &[FAST, &["--settlement-cutoffs", "every:1s"]].concat(),
        &[],
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (_, list) = get(&world, "/v1/settlement/windows").await;
    let windows = list["windows"].as_array().expect("windows");
    assert!(windows.len() >= 3, "{list}");
    assert_eq!(windows.iter().filter(|w| w["status"] == "OPEN").count(), 1);
    let (_, audit) = get(&world, "/v1/ops/audit?limit=1000").await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "settlement.close"
                && e["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("cutoff@"))),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_ledger_and_reconciliation_paths_need_the_operator_token() {
    let db = TestDb::new("switch");
    let switch = SwitchProc::start(&db.url, &["--admin-token", TOKEN]);
    let anon = http();
    let operator = operator_http(TOKEN);
    let gets = [
        "/v1/ledger/balances",
        "/v1/settlement/windows",
        "/v1/settlement/windows/1",
        "/v1/settlement/windows/1/report.csv?bank=HDFC",
        "/v1/reconciliation/1",
    ];
    for path in gets {
        let (status, body) = get_json(&anon, &format!("{}{path}", switch.url)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{path}"
        );
    }
    for path in ["/v1/admin/settlement/close", "/v1/admin/reconciliation/run"] {
        let (status, _) = post_json(
            &anon,
            &format!("{}{path}", switch.url),
            &json!({"window_id": "1"}),
        )
        .await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, body) =
        get_json(&operator, &format!("{}/v1/settlement/windows", switch.url)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_json(
        &operator,
        &format!("{}/v1/admin/settlement/close", switch.url),
        &json!({}),
    )
    .await;
    assert_eq!(
        (status, body["closed"].as_str()),
        (200, Some("1")),
        "{body}"
    );
}
