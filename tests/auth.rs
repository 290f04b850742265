//! Who may call (issue 14, first part) against the real services: operator
//! calls need the bearer token; client calls are signed with a registered
//! client's Ed25519 key, and each refusal answers its `401` code in the
//! contract's order; a nonce is used up once its signature verified, on
//! every node and across restarts (Postgres decides); keys rotate (add,
//! then drop: the dropped key stops working on every node); a switch
//! without an operator token refuses to start unless told
//! `--insecure-no-auth`, which `/readyz` then reports. A client acts only
//! for its own handles (`403 NOT_YOUR_VPA`), sees only what it made or is a
//! party's PSP of (`404`), and its idempotency keys are its own.

mod common;

use common::{BIN, SwitchProc, World, get_json, put_json};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use std::time::Duration;
use upi_switch::auth::signature;

const TOKEN: &str = "operator-s3cret";

async fn world() -> World {
    World::start(&["--admin-token", TOKEN], &[], &[]).await
}

fn key(seed: u8) -> SigningKey {
    signature::signing_key(&[seed; 32])
}

async fn register(w: &World, url: &str, keys: &[(&str, &SigningKey)]) -> (u16, Value) {
    register_as(w, url, "app1", &["hdfc"], keys).await
}

async fn register_as(
    w: &World,
    url: &str,
    client: &str,
    handles: &[&str],
    keys: &[(&str, &SigningKey)],
) -> (u16, Value) {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(id, k)| json!({"key_id": id, "public_key": signature::public_key_text(k)}))
        .collect();
    put_json(
        &w.http,
        &format!("{url}/v1/admin/clients/{client}"),
        &json!({"name": "An App", "handles": handles, "keys": keys}),
    )
    .await
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A signed call; `tamper` may change any header after signing.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    body: String,
    client: &'a str,
    key_id: &'a str,
    key: &'a SigningKey,
    timestamp: String,
    nonce: String,
}

impl<'a> Call<'a> {
    fn post(path: &'a str, body: Value, key_id: &'a str, key: &'a SigningKey) -> Call<'a> {
        Call {
            method: "POST",
            path,
            body: body.to_string(),
            client: "app1",
            key_id,
            key,
            timestamp: now_s().to_string(),
            nonce: format!("n-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    fn signature(&self) -> String {
        let m = signature::message(
            self.method,
            self.path,
            &self.timestamp,
            &self.nonce,
            self.body.as_bytes(),
        );
        signature::sign(self.key, &m)
    }

    async fn send(
        &self,
        base: &str,
        idempotency: &str,
        tamper: impl FnOnce(&mut Vec<(&'static str, String)>),
    ) -> (u16, Value) {
        let mut headers = vec![
            ("X-Client-Id", self.client.to_string()),
            ("X-Key-Id", self.key_id.to_string()),
            ("X-Timestamp", self.timestamp.clone()),
            ("X-Nonce", self.nonce.clone()),
            ("X-Signature", self.signature()),
            ("Idempotency-Key", idempotency.to_string()),
            ("Content-Type", "application/json".to_string()),
        ];
        tamper(&mut headers);
        let http = common::http();
        let mut req = match self.method {
            "GET" => http.get(format!("{base}{}", self.path)),
            _ => http
                .post(format!("{base}{}", self.path))
                .body(self.body.clone()),
        };
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn payment() -> Value {
    json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00"})
}

fn assert_401(answer: &(u16, Value), code: &str) {
    assert_eq!(answer.0, 401, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
}

#[tokio::test]
async fn operator_calls_need_the_token() {
    let w = world().await;
    let url = &w.switch.url;
    let plain = common::http();
    let (status, body) = get_json(&plain, &format!("{url}/v1/ops/banks")).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")));
    let wrong = common::operator_http("operator-s3cres");
    assert_eq!(
        get_json(&wrong, &format!("{url}/v1/ops/nodes")).await.0,
        401
    );
    assert_eq!(
        get_json(&w.http, &format!("{url}/v1/ops/banks")).await.0,
        200
    );
    let (status, _) = put_json(
        &plain,
        &format!("{url}/v1/admin/clients/app1"),
        &json!({"name": "x", "handles": ["hdfc"], "keys": []}),
    )
    .await;
    assert_eq!(status, 401);
    let (_, ready) = get_json(&plain, &format!("{url}/readyz")).await;
    assert_eq!(ready["auth"], "on");
    // Registration refuses a key that is not an Ed25519 public key.
    let (status, body) = put_json(
        &w.http,
        &format!("{url}/v1/admin/clients/app1"),
        &json!({"name": "x", "handles": ["hdfc"], "keys": [{"key_id": "k1", "public_key": "AAAA"}]}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("INVALID_PUBLIC_KEY")),
        "{body}"
    );
}

#[tokio::test]
async fn every_401_of_a_client_call_in_the_contracts_order() {
    let w = world().await;
    let url = w.switch.url.clone();
    let k1 = key(1);
    let stranger = key(9);
    assert_eq!(register(&w, &url, &[("k1", &k1)]).await.0, 201);
    let path = "/v1/transactions";

    // Signed right: accepted.
    let ok = Call::post(path, payment(), "k1", &k1)
        .send(&url, "a-1", |_| {})
        .await;
    assert_eq!(ok.0, 202, "{}", ok.1);

    // UNSIGNED: a header missing, or a nonce of the wrong form.
    let c = Call::post(path, payment(), "k1", &k1);
    assert_401(
        &c.send(&url, "a-2", |h| h.retain(|(n, _)| *n != "X-Signature"))
            .await,
        "UNSIGNED",
    );
    let mut c = Call::post(path, payment(), "k1", &k1);
    c.nonce = "short".into();
    assert_401(&c.send(&url, "a-2", |_| {}).await, "UNSIGNED");
    // UNKNOWN_CLIENT comes before a stale timestamp; an unknown key too.
    let mut c = Call::post(path, payment(), "k1", &k1);
    c.client = "nobody";
    c.timestamp = "5".into();
    assert_401(&c.send(&url, "a-2", |_| {}).await, "UNKNOWN_CLIENT");
    let c = Call::post(path, payment(), "k2", &k1);
    assert_401(&c.send(&url, "a-2", |_| {}).await, "UNKNOWN_CLIENT");
    // STALE_TIMESTAMP: more than 300 s off, or not a whole number.
    let mut c = Call::post(path, payment(), "k1", &k1);
    c.timestamp = (now_s() - 301).to_string();
    assert_401(&c.send(&url, "a-2", |_| {}).await, "STALE_TIMESTAMP");
    let mut c = Call::post(path, payment(), "k1", &k1);
    c.timestamp = "1.5e9".into();
    assert_401(&c.send(&url, "a-2", |_| {}).await, "STALE_TIMESTAMP");
    // BAD_SIGNATURE: another key, a changed body, not base64.
    let c = Call::post(path, payment(), "k1", &stranger);
    assert_401(&c.send(&url, "a-2", |_| {}).await, "BAD_SIGNATURE");
    let mut c = Call::post(path, payment(), "k1", &k1);
    let sig = c.signature();
    c.body = c.body.replace("1.00", "9.00");
    assert_401(
        &c.send(&url, "a-2", |h| {
            for (n, v) in h.iter_mut() {
                if *n == "X-Signature" {
                    *v = sig.clone();
                }
            }
        })
        .await,
        "BAD_SIGNATURE",
    );
    let c = Call::post(path, payment(), "k1", &k1);
    assert_401(
        &c.send(&url, "a-2", |h| {
            for (n, v) in h.iter_mut() {
                if *n == "X-Signature" {
                    *v = "!!!".into();
                }
            }
        })
        .await,
        "BAD_SIGNATURE",
    );
    // REPLAYED_NONCE: the very same signed call again; and a nonce is used
    // up by a verified call whatever its answer (here a 400).
    let c = Call::post(path, payment(), "k1", &k1);
    assert_eq!(c.send(&url, "a-3", |_| {}).await.0, 202);
    assert_401(&c.send(&url, "a-3", |_| {}).await, "REPLAYED_NONCE");
    let bad = Call::post(path, json!({"type": "P2P"}), "k1", &k1);
    assert_eq!(bad.send(&url, "a-4", |_| {}).await.0, 400);
    assert_401(&bad.send(&url, "a-4", |_| {}).await, "REPLAYED_NONCE");
    // A refused call before the signature verified uses nothing up.
    let mut late = Call::post(path, payment(), "k1", &k1);
    late.timestamp = (now_s() - 400).to_string();
    assert_401(&late.send(&url, "a-5", |_| {}).await, "STALE_TIMESTAMP");
    late.timestamp = now_s().to_string();
    assert_eq!(late.send(&url, "a-5", |_| {}).await.0, 202);
    // Reads are signed too (the empty body's hash).
    let id = ok.1["txn_id"].as_str().expect("id").to_string();
    let doc_path = format!("/v1/transactions/{id}");
    let mut get = Call::post(&doc_path, json!(null), "k1", &k1);
    get.method = "GET";
    get.body = String::new();
    let (status, doc) = get.send(&url, "unused", |_| {}).await;
    assert_eq!(
        (status, doc["txn_id"].as_str()),
        (200, Some(id.as_str())),
        "{doc}"
    );
    // Every client route refuses an unsigned call.
    let any = uuid::Uuid::new_v4();
    for (method, path) in [
        ("GET", doc_path.clone()),
        ("GET", format!("{doc_path}/events")),
        ("POST", "/v1/vpa/validate".to_string()),
        ("POST", "/v1/collects".to_string()),
        ("GET", format!("/v1/collects/{any}")),
        ("POST", format!("/v1/collects/{any}/approve")),
        ("POST", format!("/v1/collects/{any}/decline")),
    ] {
        let req = match method {
            "GET" => w.http.get(format!("{url}{path}")),
            _ => w.http.post(format!("{url}{path}")).json(&json!({})),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("UNSIGNED")),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_nonce_is_used_once_across_restarts_and_nodes_and_keys_rotate_everywhere() {
    let mut w = world().await;
    let url = w.switch.url.clone();
    let k1 = key(1);
    let k2 = key(2);
    assert_eq!(register(&w, &url, &[("k1", &k1)]).await.0, 201);
    let c = Call::post("/v1/transactions", payment(), "k1", &k1);
    assert_eq!(c.send(&url, "r-1", |_| {}).await.0, 202);
    // The switch is killed and started again: the nonce is still used.
    w.switch.server.restart();
    assert_401(&c.send(&url, "r-1", |_| {}).await, "REPLAYED_NONCE");
    // A second node of the same database refuses it too.
    let other = SwitchProc::start(
        &w.switch_db.url,
        &[
            "--admin-token",
            TOKEN,
            "--redis-prefix",
            &w.switch.redis_prefix,
        ],
    );
    assert_401(&c.send(&other.url, "r-1", |_| {}).await, "REPLAYED_NONCE");
    // Rotation: add k2 (both work), then drop k1 (it stops on both nodes).
    assert_eq!(register(&w, &url, &[("k1", &k1), ("k2", &k2)]).await.0, 200);
    for (node, key_id, key) in [(&url, "k1", &k1), (&other.url, "k2", &k2)] {
        let c = Call::post("/v1/transactions", payment(), key_id, key);
        let answer = c.send(node, &format!("rot-{key_id}"), |_| {}).await;
        assert_eq!(answer.0, 202, "{key_id} on {node}: {}", answer.1);
    }
    assert_eq!(register(&w, &url, &[("k2", &k2)]).await.0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let c = Call::post("/v1/transactions", payment(), "k1", &k1);
        let answer = c.send(&other.url, "rot-again", |_| {}).await;
        if answer.0 == 401 {
            assert_401(&answer, "UNKNOWN_CLIENT");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "k1 still works on the other node: {}",
            answer.1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = Call::post("/v1/transactions", payment(), "k1", &k1);
    assert_401(&c.send(&url, "rot-again", |_| {}).await, "UNKNOWN_CLIENT");
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_token_unless_told_insecure() {
    let db = common::TestDb::new("auth");
    db.client().await;
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
        ])
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--admin-token") && err.contains("--insecure-no-auth"),
        "{err}"
    );
    let open = SwitchProc::start(&db.url, &["--insecure-no-auth"]);
    let (_, ready) = get_json(&common::http(), &format!("{}/readyz", open.url)).await;
    assert_eq!(ready["auth"], "off");
    assert!(
        open.log().contains("--insecure-no-auth"),
        "the warning is logged"
    );
}

/// A signed call as `client` with its key `k`.
async fn as_client(
    url: &str,
    client: &str,
    k: &SigningKey,
    method: &str,
    path: &str,
    body: Value,
    idempotency: &str,
) -> (u16, Value) {
    let mut c = Call::post(path, body, "k1", k);
    c.client = client;
    if method == "GET" {
        c.method = "GET";
        c.body = String::new();
    }
    c.send(url, idempotency, |_| {}).await
}

#[tokio::test]
async fn a_client_acts_for_its_handles_sees_its_own_and_keys_are_its_own() {
    let w = world().await;
    let url = w.switch.url.clone();
    let (hdfc_app, icici_app, sbi_app, hdfc_app2) = (key(1), key(2), key(3), key(4));
    for (id, handles, k) in [
        ("hdfcapp", "hdfc", &hdfc_app),
        ("iciciapp", "icici", &icici_app),
        ("sbiapp", "sbi", &sbi_app),
        ("hdfcapp2", "hdfc", &hdfc_app2),
    ] {
        assert_eq!(
            register_as(&w, &url, id, &[handles], &[("k1", k)]).await.0,
            201
        );
    }
    let pay = || payment();
    // Only the payer's PSP pays.
    let (status, paid) = as_client(
        &url,
        "hdfcapp",
        &hdfc_app,
        "POST",
        "/v1/transactions?wait=10000",
        pay(),
        "same-key",
    )
    .await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "SUCCESS", "{paid}");
    let id = paid["txn_id"].as_str().expect("id").to_string();
    let (status, body) = as_client(
        &url,
        "iciciapp",
        &icici_app,
        "POST",
        "/v1/transactions",
        pay(),
        "k-x",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("NOT_YOUR_VPA")),
        "{body}"
    );
    // Keys are per client: the same key from another client is another payment.
    let (status, other) = as_client(
        &url,
        "hdfcapp2",
        &hdfc_app2,
        "POST",
        "/v1/transactions",
        pay(),
        "same-key",
    )
    .await;
    assert_eq!(status, 202, "{other}");
    assert_ne!(other["txn_id"], paid["txn_id"]);
    // The payee's PSP sees it; a stranger gets 404, as for nothing.
    let doc = format!("/v1/transactions/{id}");
    assert_eq!(
        as_client(&url, "iciciapp", &icici_app, "GET", &doc, json!(null), "-")
            .await
            .0,
        200
    );
    let (status, body) = as_client(&url, "sbiapp", &sbi_app, "GET", &doc, json!(null), "-").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("TXN_NOT_FOUND")),
        "{body}"
    );
    // Refunds are asked for by the original's payee's PSP only.
    let refund = json!({"type": "REFUND", "original_txn_id": id, "amount": "0.50"});
    let (status, body) = as_client(
        &url,
        "hdfcapp",
        &hdfc_app,
        "POST",
        "/v1/transactions",
        refund.clone(),
        "r-1",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("NOT_YOUR_VPA")),
        "{body}"
    );
    assert_eq!(
        as_client(
            &url,
            "iciciapp",
            &icici_app,
            "POST",
            "/v1/transactions",
            refund,
            "r-1"
        )
        .await
        .0,
        202
    );
    // Collects: requested by the payee's PSP, approved by the payer's.
    let ask = json!({"payee_vpa": "bob@icici", "payer_vpa": "alice@hdfc", "amount": "2.00"});
    let (status, body) = as_client(
        &url,
        "hdfcapp",
        &hdfc_app,
        "POST",
        "/v1/collects",
        ask.clone(),
        "c-1",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("NOT_YOUR_VPA")),
        "{body}"
    );
    let (status, c) = as_client(
        &url,
        "iciciapp",
        &icici_app,
        "POST",
        "/v1/collects",
        ask,
        "c-1",
    )
    .await;
    assert_eq!(status, 201, "{c}");
    let cid = c["collect_id"].as_str().expect("collect_id").to_string();
    let approve = format!("/v1/collects/{cid}/approve");
    let (status, body) = as_client(
        &url,
        "iciciapp",
        &icici_app,
        "POST",
        &approve,
        json!({}),
        "-",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("NOT_YOUR_VPA")),
        "{body}"
    );
    let (status, body) =
        as_client(&url, "sbiapp", &sbi_app, "POST", &approve, json!({}), "-").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("COLLECT_NOT_FOUND")),
        "{body}"
    );
    let (status, body) =
        as_client(&url, "hdfcapp", &hdfc_app, "POST", &approve, json!({}), "-").await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = as_client(
        &url,
        "sbiapp",
        &sbi_app,
        "GET",
        &format!("/v1/collects/{cid}"),
        json!(null),
        "-",
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn operator_changes_are_audited_bank_urls_are_allow_listed_and_purge_needs_the_token() {
    let w = world().await;
    let url = w.switch.url.clone();
    // SSRF: the switch would probe whatever a bank registration names.
    for target in [
        "http://169.254.169.254/latest",
        "http://10.1.2.3:9101",
        "http://example.com",
    ] {
        let (status, body) = put_json(
            &w.http,
            &format!("{url}/v1/admin/banks/EVIL"),
            &json!({"name": "Evil Bank", "endpoints": [{"url": target, "priority": 0}]}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("ENDPOINT_NOT_ALLOWED")),
            "{target}: {body}"
        );
    }
    // A VPA re-pointed: the log has who, what, before and after.
    let repoint =
        |account: &str| json!({"bank_code": "HDFC", "account": account, "name": "Alice Rao"});
    assert_eq!(
        put_json(
            &w.http,
            &format!("{url}/v1/admin/vpas/alice@hdfc"),
            &repoint("ACC003")
        )
        .await
        .0,
        200
    );
    let (status, body) = put_json(
        &w.http,
        &format!("{url}/v1/admin/banks/HDFC/circuit"),
        &json!({"mode": "open"}),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let (status, _) = common::post_json(
        &w.http,
        &format!("{url}/v1/admin/banks/HDFC/adapters/restart"),
        &json!({}),
    )
    .await;
    assert!(status < 300);
    let (status, log) = get_json(&w.http, &format!("{url}/v1/ops/audit?limit=50")).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().expect("entries");
    let find = |action: &str, target: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .unwrap_or_else(|| panic!("no {action} {target} in {log}"))
            .clone()
    };
    let vpa = find("vpas.update", "alice@hdfc");
    assert_eq!(vpa["before"]["account"], "ACC001");
    assert_eq!(vpa["after"]["account"], "ACC003");
    let actor = vpa["actor"].as_str().expect("actor");
    assert!(
        actor.starts_with("operator:") && actor.ends_with("@127.0.0.1"),
        "{actor}"
    );
    assert!(!actor.contains(TOKEN), "the token itself is never logged");
    assert_eq!(
        find("circuit_overrides.insert", "HDFC")["after"]["mode"],
        "open"
    );
    find("adapters.restart", "HDFC");
    find("banks.insert", "ICICI");
    // The log is append-only, even for the database's own users.
    let db = w.switch_db.client().await;
    assert!(db.execute("DELETE FROM audit_log", &[]).await.is_err());
    // Purging every merchant record is an operator's call.
    let plain = common::http();
    let resp = plain
        .post(format!("{url}/purge-payments"))
        .send()
        .await
        .expect("purge");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = w
        .http
        .post(format!("{url}/purge-payments"))
        .send()
        .await
        .expect("purge");
    assert_eq!(resp.status().as_u16(), 200);
}
