//! The switch's client and operator API (`docs/api.md`),
//! exercised over HTTP against the real `upi-switch serve` with two real bank
//! simulators (see `common::World`).
//!
//! 1. Bad input: every validation rule answers its 4xx as
//!    `application/problem+json` with its stable `code`, and writes nothing.
//! 2. Idempotency: one key is one transaction and one debit, however many
//!    concurrent or late replays; a key reused for a different body is refused.
//! 3. Happy path and reads: payments move exactly the amount, registrations are
//!    durable across restarts, VPA validation masks names, and the health,
//!    readiness and metrics endpoints answer.
//!
//! No test asserts timings; waits only bound how long a test may hang.

mod common;

use common::{
    SwitchProc, TestDb, World, balances, feed, get_json, http, post_json, post_raw, put_json,
};
use serde_json::{Value, json};
use std::time::Duration;

/// Upper bound for a transaction to become terminal (not a timing assertion).
const TERMINAL: Duration = Duration::from_secs(60);

async fn world() -> World {
    World::start(&[], &[], &[]).await
}

/// A valid transaction body with the given `amount` JSON text.
fn txn_body_raw(amount_json: &str) -> String {
    format!(
        r#"{{"type":"P2P","payer_vpa":"alice@hdfc","payee_vpa":"bob@icici","amount":{amount_json},"note":"rent"}}"#
    )
}

/// An HTTP answer: status, content type and body (JSON or `Null`).
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

/// `POST /v1/transactions{query}` with a raw JSON body and an optional key.
async fn post_txn(world: &World, key: Option<&str>, query: &str, body: &str) -> Answer {
    let mut req = world
        .http
        .post(format!("{}/v1/transactions{query}", world.switch.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    answer(req.send().await.expect("request")).await
}

fn fresh_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Asserts a problem+json answer with this status and code.
fn assert_problem(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "status; body {}", a.body);
    assert!(
        a.content_type.starts_with("application/problem+json"),
        "content-type {:?}; body {}",
        a.content_type,
        a.body
    );
    let b = &a.body;
    assert_eq!(b["code"], code, "code; body {b}");
    assert_eq!(b["status"], status, "status field; body {b}");
    for field in ["type", "title", "detail"] {
        assert!(
            b[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} missing or empty: {b}"
        );
    }
    let code_ok = b["code"]
        .as_str()
        .is_some_and(|c| !c.is_empty() && c.bytes().all(|x| x.is_ascii_uppercase() || x == b'_'));
    assert!(code_ok, "code is not UPPER_SNAKE: {b}");
}

/// Posts a bad transaction request and asserts its problem and that no
/// transaction row was written.
async fn assert_txn_rejected(
    world: &World,
    key: Option<&str>,
    query: &str,
    body: &str,
    status: u16,
    code: &str,
) -> Answer {
    let before = world.txn_count().await;
    let a = post_txn(world, key, query, body).await;
    assert_problem(&a, status, code);
    assert_eq!(
        world.txn_count().await,
        before,
        "a rejected request wrote a row: {body}"
    );
    a
}

/// Rows in one of the switch's tables.
async fn row_count(world: &World, table: &str) -> i64 {
    let client = world.switch_db.client().await;
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// PUT with a raw body, returning the full answer.
async fn put_raw(client: &reqwest::Client, url: &str, body: &str) -> Answer {
    let resp = client
        .put(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    answer(resp).await
}

/// Sends an admin PUT that must be refused, and checks that neither banks nor
/// VPAs changed.
async fn assert_admin_rejected(world: &World, path: &str, body: &str, status: u16, code: &str) {
    let banks = row_count(world, "banks").await;
    let vpas = row_count(world, "vpas").await;
    let a = put_raw(&world.http, &format!("{}{path}", world.switch.url), body).await;
    assert_problem(&a, status, code);
    assert_eq!(row_count(world, "banks").await, banks, "bank rows changed");
    assert_eq!(row_count(world, "vpas").await, vpas, "vpa rows changed");
}

/// Debits recorded at a bank for one transaction.
async fn debits_for(world: &World, bank_url: &str, txn_id: &str) -> Vec<Value> {
    feed(&world.http, bank_url)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "DEBIT" && e["txn_id"] == txn_id)
        .collect()
}

fn txn_id_of(body: &Value) -> String {
    body["txn_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no txn_id in {body}"))
        .to_string()
}

// ---------------------------------------------------------------------------
// 1. Bad input
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_without_idempotency_key_is_400_idempotency_key_missing() {
    let w = world().await;
    assert_txn_rejected(
        &w,
        None,
        "",
        &txn_body_raw(r#""10""#),
        400,
        "IDEMPOTENCY_KEY_MISSING",
    )
    .await;
}

#[tokio::test]
async fn create_with_idempotency_key_of_65_chars_or_empty_is_400_idempotency_key_invalid() {
    let w = world().await;
    let body = txn_body_raw(r#""10""#);
    let long = "k".repeat(65);
    assert_txn_rejected(&w, Some(&long), "", &body, 400, "IDEMPOTENCY_KEY_INVALID").await;
    assert_txn_rejected(&w, Some(""), "", &body, 400, "IDEMPOTENCY_KEY_INVALID").await;
}

#[tokio::test]
async fn create_with_idempotency_key_of_64_chars_is_accepted() {
    let w = world().await;
    let key = "k".repeat(64);
    let a = post_txn(&w, Some(&key), "", &txn_body_raw(r#""10""#)).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(w.txn_count().await, 1);
    // Any printable ASCII, spaces inside included.
    let b = post_txn(
        &w,
        Some("order 42 / retry #1"),
        "",
        &txn_body_raw(r#""11""#),
    )
    .await;
    assert_eq!(b.status, 202, "{}", b.body);
    assert_eq!(w.txn_count().await, 2);
}

#[tokio::test]
async fn create_with_malformed_json_is_400_malformed_json() {
    let w = world().await;
    let key = fresh_key();
    assert_txn_rejected(
        &w,
        Some(&key),
        "",
        r#"{"type":"P2P","#,
        400,
        "MALFORMED_JSON",
    )
    .await;
    assert_txn_rejected(&w, Some(&key), "", "not json", 400, "MALFORMED_JSON").await;
}

#[tokio::test]
async fn create_with_empty_body_is_400_malformed_json() {
    let w = world().await;
    assert_txn_rejected(&w, Some(&fresh_key()), "", "", 400, "MALFORMED_JSON").await;
}

#[tokio::test]
async fn create_with_unknown_field_is_400_unknown_field() {
    let w = world().await;
    let body = r#"{"type":"P2P","payer_vpa":"alice@hdfc","payee_vpa":"bob@icici","amount":"10","tip":"1"}"#;
    assert_txn_rejected(&w, Some(&fresh_key()), "", body, 400, "UNKNOWN_FIELD").await;
}

#[tokio::test]
async fn create_with_missing_field_is_400_missing_field() {
    let w = world().await;
    let body = r#"{"type":"P2P","payer_vpa":"alice@hdfc","payee_vpa":"bob@icici"}"#;
    let a = assert_txn_rejected(&w, Some(&fresh_key()), "", body, 400, "MISSING_FIELD").await;
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("amount"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn create_with_an_unknown_type_or_collect_is_422_unsupported_type() {
    let w = world().await;
    for kind in ["COLLECT", "P2X", "p2p"] {
        let body = format!(
            r#"{{"type":"{kind}","payer_vpa":"alice@hdfc","payee_vpa":"bob@icici","amount":"10"}}"#
        );
        assert_txn_rejected(&w, Some(&fresh_key()), "", &body, 422, "UNSUPPORTED_TYPE").await;
    }
}

#[tokio::test]
async fn create_with_invalid_vpa_syntax_is_422_invalid_vpa() {
    let w = world().await;
    for (payer, payee) in [
        ("alice", "bob@icici"),
        ("alice@hdfc", "b@icici"),
        ("alice@hd-fc", "bob@icici"),
        ("alice@hdfc", "bob smith@icici"),
    ] {
        let body = json!({"type": "P2P", "payer_vpa": payer, "payee_vpa": payee, "amount": "10"});
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &body.to_string(),
            422,
            "INVALID_VPA",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_unknown_vpa_is_422_unknown_vpa() {
    let w = world().await;
    for (payer, payee) in [("zed@hdfc", "bob@icici"), ("alice@hdfc", "zed@icici")] {
        let body = json!({"type": "P2P", "payer_vpa": payer, "payee_vpa": payee, "amount": "10"});
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &body.to_string(),
            422,
            "UNKNOWN_VPA",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_payer_equal_to_payee_in_any_case_is_422_same_payer_payee() {
    let w = world().await;
    for (payer, payee) in [("alice@hdfc", "alice@hdfc"), ("alice@hdfc", "Alice@HDFC")] {
        let body = json!({"type": "P2P", "payer_vpa": payer, "payee_vpa": payee, "amount": "10"});
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &body.to_string(),
            422,
            "SAME_PAYER_PAYEE",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_two_vpas_of_one_account_is_422_same_payer_payee() {
    let w = world().await;
    let (status, body) = put_json(
        &w.http,
        &format!("{}/v1/admin/vpas/alice.alt@hdfc", w.switch.url),
        &json!({"bank_code": "HDFC", "account": "ACC001", "name": "Alice Rao"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "alice.alt@hdfc", "amount": "10"});
    assert_txn_rejected(
        &w,
        Some(&fresh_key()),
        "",
        &body.to_string(),
        422,
        "SAME_PAYER_PAYEE",
    )
    .await;
}

#[tokio::test]
async fn create_with_a_body_that_is_not_a_json_object_is_400_invalid_body() {
    let w = world().await;
    // serde would read a struct from an array; the API takes objects only.
    for body in [
        r#"["P2P","alice@hdfc","bob@icici","10","rent"]"#,
        r#""P2P""#,
        "42",
        "null",
    ] {
        assert_txn_rejected(&w, Some(&fresh_key()), "", body, 400, "INVALID_BODY").await;
    }
    // The same rule holds for the operator endpoints.
    assert_admin_rejected(
        &w,
        "/v1/admin/banks/SBI",
        r#"["SBI Bank",[{"url":"http://127.0.0.1:9","priority":0}]]"#,
        400,
        "INVALID_BODY",
    )
    .await;
}

#[tokio::test]
async fn create_with_a_body_over_16_kib_is_413_payload_too_large_problem() {
    let w = world().await;
    let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "10", "note": "n".repeat(20_000)});
    assert_txn_rejected(
        &w,
        Some(&fresh_key()),
        "",
        &body.to_string(),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    let big_vpa = json!({"vpa": format!("{}@icici", "a".repeat(20_000))});
    let resp = w
        .http
        .post(format!("{}/v1/vpa/validate", w.switch.url))
        .json(&big_vpa)
        .send()
        .await
        .expect("request");
    assert_problem(&answer(resp).await, 413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn create_at_exactly_the_default_limit_is_accepted() {
    let w = world().await;
    let a = post_txn(&w, Some(&fresh_key()), "", &txn_body_raw(r#""100000.00""#)).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let (status, doc) = get_json(
        &w.http,
        &format!("{}/v1/transactions/{}", w.switch.url, txn_id_of(&a.body)),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["amount"], "100000.00", "{doc}");
}

#[tokio::test]
async fn create_with_zero_amount_is_422_invalid_amount() {
    let w = world().await;
    for amount in [r#""0""#, r#""0.00""#, "0"] {
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &txn_body_raw(amount),
            422,
            "INVALID_AMOUNT",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_negative_amount_is_422_invalid_amount() {
    let w = world().await;
    for amount in [r#""-5""#, "-5"] {
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &txn_body_raw(amount),
            422,
            "INVALID_AMOUNT",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_more_than_two_decimals_is_422_invalid_amount() {
    let w = world().await;
    for amount in [r#""1.234""#, "1.234"] {
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &txn_body_raw(amount),
            422,
            "INVALID_AMOUNT",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_non_numeric_amount_string_is_422_invalid_amount() {
    let w = world().await;
    for amount in [r#""abc""#, r#""""#, r#""1e3""#, r#""1.""#, r#"".5""#] {
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &txn_body_raw(amount),
            422,
            "INVALID_AMOUNT",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_exponent_number_amount_is_422_invalid_amount() {
    let w = world().await;
    for amount in ["1e3", "1E3", "1.5e2"] {
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &txn_body_raw(amount),
            422,
            "INVALID_AMOUNT",
        )
        .await;
    }
}

#[tokio::test]
async fn create_over_the_default_limit_is_422_amount_over_limit() {
    let w = world().await;
    for amount in [r#""100000.01""#, "100000.01", r#""99999999999999999999""#] {
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &txn_body_raw(amount),
            422,
            "AMOUNT_OVER_LIMIT",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_amount_of_wrong_json_type_is_422_invalid_amount() {
    let w = world().await;
    for amount in ["true", "null", r#"{"rupees":10}"#, r#"["10"]"#] {
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &txn_body_raw(amount),
            422,
            "INVALID_AMOUNT",
        )
        .await;
    }
}

#[tokio::test]
async fn create_with_json_number_amount_is_accepted_and_stored_exactly() {
    let w = world().await;
    let a = post_txn(&w, Some(&fresh_key()), "", &txn_body_raw("150.75")).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let txn_id = txn_id_of(&a.body);
    let (status, doc) = get_json(
        &w.http,
        &format!("{}/v1/transactions/{txn_id}", w.switch.url),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["amount"], "150.75", "{doc}");
    // The bank was asked for exactly 15075 paise.
    let done = w.wait_terminal(&txn_id, TERMINAL).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let debits = debits_for(&w, &w.hdfc.url, &txn_id).await;
    assert_eq!(debits.len(), 1, "{debits:?}");
    assert_eq!(debits[0]["amount_paise"], 15_075, "{debits:?}");
}

#[tokio::test]
async fn create_with_wait_over_30000_is_400_invalid_wait() {
    let w = world().await;
    let body = txn_body_raw(r#""10""#);
    assert_txn_rejected(
        &w,
        Some(&fresh_key()),
        "?wait=30001",
        &body,
        400,
        "INVALID_WAIT",
    )
    .await;
}

#[tokio::test]
async fn create_with_non_numeric_wait_is_400_invalid_wait() {
    let w = world().await;
    let body = txn_body_raw(r#""10""#);
    for query in ["?wait=abc", "?wait=-1", "?wait=1.5", "?wait="] {
        assert_txn_rejected(&w, Some(&fresh_key()), query, &body, 400, "INVALID_WAIT").await;
    }
}

#[tokio::test]
async fn create_with_note_of_141_chars_is_422_invalid_note() {
    let w = world().await;
    let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "10", "note": "n".repeat(141)});
    assert_txn_rejected(
        &w,
        Some(&fresh_key()),
        "",
        &body.to_string(),
        422,
        "INVALID_NOTE",
    )
    .await;
}

#[tokio::test]
async fn create_with_note_of_140_chars_is_accepted() {
    let w = world().await;
    let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "10", "note": "n".repeat(140)});
    let a = post_txn(&w, Some(&fresh_key()), "", &body.to_string()).await;
    assert_eq!(a.status, 202, "{}", a.body);
}

#[tokio::test]
async fn get_transaction_with_non_uuid_id_is_400_invalid_txn_id() {
    let w = world().await;
    let resp = w
        .http
        .get(format!("{}/v1/transactions/not-a-uuid", w.switch.url))
        .send()
        .await
        .expect("request");
    assert_problem(&answer(resp).await, 400, "INVALID_TXN_ID");
}

#[tokio::test]
async fn get_unknown_transaction_is_404_txn_not_found() {
    let w = world().await;
    let id = uuid::Uuid::new_v4();
    for query in ["", "?wait=100"] {
        let resp = w
            .http
            .get(format!("{}/v1/transactions/{id}{query}", w.switch.url))
            .send()
            .await
            .expect("request");
        assert_problem(&answer(resp).await, 404, "TXN_NOT_FOUND");
    }
}

#[tokio::test]
async fn unknown_path_is_404_not_found_problem() {
    let w = world().await;
    for path in ["/v1/nope", "/", "/v1/transactions/x/y"] {
        let resp = w
            .http
            .get(format!("{}{path}", w.switch.url))
            .send()
            .await
            .expect("request");
        assert_problem(&answer(resp).await, 404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn put_bank_with_lowercase_code_is_422_invalid_bank_code() {
    let w = world().await;
    let body = json!({"name": "HDFC Bank", "endpoints": [{"url": w.hdfc.url, "priority": 0}]});
    assert_admin_rejected(
        &w,
        "/v1/admin/banks/hdfc",
        &body.to_string(),
        422,
        "INVALID_BANK_CODE",
    )
    .await;
}

#[tokio::test]
async fn put_bank_with_bad_endpoint_url_is_422_invalid_endpoint_url() {
    let w = world().await;
    for url in ["not a url", "ftp://127.0.0.1:9101", "http://"] {
        let body = json!({"name": "SBI Bank", "endpoints": [{"url": url, "priority": 0}]});
        assert_admin_rejected(
            &w,
            "/v1/admin/banks/SBI",
            &body.to_string(),
            422,
            "INVALID_ENDPOINT_URL",
        )
        .await;
    }
}

#[tokio::test]
async fn put_bank_without_endpoints_is_422_invalid_endpoints() {
    let w = world().await;
    let body = json!({"name": "SBI Bank", "endpoints": []});
    assert_admin_rejected(
        &w,
        "/v1/admin/banks/SBI",
        &body.to_string(),
        422,
        "INVALID_ENDPOINTS",
    )
    .await;
}

#[tokio::test]
async fn put_bank_with_unknown_field_is_400_unknown_field() {
    let w = world().await;
    let top = json!({"name": "SBI Bank", "endpoints": [{"url": "http://127.0.0.1:9", "priority": 0}], "ifsc": "SBIN"});
    assert_admin_rejected(
        &w,
        "/v1/admin/banks/SBI",
        &top.to_string(),
        400,
        "UNKNOWN_FIELD",
    )
    .await;
    let nested = json!({"name": "SBI Bank", "endpoints": [{"url": "http://127.0.0.1:9", "priority": 0, "weight": 1}]});
    assert_admin_rejected(
        &w,
        "/v1/admin/banks/SBI",
        &nested.to_string(),
        400,
        "UNKNOWN_FIELD",
    )
    .await;
}

#[tokio::test]
async fn put_vpa_with_invalid_vpa_is_422_invalid_vpa() {
    let w = world().await;
    let body = json!({"bank_code": "HDFC", "account": "ACC001", "name": "X Y"});
    assert_admin_rejected(
        &w,
        "/v1/admin/vpas/x@y",
        &body.to_string(),
        422,
        "INVALID_VPA",
    )
    .await;
}

#[tokio::test]
async fn put_vpa_with_unknown_bank_is_422_unknown_bank() {
    let w = world().await;
    let body = json!({"bank_code": "SBI", "account": "ACC001", "name": "Zed Q"});
    assert_admin_rejected(
        &w,
        "/v1/admin/vpas/zed@sbi",
        &body.to_string(),
        422,
        "UNKNOWN_BANK",
    )
    .await;
}

#[tokio::test]
async fn put_vpa_with_bad_mcc_is_422_invalid_mcc() {
    let w = world().await;
    for mcc in ["12a4", "123", "12345", ""] {
        let body = json!({"bank_code": "HDFC", "account": "ACC009", "name": "Shop", "merchant": true, "mcc": mcc});
        assert_admin_rejected(
            &w,
            "/v1/admin/vpas/shop@hdfc",
            &body.to_string(),
            422,
            "INVALID_MCC",
        )
        .await;
    }
}

#[tokio::test]
async fn admin_token_is_required_when_configured() {
    let db = TestDb::new("switch_auth");
    let switch = SwitchProc::start(&db.url, &["--admin-token", "s3cret-op"]);
    let c = http();
    let url = format!("{}/v1/admin/banks/HDFC", switch.url);
    let body =
        json!({"name": "HDFC Bank", "endpoints": [{"url": "http://127.0.0.1:9", "priority": 0}]});

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret-op"),
        Some("Bearer s3cret-op2"),
    ] {
        let mut req = c.put(&url).json(&body);
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        assert_problem(
            &answer(req.send().await.expect("request")).await,
            401,
            "UNAUTHORIZED",
        );
    }
    let vpa = json!({"bank_code": "HDFC", "account": "ACC001", "name": "Alice Rao"});
    let resp = c
        .put(format!("{}/v1/admin/vpas/alice@hdfc", switch.url))
        .json(&vpa)
        .send()
        .await
        .expect("request");
    assert_problem(&answer(resp).await, 401, "UNAUTHORIZED");
    let client = db.client().await;
    let banks: i64 = client
        .query_one("SELECT count(*) FROM banks", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(banks, 0, "an unauthorised call wrote a bank");

    let resp = c
        .put(&url)
        .header("Authorization", "Bearer s3cret-op")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 201);
    let resp = c
        .put(format!("{}/v1/admin/vpas/alice@hdfc", switch.url))
        .header("Authorization", "Bearer s3cret-op")
        .json(&vpa)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 201);
    // Client endpoints are not the operator's: they want a signature
    // (tests/auth.rs signs them).
    let (status, body) = post_json(
        &c,
        &format!("{}/v1/vpa/validate", switch.url),
        &json!({"vpa": "alice@hdfc"}),
    )
    .await;
    assert_eq!((status, &body["code"]), (401, &json!("UNSIGNED")), "{body}");
}

// ---------------------------------------------------------------------------
// 2. Idempotency
// ---------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_same_key_same_body_creates_one_transaction_and_one_debit() {
    let w = world().await;
    let key = fresh_key();
    let body = txn_body_raw(r#""25.50""#);
    let url = format!("{}/v1/transactions", w.switch.url);
    let c = http();
    let requests = (0..200).map(|_| {
        let req = c
            .post(&url)
            .header("Idempotency-Key", &key)
            .header("content-type", "application/json")
            .body(body.clone());
        async move { answer(req.send().await.expect("request")).await }
    });
    let answers = futures::future::join_all(requests).await;

    let first = txn_id_of(&answers[0].body);
    for a in &answers {
        assert!(
            a.status == 200 || a.status == 202,
            "{} {}",
            a.status,
            a.body
        );
        assert_eq!(txn_id_of(&a.body), first, "{}", a.body);
        assert_eq!(
            a.body["poll_uri"],
            format!("/v1/transactions/{first}"),
            "{}",
            a.body
        );
    }
    assert_eq!(w.txn_count().await, 1);

    let done = w.wait_terminal(&first, TERMINAL).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let debits = debits_for(&w, &w.hdfc.url, &first).await;
    assert_eq!(debits.len(), 1, "{debits:?}");
    assert_eq!(debits[0]["amount_paise"], 2_550);
    let all_debits = feed(&w.http, &w.hdfc.url)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "DEBIT")
        .count();
    assert_eq!(all_debits, 1);
    assert_eq!(w.txn_count().await, 1);
}

#[tokio::test]
async fn same_key_different_body_is_422_idempotency_key_reused_even_after_finish() {
    let w = world().await;
    let key = fresh_key();
    let (status, created) = w
        .pay_with_key(&key, "alice@hdfc", "bob@icici", "10", None)
        .await;
    assert_eq!(status, 202, "{created}");
    let txn_id = txn_id_of(&created);

    let variants = [
        json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "11"}),
        json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "frank@icici", "amount": "10"}),
        json!({"type": "P2P", "payer_vpa": "erin@hdfc", "payee_vpa": "bob@icici", "amount": "10"}),
        json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "10", "note": "x"}),
    ];
    for v in &variants {
        assert_txn_rejected(
            &w,
            Some(&key),
            "",
            &v.to_string(),
            422,
            "IDEMPOTENCY_KEY_REUSED",
        )
        .await;
    }
    let done = w.wait_terminal(&txn_id, TERMINAL).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    for v in &variants {
        assert_txn_rejected(
            &w,
            Some(&key),
            "",
            &v.to_string(),
            422,
            "IDEMPOTENCY_KEY_REUSED",
        )
        .await;
        assert_txn_rejected(
            &w,
            Some(&key),
            "?wait=100",
            &v.to_string(),
            422,
            "IDEMPOTENCY_KEY_REUSED",
        )
        .await;
    }
    assert_eq!(w.txn_count().await, 1);
}

#[tokio::test]
async fn replay_after_finish_returns_same_txn_with_terminal_status() {
    let w = world().await;
    let key = fresh_key();
    let (status, created) = w
        .pay_with_key(&key, "alice@hdfc", "bob@icici", "10", None)
        .await;
    assert_eq!(status, 202, "{created}");
    let txn_id = txn_id_of(&created);
    let done = w.wait_terminal(&txn_id, TERMINAL).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");

    let (status, replay) = w
        .pay_with_key(&key, "alice@hdfc", "bob@icici", "10", None)
        .await;
    assert!(status == 200 || status == 202, "{status} {replay}");
    assert_eq!(replay["txn_id"], txn_id.as_str(), "{replay}");
    assert_eq!(replay["status"], "SUCCESS", "{replay}");
    assert_eq!(
        replay["poll_uri"],
        format!("/v1/transactions/{txn_id}"),
        "{replay}"
    );

    // With ?wait the replay answers with the full status document.
    let (status, replay) = w
        .pay_with_key(&key, "alice@hdfc", "bob@icici", "10", Some(1000))
        .await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["txn_id"], txn_id.as_str(), "{replay}");
    assert_eq!(replay["status"], "SUCCESS", "{replay}");

    assert_eq!(w.txn_count().await, 1);
    assert_eq!(debits_for(&w, &w.hdfc.url, &txn_id).await.len(), 1);
}

// ---------------------------------------------------------------------------
// 3. Happy path and reads
// ---------------------------------------------------------------------------

#[tokio::test]
async fn payment_with_wait_succeeds_and_moves_exactly_the_amount() {
    let w = world().await;
    let (hdfc_before, hdfc_total_before) = balances(&w.http, &w.hdfc.url).await;
    let (icici_before, icici_total_before) = balances(&w.http, &w.icici.url).await;

    let (status, doc) = w
        .pay("alice@hdfc", "bob@icici", "150.75", Some(10_000))
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["status"], "SUCCESS", "{doc}");
    assert_eq!(doc["type"], "P2P", "{doc}");
    assert_eq!(doc["amount"], "150.75", "{doc}");
    assert_eq!(doc["payer_vpa"], "alice@hdfc", "{doc}");
    assert_eq!(doc["payee_vpa"], "bob@icici", "{doc}");
    assert_eq!(doc["reason"], Value::Null, "{doc}");
    for field in ["created_at", "updated_at"] {
        assert!(
            doc[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {doc}"
        );
    }
    let steps = doc["steps"].as_array().expect("steps");
    assert!(!steps.is_empty(), "{doc}");
    assert_eq!(
        steps.last().expect("last step")["state"],
        "SUCCESS",
        "{doc}"
    );
    assert!(steps.iter().all(|s| s["at"].is_string()), "{doc}");

    let txn_id = txn_id_of(&doc);
    let (status, got) = get_json(
        &w.http,
        &format!("{}/v1/transactions/{txn_id}", w.switch.url),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["status"], "SUCCESS", "{got}");
    assert_eq!(got["amount"], "150.75", "{got}");

    let (hdfc_after, hdfc_total_after) = balances(&w.http, &w.hdfc.url).await;
    let (icici_after, icici_total_after) = balances(&w.http, &w.icici.url).await;
    assert_eq!(hdfc_after["ACC001"], hdfc_before["ACC001"] - 15_075);
    assert_eq!(icici_after["ACC001"], icici_before["ACC001"] + 15_075);
    assert_eq!(hdfc_total_after, hdfc_total_before - 15_075);
    assert_eq!(icici_total_after, icici_total_before + 15_075);
}

#[tokio::test]
async fn payment_without_wait_is_202_pending_with_poll_uri() {
    let w = world().await;
    let (status, body) = w.pay("alice@hdfc", "bob@icici", "1.00", None).await;
    assert_eq!(status, 202, "{body}");
    let txn_id = txn_id_of(&body);
    assert!(uuid::Uuid::parse_str(&txn_id).is_ok(), "{body}");
    assert_eq!(body["status"], "PENDING", "{body}");
    assert_eq!(
        body["poll_uri"],
        format!("/v1/transactions/{txn_id}"),
        "{body}"
    );
    // The poll_uri leads to the transaction.
    let (status, doc) = get_json(
        &w.http,
        &format!(
            "{}{}",
            w.switch.url,
            body["poll_uri"].as_str().unwrap_or_default()
        ),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["txn_id"], txn_id.as_str(), "{doc}");
    let done = w.wait_terminal(&txn_id, TERMINAL).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
}

#[tokio::test]
async fn registrations_survive_a_switch_restart() {
    let mut w = world().await;
    w.switch.restart();
    // A fresh client: the old one may hold connections to the killed process.
    w.http = http();

    let (status, doc) = w.pay("alice@hdfc", "bob@icici", "2.00", Some(10_000)).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["status"], "SUCCESS", "{doc}");
    let (status, v) = post_json(
        &w.http,
        &format!("{}/v1/vpa/validate", w.switch.url),
        &json!({"vpa": "bob@icici"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["bank_code"], "ICICI", "{v}");
}

#[tokio::test]
async fn validate_vpa_finds_a_registered_vpa_case_insensitively_with_a_masked_name() {
    let w = world().await;
    let (status, v) = post_json(
        &w.http,
        &format!("{}/v1/vpa/validate", w.switch.url),
        &json!({"vpa": "Bob@ICICI"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["vpa"], "bob@icici", "{v}");
    // Registered as "Person bob@icici": first character of each word, then ***.
    assert_eq!(v["name"], "P*** b***", "{v}");
    assert_eq!(v["bank_code"], "ICICI", "{v}");

    // A name registered by an operator masks the same way.
    let (status, body) = put_json(
        &w.http,
        &format!("{}/v1/admin/vpas/ravi.k@icici", w.switch.url),
        &json!({"bank_code": "ICICI", "account": "ACC003", "name": "Ravi  Kumar Rao"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, v) = post_json(
        &w.http,
        &format!("{}/v1/vpa/validate", w.switch.url),
        &json!({"vpa": "ravi.k@icici"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "R*** K*** R***", "{v}");
}

#[tokio::test]
async fn validate_unknown_vpa_is_200_valid_false() {
    let w = world().await;
    let (status, v) = post_json(
        &w.http,
        &format!("{}/v1/vpa/validate", w.switch.url),
        &json!({"vpa": "nobody@icici"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert!(
        v.get("name").is_none() && v.get("bank_code").is_none(),
        "{v}"
    );
}

#[tokio::test]
async fn healthz_is_200() {
    let w = world().await;
    let (status, _) = get_json(&w.http, &format!("{}/healthz", w.switch.url)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn readyz_is_200_with_postgres_ok() {
    let w = world().await;
    let (status, body) = get_json(&w.http, &format!("{}/readyz", w.switch.url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
}

#[tokio::test]
async fn metrics_count_created_transactions() {
    let w = world().await;
    let (status, doc) = w.pay("alice@hdfc", "bob@icici", "3.00", Some(10_000)).await;
    assert_eq!(status, 200, "{doc}");
    let resp = w
        .http
        .get(format!("{}/metrics", w.switch.url))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("text");
    assert!(
        text.lines()
            .any(|l| l.starts_with("upi_transactions_created_total") && l.ends_with(" 1")),
        "metrics:\n{text}"
    );
}

#[tokio::test]
async fn validate_vpa_with_bad_json_is_400_problem() {
    // POST /v1/vpa/validate follows the same strict JSON rules.
    let w = world().await;
    let url = format!("{}/v1/vpa/validate", w.switch.url);
    let (status, body) = post_raw(&w.http, &url, "{").await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("MALFORMED_JSON")),
        "{body}"
    );
    let (status, body) = post_raw(&w.http, &url, r#"{"vpa":"bob@icici","x":1}"#).await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("UNKNOWN_FIELD")),
        "{body}"
    );
}

#[tokio::test]
async fn hostile_input_leading_zeros_format_characters_duplicate_keys_and_parameters() {
    let w = world().await;
    for amount in [r#""01.00""#, &format!("\"{}1\"", "0".repeat(10_000))] {
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &txn_body_raw(amount),
            422,
            "INVALID_AMOUNT",
        )
        .await;
    }
    for note in [
        "pay\u{202E}gnp.exe",
        "zero\u{200B}width",
        "\u{2066}isolate\u{2069}",
        "soft\u{00AD}hyphen",
    ] {
        let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "1.00", "note": note});
        assert_txn_rejected(
            &w,
            Some(&fresh_key()),
            "",
            &body.to_string(),
            422,
            "INVALID_NOTE",
        )
        .await;
    }
    // Two Idempotency-Key headers: which one would count? Neither.
    let resp = w
        .http
        .post(format!("{}/v1/transactions", w.switch.url))
        .header("Idempotency-Key", "k-1")
        .header("Idempotency-Key", "k-2")
        .header("content-type", "application/json")
        .body(txn_body_raw(r#""1.00""#))
        .send()
        .await
        .expect("request");
    assert_problem(&answer(resp).await, 400, "IDEMPOTENCY_KEY_INVALID");
    // A body that does not say it is JSON: 415, whatever it holds.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = w
            .http
            .post(format!("{}/v1/transactions", w.switch.url))
            .header("Idempotency-Key", fresh_key())
            .body(txn_body_raw(r#""1.00""#));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let a = answer(req.send().await.expect("request")).await;
        assert_problem(&a, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    // ?wait=1&wait=30000: refused, not one of them picked.
    assert_txn_rejected(
        &w,
        Some(&fresh_key()),
        "?wait=1&wait=30000",
        &txn_body_raw(r#""1.00""#),
        400,
        "INVALID_QUERY",
    )
    .await;
    assert_eq!(w.txn_count().await, 0, "nothing was written");
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_with_408_body_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world().await;
    let addr = w.switch.url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/transactions HTTP/1.1\r\nHost: {addr}\r\nIdempotency-Key: slow-1\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"type\":"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut answer))
        .await
        .expect("an answer within 30 s")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("BODY_TIMEOUT"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "cut off at {:?}",
        started.elapsed()
    );
    assert_eq!(w.txn_count().await, 0);
}
