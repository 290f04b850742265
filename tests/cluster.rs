//! Several switch nodes on one Postgres (issue 12): configuration registered
//! through one node reaches the others (and a restarted one); a node killed
//! with `kill -9` loses its sagas to another within the lease; `?wait=` on one
//! node is woken by the events of a saga another runs; SIGTERM drains a node
//! and hands its sagas back at once; daily limits and refund caps hold when
//! the requests arrive on three nodes at once. Every test ends with
//! `upi-switch verify`.

mod common;

use common::{BIN, BankProc, FAST, SwitchProc, TempFile, World, get_json, put_json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Lease used by these tests (the default is 5 s).
const LEASE_MS: &str = "1500";

fn node_flags<'a>(lease_ms: &'a str, drain_grace_ms: &'a str) -> Vec<&'a str> {
    let mut flags = FAST.to_vec();
    flags.extend(["--lease-ms", lease_ms, "--drain-grace-ms", drain_grace_ms]);
    flags
}

/// Another node of the world's switch: same database, same Redis prefix.
fn node(world: &World, flags: &[&str]) -> SwitchProc {
    let mut flags = flags.to_vec();
    flags.extend(["--redis-prefix", &world.switch.redis_prefix]);
    SwitchProc::start(&world.switch_db.url, &flags)
}

/// Two more nodes of the world's switch.
fn more_nodes(world: &World, flags: &[&str]) -> (SwitchProc, SwitchProc) {
    (node(world, flags), node(world, flags))
}

async fn node_id(world: &World, url: &str) -> String {
    let (_, body) = get_json(&world.http, &format!("{url}/readyz")).await;
    body["node"]["id"].as_str().expect("node id").to_string()
}

/// Polls `check` every 20 ms until it holds; panics after `limit`. Returns how long it took.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /metrics` of the node at `url`.
async fn metrics_of(world: &World, url: &str) -> String {
    world
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// `upi_sagas_claimed_total{reason}` of the node at `url`.
async fn claimed(world: &World, url: &str, reason: &str) -> f64 {
    let text = metrics_of(world, url).await;
    let series = format!("upi_sagas_claimed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in /metrics of {url}"))
}

async fn bank_view(world: &World, node: &str, code: &str) -> Option<Value> {
    let (_, body) = get_json(&world.http, &format!("{node}/v1/ops/banks")).await;
    body["banks"]
        .as_array()?
        .iter()
        .find(|b| b["code"] == code)
        .cloned()
}

async fn modes(world: &World, node: &str, code: &str) -> Vec<String> {
    bank_view(world, node, code)
        .await
        .map(|b| {
            b["endpoints"]
                .as_array()
                .map(|eps| {
                    eps.iter()
                        .map(|e| e["mode"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

async fn set_circuit(world: &World, node: &str, code: &str, mode: &str) {
    let (status, body) = put_json(
        &world.http,
        &format!("{node}/v1/admin/banks/{code}/circuit"),
        &json!({"endpoint": null, "mode": mode}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn pay_on(world: &World, node: &str, payer: &str, payee: &str, wait: Option<u64>) -> Value {
    let url = match wait {
        Some(ms) => format!("{node}/v1/transactions?wait={ms}"),
        None => format!("{node}/v1/transactions"),
    };
    let resp = world
        .http
        .post(url)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"type": "P2P", "payer_vpa": payer, "payee_vpa": payee, "amount": "1.00"}))
        .send()
        .await
        .expect("pay");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status == 200 || status == 202, "pay: {status} {body}");
    body
}

async fn set_hang(world: &World, bank_url: &str, hang: bool) {
    let resp = if hang {
        world
            .http
            .put(format!("{bank_url}/admin/faults"))
            .json(&json!({"hang": true}))
            .send()
            .await
    } else {
        world
            .http
            .delete(format!("{bank_url}/admin/faults"))
            .send()
            .await
    };
    assert!(resp.expect("faults").status().is_success());
}

/// Pays `n` times alice@hdfc → bob@icici through `node` with ICICI hanging,
/// and waits until each is debited (its credit hangs). Returns the txn ids.
async fn debited_and_hanging(world: &World, node: &str, n: usize) -> Vec<String> {
    set_hang(world, &world.icici.url, true).await;
    let mut ids = Vec::new();
    for _ in 0..n {
        let body = pay_on(world, node, "alice@hdfc", "bob@icici", None).await;
        ids.push(body["txn_id"].as_str().expect("txn_id").to_string());
    }
    for id in &ids {
        within(Duration::from_secs(10), "debited", || async {
            let (_, t) = get_json(&world.http, &format!("{node}/v1/transactions/{id}")).await;
            t["steps"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["state"] == "DEBITED"))
        })
        .await;
    }
    ids
}

async fn owners(world: &World, ids: &[String]) -> Vec<Option<String>> {
    let client = world.switch_db.client().await;
    let mut out = Vec::new();
    for id in ids {
        let uuid: uuid::Uuid = id.parse().expect("uuid");
        let row = client
            .query_one("SELECT owner FROM transactions WHERE txn_id = $1", &[&uuid])
            .await
            .expect("owner");
        out.push(row.get::<_, Option<uuid::Uuid>>(0).map(|u| u.to_string()));
    }
    out
}

/// `upi-switch verify` on the world, after every saga ended: exit 0.
async fn verify_clean(world: &World) {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(BIN)
            .args(["verify", "--database-url", &world.switch_db.url])
            .args(["--wait-secs", "30", "--bank-timeout-ms", "2000"])
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("verify within 90 s")
    .expect("verify ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configuration_made_through_one_node_reaches_every_node_and_a_restarted_one() {
    let flags = node_flags(LEASE_MS, "500");
    let world = World::start(&flags, &[], &[]).await;
    let (mut b, c) = more_nodes(&world, &flags);
    let a = world.switch.url.clone();

    // A bank registered through B: known to C within a second.
    let sbi_accounts =
        TempFile(std::env::temp_dir().join(format!("sbi-{}.json", uuid::Uuid::new_v4().simple())));
    std::fs::write(
        &sbi_accounts.0,
        json!([{"account": "ACC001", "name": "Sam", "balance_paise": 100_000, "status": "ACTIVE"}])
            .to_string(),
    )
    .expect("accounts");
    let sbi = BankProc::start(
        "SBI",
        &world.bank_db.url,
        &["--accounts", &sbi_accounts.0.display().to_string()],
    );
    let (status, body) = put_json(
        &world.http,
        &format!("{}/v1/admin/banks/SBI", b.url),
        &json!({"name": "SBI", "endpoints": [{"url": sbi.url, "priority": 0}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put_json(
        &world.http,
        &format!("{}/v1/admin/vpas/sam@sbi", b.url),
        &json!({"bank_code": "SBI", "account": "ACC001", "name": "Sam Rao"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let took = within(Duration::from_secs(1), "SBI known to C", || async {
        bank_view(&world, &c.url, "SBI").await.is_some()
    })
    .await;
    eprintln!("a bank registered through B reached C in {took:?}");
    let paid = pay_on(&world, &c.url, "alice@hdfc", "sam@sbi", Some(10_000)).await;
    assert_eq!(paid["status"], "SUCCESS", "{paid}");

    // A circuit forced open through A: every node applies it within a second.
    set_circuit(&world, &a, "SBI", "open").await;
    for node in [&b.url, &c.url] {
        within(Duration::from_secs(1), "override applied", || async {
            modes(&world, node, "SBI").await == ["open"]
        })
        .await;
    }
    let refused = pay_on(&world, &c.url, "alice@hdfc", "sam@sbi", Some(10_000)).await;
    assert_eq!(refused["status"], "FAILED", "{refused}");
    assert_eq!(refused["reason"]["code"], "BANK_UNAVAILABLE", "{refused}");

    // A node restarted while the override stands starts with it.
    b.kill9();
    b.restart();
    assert_eq!(modes(&world, &b.url, "SBI").await, ["open"]);

    // Handed back to the breakers through C: A follows.
    set_circuit(&world, &c.url, "SBI", "auto").await;
    within(Duration::from_secs(1), "auto on A", || async {
        modes(&world, &a, "SBI").await == ["auto"]
    })
    .await;
    let paid = pay_on(&world, &a, "alice@hdfc", "sam@sbi", Some(10_000)).await;
    assert_eq!(paid["status"], "SUCCESS", "{paid}");
    verify_clean(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_saga_loses_its_sagas_to_another_within_the_lease() {
    let flags = node_flags(LEASE_MS, "500");
    let mut world = World::start(&flags, &[], &[]).await;
    let (b, c) = more_nodes(&world, &flags);
    let a = world.switch.url.clone();
    let a_id = node_id(&world, &a).await;
    let others = [node_id(&world, &b.url).await, node_id(&world, &c.url).await];

    let ids = debited_and_hanging(&world, &a, 8).await;
    assert!(
        owners(&world, &ids)
            .await
            .iter()
            .all(|o| o.as_deref() == Some(&a_id)),
        "A holds what it created"
    );
    world.switch.kill9();
    let killed = Instant::now();
    // The lease (1.5 s) runs out, then a sweep (every 1 s) of B or C claims.
    let lease = Duration::from_millis(LEASE_MS.parse().expect("ms"));
    within(
        lease + Duration::from_secs(3),
        "claimed by B or C",
        || async {
            owners(&world, &ids)
                .await
                .iter()
                .all(|o| o.as_ref().is_some_and(|o| others.contains(o)))
        },
    )
    .await;
    let takeover = killed.elapsed();
    eprintln!("8 sagas of a kill -9'd node claimed after {takeover:?} (lease {lease:?})");
    // The lease was last renewed up to a fifth of it before the kill.
    assert!(
        takeover >= lease * 4 / 5 - Duration::from_millis(50),
        "claimed before the lease ran out: {takeover:?}"
    );

    // Counted as takeovers by the claimers (a lapsed lease in between could
    // add one more claim, never fewer).
    let takeovers =
        claimed(&world, &b.url, "takeover").await + claimed(&world, &c.url, "takeover").await;
    assert!(
        takeovers >= 8.0,
        "upi_sagas_claimed_total{{reason=\"takeover\"}}: {takeovers}"
    );

    // Each claim is on record: a RESUMED step naming the claimer.
    let (_, t) = get_json(
        &world.http,
        &format!("{}/v1/transactions/{}", b.url, ids[0]),
    )
    .await;
    let steps = t["steps"].as_array().expect("steps");
    assert!(steps.iter().any(|s| s["state"] == "RESUMED"), "{t}");

    set_hang(&world, &world.icici.url, false).await;
    for id in &ids {
        let (_, t) = get_json(
            &world.http,
            &format!("{}/v1/transactions/{id}?wait=20000", c.url),
        )
        .await;
        assert!(
            t["status"] == "SUCCESS" || t["status"] == "REVERSED",
            "debited sagas end SUCCESS or REVERSED: {t}"
        );
    }
    // Verify reads the banks through the registrations, not through a node.
    verify_clean(&world).await;
    drop((b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_on_one_node_is_woken_by_the_events_of_a_saga_running_on_another() {
    let flags = node_flags(LEASE_MS, "500");
    let world = World::start(&flags, &[], &[]).await;
    let (b, _c) = more_nodes(&world, &flags);
    let a = world.switch.url.clone();
    let ids = debited_and_hanging(&world, &a, 1).await;
    let id = ids[0].clone();

    let http = world.http.clone();
    let url = format!("{}/v1/transactions/{id}?wait=25000", b.url);
    let waiting = tokio::spawn(async move {
        let resp = http.get(url).send().await.expect("wait");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "B answered before the saga ended");
    set_hang(&world, &world.icici.url, false).await;
    let (status, body) = waiting.await.expect("join");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["status"] == "SUCCESS" || body["status"] == "REVERSED",
        "{body}"
    );
    // B learnt it from the event stream, not by looking again and again.
    let metrics = metrics_of(&world, &b.url).await;
    let by_event = metrics
        .lines()
        .find(|l| l.starts_with("upi_wait_wakeups_total{by=\"event\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(by_event >= 1.0, "woken by an event:\n{metrics}");
    let polls = metrics
        .lines()
        .find(|l| l.starts_with("upi_wait_wakeups_total{by=\"poll\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(polls <= 1.0, "a wait of seconds looked again {polls} times");
    verify_clean(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_a_node_and_its_sagas_are_claimed_at_once_not_after_the_lease() {
    // A long lease: only a hand-back lets B claim within the test's bound.
    let flags = node_flags("30000", "1500");
    let mut world = World::start(&flags, &[], &[]).await;
    let b = node(&world, &flags);
    let a = world.switch.url.clone();
    let a_id = node_id(&world, &a).await;
    let b_id = node_id(&world, &b.url).await;
    let ids = debited_and_hanging(&world, &a, 5).await;

    // Meanwhile A drains (grace 1.5 s, the sagas hang): not ready, and new
    // payments are refused.
    world.switch.sigterm();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, ready) = get_json(&world.http, &format!("{a}/readyz")).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (503, Some("draining")),
        "{ready}"
    );
    let resp = world
        .http
        .post(format!("{a}/v1/transactions"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 503);
    let problem: Value = resp.json().await.expect("problem");
    assert_eq!(problem["code"], "SWITCH_DRAINING", "{problem}");

    let started = Instant::now();
    let code = tokio::task::block_in_place(|| world.switch.wait_exit(Duration::from_secs(20)));
    assert_eq!(code, Some(0), "A exits cleanly after draining");
    eprintln!("A exited {:?} after the checks", started.elapsed());

    // Handed back: B claims them at its next sweep, long before A's 30 s lease.
    let took = within(Duration::from_secs(4), "claimed by B", || async {
        owners(&world, &ids)
            .await
            .iter()
            .all(|o| o.as_deref() == Some(b_id.as_str()))
    })
    .await;
    eprintln!("B claimed A's 5 sagas {took:?} after A exited");
    let handed_back = claimed(&world, &b.url, "handed_back").await;
    assert!(handed_back >= 5.0, "claimed as handed back: {handed_back}");
    assert_eq!(
        claimed(&world, &b.url, "takeover").await,
        0.0,
        "no lease ran out"
    );
    let client = world.switch_db.client().await;
    let gone = client
        .query_opt(
            "SELECT 1 FROM switch_nodes WHERE node_id = $1::text::uuid",
            &[&a_id],
        )
        .await
        .expect("nodes");
    assert!(gone.is_none(), "A removed itself from switch_nodes");

    set_hang(&world, &world.icici.url, false).await;
    for id in &ids {
        let (_, t) = get_json(
            &world.http,
            &format!("{}/v1/transactions/{id}?wait=20000", b.url),
        )
        .await;
        assert!(t["status"] == "SUCCESS" || t["status"] == "REVERSED", "{t}");
    }
    verify_clean(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_and_refund_caps_hold_across_nodes() {
    let flags = ["--daily-count-limit", "5"];
    let world = World::start(&flags, &[], &[]).await;
    let (b, c) = more_nodes(&world, &flags);
    let nodes = [world.switch.url.as_str(), b.url.as_str(), c.url.as_str()];
    // 30 payments from one VPA at once over three nodes: exactly 5 accepted.
    let answers = common::post_burst(
        &world.http,
        &nodes,
        30,
        "/v1/transactions",
        &json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"}),
    )
    .await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == 422 && b["code"] == "DAILY_COUNT_LIMIT_EXCEEDED")
        .count();
    assert_eq!((accepted, refused), (5, 25), "{answers:?}");
    // Refunds of one original asked for on three nodes at once never exceed it.
    let original = pay_on(&world, nodes[1], "erin@hdfc", "bob@icici", Some(10_000)).await;
    assert_eq!(original["status"], "SUCCESS", "{original}");
    let answers = common::post_burst(
        &world.http,
        &nodes,
        24,
        "/v1/transactions",
        &json!({"type": "REFUND", "original_txn_id": original["txn_id"], "amount": "0.05"}),
    )
    .await;
    let ids: Vec<String> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, b)| b["txn_id"].as_str().expect("id").to_string())
        .collect();
    let amount = original["amount"].as_str().expect("amount").to_string();
    assert_eq!(amount, "1.00");
    assert_eq!(ids.len(), 20, "20 refunds of 0.05 fit in 1.00: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == 202 || b["code"] == "REFUND_EXCEEDS_ORIGINAL"),
        "{answers:?}"
    );
    for id in &ids {
        world.wait_terminal(id, Duration::from_secs(60)).await;
    }
    verify_clean(&world).await;
    drop((b, c));
}
