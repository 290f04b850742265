//! Redis in the switch (`adapters::cache`), against real Redis, real Postgres
//! and the real `upi-switch serve` with two real bank simulators. Every
//! switch gets its own random Redis key prefix (`SwitchProc`), so tests share
//! the system Redis without seeing each other's keys.
//!
//! 1. The VPA cache is filled and used, and an operator's change of a VPA is
//!    seen by the very next payment; so does the process's own memo in front
//!    of it.
//! 2. Redis down: payments work, `/readyz` reports `redis: degraded`, the rate
//!    limiter lets requests through (`allow`) or refuses them with 503 (`deny`);
//!    a Redis that comes back (our own `redis-server`, killed and restarted)
//!    is used again; a hung one (SIGSTOP) stalls no payment.
//! 3. Rate limits: a client over its budget gets 429 with `Retry-After` and
//!    writes nothing; another client is not affected.
//! 4. Idempotent replays are Postgres's alone: Redis keeps nothing per key,
//!    a replay answers exactly as the first answer did (also after the world
//!    changed so that the request would now be refused), and a reused key is
//!    422.
//!
//! No test asserts timings; waits only bound how long a test may hang.

mod common;

use common::{SwitchProc, TestDb, World, balances, get_json, http, post_json};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for a transaction to become terminal (not a timing assertion).
const TERMINAL: Duration = Duration::from_secs(60);
/// Upper bound for the switch to see Redis come or go (not a timing assertion).
const REDIS_STATE: Duration = Duration::from_secs(30);
const SYSTEM_REDIS: &str = "redis://127.0.0.1:6379";

async fn redis_conn(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

async fn redis_get(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET")
}

fn vpa_key(prefix: &str, vpa: &str) -> String {
    format!("{prefix}:vpa:{{{vpa}}}")
}

/// The value of one sample in `/metrics` (`name{labels}`), 0 when absent.
async fn metric(world: &World, sample: &str) -> u64 {
    let text = world.metrics_text().await;
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| *name == sample)
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Switch flags that turn the process's VPA memo off, for stories about Redis itself.
const NO_MEMO: &[&str] = &["--vpa-local-ttl-ms", "0"];
const MEMO_HITS: &str = r#"upi_cache_requests_total{cache="vpa_local",result="hit"}"#;
const VPA_HITS: &str = r#"upi_cache_requests_total{cache="vpa",result="hit"}"#;
const VPA_ERRORS: &str = r#"upi_cache_requests_total{cache="vpa",result="error"}"#;

/// Waits (bounded) until `/readyz` reports `checks.redis` = `want`; returns the body.
async fn wait_redis(client: &reqwest::Client, switch_url: &str, want: &str) -> Value {
    let deadline = Instant::now() + REDIS_STATE;
    loop {
        let (status, body) = get_json(client, &format!("{switch_url}/readyz")).await;
        if body["checks"]["redis"] == want {
            assert_eq!(status, 200, "{body}");
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said redis {want}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A response header as text ("" when absent or not text).
fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn validate(world: &World, vpa: &str) -> Value {
    let (status, body) = post_json(
        &world.http,
        &format!("{}/v1/vpa/validate", world.switch.url),
        &json!({ "vpa": vpa }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Pays and waits for the end; asserts SUCCESS; returns the transaction id.
async fn pay_ok(world: &World, payer: &str, payee: &str, amount: &str) -> String {
    let (status, body) = world.pay(payer, payee, amount, Some(10_000)).await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let id = body["txn_id"].as_str().expect("txn_id").to_string();
    let done = world.wait_terminal(&id, TERMINAL).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    id
}

/// Where the switch sent a transaction's credit: (bank, account).
async fn payee_of(world: &World, txn_id: &str) -> (String, String) {
    let id = uuid::Uuid::parse_str(txn_id).expect("uuid");
    let row = world
        .switch_db
        .client()
        .await
        .query_one(
            "SELECT payee_bank, payee_account FROM transactions WHERE txn_id = $1",
            &[&id],
        )
        .await
        .expect("transaction row");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn vpa_cache_is_used_and_an_operator_change_is_seen_at_once() {
    // Redis alone: the process's own memo (in front of it) is off here.
    let w = World::start(NO_MEMO, &[], &[]).await;
    wait_redis(&w.http, &w.switch.url, "ok").await;
    let mut redis = redis_conn(SYSTEM_REDIS).await;
    let key = vpa_key(&w.switch.redis_prefix, "bob@icici");

    // First resolution fills the cache from Postgres…
    assert_eq!(validate(&w, "bob@icici").await["bank_code"], "ICICI");
    let cached: Value =
        serde_json::from_str(&redis_get(&mut redis, &key).await.expect("cached entry"))
            .expect("json");
    assert_eq!(
        (&cached["bank_code"], &cached["account"]),
        (&json!("ICICI"), &json!("ACC001"))
    );
    // …the next ones are answered from it.
    let hits = metric(&w, VPA_HITS).await;
    assert_eq!(validate(&w, "bob@icici").await["bank_code"], "ICICI");
    assert_eq!(metric(&w, VPA_HITS).await, hits + 1);
    let first = pay_ok(&w, "alice@hdfc", "bob@icici", "1.00").await;
    assert_eq!(
        payee_of(&w, &first).await,
        ("ICICI".into(), "ACC001".into())
    );
    assert!(metric(&w, VPA_HITS).await >= hits + 2, "payee from cache");

    // The operator moves bob@icici to HDFC ACC003: the entry is dropped and the
    // next payment credits the new account.
    assert_eq!(w.put_vpa("bob@icici", "HDFC", "ACC003").await, 200);
    assert_eq!(redis_get(&mut redis, &key).await, None, "entry invalidated");
    let (hdfc_before, _) = balances(&w.http, &w.hdfc.url).await;
    let (icici_before, _) = balances(&w.http, &w.icici.url).await;
    let second = pay_ok(&w, "alice@hdfc", "bob@icici", "2.00").await;
    assert_eq!(
        payee_of(&w, &second).await,
        ("HDFC".into(), "ACC003".into())
    );
    let (hdfc_after, _) = balances(&w.http, &w.hdfc.url).await;
    let (icici_after, _) = balances(&w.http, &w.icici.url).await;
    assert_eq!(hdfc_after["ACC003"], hdfc_before["ACC003"] + 200);
    assert_eq!(icici_after["ACC001"], icici_before["ACC001"]);
    assert_eq!(validate(&w, "bob@icici").await["bank_code"], "HDFC");
    let cached: Value =
        serde_json::from_str(&redis_get(&mut redis, &key).await.expect("refilled")).expect("json");
    assert_eq!(cached["account"], "ACC003");
}

/// The process keeps the VPAs it resolved for a moment (`--vpa-local-ttl-ms`,
/// 1 s by default): the next payment between them asks neither Redis nor
/// Postgres, and an operator's change through this switch is still seen by
/// the very next payment.
#[tokio::test]
async fn vpas_resolved_a_moment_ago_come_from_memory_and_a_change_is_seen_at_once() {
    let w = World::start(&["--vpa-local-ttl-ms", "60000"], &[], &[]).await;
    wait_redis(&w.http, &w.switch.url, "ok").await;
    pay_ok(&w, "alice@hdfc", "bob@icici", "1.00").await;
    let (memo, redis) = (metric(&w, MEMO_HITS).await, metric(&w, VPA_HITS).await);
    let first = pay_ok(&w, "alice@hdfc", "bob@icici", "1.00").await;
    assert_eq!(
        metric(&w, MEMO_HITS).await,
        memo + 2,
        "both parties from memory"
    );
    assert_eq!(metric(&w, VPA_HITS).await, redis, "Redis not asked");
    assert_eq!(
        payee_of(&w, &first).await,
        ("ICICI".into(), "ACC001".into())
    );
    assert_eq!(w.put_vpa("bob@icici", "HDFC", "ACC003").await, 200);
    let second = pay_ok(&w, "alice@hdfc", "bob@icici", "2.00").await;
    assert_eq!(
        payee_of(&w, &second).await,
        ("HDFC".into(), "ACC003".into()),
        "the change is seen by the very next payment"
    );
}

#[tokio::test]
async fn dead_redis_payments_work_readyz_degraded_limiter_allows() {
    let w = World::start(
        &[
            "--redis-url",
            "redis://127.0.0.1:1",
            "--rate-limit-per-sec",
            "0.001",
            "--rate-limit-burst",
            "1",
            "--vpa-local-ttl-ms",
            "0",
        ],
        &[],
        &[],
    )
    .await;
    let body = wait_redis(&w.http, &w.switch.url, "degraded").await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    // A budget of one request, but the limiter cannot be asked: `allow` admits all.
    for amount in ["1.00", "2.00", "3.00"] {
        pay_ok(&w, "alice@hdfc", "bob@icici", amount).await;
    }
    assert_eq!(validate(&w, "bob@icici").await["valid"], true);
    assert!(
        metric(&w, VPA_ERRORS).await >= 4,
        "lookups went to Postgres"
    );
    assert_eq!(metric(&w, "upi_rate_limited_total").await, 0);
    // Idempotent replays are answered by the database path.
    let key = uuid::Uuid::new_v4().to_string();
    let (s1, b1) = w
        .pay_with_key(&key, "alice@hdfc", "bob@icici", "4.00", None)
        .await;
    let (s2, b2) = w
        .pay_with_key(&key, "alice@hdfc", "bob@icici", "4.00", None)
        .await;
    assert_eq!((s1, s2), (202, 200), "{b1} {b2}");
    assert_eq!(b1["txn_id"], b2["txn_id"]);
    assert_eq!(w.txn_count().await, 4);
}

#[tokio::test]
async fn dead_redis_limiter_in_deny_mode_refuses_with_503_and_writes_nothing() {
    let db = TestDb::new("redis_deny");
    let switch = SwitchProc::start(
        &db.url,
        &[
            "--redis-url",
            "redis://127.0.0.1:1",
            "--rate-limit-per-sec",
            "100",
            "--rate-limit-when-redis-down",
            "deny",
        ],
    );
    let client = http();
    wait_redis(&client, &switch.url, "degraded").await;
    let posts = [
        (
            "/v1/transactions",
            json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"}),
        ),
        ("/v1/vpa/validate", json!({"vpa": "bob@icici"})),
    ];
    for (path, body) in posts {
        let resp = client
            .post(format!("{}{path}", switch.url))
            .header("Idempotency-Key", "k-deny")
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 503, "{path}");
        let retry_after = header(&resp, "Retry-After").parse::<u64>().ok();
        assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
        assert_eq!(header(&resp, "content-type"), "application/problem+json");
        let problem: Value = resp.json().await.expect("problem body");
        assert_eq!(problem["code"], "RATE_LIMITER_UNAVAILABLE", "{problem}");
    }
    let count: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM transactions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 0);
}

/// A `redis-server` of this test's own, on a port it keeps across restarts.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut redis = OwnRedis { port, child: None };
        redis.launch();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        // Bounded wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = redis::Client::open(self.url()).expect("url");
        loop {
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(500))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`STOP` hangs it: connections open, nothing answers).
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn redis_that_dies_and_comes_back_is_used_again() {
    let mut own = OwnRedis::start();
    let url = own.url();
    let w = World::start(&["--redis-url", &url, "--vpa-local-ttl-ms", "0"], &[], &[]).await;
    wait_redis(&w.http, &w.switch.url, "ok").await;
    let key = vpa_key(&w.switch.redis_prefix, "bob@icici");
    validate(&w, "bob@icici").await;
    let hits = metric(&w, VPA_HITS).await;
    validate(&w, "bob@icici").await;
    assert_eq!(metric(&w, VPA_HITS).await, hits + 1);

    own.kill();
    // Payments go on while Redis is gone (the first may find the dead socket).
    for amount in ["1.00", "2.00", "3.00"] {
        pay_ok(&w, "alice@hdfc", "bob@icici", amount).await;
    }
    wait_redis(&w.http, &w.switch.url, "degraded").await;
    pay_ok(&w, "alice@hdfc", "bob@icici", "4.00").await;
    let hits_while_down = metric(&w, VPA_HITS).await;

    own.launch();
    wait_redis(&w.http, &w.switch.url, "ok").await;
    let mut redis = redis_conn(&url).await;
    assert_eq!(redis_get(&mut redis, &key).await, None, "a fresh Redis");
    validate(&w, "bob@icici").await;
    assert!(redis_get(&mut redis, &key).await.is_some(), "filled again");
    validate(&w, "bob@icici").await;
    pay_ok(&w, "alice@hdfc", "bob@icici", "5.00").await;
    assert!(
        metric(&w, VPA_HITS).await >= hits_while_down + 2,
        "the cache answers again"
    );

    // A hung Redis (stopped, its sockets still open) stalls no payment either.
    own.signal("STOP");
    pay_ok(&w, "alice@hdfc", "bob@icici", "6.00").await;
    wait_redis(&w.http, &w.switch.url, "degraded").await;
    pay_ok(&w, "alice@hdfc", "bob@icici", "7.00").await;
    own.signal("CONT");
    wait_redis(&w.http, &w.switch.url, "ok").await;
    pay_ok(&w, "alice@hdfc", "bob@icici", "8.00").await;
}

/// `POST /v1/transactions` as a client (`X-Client-Id`, or none: the peer IP).
async fn post_as(world: &World, client: Option<&str>, key: &str) -> reqwest::Response {
    let mut req = world
        .http
        .post(format!("{}/v1/transactions", world.switch.url))
        .header("Idempotency-Key", key)
        .json(&json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"}));
    if let Some(client) = client {
        req = req.header("X-Client-Id", client);
    }
    req.send().await.expect("request")
}

/// Sends `n` payments as `client` one after the other; returns (key, status, Retry-After, code).
async fn burst(
    world: &World,
    client: Option<&str>,
    n: usize,
) -> Vec<(String, u16, Option<u64>, Value)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let key = uuid::Uuid::new_v4().to_string();
        let resp = post_as(world, client, &key).await;
        let status = resp.status().as_u16();
        let retry_after = header(&resp, "Retry-After").parse().ok();
        let content_type = header(&resp, "content-type");
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 429 {
            assert_eq!(content_type, "application/problem+json");
        }
        out.push((key, status, retry_after, body["code"].clone()));
    }
    out
}

#[tokio::test]
async fn client_over_budget_gets_429_and_writes_nothing_others_unaffected() {
    // Five at once, then one per 1000 s: the refill cannot matter during the test.
    let w = World::start(
        &["--rate-limit-per-sec", "0.001", "--rate-limit-burst", "5"],
        &[],
        &[],
    )
    .await;
    wait_redis(&w.http, &w.switch.url, "ok").await;
    let (a, b) = tokio::join!(
        burst(&w, Some("client-a"), 8),
        burst(&w, Some("client-b"), 5)
    );
    let statuses =
        |r: &[(String, u16, Option<u64>, Value)]| -> Vec<u16> { r.iter().map(|x| x.1).collect() };
    assert_eq!(statuses(&a), [202, 202, 202, 202, 202, 429, 429, 429]);
    assert_eq!(statuses(&b), [202; 5], "client B is not limited by A");
    for (_, _, retry_after, code) in &a[5..] {
        assert_eq!(code, "RATE_LIMITED");
        assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    }
    // The refused requests wrote nothing.
    let refused: Vec<String> = a[5..].iter().map(|x| x.0.clone()).collect();
    let db = w.switch_db.client().await;
    let written: i64 = db
        .query_one(
            "SELECT count(*) FROM transactions WHERE idempotency_key = ANY($1)",
            &[&refused],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(written, 0);
    assert_eq!(w.txn_count().await, 10);
    assert_eq!(metric(&w, "upi_rate_limited_total").await, 3);
    // Without X-Client-Id the bucket is the peer IP's, apart from the ids'.
    let by_ip = burst(&w, None, 6).await;
    assert_eq!(statuses(&by_ip), [202, 202, 202, 202, 202, 429]);
    // A malformed client id is the client's mistake.
    let long = "x".repeat(65);
    let resp = post_as(&w, Some(&long), "k-long").await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("problem");
    assert_eq!(body["code"], "CLIENT_ID_INVALID");
    assert_eq!(w.txn_count().await, 15);
}

/// `POST /v1/transactions` with this key and amount: (status, raw body).
async fn post_raw_answer(world: &World, key: &str, amount: &str, query: &str) -> (u16, String) {
    let resp = world
        .http
        .post(format!("{}/v1/transactions{query}", world.switch.url))
        .header("Idempotency-Key", key)
        .json(&json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": amount}))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

#[tokio::test]
async fn replays_are_answered_by_postgres_alone_and_exactly() {
    let w = World::start(&[], &[], &[]).await;
    wait_redis(&w.http, &w.switch.url, "ok").await;
    let mut redis = redis_conn(SYSTEM_REDIS).await;
    let key = uuid::Uuid::new_v4().to_string();

    let (status, first) = post_raw_answer(&w, &key, "7.00", "").await;
    assert_eq!(status, 202, "{first}");
    let first: Value = serde_json::from_str(&first).expect("json");
    let txn_id = first["txn_id"].as_str().expect("txn_id").to_string();
    w.wait_terminal(&txn_id, TERMINAL).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:idem:*", w.switch.redis_prefix))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    assert!(keys.is_empty(), "Redis keeps nothing per key: {keys:?}");

    // A replay: 200 with the same transaction, now terminal; twice the same bytes.
    let replay = post_raw_answer(&w, &key, "7.00", "").await;
    assert_eq!(replay.0, 200, "{}", replay.1);
    assert_eq!(replay, post_raw_answer(&w, &key, "7.00", "").await);
    let replayed: Value = serde_json::from_str(&replay.1).expect("json");
    assert_eq!(replayed["txn_id"], txn_id.as_str());
    assert_eq!(replayed["status"], "SUCCESS");
    let (status, doc) = post_raw_answer(&w, &key, "7.00", "?wait=1000").await;
    assert_eq!(status, 200, "{doc}");
    let doc: Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(doc["txn_id"], txn_id.as_str());
    assert_eq!(doc["status"], "SUCCESS");

    // The world changes so that the same request would now be refused (bob
    // re-pointed at alice's account: SAME_PAYER_PAYEE): the replay still
    // answers for the transaction the key made.
    w.put_vpa("bob@icici", "HDFC", "ACC001").await;
    let (status, body) = post_raw_answer(&w, &uuid::Uuid::new_v4().to_string(), "7.00", "").await;
    assert_eq!(status, 422, "a new key is refused now: {body}");
    assert_eq!(post_raw_answer(&w, &key, "7.00", "").await, replay);

    // Same key, another body: 422, and nothing is written.
    let (status, reused) = post_raw_answer(&w, &key, "8.00", "").await;
    assert_eq!(status, 422, "{reused}");
    let reused: Value = serde_json::from_str(&reused).expect("json");
    assert_eq!(reused["code"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(w.txn_count().await, 1);
}

/// The race an invalidation must win: a reader that read the old row from
/// Postgres, and fills the cache only after the operator's change was
/// committed and invalidated, must not leave the old mapping behind.
#[tokio::test]
async fn a_fill_that_read_before_an_invalidation_is_refused() {
    use upi_switch::adapters::cache::{Cache, CacheConfig};
    use upi_switch::adapters::store::VpaRecord;
    use upi_switch::domain::Vpa;

    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let cache = Cache::start(
        CacheConfig {
            url: SYSTEM_REDIS.into(),
            prefix: prefix.clone(),
            op_timeout: Duration::from_millis(500),
            vpa_ttl: Duration::from_secs(60),
            vpa_local_ttl: Duration::ZERO,
            rate_limit: None,
        },
        upi_switch::metrics::CacheMetrics::register(&prometheus::Registry::new()),
    )
    .expect("cache");
    let deadline = Instant::now() + REDIS_STATE;
    while !cache.is_up() {
        assert!(Instant::now() < deadline, "never connected to Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let vpa = Vpa::parse("bob@icici").expect("vpa");
    let old = VpaRecord {
        vpa: "bob@icici".into(),
        bank_code: "ICICI".into(),
        account: "ACC001".into(),
        name: "Bob".into(),
        merchant: false,
        mcc: None,
    };
    let mut redis = redis_conn(SYSTEM_REDIS).await;
    let key = vpa_key(&prefix, "bob@icici");

    // Reader: miss, reads the old row; meanwhile the operator's change lands.
    let got = cache
        .vpa_through(&vpa, |_| async {
            cache.forget_vpa(&vpa).await;
            Ok::<_, std::convert::Infallible>(Some(old.clone()))
        })
        .await
        .expect("infallible");
    assert_eq!(
        got.as_ref(),
        Some(&old),
        "the reader still answers what it read"
    );
    assert_eq!(
        redis_get(&mut redis, &key).await,
        None,
        "but does not cache it"
    );

    // Without an invalidation in between, the same read fills the cache.
    cache
        .vpa_through(&vpa, |_| async {
            Ok::<_, std::convert::Infallible>(Some(old.clone()))
        })
        .await
        .expect("infallible");
    assert!(redis_get(&mut redis, &key).await.is_some());
    let hit = cache
        .vpa_through(&vpa, |_| async {
            Err::<Option<VpaRecord>, &str>("Postgres must not be asked on a hit")
        })
        .await
        .expect("a hit");
    assert_eq!(hit, Some(old));
}
