//! Domain events end to end (real Postgres, RabbitMQ, banks, switch process):
//! every transition of every transaction reaches a consumer of `upi.events`
//! in order, nothing is lost when the relay's connection drops, the SSE
//! stream shows a transaction from PENDING to its end, and events a consumer
//! rejects are counted in `upi_dead_letter_messages`.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Pays `n` payments of every kind (SUCCESS, FAILED, REVERSED), `conc` at a time.
async fn mixed_traffic(world: &World, n: usize, conc: usize) -> Vec<String> {
    use futures::StreamExt;
    let plans: Vec<(&str, &str)> = (0..n)
        .map(|i| match i % 4 {
            0 | 1 => ("alice@hdfc", "bob@icici"),
            2 => ("dave@hdfc", "frank@icici"), // FAILED: no money
            _ => ("erin@hdfc", "carol@icici"), // REVERSED: payee frozen
        })
        .collect();
    let ids: Vec<String> = futures::stream::iter(plans)
        .map(|(payer, payee)| async move {
            let (status, body) = world.pay(payer, payee, "1.00", None).await;
            assert_eq!(status, 202, "{body}");
            body["txn_id"].as_str().expect("txn_id").to_string()
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    ids
}

/// Waits until the relay has nothing left to publish.
async fn wait_outbox_empty(world: &World, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, body) = get_json(&world.http, &format!("{}/v1/ops/outbox", world.switch.url)).await;
        if body["pending"] == 0 && body["connected"] == true {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "outbox not drained after {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks that the collector saw, for every transaction, exactly the events
/// its checkpoints record, in order (duplicates allowed, deduped by
/// message_id). Returns (events, duplicates).
async fn assert_every_transition_arrived(
    world: &World,
    collector: &EventCollector,
    ids: &[String],
) -> (usize, usize) {
    // Expected: each transaction's steps, as GET shows them.
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for id in ids {
        let body = world.wait_terminal(id, Duration::from_secs(60)).await;
        let states = body["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["state"].as_str().expect("state").to_string())
            .collect();
        expected.insert(id.clone(), states);
    }
    let total: usize = expected.values().map(Vec::len).sum();
    // Wait (bounded) until every distinct event arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    let received = loop {
        let got = collector.snapshot();
        let distinct: HashSet<&String> = got
            .iter()
            .filter(|(_, e)| expected.contains_key(e["txn_id"].as_str().unwrap_or("")))
            .map(|(id, _)| id)
            .collect();
        if distinct.len() >= total || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut per_txn: HashMap<String, Vec<(i64, String, String)>> = HashMap::new();
    let mut duplicates = 0;
    for (message_id, event) in &received {
        let txn = event["txn_id"].as_str().unwrap_or_default().to_string();
        if !expected.contains_key(&txn) {
            continue;
        }
        assert_eq!(
            message_id,
            event["event_id"].as_str().unwrap_or_default(),
            "message_id is the event id"
        );
        if !seen.insert(message_id.clone()) {
            duplicates += 1;
            continue;
        }
        per_txn.entry(txn).or_default().push((
            event["seq"].as_i64().unwrap_or(-1),
            event["state"].as_str().unwrap_or_default().to_string(),
            event["type"].as_str().unwrap_or_default().to_string(),
        ));
        // Events travel further than the API: VPAs are masked.
        assert!(
            event["payer_vpa"].as_str().unwrap_or("").contains("***@"),
            "{event}"
        );
        assert!(event["amount"] == "1.00", "{event}");
    }
    for (txn, states) in &expected {
        let got = per_txn.get(txn).cloned().unwrap_or_default();
        let seqs: Vec<i64> = got.iter().map(|g| g.0).collect();
        let want_seqs: Vec<i64> = (1..=states.len() as i64).collect();
        assert_eq!(
            seqs, want_seqs,
            "events of {txn} missing or out of order: {got:?}"
        );
        let got_states: Vec<String> = got.iter().map(|g| g.1.clone()).collect();
        assert_eq!(&got_states, states, "events of {txn} are its checkpoints");
        let last = &got.last().expect("events").2;
        assert!(
            ["txn.succeeded", "txn.failed", "txn.reversed"].contains(&last.as_str()),
            "{txn} ends with a terminal event, not {last}"
        );
        assert_eq!(got[0].2, "txn.initiated");
    }
    (total, duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_transition_of_every_transaction_arrives_in_order() {
    let exchange = TestExchange::new();
    let collector = EventCollector::start(&exchange.name).await;
    let world = World::start(&["--events-exchange", &exchange.name], &[], &[]).await;
    let ids = mixed_traffic(&world, 300, 32).await;
    let (events, duplicates) = assert_every_transition_arrived(&world, &collector, &ids).await;
    let outbox = wait_outbox_empty(&world, Duration::from_secs(30)).await;
    println!("300 transactions, {events} events, {duplicates} duplicates; outbox {outbox}");
    assert!(
        events >= 300 * 3,
        "at least initiated, one step, terminal each"
    );
    // Terminal mix really covers every ending.
    let metrics = world.metrics_text().await;
    for status in ["SUCCESS", "FAILED", "REVERSED"] {
        assert!(
            metric(
                &metrics,
                "upi_transactions_finished_total",
                &[("status", status)]
            ) > 0.0,
            "{status} missing in metrics"
        );
    }
    // Each family an operator needs, with values that fit the run.
    let created = metric(&metrics, "upi_transactions_created_total", &[]);
    assert_eq!(created, 300.0);
    assert_eq!(metric(&metrics, "upi_sagas_in_flight", &[]), 0.0);
    assert_eq!(metric(&metrics, "upi_outbox_pending", &[]), 0.0);
    assert!(metric(&metrics, "upi_outbox_published_total", &[]) >= events as f64);
    assert!(metrics.contains("upi_outbox_lag_seconds"));
    assert!(
        metric(
            &metrics,
            "upi_http_requests_total",
            &[("route", "/v1/transactions"), ("status", "202")]
        ) >= 300.0
    );
    assert!(
        metric(
            &metrics,
            "upi_http_request_duration_seconds_count",
            &[("route", "/v1/transactions")]
        ) >= 300.0
    );
    assert!(
        metric(
            &metrics,
            "upi_bank_calls_total",
            &[
                ("bank", "HDFC"),
                ("operation", "debit"),
                ("endpoint", &world.hdfc.url)
            ]
        ) >= 300.0,
        "debits by endpoint"
    );
    assert!(
        metric(
            &metrics,
            "upi_bank_call_duration_seconds_count",
            &[("bank", "ICICI"), ("operation", "credit")]
        ) > 0.0
    );
    // A saga's first step is PENDING, or RESUMED when a sweep started it.
    let first_steps = metric(
        &metrics,
        "upi_saga_step_duration_seconds_count",
        &[("step", "PENDING")],
    ) + metric(
        &metrics,
        "upi_saga_step_duration_seconds_count",
        &[("step", "RESUMED")],
    );
    assert!(first_steps >= 300.0, "{first_steps}");
    assert!(
        metric(
            &metrics,
            "upi_saga_step_duration_seconds_count",
            &[("step", "DEBITED")]
        ) > 0.0
    );
    assert!(
        metric(
            &metrics,
            "upi_checkpoint_write_duration_seconds_count",
            &[("outcome", "ok")]
        ) >= 600.0
    );
    assert_eq!(
        metric(&metrics, "upi_bank_circuit_state", &[("bank", "HDFC")]),
        0.0,
        "closed"
    );
    assert!(metrics.contains("upi_bank_circuit_state{bank=\"ICICI\""));
}

/// Sum of the samples of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_relay_connection_loses_no_event() {
    let exchange = TestExchange::new();
    let collector = EventCollector::start(&exchange.name).await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let world = World::start(
        &["--events-exchange", &exchange.name, "--amqp-url", &amqp],
        &[],
        &[],
    )
    .await;
    wait_outbox_empty(&world, Duration::from_secs(30)).await;
    let first = mixed_traffic(&world, 100, 16).await;
    // Cut every connection and keep RabbitMQ unreachable for two seconds
    // while payments go on: their events wait in the outbox.
    proxy.refuse(true);
    proxy.cut();
    let during = mixed_traffic(&world, 100, 16).await;
    for id in &during {
        world.wait_terminal(id, Duration::from_secs(60)).await;
    }
    let (_, stalled) = get_json(&world.http, &format!("{}/v1/ops/outbox", world.switch.url)).await;
    let (_, ready) = get_json(&world.http, &format!("{}/readyz", world.switch.url)).await;
    assert_eq!(ready["checks"]["rabbitmq"], "degraded", "{ready}");
    assert_eq!(
        ready["status"], "ready",
        "payments do not need RabbitMQ: {ready}"
    );
    proxy.refuse(false);
    let after = mixed_traffic(&world, 100, 16).await;
    let ids: Vec<String> = first.into_iter().chain(during).chain(after).collect();
    let (events, duplicates) = assert_every_transition_arrived(&world, &collector, &ids).await;
    let outbox = wait_outbox_empty(&world, Duration::from_secs(30)).await;
    println!(
        "300 transactions, {events} events, {duplicates} duplicates; while cut: {stalled}; after: {outbox}"
    );
    assert!(
        stalled["pending"].as_i64().unwrap_or(0) > 0,
        "events waited in the outbox while RabbitMQ was away: {stalled}"
    );
    assert!(
        outbox["sessions"].as_u64().unwrap_or(0) >= 2,
        "the relay reconnected: {outbox}"
    );
    let metrics = world.metrics_text().await;
    assert!(
        metric(&metrics, "upi_rabbitmq_errors_total", &[]) > 0.0,
        "the drop was counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_a_consumer_rejects_are_counted_as_dead_letters() {
    use lapin::options::*;
    use lapin::types::{AMQPValue, FieldTable};
    let exchange = TestExchange::new();
    let world = World::start(&["--events-exchange", &exchange.name], &[], &[]).await;
    let series = format!(
        "upi_dead_letter_messages{{queue=\"{}.dead\"}} ",
        exchange.name
    );
    let depth_within = |want: f64, limit: Duration| {
        let (world, series) = (&world, &series);
        async move {
            let deadline = Instant::now() + limit;
            loop {
                let text = world.metrics_text().await;
                let depth = text
                    .lines()
                    .find_map(|l| l.strip_prefix(series.as_str()))
                    .and_then(|v| v.parse::<f64>().ok());
                if depth == Some(want) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{series}is {depth:?}, not {want}, after {limit:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // The relay's session reads the queue at once: the series is there, at 0.
    depth_within(0.0, Duration::from_secs(15)).await;

    // A consumer's queue names the dead-letter exchange (as the README asks);
    // the consumer rejects two messages without requeueing them.
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let ch = conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(format!("{}.dlx", exchange.name).into()),
    );
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("consumer queue");
    for body in [b"first".as_slice(), b"second".as_slice()] {
        ch.basic_publish(
            "".into(),
            q.name().clone(),
            BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let mut rejected = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rejected < 2 {
        assert!(Instant::now() < deadline, "rejected {rejected} of 2");
        match ch
            .basic_get(q.name().clone(), BasicGetOptions::default())
            .await
            .expect("get")
        {
            Some(message) => {
                message
                    .delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                    .expect("reject");
                rejected += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // Read every 10 s by the relay leader.
    depth_within(2.0, Duration::from_secs(25)).await;
    let _ = conn.close(200, "bye".into()).await;
}

async fn open_sse(world: &World, id: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let url = format!("{}/v1/transactions/{id}/events", world.switch.url);
    let mut req = world.http.get(url);
    if let Some(h) = last_event_id {
        req = req.header("Last-Event-ID", h);
    }
    req.send().await.unwrap()
}

/// Reads an SSE response to its end: (event type, data) per frame.
async fn read_sse(mut resp: reqwest::Response, limit: Duration) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("stream ended in time")
            .expect("chunk");
        let Some(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_string());
                }
                if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            if let (Some(e), Some(d)) = (event, data) {
                frames.push((e, d));
            }
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_shows_a_transaction_from_pending_to_its_end() {
    let exchange = TestExchange::new();
    // A slow payee bank keeps the saga PENDING while the client watches.
    let world = World::start(
        &["--events-exchange", &exchange.name],
        &[],
        &["--latency-ms", "700"],
    )
    .await;
    wait_outbox_empty(&world, Duration::from_secs(30)).await;
    let (status, body) = world.pay("alice@hdfc", "bob@icici", "5.00", None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["txn_id"].as_str().unwrap().to_string();
    let resp = open_sse(&world, &id, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let frames = read_sse(resp, Duration::from_secs(30)).await;
    let types: Vec<&str> = frames.iter().map(|f| f.0.as_str()).collect();
    println!("SSE: {types:?}");
    assert_eq!(types.first(), Some(&"txn.initiated"), "{frames:?}");
    assert_eq!(frames[0].1["status"], "PENDING");
    assert_eq!(types.last(), Some(&"txn.succeeded"), "{frames:?}");
    assert!(types.contains(&"txn.debited"), "{frames:?}");
    let seqs: Vec<i64> = frames
        .iter()
        .map(|f| f.1["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(
        frames.iter().any(|f| f.1["via"] == "rabbitmq"),
        "live steps came through RabbitMQ: {frames:?}"
    );

    // A finished transaction: its history, then the stream ends.
    let resp = open_sse(&world, &id, None).await;
    let again = read_sse(resp, Duration::from_secs(10)).await;
    assert_eq!(again.len(), frames.len());
    // Last-Event-ID resumes after that event.
    let resp = open_sse(&world, &id, Some(&format!("{id}:1"))).await;
    let rest = read_sse(resp, Duration::from_secs(10)).await;
    assert_eq!(rest.len(), frames.len() - 1);
    assert_eq!(rest[0].1["seq"], 2);
    // Resumed with the terminal event's id (what a browser does after the
    // stream ended): nothing more, and the stream ends at once.
    let last = format!("{id}:{}", frames.len());
    let started = std::time::Instant::now();
    let resp = open_sse(&world, &id, Some(&last)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let none = read_sse(resp, Duration::from_secs(10)).await;
    assert!(none.is_empty(), "{none:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stream ended instead of idling: {:?}",
        started.elapsed()
    );

    // Client mistakes get problem+json.
    for (path, header, want, code) in [
        ("not-a-uuid".to_string(), None, 400, "INVALID_TXN_ID"),
        (uuid::Uuid::new_v4().to_string(), None, 404, "TXN_NOT_FOUND"),
        (id.clone(), Some("junk"), 400, "INVALID_LAST_EVENT_ID"),
    ] {
        let mut req = world.http.get(format!(
            "{}/v1/transactions/{path}/events",
            world.switch.url
        ));
        if let Some(h) = header {
            req = req.header("Last-Event-ID", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code);
    }
}
