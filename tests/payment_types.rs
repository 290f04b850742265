//! Payment types and limits against the real services (issue 13): P2M,
//! refunds (partial, concurrent, never more than the original), collect
//! requests (approve, decline, idempotency, expiry across restarts) and the
//! limits checked at acceptance (per transaction, per MCC, daily amount and
//! count per payer VPA by IST day, concurrent requests that must not
//! overshoot). Every code of the spec's "Payment types" and "Limits"
//! sections is asked for here; a refused request is checked to change
//! nothing.

mod common;

use common::{World, get_json, put_json};
use serde_json::{Value, json};
use std::time::Duration;

const TERMINAL: Duration = Duration::from_secs(60);

async fn world(flags: &[&str]) -> World {
    let w = World::start(flags, &[], &[]).await;
    // A merchant at ICICI (grocery, MCC 5411) and one at HDFC (MCC 6012).
    for (vpa, bank, account, mcc) in [
        ("shop@icici", "ICICI", "ACC003", "5411"),
        ("fin@hdfc", "HDFC", "ACC003", "6012"),
    ] {
        let (status, body) = put_json(
            &w.http,
            &format!("{}/v1/admin/vpas/{vpa}", w.switch.url),
            &json!({"bank_code": bank, "account": account, "name": "A Merchant", "merchant": true, "mcc": mcc}),
        )
        .await;
        assert!(status < 300, "{status} {body}");
    }
    w
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn post(w: &World, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = w.http.post(format!("{}{path}", w.switch.url)).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create(w: &World, body: Value) -> (u16, Value) {
    post(w, "/v1/transactions", Some(&key()), &body).await
}

async fn txn_rows(w: &World) -> i64 {
    w.txn_count().await
}

fn assert_code(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
}

/// A SUCCESS payment of `amount` from alice@hdfc to `payee`; its txn_id.
async fn paid(w: &World, kind: &str, payee: &str, amount: &str) -> String {
    let (status, body) = create(
        w,
        json!({"type": kind, "payer_vpa": "alice@hdfc", "payee_vpa": payee, "amount": amount}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["txn_id"].as_str().expect("txn_id").to_string();
    let doc = w.wait_terminal(&id, TERMINAL).await;
    assert_eq!(doc["status"], "SUCCESS", "{doc}");
    id
}

async fn doc(w: &World, id: &str) -> Value {
    get_json(&w.http, &format!("{}/v1/transactions/{id}", w.switch.url))
        .await
        .1
}

#[tokio::test]
async fn p2m_pays_a_merchant_keeps_its_reference_and_refuses_a_non_merchant() {
    let w = world(&[]).await;
    let (status, body) = create(
        &w,
        json!({"type": "P2M", "payer_vpa": "alice@hdfc", "payee_vpa": "shop@icici", "amount": "99.50", "merchant_ref": "order-981"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["txn_id"].as_str().expect("txn_id");
    let done = w.wait_terminal(id, TERMINAL).await;
    assert_eq!(done["type"], "P2M");
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(done["merchant_ref"], "order-981");
    assert_eq!(done["refunded"], "0.00");
    assert_eq!(done["amount"], "99.50");

    let before = txn_rows(&w).await;
    let refused = create(
        &w,
        json!({"type": "P2M", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"}),
    )
    .await;
    assert_code(&refused, 422, "PAYEE_NOT_MERCHANT");
    assert_eq!(
        txn_rows(&w).await,
        before,
        "a refused payment writes nothing"
    );
    // A P2P carries no merchant reference.
    let p2p_ref = create(
        &w,
        json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00", "merchant_ref": "x"}),
    )
    .await;
    assert_code(&p2p_ref, 400, "UNEXPECTED_FIELD");
}

#[tokio::test]
async fn per_transaction_and_per_mcc_limits_refuse_with_amount_over_limit() {
    let w = world(&[
        "--txn-limit",
        "500.00",
        "--p2m-txn-limit",
        "300.00",
        "--mcc-limit",
        "6012=50.00",
    ])
    .await;
    let over = |kind: &str, payee: &str, amount: &str| json!({"type": kind, "payer_vpa": "alice@hdfc", "payee_vpa": payee, "amount": amount});
    assert_code(
        &create(&w, over("P2P", "bob@icici", "500.01")).await,
        422,
        "AMOUNT_OVER_LIMIT",
    );
    assert_code(
        &create(&w, over("P2M", "shop@icici", "300.01")).await,
        422,
        "AMOUNT_OVER_LIMIT",
    );
    assert_code(
        &create(&w, over("P2M", "fin@hdfc", "50.01")).await,
        422,
        "AMOUNT_OVER_LIMIT",
    );
    assert_eq!(txn_rows(&w).await, 0);
    assert_eq!(create(&w, over("P2M", "fin@hdfc", "50.00")).await.0, 202);
    assert_eq!(create(&w, over("P2M", "shop@icici", "300.00")).await.0, 202);
    // A collect asks for no more than one payment may be.
    let c = post(
        &w,
        "/v1/collects",
        Some(&key()),
        &json!({"payee_vpa": "bob@icici", "payer_vpa": "alice@hdfc", "amount": "500.01"}),
    )
    .await;
    assert_code(&c, 422, "AMOUNT_OVER_LIMIT");
}

#[tokio::test]
async fn refunds_are_partial_move_money_back_and_show_on_the_original() {
    let w = world(&[]).await;
    let original = paid(&w, "P2M", "shop@icici", "100.00").await;
    let refund = |amount: &str| json!({"type": "REFUND", "original_txn_id": original, "amount": amount, "note": "returned"});
    let (status, r1) = create(&w, refund("30.00")).await;
    assert_eq!(status, 202, "{r1}");
    let r1 = w
        .wait_terminal(r1["txn_id"].as_str().expect("id"), TERMINAL)
        .await;
    assert_eq!(r1["type"], "REFUND");
    assert_eq!(r1["status"], "SUCCESS");
    assert_eq!(r1["original_txn_id"], original.as_str());
    assert_eq!(r1["payer_vpa"], "shop@icici", "{r1}");
    assert_eq!(r1["payee_vpa"], "alice@hdfc", "{r1}");
    assert_eq!(doc(&w, &original).await["refunded"], "30.00");

    let (status, r2) = create(&w, refund("70.00")).await;
    assert_eq!(status, 202, "{r2}");
    w.wait_terminal(r2["txn_id"].as_str().expect("id"), TERMINAL)
        .await;
    assert_eq!(doc(&w, &original).await["refunded"], "100.00");
    let before = txn_rows(&w).await;
    assert_code(
        &create(&w, refund("0.01")).await,
        422,
        "REFUND_EXCEEDS_ORIGINAL",
    );
    assert_eq!(txn_rows(&w).await, before);
    // Money came back: the merchant's account paid out exactly 100.00.
    let (balances, _) = common::balances(&w.http, &w.icici.url).await;
    assert_eq!(balances.get("ACC003").copied(), Some(common::START_BALANCE));
}

#[tokio::test]
async fn refund_codes_unknown_not_refundable_and_too_large() {
    let w = world(&[]).await;
    let unknown = create(
        &w,
        json!({"type": "REFUND", "original_txn_id": uuid::Uuid::new_v4(), "amount": "1.00"}),
    )
    .await;
    assert_code(&unknown, 422, "UNKNOWN_ORIGINAL");
    // A REVERSED original (ghost@icici has no account) cannot be refunded.
    let (status, failed) = create(
        &w,
        json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "ghost@icici", "amount": "5.00"}),
    )
    .await;
    assert_eq!(status, 202);
    let failed = failed["txn_id"].as_str().expect("id").to_string();
    let end = w.wait_terminal(&failed, TERMINAL).await;
    assert_ne!(end["status"], "SUCCESS");
    let not_refundable = create(
        &w,
        json!({"type": "REFUND", "original_txn_id": failed, "amount": "1.00"}),
    )
    .await;
    assert_code(&not_refundable, 422, "ORIGINAL_NOT_REFUNDABLE");
    // Nor can a refund.
    let original = paid(&w, "P2P", "bob@icici", "10.00").await;
    let (_, r) = create(
        &w,
        json!({"type": "REFUND", "original_txn_id": original, "amount": "1.00"}),
    )
    .await;
    let r = r["txn_id"].as_str().expect("id").to_string();
    w.wait_terminal(&r, TERMINAL).await;
    assert_code(
        &create(
            &w,
            json!({"type": "REFUND", "original_txn_id": r, "amount": "0.50"}),
        )
        .await,
        422,
        "ORIGINAL_NOT_REFUNDABLE",
    );
    assert_code(
        &create(
            &w,
            json!({"type": "REFUND", "original_txn_id": original, "amount": "10.01"}),
        )
        .await,
        422,
        "REFUND_EXCEEDS_ORIGINAL",
    );
    // A refund names no parties: they are the original's.
    assert_code(
        &create(
            &w,
            json!({"type": "REFUND", "original_txn_id": original, "amount": "1.00", "payer_vpa": "bob@icici"}),
        )
        .await,
        400,
        "UNEXPECTED_FIELD",
    );
}

#[tokio::test]
async fn concurrent_refunds_never_exceed_the_original() {
    let w = world(&[]).await;
    let original = paid(&w, "P2M", "shop@icici", "100.00").await;
    // 30 refunds of 7.00 at once: at most 14 fit in 100.00.
    let refund = json!({"type": "REFUND", "original_txn_id": original, "amount": "7.00"});
    let mut accepted = Vec::new();
    for (status, body) in
        common::post_burst(&w.http, &[&w.switch.url], 30, "/v1/transactions", &refund).await
    {
        match status {
            202 => accepted.push(body["txn_id"].as_str().expect("id").to_string()),
            422 => assert_eq!(body["code"], "REFUND_EXCEEDS_ORIGINAL", "{body}"),
            other => panic!("unexpected {other} {body}"),
        }
    }
    assert_eq!(accepted.len(), 14, "exactly what fits is accepted");
    for id in &accepted {
        assert_eq!(w.wait_terminal(id, TERMINAL).await["status"], "SUCCESS");
    }
    assert_eq!(doc(&w, &original).await["refunded"], "98.00");
    let (balances, _) = common::balances(&w.http, &w.icici.url).await;
    assert_eq!(
        balances.get("ACC003").copied(),
        Some(common::START_BALANCE + 10_000 - 9_800)
    );
}

#[tokio::test]
async fn a_failed_refund_gives_its_room_back() {
    // The merchant's bank (ICICI) goes down after the payment: its refund
    // cannot be debited and fails, and the room is free again.
    let w = world(common::FAST).await;
    let original = paid(&w, "P2M", "shop@icici", "10.00").await;
    let faults = |down: bool| {
        let http = w.http.clone();
        let url = format!("{}/admin/faults", w.icici.url);
        async move {
            let (status, body) = put_json(&http, &url, &json!({"down": down})).await;
            assert!(status < 300, "faults: {status} {body}");
        }
    };
    faults(true).await;
    let (status, r) = create(
        &w,
        json!({"type": "REFUND", "original_txn_id": original, "amount": "10.00"}),
    )
    .await;
    assert_eq!(status, 202, "{r}");
    let r = r["txn_id"].as_str().expect("id").to_string();
    // Its debit stays unknown past the deadline; the fence (a reverse) then
    // needs the bank, which comes back once the saga has given up.
    let deadline = std::time::Instant::now() + TERMINAL;
    loop {
        let d = doc(&w, &r).await;
        let fencing = d["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["state"] == "DEBIT_FENCING"));
        if fencing || d["status"] != "PENDING" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    faults(false).await;
    let end = w.wait_terminal(&r, TERMINAL).await;
    assert!(
        end["status"] == "FAILED" || end["status"] == "REVERSED",
        "{end}"
    );
    // The bank is back once its supervisor sees it: retry until accepted.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let again = loop {
        let (status, again) = create(
            &w,
            json!({"type": "REFUND", "original_txn_id": original, "amount": "10.00"}),
        )
        .await;
        assert_eq!(status, 202, "the failed refund gave its room back: {again}");
        let id = again["txn_id"].as_str().expect("id").to_string();
        let end = w.wait_terminal(&id, TERMINAL).await;
        if end["status"] == "SUCCESS" {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ICICI never came back: {end}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(doc(&w, &original).await["refunded"], "10.00");
    assert_eq!(doc(&w, &again).await["status"], "SUCCESS");
}

async fn request_collect(w: &World, key: &str, amount: &str, expires: Option<i64>) -> (u16, Value) {
    let mut body = json!({"payee_vpa": "shop@icici", "payer_vpa": "alice@hdfc", "amount": amount, "note": "bill"});
    if let Some(s) = expires {
        body["expires_in_s"] = json!(s);
    }
    post(w, "/v1/collects", Some(key), &body).await
}

#[tokio::test]
async fn a_collect_is_requested_approved_once_and_paid_as_a_collect_payment() {
    let w = world(&[]).await;
    let k = key();
    let (status, c) = request_collect(&w, &k, "25.00", Some(300)).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["status"], "REQUESTED");
    let id = c["collect_id"].as_str().expect("collect_id").to_string();
    let expires =
        chrono::DateTime::parse_from_rfc3339(c["expires_at"].as_str().expect("expires_at"))
            .expect("RFC 3339");
    let ahead = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((290..=301).contains(&ahead), "expires in {ahead} s");
    // The same key: the same request; another body: refused.
    let (status, again) = request_collect(&w, &k, "25.00", Some(300)).await;
    assert!(status == 200 || status == 201, "{again}");
    assert_eq!(again["collect_id"], id.as_str());
    assert_code(
        &request_collect(&w, &k, "26.00", Some(300)).await,
        422,
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert_code(
        &request_collect(&w, &key(), "1.00", Some(59)).await,
        422,
        "INVALID_EXPIRY",
    );
    assert_code(
        &request_collect(&w, &key(), "1.00", Some(86_401)).await,
        422,
        "INVALID_EXPIRY",
    );

    // Approved by several callers at once: one payment.
    let approve = format!("/v1/collects/{id}/approve");
    let mut txns = std::collections::BTreeSet::new();
    for (status, body) in
        common::post_burst(&w.http, &[&w.switch.url], 8, &approve, &json!({})).await
    {
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "APPROVED");
        txns.insert(body["txn_id"].as_str().expect("txn_id").to_string());
    }
    assert_eq!(txns.len(), 1, "one payment: {txns:?}");
    let txn = txns.into_iter().next().expect("one");
    let done = w.wait_terminal(&txn, TERMINAL).await;
    assert_eq!(done["type"], "COLLECT");
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(done["payer_vpa"], "alice@hdfc");
    assert_eq!(done["payee_vpa"], "shop@icici");
    assert_eq!(done["collect_id"], id.as_str());
    let (status, c) = get_json(&w.http, &format!("{}/v1/collects/{id}", w.switch.url)).await;
    assert_eq!(status, 200);
    assert_eq!(c["status"], "APPROVED");
    assert_eq!(c["txn_id"], txn.as_str());
    assert_eq!(c["amount"], "25.00");
    // Approving again answers the same payment; declining is too late.
    let (status, again) = post(&w, &format!("/v1/collects/{id}/approve"), None, &json!({})).await;
    assert_eq!(
        (status, again["txn_id"].as_str()),
        (202, Some(txn.as_str()))
    );
    assert_code(
        &post(&w, &format!("/v1/collects/{id}/decline"), None, &json!({})).await,
        409,
        "COLLECT_NOT_PENDING",
    );
}

#[tokio::test]
async fn a_declined_collect_cannot_be_approved_or_declined_again() {
    let w = world(&[]).await;
    let (_, c) = request_collect(&w, &key(), "5.00", None).await;
    let id = c["collect_id"].as_str().expect("id").to_string();
    let (status, d) = post(&w, &format!("/v1/collects/{id}/decline"), None, &json!({})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"], "DECLINED");
    for action in ["approve", "decline"] {
        assert_code(
            &post(&w, &format!("/v1/collects/{id}/{action}"), None, &json!({})).await,
            409,
            "COLLECT_NOT_PENDING",
        );
    }
    assert_eq!(txn_rows(&w).await, 0);
    let missing = uuid::Uuid::new_v4();
    assert_code(
        &post(
            &w,
            &format!("/v1/collects/{missing}/approve"),
            None,
            &json!({}),
        )
        .await,
        404,
        "COLLECT_NOT_FOUND",
    );
    let (status, _) = get_json(&w.http, &format!("{}/v1/collects/{missing}", w.switch.url)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_collect_expires_at_its_deadline_across_restarts() {
    let mut w = world(&[]).await;
    let (status, c) = request_collect(&w, &key(), "5.00", Some(60)).await;
    assert_eq!(status, 201, "{c}");
    let id = c["collect_id"].as_str().expect("id").to_string();
    let expires =
        chrono::DateTime::parse_from_rfc3339(c["expires_at"].as_str().expect("expires_at"))
            .expect("RFC 3339");
    // Killed and restarted twice while the request waits.
    for _ in 0..2 {
        w.switch.server.kill9();
        tokio::time::sleep(Duration::from_secs(2)).await;
        w.switch.server.restart();
    }
    let (_, before) = get_json(&w.http, &format!("{}/v1/collects/{id}", w.switch.url)).await;
    assert_eq!(before["status"], "REQUESTED", "{before}");
    let left = expires.signed_duration_since(chrono::Utc::now());
    tokio::time::sleep(Duration::from_millis(
        left.num_milliseconds().max(0) as u64 + 200,
    ))
    .await;
    let (_, after) = get_json(&w.http, &format!("{}/v1/collects/{id}", w.switch.url)).await;
    assert_eq!(after["status"], "EXPIRED", "{after}");
    assert_code(
        &post(&w, &format!("/v1/collects/{id}/approve"), None, &json!({})).await,
        409,
        "COLLECT_NOT_PENDING",
    );
    // The sweep writes it down within a few seconds.
    let db = w.switch_db.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = db
            .query_one(
                "SELECT status FROM collects WHERE collect_id = $1::text::uuid",
                &[&id],
            )
            .await
            .expect("row");
        if row.get::<_, String>(0) == "EXPIRED" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep did not expire it"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(txn_rows(&w).await, 0);
}

/// Fires `n` payments of `amount` from alice@hdfc at once; (accepted ids, refusal codes).
async fn burst(w: &World, n: usize, amount: &str) -> (Vec<String>, Vec<String>) {
    let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": amount});
    let (mut ok, mut refused) = (Vec::new(), Vec::new());
    for (status, body) in
        common::post_burst(&w.http, &[&w.switch.url], n, "/v1/transactions", &body).await
    {
        match status {
            202 => ok.push(body["txn_id"].as_str().expect("id").to_string()),
            422 => refused.push(body["code"].as_str().unwrap_or_default().to_string()),
            other => panic!("unexpected {other} {body}"),
        }
    }
    (ok, refused)
}

#[tokio::test]
async fn thirty_concurrent_payments_with_a_daily_count_of_five_accept_five() {
    let w = world(&["--daily-count-limit", "5"]).await;
    let (ok, refused) = burst(&w, 30, "1.00").await;
    assert_eq!(ok.len(), 5, "accepted {ok:?}");
    assert_eq!(refused.len(), 25);
    assert!(
        refused.iter().all(|c| c == "DAILY_COUNT_LIMIT_EXCEEDED"),
        "{refused:?}"
    );
    assert_eq!(txn_rows(&w).await, 5, "refused requests write nothing");
    // Another payer is not affected; a refund by the merchant is not counted.
    let (status, _) = w.pay("dave@hdfc", "bob@icici", "1.00", None).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn daily_amount_counts_pending_and_success_and_failures_give_it_back() {
    let w = world(&["--daily-amount-limit", "100.00", "--daily-count-limit", "0"]).await;
    let (ok, refused) = burst(&w, 12, "10.00").await;
    assert_eq!(ok.len(), 10, "{refused:?}");
    assert!(
        refused.iter().all(|c| c == "DAILY_AMOUNT_LIMIT_EXCEEDED"),
        "{refused:?}"
    );
    for id in &ok {
        w.wait_terminal(id, TERMINAL).await;
    }
    // A payment that fails (dave@hdfc has no money) gives its usage back.
    let db = w.switch_db.client().await;
    let (status, body) = w.pay("dave@hdfc", "ghost@icici", "100.00", None).await;
    assert_eq!(status, 202, "{body}");
    let end = w
        .wait_terminal(body["txn_id"].as_str().expect("id"), TERMINAL)
        .await;
    assert_ne!(end["status"], "SUCCESS");
    let (status, body) = w.pay("dave@hdfc", "bob@icici", "100.00", None).await;
    assert_eq!(
        status, 202,
        "dave's failed payment gave its 100.00 back: {body}"
    );
    let (status, body) = w.pay("dave@hdfc", "bob@icici", "0.01", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("DAILY_AMOUNT_LIMIT_EXCEEDED")),
        "the pending one holds it"
    );
    // Yesterday (IST) does not count: move alice's payments to one second
    // before today's IST midnight, and she may pay again.
    let (status, body) = w.pay("alice@hdfc", "bob@icici", "1.00", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("DAILY_AMOUNT_LIMIT_EXCEEDED"))
    );
    // (Terminal rows never change: the test lifts that guard to move time.)
    db.batch_execute("ALTER TABLE transactions DISABLE TRIGGER transactions_terminal_is_final")
        .await
        .expect("lift the guard");
    db.execute(
        "UPDATE transactions SET created_at =
             (date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata')
             - interval '1 second'
         WHERE payer_vpa = 'alice@hdfc'",
        &[],
    )
    .await
    .expect("move to yesterday");
    let (status, body) = w.pay("alice@hdfc", "bob@icici", "100.00", None).await;
    assert_eq!(status, 202, "a new IST day: {body}");
}

#[tokio::test]
async fn a_collect_refused_by_a_limit_stays_requested_and_refunds_are_not_counted() {
    let w = world(&["--daily-count-limit", "1"]).await;
    let original = paid(&w, "P2M", "shop@icici", "10.00").await;
    let (_, c) = request_collect(&w, &key(), "2.00", None).await;
    let id = c["collect_id"].as_str().expect("id").to_string();
    assert_code(
        &post(&w, &format!("/v1/collects/{id}/approve"), None, &json!({})).await,
        422,
        "DAILY_COUNT_LIMIT_EXCEEDED",
    );
    let (_, c) = get_json(&w.http, &format!("{}/v1/collects/{id}", w.switch.url)).await;
    assert_eq!(c["status"], "REQUESTED");
    assert_eq!(c["txn_id"], Value::Null);
    assert_eq!(txn_rows(&w).await, 1);
    // Refunds count against nobody: shop@icici refunds twice although the
    // count limit is 1 (and alice, paid back, has spent hers).
    for _ in 0..2 {
        let (status, r) = create(
            &w,
            json!({"type": "REFUND", "original_txn_id": original, "amount": "5.00"}),
        )
        .await;
        assert_eq!(status, 202, "{r}");
    }
}
