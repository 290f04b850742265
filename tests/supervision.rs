//! Supervision against real banks: circuit breakers opening when a bank dies
//! and closing when it returns, `kill -9` of a bank under load, operators
//! restarting adapters while traffic flows, and circuit overrides. Each story
//! ends with the banks' change feeds agreeing with every transaction.

mod common;

use common::{World, get_json, op_statuses, put_json};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Short deadlines and fast probes; debited sagas wait long for a payee bank.
/// The brownout test measures a success rate: it runs alone (the others of
/// this file share the two cores with each other, not with it).
static ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const FLAGS: &[&str] = &[
    "--bank-timeout-ms",
    "500",
    "--debit-deadline-ms",
    "3000",
    "--credit-deadline-ms",
    "60000",
    "--retry-max-ms",
    "300",
    "--probe-interval-ms",
    "200",
    "--breaker-cool-down-ms",
    "500",
];

async fn ops_bank(world: &World, code: &str) -> Value {
    let (status, body) = get_json(&world.http, &format!("{}/v1/ops/banks", world.switch.url)).await;
    assert_eq!(status, 200, "{body}");
    body["banks"]
        .as_array()
        .and_then(|banks| banks.iter().find(|b| b["code"] == code).cloned())
        .unwrap_or(Value::Null)
}

/// Polls `/v1/ops/banks` until `pred` holds for the bank, for at most 20 s.
async fn wait_bank(world: &World, code: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bank = ops_bank(world, code).await;
        if pred(&bank) {
            return bank;
        }
        assert!(
            Instant::now() < deadline,
            "{code} never became {what}: {bank}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn circuits(bank: &Value) -> Vec<String> {
    bank["endpoints"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| x["circuit"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends payments from `pairs` in a loop until `stop` is set; returns txn ids.
fn traffic(
    world: &World,
    pairs: Vec<(&'static str, &'static str)>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let http = world.http.clone();
    let url = world.switch.url.clone();
    tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut i = 0usize;
        while !*stop.borrow() {
            let (payer, payee) = pairs[i % pairs.len()];
            i += 1;
            let resp = http
                .post(format!("{url}/v1/transactions"))
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&json!({"type": "P2P", "payer_vpa": payer, "payee_vpa": payee, "amount": "1.00"}))
                .send()
                .await;
            if let Ok(r) = resp
                && let Ok(body) = r.json::<Value>().await
                && let Some(id) = body["txn_id"].as_str()
            {
                ids.push(id.to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ids
    })
}

/// Waits for every transaction to end and checks it against the banks' feeds.
async fn settle_and_check(world: &World, ids: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut txns = Vec::new();
    for id in ids {
        let txn = world.wait_terminal(id, Duration::from_secs(60)).await;
        *counts
            .entry(txn["status"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
        txns.push(txn);
    }
    world.assert_banks_agree(&txns).await;
    counts
}

#[tokio::test]
async fn breaker_opens_when_a_bank_dies_and_closes_when_it_returns() {
    let _shared = ALONE.read().await;
    let mut world = World::start(FLAGS, &[], &[]).await;
    wait_bank(&world, "HDFC", "UP", |b| b["health"] == "UP").await;
    world.hdfc.kill9();
    let bank = wait_bank(&world, "HDFC", "DOWN", |b| b["health"] == "DOWN").await;
    assert_eq!(circuits(&bank), ["OPEN"]);

    // New transactions touching the dead bank fail fast, with nothing debited.
    for (payer, payee) in [("alice@hdfc", "bob@icici"), ("bob@icici", "alice@hdfc")] {
        let started = Instant::now();
        let (status, txn) = world.pay(payer, payee, "5.00", Some(10_000)).await;
        assert_eq!(status, 200, "{txn}");
        assert_eq!(txn["status"], "FAILED", "{txn}");
        assert_eq!(txn["reason"]["code"], "BANK_UNAVAILABLE");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "failed fast, not after the debit deadline"
        );
    }

    world.hdfc.restart();
    let bank = wait_bank(&world, "HDFC", "UP again", |b| b["health"] == "UP").await;
    assert_eq!(circuits(&bank), ["CLOSED"]);
    let (_, txn) = world
        .pay("alice@hdfc", "bob@icici", "5.00", Some(10_000))
        .await;
    assert_eq!(txn["status"], "SUCCESS", "{txn}");
    let mut ops = op_statuses(&world.http, &world.hdfc.url).await;
    ops.extend(op_statuses(&world.http, &world.icici.url).await);
    let debits = ops.keys().filter(|k| k.ends_with(":debit")).count();
    assert_eq!(debits, 1, "only the last payment reached the payer's bank");
}

#[tokio::test]
async fn bank_killed_under_load_debited_sagas_wait_and_finish() {
    let _shared = ALONE.read().await;
    let mut world = World::start(FLAGS, &[], &[]).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let load = traffic(
        &world,
        vec![("alice@hdfc", "bob@icici"), ("erin@hdfc", "frank@icici")],
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    world.icici.kill9();
    wait_bank(&world, "ICICI", "DOWN", |b| b["health"] == "DOWN").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    world.icici.restart();
    wait_bank(&world, "ICICI", "UP", |b| b["health"] == "UP").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let _ = stop_tx.send(true);
    let ids = load.await.expect("traffic");
    assert!(ids.len() > 20, "traffic flowed: {}", ids.len());
    let counts = settle_and_check(&world, &ids).await;
    assert!(
        counts.get("SUCCESS").copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    assert!(
        counts.get("FAILED").copied().unwrap_or(0) > 0,
        "new payments failed fast while ICICI was down: {counts:?}"
    );
    // Debited sagas waited for ICICI instead of giving up: none was reversed.
    assert_eq!(
        counts.get("REVERSED").copied().unwrap_or(0),
        0,
        "{counts:?}"
    );
}

#[tokio::test]
async fn operator_restarts_adapters_while_traffic_flows() {
    let _shared = ALONE.read().await;
    let world = World::start(FLAGS, &[], &[]).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let load = traffic(
        &world,
        vec![("alice@hdfc", "bob@icici"), ("bob@icici", "erin@hdfc")],
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for _ in 0..3 {
        let resp = world
            .http
            .post(format!(
                "{}/v1/admin/banks/HDFC/adapters/restart",
                world.switch.url
            ))
            .send()
            .await
            .expect("restart");
        assert_eq!(resp.status().as_u16(), 202);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let bank = wait_bank(&world, "HDFC", "restarted", |b| {
        b["adapter_restarts"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(circuits(&bank), ["CLOSED"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let ids = load.await.expect("traffic");
    let counts = settle_and_check(&world, &ids).await;
    assert_eq!(
        counts.get("SUCCESS").copied().unwrap_or(0),
        ids.len(),
        "no transaction lost or failed: {counts:?}"
    );
}

#[tokio::test]
async fn operators_force_circuits_open_and_closed() {
    let _shared = ALONE.read().await;
    let world = World::start(FLAGS, &[], &[]).await;
    let url = |p: &str| format!("{}/v1/admin/banks/{p}", world.switch.url);
    let (status, bank) = put_json(
        &world.http,
        &url("HDFC/circuit"),
        &json!({"endpoint": null, "mode": "open"}),
    )
    .await;
    assert_eq!(status, 200, "{bank}");
    assert_eq!(bank["health"], "DOWN");
    let (_, txn) = world
        .pay("alice@hdfc", "bob@icici", "2.00", Some(10_000))
        .await;
    assert_eq!(txn["status"], "FAILED", "{txn}");
    assert_eq!(txn["reason"]["code"], "BANK_UNAVAILABLE");

    let endpoint = world.hdfc.url.clone();
    let (status, bank) = put_json(
        &world.http,
        &url("HDFC/circuit"),
        &json!({"endpoint": endpoint, "mode": "auto"}),
    )
    .await;
    assert_eq!(status, 200, "{bank}");
    assert_eq!(bank["health"], "UP");
    let (_, txn) = world
        .pay("alice@hdfc", "bob@icici", "2.00", Some(10_000))
        .await;
    assert_eq!(txn["status"], "SUCCESS", "{txn}");

    let (status, body) = put_json(
        &world.http,
        &url("HDFC/circuit"),
        &json!({"endpoint": null, "mode": "sideways"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("INVALID_MODE")));
    let (status, body) = put_json(
        &world.http,
        &url("HDFC/circuit"),
        &json!({"endpoint": "http://nowhere:1", "mode": "open"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("UNKNOWN_ENDPOINT"))
    );
    let (status, body) = put_json(
        &world.http,
        &url("NOPE/circuit"),
        &json!({"endpoint": null, "mode": "open"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("UNKNOWN_BANK")));

    let all = ops_bank(&world, "ICICI").await;
    for field in [
        "url",
        "circuit",
        "success_rate",
        "latency_ms_p50",
        "latency_ms_p99",
        "in_flight",
    ] {
        assert!(
            !all["endpoints"][0][field].is_null(),
            "GET /v1/ops/banks lists {field}: {all}"
        );
    }
}

/// Sends `n` payments, `batch` at a time, and returns their ids.
async fn burst(world: &World, n: usize, batch: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let pairs = [("alice@hdfc", "bob@icici"), ("erin@hdfc", "frank@icici")];
    for chunk in 0..n.div_ceil(batch) {
        let sends = (0..batch.min(n - chunk * batch)).map(|i| {
            let (payer, payee) = pairs[i % pairs.len()];
            world.pay(payer, payee, "1.00", None)
        });
        for (status, body) in futures::future::join_all(sends).await {
            assert_eq!(status, 202, "{body}");
            ids.push(body["txn_id"].as_str().expect("id").to_string());
        }
    }
    ids
}

fn success_rate(counts: &HashMap<String, usize>, n: usize) -> f64 {
    counts.get("SUCCESS").copied().unwrap_or(0) as f64 * 100.0 / n as f64
}

#[tokio::test]
async fn brownout_on_the_primary_endpoint_barely_dents_success() {
    let _alone = ALONE.write().await;
    let spare = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let secondary_port = spare.local_addr().expect("addr").port();
    drop(spare);
    let port = secondary_port.to_string();
    // Routing is what is measured here, not deadlines: a slow box adds
    // hundreds of ms to the brownout's 200±100, so calls get room to answer.
    let flags: Vec<&str> = FLAGS
        .chunks(2)
        .flat_map(|kv| match kv[0] {
            "--bank-timeout-ms" => [kv[0], "2000"],
            "--debit-deadline-ms" => [kv[0], "15000"],
            _ => [kv[0], kv[1]],
        })
        .collect();
    let world = World::start(&flags, &["--extra-port", &port], &[]).await;
    let primary = world.hdfc.url.clone();
    let secondary = format!("http://127.0.0.1:{port}");
    let (status, body) = put_json(
        &world.http,
        &format!("{}/v1/admin/banks/HDFC", world.switch.url),
        &json!({"name": "HDFC Bank", "endpoints": [
            {"url": primary, "priority": 0}, {"url": secondary, "priority": 1}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_bank(&world, "HDFC", "UP on both endpoints", |b| {
        b["health"] == "UP" && circuits(b).len() == 2
    })
    .await;

    const N: usize = 300;
    let ids = burst(&world, N, 30).await;
    let before = success_rate(&settle_and_check(&world, &ids).await, N);

    let (status, body) = put_json(
        &world.http,
        &format!("{primary}/admin/faults"),
        &json!({"latency_ms": 200, "jitter_ms": 100, "error_rate": 0.3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids = burst(&world, N, 30).await;
    // Every payment ends while the brownout lasts…
    for id in &ids {
        world.wait_terminal(id, Duration::from_secs(60)).await;
    }
    let bank = ops_bank(&world, "HDFC").await;
    // …then the audit reads the ledgers through a clean endpoint.
    let (status, _) = put_json(
        &world.http,
        &format!("{primary}/admin/faults"),
        &json!({"latency_ms": 0, "jitter_ms": 0, "error_rate": 0.0}),
    )
    .await;
    assert_eq!(status, 200);
    let counts = settle_and_check(&world, &ids).await;
    let during = success_rate(&counts, N);
    eprintln!(
        "brownout: success {before:.2}% before, {during:.2}% during ({counts:?}); endpoints {}",
        bank["endpoints"]
    );
    assert!(
        before - during < 0.3,
        "success dropped from {before:.2}% to {during:.2}%"
    );
}
