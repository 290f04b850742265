//! Analytics from the event stream, end to end against real RabbitMQ and
//! Postgres: the daily, merchant and bank summaries equal what the switch
//! says about the same transactions (their status documents), after
//! replayed duplicates, a rebuild from the raw store, poison messages and a
//! consumer killed mid-stream.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SHOP: &str = "shop@icici";

/// IST day of an RFC 3339 instant, as the API prints it.
fn ist_date(at: &str) -> String {
    let t: chrono::DateTime<chrono::Utc> = at.parse().expect("created_at");
    upi_switch::analytics::day::ist_day(t).to_string()
}

fn paise(amount: &str) -> i64 {
    upi_switch::domain::Paise::parse_rupees(amount, upi_switch::domain::Paise(i64::MAX))
        .expect("amount")
        .0
}

fn bank_of(vpa: &str) -> &'static str {
    if vpa.ends_with("@hdfc") {
        "HDFC"
    } else {
        "ICICI"
    }
}

/// Summary counts computed from status documents, the way the spec defines them.
#[derive(Default, Clone, Copy)]
struct Tally {
    total: i64,
    success: i64,
    failed: i64,
    reversed: i64,
    pending: i64,
    amount_success: i64,
    amount_total: i64,
    refunded: i64,
}

impl Tally {
    fn count(&mut self, doc: &Value) {
        let amount = paise(doc["amount"].as_str().expect("amount"));
        self.total += 1;
        self.amount_total += amount;
        match doc["status"].as_str().expect("status") {
            "SUCCESS" => {
                self.success += 1;
                self.amount_success += amount;
            }
            "FAILED" => self.failed += 1,
            "REVERSED" => self.reversed += 1,
            _ => self.pending += 1,
        }
    }

    fn row(&self, date: &str) -> Value {
        let ended = self.success + self.failed + self.reversed;
        let rate = if ended == 0 {
            0.0
        } else {
            self.success as f64 / ended as f64
        };
        let rupees = |p: i64| upi_switch::domain::Paise(p).to_rupees();
        json!({
            "date": date, "total": self.total, "success": self.success, "failed": self.failed,
            "reversed": self.reversed, "pending": self.pending, "success_rate": rate,
            "amount_success": rupees(self.amount_success), "amount_total": rupees(self.amount_total),
        })
    }
}

/// What the analytics API must say, from the switch's own status documents.
struct Expected {
    daily: BTreeMap<String, Tally>,
    shop: BTreeMap<String, Tally>,
    banks: BTreeMap<(String, String, String), Tally>,
}

fn expected(docs: &[Value]) -> Expected {
    let mut e = Expected {
        daily: BTreeMap::new(),
        shop: BTreeMap::new(),
        banks: BTreeMap::new(),
    };
    for doc in docs {
        let date = ist_date(doc["created_at"].as_str().expect("created_at"));
        let (payer, payee) = (
            doc["payer_vpa"].as_str().expect("payer"),
            doc["payee_vpa"].as_str().expect("payee"),
        );
        e.daily.entry(date.clone()).or_default().count(doc);
        e.banks
            .entry((date.clone(), bank_of(payer).into(), bank_of(payee).into()))
            .or_default()
            .count(doc);
        match doc["type"].as_str() {
            Some("P2M" | "COLLECT") if payee == SHOP => e.shop.entry(date).or_default().count(doc),
            Some("REFUND") if payer == SHOP && doc["status"] == "SUCCESS" => {
                e.shop.entry(date).or_default().refunded +=
                    paise(doc["amount"].as_str().expect("amount"))
            }
            _ => {}
        }
    }
    e
}

/// The API's answers for the days of `e`, shaped like `expected` builds them.
async fn actual(http: &reqwest::Client, base: &str, e: &Expected) -> (Value, Value, Value) {
    let (from, to) = (
        e.daily.keys().next().expect("a day").clone(),
        e.daily.keys().last().expect("a day").clone(),
    );
    let q = format!("from={from}&to={to}");
    let (s, daily) = get_json(http, &format!("{base}/v1/analytics/daily?{q}")).await;
    assert_eq!(s, 200, "{daily}");
    let (s, shop) = get_json(
        http,
        &format!("{base}/v1/analytics/merchants/{SHOP}/daily?{q}"),
    )
    .await;
    assert_eq!(s, 200, "{shop}");
    let (s, banks) = get_json(http, &format!("{base}/v1/analytics/banks/daily?{q}")).await;
    assert_eq!(s, 200, "{banks}");
    (
        daily["days"].clone(),
        shop["days"].clone(),
        banks["days"].clone(),
    )
}

fn want(e: &Expected) -> (Value, Value, Value) {
    let daily: Vec<Value> = e.daily.iter().map(|(d, t)| t.row(d)).collect();
    let shop: Vec<Value> = e
        .daily
        .keys()
        .map(|d| {
            let t = e.shop.get(d).copied().unwrap_or_default();
            let mut row = t.row(d);
            row["refunded"] = upi_switch::domain::Paise(t.refunded).to_rupees().into();
            row
        })
        .collect();
    let banks: Vec<Value> = e
        .banks
        .iter()
        .map(|((d, payer, payee), t)| {
            let mut row = t.row(d);
            row["payer_bank"] = payer.clone().into();
            row["payee_bank"] = payee.clone().into();
            row
        })
        .collect();
    (json!(daily), json!(shop), json!(banks))
}

/// Waits until the API says exactly what the switch's documents say.
async fn assert_summaries_converge(http: &reqwest::Client, base: &str, docs: &[Value], what: &str) {
    let e = expected(docs);
    let want = want(&e);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = actual(http, base, &e).await;
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: analytics never matched the switch\n want {}\n got  {}",
                json!([want.0, want.1, want.2]),
                json!([got.0, got.1, got.2])
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts a payment body with a fresh key; returns its txn_id.
async fn pay(w: &World, body: Value) -> String {
    let (status, answer) =
        post_keyed(&w.http, &format!("{}/v1/transactions", w.switch.url), &body).await;
    assert!(status == 202 || status == 200, "{body}: {status} {answer}");
    answer["txn_id"].as_str().expect("txn_id").to_string()
}

/// A world whose switch publishes to its own exchange, with a merchant.
async fn world(exchange: &TestExchange, extra: &[&str]) -> World {
    let mut flags = vec!["--events-exchange", exchange.name.as_str()];
    flags.extend_from_slice(FAST);
    flags.extend_from_slice(extra);
    let w = World::start(&flags, &[], &[]).await;
    let (status, body) = put_json(
        &w.http,
        &format!("{}/v1/admin/vpas/{SHOP}", w.switch.url),
        &json!({"bank_code": "ICICI", "account": "ACC003", "name": "Shop", "merchant": true, "mcc": "5411"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    w
}

/// Every kind of payment and ending: P2P successes, a failure (no money), a
/// reversal (frozen payee), P2M to the shop, a collect the shop asked for,
/// and a refund of a P2M. Returns the terminal status documents.
async fn traffic(w: &World, p2p: usize) -> Vec<Value> {
    let mut ids = Vec::new();
    for i in 0..p2p {
        let amount = format!("1.{:02}", i % 100);
        ids.push(pay(w, json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": amount})).await);
    }
    ids.push(pay(w, json!({"type": "P2P", "payer_vpa": "dave@hdfc", "payee_vpa": "bob@icici", "amount": "5.00"})).await);
    ids.push(pay(w, json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "carol@icici", "amount": "2.50"})).await);
    let mut p2m = Vec::new();
    for amount in ["10.00", "20.25", "30.50"] {
        p2m.push(pay(w, json!({"type": "P2M", "payer_vpa": "erin@hdfc", "payee_vpa": SHOP, "amount": amount})).await);
    }
    ids.extend(p2m.iter().cloned());
    // The shop asks alice for money; she approves.
    let (s, collect) = post_keyed(
        &w.http,
        &format!("{}/v1/collects", w.switch.url),
        &json!({"payee_vpa": SHOP, "payer_vpa": "alice@hdfc", "amount": "7.77"}),
    )
    .await;
    assert_eq!(s, 201, "{collect}");
    let id = collect["collect_id"].as_str().expect("collect_id");
    let (s, approved) = post_keyed(
        &w.http,
        &format!("{}/v1/collects/{id}/approve", w.switch.url),
        &json!({}),
    )
    .await;
    assert_eq!(s, 202, "{approved}");
    ids.push(approved["txn_id"].as_str().expect("txn_id").to_string());
    let first = w.wait_terminal(&p2m[0], Duration::from_secs(30)).await;
    assert_eq!(first["status"], "SUCCESS", "{first}");
    ids.push(
        pay(
            w,
            json!({"type": "REFUND", "original_txn_id": p2m[0], "amount": "4.00"}),
        )
        .await,
    );
    let mut docs = Vec::new();
    for id in ids {
        docs.push(w.wait_terminal(&id, Duration::from_secs(30)).await);
    }
    let statuses: Vec<&str> = docs.iter().filter_map(|d| d["status"].as_str()).collect();
    assert!(
        statuses.contains(&"FAILED") && statuses.contains(&"REVERSED"),
        "{statuses:?}"
    );
    docs
}

async fn amqp_channel() -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

/// Publishes raw bodies to the exchange (routing key `txn.replay.x`).
async fn publish(exchange: &str, messages: &[(Option<String>, Vec<u8>)]) {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let (conn, ch) = amqp_channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for (id, body) in messages {
        let mut props = lapin::BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = id {
            props = props.with_message_id(id.as_str().into());
        }
        ch.basic_publish(
            exchange.into(),
            "txn.replay.x".into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// Messages in a queue (passive declare).
async fn queue_depth(queue: &str) -> u32 {
    use lapin::options::QueueDeclareOptions;
    let (conn, ch) = amqp_channel().await;
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("queue exists");
    let _ = conn.close(200, "bye".into()).await;
    q.message_count()
}

async fn status(http: &reqwest::Client, base: &str) -> Value {
    let (s, body) = get_json(http, &format!("{base}/v1/analytics/status")).await;
    assert_eq!(s, 200, "{body}");
    body
}

/// Every raw event stored, as (message id, body).
async fn raw_events(db: &TestDb) -> Vec<(Option<String>, Vec<u8>)> {
    let client = db.client().await;
    client
        .query(
            "SELECT message_id, body FROM analytics_raw ORDER BY received_at DESC",
            &[],
        )
        .await
        .expect("raw")
        .iter()
        .map(|r| (Some(r.get(0)), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_equal_the_switch_after_replayed_duplicates_and_a_rebuild() {
    let exchange = TestExchange::new();
    let collector = EventCollector::start(&exchange.name).await;
    let w = world(&exchange, &["--analytics", "--analytics-batch-ms", "5"]).await;
    let docs = traffic(&w, 12).await;
    assert_summaries_converge(&w.http, &w.switch.url, &docs, "live ingest").await;

    // Events carry the banks, the creation time and the merchant's full VPA
    // (a person's VPA stays masked).
    let events = collector.snapshot();
    let p2m = events
        .iter()
        .map(|(_, e)| e)
        .find(|e| e["txn_type"] == "P2M")
        .expect("a P2M event");
    assert_eq!(
        (p2m["merchant_vpa"].as_str(), p2m["payer_bank"].as_str()),
        (Some(SHOP), Some("HDFC"))
    );
    assert!(
        p2m["payer_vpa"].as_str().unwrap_or("").contains("***@"),
        "{p2m}"
    );
    assert!(p2m["created_at"].is_string(), "{p2m}");

    // Replay: every stored event published again, newest first.
    let raw = raw_events(&w.switch_db).await;
    let ingested = status(&w.http, &w.switch.url).await["events_ingested"]
        .as_i64()
        .unwrap_or(0);
    assert_eq!(ingested as usize, raw.len());
    publish(&exchange.name, &raw).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&w.http, &w.switch.url).await;
        if s["duplicates"].as_i64().unwrap_or(0) >= raw.len() as i64 {
            assert_eq!(s["events_ingested"].as_i64(), Some(ingested), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "replay not consumed: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_summaries_converge(&w.http, &w.switch.url, &docs, "after replay").await;

    // Rebuild from the raw store, after spoiling the summaries.
    let client = w.switch_db.client().await;
    client
        .batch_execute(
            "UPDATE analytics_daily SET total = total + 1000, success = 0;
             DELETE FROM analytics_merchant_daily; DELETE FROM analytics_bank_daily;
             DELETE FROM analytics_txns;",
        )
        .await
        .expect("spoil");
    let days = expected(&docs).daily.keys().cloned().collect::<Vec<_>>();
    // From the day before: a day without raw events is skipped, not zeroed.
    let first: chrono::NaiveDate = days.first().expect("day").parse().expect("date");
    let from = first.pred_opt().expect("a day before").to_string();
    let out = std::process::Command::new(BIN)
        .args(["analytics", "rebuild", "--database-url", &w.switch_db.url])
        .args(["--from", &from, "--to", days.last().expect("day")])
        .output()
        .expect("run rebuild");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("rebuilt") && said.contains("skipped"),
        "{said}"
    );
    assert_summaries_converge(&w.http, &w.switch.url, &docs, "after rebuild").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letters_and_rejects_and_the_stream_goes_on() {
    let exchange = TestExchange::new();
    let w = world(&exchange, &["--analytics", "--analytics-batch-ms", "5"]).await;
    // One good payment first: the ingest's queue exists and is bound.
    let first = pay(&w, json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"})).await;
    let mut docs = vec![w.wait_terminal(&first, Duration::from_secs(30)).await];
    assert_summaries_converge(&w.http, &w.switch.url, &docs, "first payment").await;

    let now = chrono::Utc::now().to_rfc3339();
    let event = |txn: uuid::Uuid, amount: &str, status: &str| {
        json!({
            "event_id": format!("{txn}:1"), "type": "txn.initiated", "txn_id": txn, "seq": 1,
            "txn_type": "P2P", "status": status, "state": "PENDING", "amount": amount,
            "payer_vpa": "al***@hdfc", "payee_vpa": "bo***@icici", "payer_bank": "HDFC",
            "payee_bank": "ICICI", "created_at": now, "at": now
        })
    };
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let body = |v: Value| serde_json::to_vec(&v).expect("json");
    publish(
        &exchange.name,
        &[
            (None, b"this is not json".to_vec()),
            (Some(format!("{a}:1")), body(event(a, "1.005", "PENDING"))),
            (None, body(event(b, "1.00", "LOST"))),
        ],
    )
    .await;
    // The stream goes on: payments after the poison are counted.
    for amount in ["2.00", "3.00"] {
        let t = pay(&w, json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": amount})).await;
        docs.push(w.wait_terminal(&t, Duration::from_secs(30)).await);
    }
    assert_summaries_converge(&w.http, &w.switch.url, &docs, "after poison").await;
    let s = status(&w.http, &w.switch.url).await;
    assert_eq!(s["events_rejected"], 3, "{s}");

    let client = w.switch_db.client().await;
    let reasons: Vec<String> = client
        .query("SELECT reason FROM analytics_rejects ORDER BY reason", &[])
        .await
        .expect("rejects")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("BAD_AMOUNT"), "{reasons:?}");
    assert!(reasons[1].starts_with("NOT_JSON"), "{reasons:?}");
    assert!(reasons[2].starts_with("UNKNOWN_STATUS"), "{reasons:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue_depth(&format!("{}.dead", exchange.name)).await < 3 {
        assert!(
            Instant::now() < deadline,
            "the dead-letter queue did not get the 3 poison messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_stream_counts_every_payment_once_after_restart() {
    let exchange = TestExchange::new();
    let w = world(&exchange, &[]).await;
    // An old raw partition, which --analytics-retention-days drops.
    let client = w.switch_db.client().await;
    client
        .batch_execute(
            "CREATE TABLE analytics_raw_20200101 PARTITION OF analytics_raw
             FOR VALUES FROM ('2020-01-01') TO ('2020-01-02')",
        )
        .await
        .expect("old partition");
    let (db, name) = (w.switch_db.url.clone(), exchange.name.clone());
    let mut ingest = ChildServer::start("analytics", move |port| {
        [
            "analytics",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &db,
            "--events-exchange",
            &name,
            "--analytics-batch",
            "16",
            "--analytics-batch-ms",
            "5",
            "--analytics-retention-days",
            "30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    });
    // Payments flow while the consumer is killed and started again.
    let sender = {
        let (url, http) = (w.switch.url.clone(), w.http.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..120 {
                let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": format!("0.{:02}", i % 90 + 10)});
                let (s, a) = post_keyed(&http, &format!("{url}/v1/transactions"), &body).await;
                assert_eq!(s, 202, "{a}");
                ids.push(a["txn_id"].as_str().expect("txn_id").to_string());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&w.http, &w.switch.url).await["events_ingested"]
        .as_i64()
        .unwrap_or(0)
        < 40
    {
        assert!(Instant::now() < deadline, "the ingest never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ingest.kill9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    ingest.restart();
    let metrics = w
        .http
        .get(format!("{}/metrics", ingest.url))
        .send()
        .await
        .expect("metrics");
    assert!(
        metrics
            .text()
            .await
            .unwrap_or_default()
            .contains("upi_analytics_lag_seconds")
    );
    let ids = sender.await.expect("sender");
    let mut docs = Vec::new();
    for id in ids {
        docs.push(w.wait_terminal(&id, Duration::from_secs(30)).await);
    }
    assert_summaries_converge(&w.http, &w.switch.url, &docs, "after kill and restart").await;
    // Each event once in the clean store's counts, the old partition gone.
    let s = status(&w.http, &w.switch.url).await;
    let raw = raw_events(&w.switch_db).await.len() as i64;
    assert_eq!(s["events_ingested"].as_i64(), Some(raw), "{s}");
    let old: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'analytics_raw_20200101'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(old, 0, "retention keeps the 2020 partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_needs_the_operator_token_and_refuses_bad_ranges_with_codes() {
    let exchange = TestExchange::new();
    let token = "analytics-token-1";
    let w = world(&exchange, &["--admin-token", token]).await;
    let base = &w.switch.url;
    let (s, _) = get_json(&http(), &format!("{base}/v1/analytics/daily")).await;
    assert_eq!(s, 401);
    let (s, body) = get_json(&w.http, &format!("{base}/v1/analytics/daily")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["days"].as_array().map(Vec::len),
        Some(1),
        "today, zeros: {body}"
    );
    assert_eq!(body["days"][0]["total"], 0);
    for (query, status, code) in [
        ("from=2026-13-01", 422, "INVALID_DATE"),
        ("to=yesterday", 422, "INVALID_DATE"),
        ("from=2026-12-02&to=2026-12-01", 422, "INVALID_DATE_RANGE"),
        ("from=2020-01-01&to=2026-12-01", 422, "DATE_RANGE_TOO_LONG"),
        ("from=2026-12-01&from=2026-12-02", 400, "INVALID_QUERY"),
    ] {
        for path in ["daily", "banks/daily", "merchants/shop@icici/daily"] {
            let resp = w
                .http
                .get(format!("{base}/v1/analytics/{path}?{query}"))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status().as_u16(), status, "{path}?{query}");
            let ct = resp.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .to_string();
            assert_eq!(ct, "application/problem+json", "{path}?{query}");
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["code"], code, "{path}?{query}: {body}");
        }
    }
    let (s, body) = get_json(
        &w.http,
        &format!("{base}/v1/analytics/merchants/not-a-vpa/daily"),
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (422, Some("INVALID_VPA")));
    let s = status(&w.http, base).await;
    for key in ["events_ingested", "events_rejected", "lag_seconds"] {
        assert!(s[key].is_number(), "{key}: {s}");
    }
}
