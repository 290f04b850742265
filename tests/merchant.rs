//! Merchant forwarding, the "Rinha de Backend 2025" contract
//! (`docs/processor-api.md`), over HTTP against real child processes
//! and a real Postgres database per test.
//!
//! - The processor simulator (`processor-sim`): acceptance, `422` on a known
//!   correlationId, `400` on malformed input, lookups, the shared health limit
//!   (`429`), admin token (`401`/`403`), the inclusive summary window with
//!   exact decimal totals and fees, failure and delay modes, purge.
//! - The switch: `POST /payments` (durable `202`, idempotent repeat, problem+json
//!   refusals), forwarding to the default processor, `/payments-summary` equal
//!   to the processors' own, purge; resumption after `kill -9`.
//! - The contest's fault schedule, shortened: load from concurrent clients
//!   while the default turns slow, then failing, then both fail, then both
//!   heal; the summaries agree at checkpoints and at the end, and every
//!   payment is at exactly one processor.

mod common;

use chrono::{DateTime, SecondsFormat, Utc};
use common::{ProcessorProc, SwitchProc, TestDb, get_json, http, post_raw, window_query};
use futures::StreamExt;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn processor_payment(id: &str, amount: &str, requested_at: &str) -> String {
    format!(r#"{{"correlationId":"{id}","amount":{amount},"requestedAt":"{requested_at}"}}"#)
}

fn merchant_payment(id: &str, amount: &str) -> String {
    format!(r#"{{"correlationId":"{id}","amount":{amount}}}"#)
}

/// (status, raw body text)
async fn send_text(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// A JSON number (or decimal string) as integer cents.
fn cents(v: &Value) -> i64 {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    assert!(frac.len() <= 2, "more than 2 decimals in {text}");
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().expect("whole") * 100 + frac.parse::<i64>().expect("frac")
}

fn cents_text(c: i64) -> String {
    if c % 10 == 0 {
        // Also exercise one-decimal amounts (19.9).
        format!("{}.{}", c / 100, (c % 100) / 10)
    } else {
        format!("{}.{:02}", c / 100, c % 100)
    }
}

async fn switch_summary(
    client: &reqwest::Client,
    switch_url: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Value {
    let (status, body) = get_json(
        client,
        &format!("{switch_url}/payments-summary{}", window_query(from, to)),
    )
    .await;
    assert_eq!(status, 200, "switch summary: {body}");
    body
}

/// The switch's figures against each processor's own, for one window.
async fn compare(
    client: &reqwest::Client,
    switch_url: &str,
    default: &ProcessorProc,
    fallback: &ProcessorProc,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(i64, i64), String> {
    let ours = switch_summary(client, switch_url, from, to).await;
    let mut totals = (0, 0);
    for (name, proc) in [("default", default), ("fallback", fallback)] {
        let theirs = proc.summary(client, from, to).await;
        let mine = &ours[name];
        let same = mine["totalRequests"] == theirs["totalRequests"]
            && cents(&mine["totalAmount"]) == cents(&theirs["totalAmount"]);
        if !same {
            return Err(format!(
                "{name} [{from:?}, {to:?}]: switch {mine} vs processor {theirs}"
            ));
        }
        let n = theirs["totalRequests"].as_i64().unwrap_or(0);
        if name == "default" {
            totals.0 = n;
        } else {
            totals.1 = n;
        }
    }
    Ok(totals)
}

/// `compare` until it holds, for at most 3 s (answers in flight at the moment
/// of a checkpoint are recorded a moment later); panics if it never does.
async fn assert_consistent(
    client: &reqwest::Client,
    switch: &SwitchProc,
    default: &ProcessorProc,
    fallback: &ProcessorProc,
    from: Option<&str>,
    to: Option<&str>,
    label: &str,
) -> (i64, i64) {
    let mut last = String::new();
    for _ in 0..15 {
        match compare(client, &switch.url, default, fallback, from, to).await {
            Ok(totals) => return totals,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{label}: summaries differ: {last}\nswitch log: {}",
        switch.log_path.display()
    );
}

/// Waits until the switch counts `n` accepted payments in all, or panics after `limit`.
async fn wait_forwarded(client: &reqwest::Client, switch: &SwitchProc, n: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let s = switch_summary(client, &switch.url, None, None).await;
        let total = s["default"]["totalRequests"].as_i64().unwrap_or(0)
            + s["fallback"]["totalRequests"].as_i64().unwrap_or(0);
        if total == n {
            return;
        }
        assert!(
            total < n,
            "the switch counts {total} payments, more than the {n} posted: {s}"
        );
        if Instant::now() >= deadline {
            panic!(
                "only {total} of {n} payments forwarded after {limit:?}: {s}\nswitch log: {}",
                switch.log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where each id is: asserts it is at exactly one processor; returns (at default, at fallback).
async fn assert_each_at_exactly_one(
    client: &reqwest::Client,
    default: &ProcessorProc,
    fallback: &ProcessorProc,
    payments: &[(String, i64)],
) -> (usize, usize) {
    let results: Vec<(String, u16, u16)> = futures::stream::iter(payments.iter().cloned())
        .map(|(id, amount)| {
            let client = client.clone();
            let (d, f) = (default.url.clone(), fallback.url.clone());
            async move {
                let (sd, bd) = get_json(&client, &format!("{d}/payments/{id}")).await;
                let (sf, bf) = get_json(&client, &format!("{f}/payments/{id}")).await;
                for (s, b) in [(sd, &bd), (sf, &bf)] {
                    if s == 200 {
                        assert_eq!(cents(&b["amount"]), amount, "amount of {id}: {b}");
                    }
                }
                (id, sd, sf)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut at = (0, 0);
    for (id, sd, sf) in results {
        match (sd, sf) {
            (200, 404) => at.0 += 1,
            (404, 200) => at.1 += 1,
            other => panic!("payment {id} is not at exactly one processor: {other:?}"),
        }
    }
    at
}

/// The switch's merchant counters (`upi_merchant_*` lines of /metrics), for the log.
async fn merchant_metrics(client: &reqwest::Client, switch: &SwitchProc) -> String {
    let text = client
        .get(format!("{}/metrics", switch.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("upi_merchant_accepted_total")
                || l.starts_with("upi_merchant_flows_total")
                || l.starts_with("upi_merchant_holds_total")
                || (l.starts_with("upi_merchant_processor_calls_total")
                    && !l.contains("outcome=\"healthy\""))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn start_processors() -> (ProcessorProc, ProcessorProc) {
    (
        ProcessorProc::start("processor-default", "0.05", &[]),
        ProcessorProc::start("processor-fallback", "0.15", &[]),
    )
}

fn start_switch(db: &TestDb, d: &ProcessorProc, f: &ProcessorProc, timeout_ms: &str) -> SwitchProc {
    SwitchProc::start(
        &db.url,
        &[
            "--processor-default-url",
            &d.url,
            "--processor-fallback-url",
            &f.url,
            "--processor-timeout-ms",
            timeout_ms,
            "--db-pool-size",
            "16",
            // Routing stories here are about failures and slowness the tests
            // set; a test machine's pauses must not put a processor in doubt
            // (the doubt rule has its unit tests in merchant::policy).
            "--processor-doubt-ms",
            "10000",
        ],
    )
}

async fn post_merchant(client: &reqwest::Client, switch_url: &str, body: &str) -> (u16, Value) {
    post_raw(client, &format!("{switch_url}/payments"), body).await
}

// ---------------------------------------------------------------------------
// The processor simulator
// ---------------------------------------------------------------------------

#[tokio::test]
async fn processor_sim_speaks_the_processor_contract() {
    let p = ProcessorProc::start("processor", "0.05", &[]);
    let c = http();
    let pay = |body: String| {
        let req = c
            .post(format!("{}/payments", p.url))
            .header("content-type", "application/json")
            .body(body);
        send_text(req)
    };
    let (t1, t2, t3) = (
        "2025-07-15T12:00:00.000Z",
        "2025-07-15T12:00:01.000Z",
        "2025-07-15T12:00:02.000Z",
    );
    let a = new_id();
    let (status, body) = pay(processor_payment(&a, "19.90", t1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({"message": "payment processed successfully"})
    );
    // The same correlationId again, even with other fields: 422, nothing changes.
    assert_eq!(pay(processor_payment(&a, "19.90", t1)).await.0, 422);
    assert_eq!(pay(processor_payment(&a, "5.00", t2)).await.0, 422);
    // Malformed: 400, never 422.
    for bad in [
        format!(r#"{{"correlationId":"{}","amount":19.90}}"#, new_id()),
        processor_payment(&new_id(), "1.234", t1),
        processor_payment(&new_id(), "0", t1),
        processor_payment(&new_id(), "-5", t1),
        processor_payment(&new_id(), "\"19.90\"", t1),
        processor_payment("not-a-uuid", "19.90", t1),
        processor_payment(&new_id(), "19.90", "yesterday"),
        "[]".to_string(),
    ] {
        assert_eq!(pay(bad.clone()).await.0, 400, "{bad}");
    }
    // Lookups.
    let (status, body) = send_text(c.get(format!("{}/payments/{a}", p.url))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!(r#"{{"correlationId":"{a}","amount":19.90,"requestedAt":"{t1}"}}"#)
    );
    let (status, _) = get_json(&c, &format!("{}/payments/{}", p.url, new_id())).await;
    assert_eq!(status, 404);

    // Health: one answer per 5 s, shared by everyone.
    let (status, body) = get_json(&c, &format!("{}/payments/service-health", p.url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"failing": false, "minResponseTime": 0})
    );
    let (status, _) = get_json(&c, &format!("{}/payments/service-health", p.url)).await;
    assert_eq!(status, 429);

    // Admin: token required.
    let summary_url = format!("{}/admin/payments-summary", p.url);
    assert_eq!(get_json(&c, &summary_url).await.0, 401);
    let (status, _) = send_text(c.get(&summary_url).header("X-Rinha-Token", "nope")).await;
    assert_eq!(status, 403);
    let (status, _) = send_text(
        c.put(format!("{}/admin/configurations/failure", p.url))
            .json(&serde_json::json!({"failure": true})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send_text(c.post(format!("{}/admin/purge-payments", p.url))).await;
    assert_eq!(status, 401);

    // Summary: inclusive window by requestedAt, exact decimals.
    assert_eq!(pay(processor_payment(&new_id(), "0.10", t2)).await.0, 200);
    assert_eq!(pay(processor_payment(&new_id(), "0.2", t3)).await.0, 200);
    let raw_summary = |from: Option<&str>, to: Option<&str>| {
        let req = c
            .get(format!("{summary_url}{}", window_query(from, to)))
            .header("X-Rinha-Token", "123");
        send_text(req)
    };
    let (status, all) = raw_summary(None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        all,
        r#"{"totalRequests":3,"totalAmount":20.20,"totalFee":1.01,"feePerTransaction":0.05}"#
    );
    // 0.10 + 0.20 is exactly 0.30 (a float sum would say 0.30000000000000004).
    let (_, late) = raw_summary(Some(t2), Some(t3)).await;
    assert_eq!(
        late,
        r#"{"totalRequests":2,"totalAmount":0.30,"totalFee":0.015,"feePerTransaction":0.05}"#
    );
    let early = p.summary(&c, Some(t1), Some(t2)).await;
    assert_eq!(early["totalRequests"], 2);
    let after = p.summary(&c, Some("2025-07-15T12:00:01.001Z"), None).await;
    assert_eq!(after["totalRequests"], 1);
    let before = p.summary(&c, None, Some("2025-07-15T11:59:59.999Z")).await;
    assert_eq!(before["totalRequests"], 0);
    assert_eq!(raw_summary(Some("bad"), None).await.0, 400);

    // Failure mode: 500, nothing stored.
    p.set_failure(&c, true).await;
    let failed = new_id();
    assert_eq!(pay(processor_payment(&failed, "1.00", t1)).await.0, 500);
    p.set_failure(&c, false).await;
    let (status, _) = get_json(&c, &format!("{}/payments/{failed}", p.url)).await;
    assert_eq!(status, 404);
    assert_eq!(p.summary(&c, None, None).await["totalRequests"], 3);

    // Delay: the answer comes no sooner than the delay.
    p.set_delay(&c, 300).await;
    let started = Instant::now();
    assert_eq!(pay(processor_payment(&new_id(), "1.00", t1)).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    p.set_delay(&c, 0).await;

    // A client that gives up does not stop a delayed payment from being stored.
    p.set_delay(&c, 500).await;
    let abandoned = new_id();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}/payments", p.url))
        .header("content-type", "application/json")
        .body(processor_payment(&abandoned, "2.00", t1))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client should have timed out");
    p.set_delay(&c, 0).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = get_json(&c, &format!("{}/payments/{abandoned}", p.url)).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned payment never landed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Purge forgets everything.
    p.purge(&c).await;
    assert_eq!(p.summary(&c, None, None).await["totalRequests"], 0);
    let (status, _) = get_json(&c, &format!("{}/payments/{a}", p.url)).await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------
// The switch
// ---------------------------------------------------------------------------

fn assert_problem(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], want_status, "{body}");
}

#[tokio::test]
async fn switch_forwards_each_payment_once_and_its_summary_matches_the_processors() {
    let db = TestDb::new("merchant");
    let (d, f) = start_processors();
    let switch = start_switch(&db, &d, &f, "3000");
    let c = http();

    // Refusals: problem+json with a code, nothing stored.
    let id = new_id();
    for (body, status, code) in [
        ("{".to_string(), 400, "MALFORMED_JSON"),
        ("[]".to_string(), 400, "INVALID_BODY"),
        (r#"{"amount":1.00}"#.to_string(), 400, "MISSING_FIELD"),
        (
            format!(r#"{{"correlationId":"{id}","amount":1.00,"x":1}}"#),
            400,
            "UNKNOWN_FIELD",
        ),
        (
            merchant_payment("nope", "1.00"),
            422,
            "INVALID_CORRELATION_ID",
        ),
        (merchant_payment(&id, "1.234"), 422, "INVALID_AMOUNT"),
        (merchant_payment(&id, "0"), 422, "INVALID_AMOUNT"),
        (merchant_payment(&id, "-3.00"), 422, "INVALID_AMOUNT"),
        (merchant_payment(&id, "1e3"), 422, "INVALID_AMOUNT"),
        (merchant_payment(&id, "true"), 422, "INVALID_AMOUNT"),
    ] {
        let resp = c
            .post(format!("{}/payments", switch.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        let got = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_problem(got, &answer, status, code);
        assert!(
            ctype.starts_with("application/problem+json"),
            "{body}: {ctype}"
        );
    }
    let (status, body) = get_json(
        &c,
        &format!("{}/payments-summary?from=yesterday", switch.url),
    )
    .await;
    assert_problem(status, &body, 400, "INVALID_TIMESTAMP");

    // 40 payments, all accepted at once; a repeat is idempotent.
    let started = Utc::now() - chrono::Duration::seconds(1);
    let mut payments = Vec::new();
    for i in 0..40i64 {
        let id = new_id();
        let amount = 1_990 + i * 7;
        let (status, body) =
            post_merchant(&c, &switch.url, &merchant_payment(&id, &cents_text(amount))).await;
        assert_eq!(status, 202, "{body}");
        payments.push((id, amount));
    }
    let (first, amount) = payments[0].clone();
    let (status, body) = post_merchant(
        &c,
        &switch.url,
        &merchant_payment(&first, &cents_text(amount)),
    )
    .await;
    assert_eq!(status, 200, "a repeat is accepted again: {body}");
    let (status, body) = post_merchant(&c, &switch.url, &merchant_payment(&first, "999.99")).await;
    assert_problem(status, &body, 422, "CORRELATION_ID_REUSED");

    wait_forwarded(&c, &switch, 40, Duration::from_secs(20)).await;
    let (at_default, at_fallback) =
        assert_consistent(&c, &switch, &d, &f, None, None, "all time").await;
    assert_eq!(
        (at_default, at_fallback),
        (40, 0),
        "healthy default takes all"
    );
    let sum: i64 = payments.iter().map(|p| p.1).sum();
    let ours = switch_summary(&c, &switch.url, None, None).await;
    assert_eq!(cents(&ours["default"]["totalAmount"]), sum);
    assert_eq!(
        ours["fallback"],
        serde_json::json!({"totalRequests": 0, "totalAmount": 0.00})
    );
    let now = iso(Utc::now() + chrono::Duration::seconds(1));
    assert_consistent(
        &c,
        &switch,
        &d,
        &f,
        Some(&iso(started)),
        Some(&now),
        "window",
    )
    .await;
    let empty = switch_summary(
        &c,
        &switch.url,
        Some("2020-01-01T00:00:00.000Z"),
        Some("2020-01-02T00:00:00.000Z"),
    )
    .await;
    assert_eq!(empty["default"]["totalRequests"], 0);
    assert_eq!(
        assert_each_at_exactly_one(&c, &d, &f, &payments).await,
        (40, 0)
    );

    // Purge: the switch forgets them all.
    let (status, _) = post_raw(&c, &format!("{}/purge-payments", switch.url), "").await;
    assert_eq!(status, 200);
    let after = switch_summary(&c, &switch.url, None, None).await;
    assert_eq!(after["default"]["totalRequests"], 0);
    assert_eq!(after["fallback"]["totalRequests"], 0);
}

#[tokio::test]
async fn switch_holds_payments_while_both_processors_fail_and_resumes_them_after_kill_9() {
    let db = TestDb::new("merchant_resume");
    let (d, f) = start_processors();
    let c = http();
    d.set_failure(&c, true).await;
    f.set_failure(&c, true).await;
    // A short POST deadline keeps the lease (3 × deadline + 2 s) of a killed process short.
    let mut switch = start_switch(&db, &d, &f, "1000");
    let mut payments = Vec::new();
    for i in 0..30i64 {
        let id = new_id();
        let amount = 100 + i;
        let (status, body) =
            post_merchant(&c, &switch.url, &merchant_payment(&id, &cents_text(amount))).await;
        assert_eq!(status, 202, "{body}");
        payments.push((id, amount));
    }
    // Both fail: nothing is accepted anywhere, nothing is dropped.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(d.summary(&c, None, None).await["totalRequests"], 0);
    assert_eq!(f.summary(&c, None, None).await["totalRequests"], 0);
    let client = db.client().await;
    let held: i64 = client
        .query_one(
            "SELECT count(*) FROM merchant_payments WHERE state <> 'ACCEPTED'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 30);

    switch.kill9();
    d.set_failure(&c, false).await;
    f.set_failure(&c, false).await;
    switch.restart();
    wait_forwarded(&c, &switch, 30, Duration::from_secs(30)).await;
    let (at_d, at_f) = assert_consistent(&c, &switch, &d, &f, None, None, "after resume").await;
    assert_eq!(at_d + at_f, 30);
    assert_eq!(
        assert_each_at_exactly_one(&c, &d, &f, &payments).await.0 as i64,
        at_d
    );
}

#[tokio::test]
async fn unanswered_posts_are_resolved_at_the_processor_where_they_may_have_landed() {
    let db = TestDb::new("merchant_unanswered");
    let (d, f) = start_processors();
    let c = http();
    // Every POST to the default outlives the switch's 1 s deadline, yet the default
    // stores it 2.5 s after it arrived. Had the switch believed an early "not found"
    // and gone to the fallback, these payments would end up at both processors.
    d.set_delay(&c, 2_500).await;
    let switch = start_switch(&db, &d, &f, "1000");
    let mut payments = Vec::new();
    for round in 0..2 {
        for i in 0..20i64 {
            let id = new_id();
            let amount = 500 + i + round * 100;
            let (status, body) =
                post_merchant(&c, &switch.url, &merchant_payment(&id, &cents_text(amount))).await;
            assert_eq!(status, 202, "{body}");
            payments.push((id, amount));
        }
        wait_forwarded(&c, &switch, payments.len() as i64, Duration::from_secs(40)).await;
    }
    let (at_d, at_f) = assert_consistent(&c, &switch, &d, &f, None, None, "unanswered").await;
    assert_eq!(
        assert_each_at_exactly_one(&c, &d, &f, &payments).await,
        (at_d as usize, at_f as usize)
    );
    assert!(
        at_d > 0,
        "the default's late acceptances were found: {at_d}"
    );
    println!(
        "unanswered: default {at_d}, fallback {at_f}\n{}",
        merchant_metrics(&c, &switch).await
    );
}

#[tokio::test]
async fn kill_9_during_unanswered_posts_still_forwards_each_payment_once() {
    let db = TestDb::new("merchant_kill");
    let (d, f) = start_processors();
    let c = http();
    // The default stores each payment 2.5 s after it arrives; the switch dies
    // while its POSTs are out. The next process must find them at the default,
    // not send them to the fallback as well.
    d.set_delay(&c, 2_500).await;
    let mut switch = start_switch(&db, &d, &f, "1000");
    let mut payments = Vec::new();
    for i in 0..20i64 {
        let id = new_id();
        let amount = 700 + i;
        let (status, body) =
            post_merchant(&c, &switch.url, &merchant_payment(&id, &cents_text(amount))).await;
        assert_eq!(status, 202, "{body}");
        payments.push((id, amount));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    switch.kill9();
    assert_eq!(d.summary(&c, None, None).await["totalRequests"], 0);
    d.set_delay(&c, 0).await;
    switch.restart();
    wait_forwarded(&c, &switch, 20, Duration::from_secs(30)).await;
    let (at_d, at_f) = assert_consistent(&c, &switch, &d, &f, None, None, "after kill").await;
    assert_eq!(
        assert_each_at_exactly_one(&c, &d, &f, &payments).await,
        (at_d as usize, at_f as usize)
    );
    println!(
        "kill -9: default {at_d}, fallback {at_f}\n{}",
        merchant_metrics(&c, &switch).await
    );
}

// ---------------------------------------------------------------------------
// The contest's fault schedule, shortened
// ---------------------------------------------------------------------------

/// Every `ms` from the start of the load, what the processors do.
const SCHEDULE: &[(u64, &str)] = &[
    (5_000, "default slow"),
    (10_000, "default failing"),
    (15_000, "both failing"),
    (19_000, "both healthy"),
];
const LOAD_FOR: Duration = Duration::from_secs(25);
const CLIENTS: usize = 16;
/// Checkpoints (ms from the start) where the summaries must agree for
/// requestedAt up to `LAG` ago (answers in flight are recorded a moment later).
const CHECKPOINTS: &[u64] = &[9_000, 14_000, 18_500, 24_000];
const LAG: Duration = Duration::from_secs(3);

#[tokio::test]
async fn fault_schedule_every_payment_at_exactly_one_processor_and_summaries_agree() {
    let test_started = Instant::now();
    let db = TestDb::new("merchant_faults");
    let (d, f) = start_processors();
    let switch = start_switch(&db, &d, &f, "3000");
    let c = http();

    let accepted: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Utc::now();
    let start = Instant::now();
    let mut clients = Vec::new();
    // Another client of the fallback takes its one health answer per 5 s every
    // second (like a second backend instance would): the switch's probes of the
    // fallback get 429 and it must route from what its calls tell it.
    {
        let (c, url, stop) = (c.clone(), f.url.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = get_json(&c, &format!("{url}/payments/service-health")).await;
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
        }));
    }
    for _ in 0..CLIENTS {
        let (c, url) = (c.clone(), switch.url.clone());
        let (accepted, refused, stop) = (accepted.clone(), refused.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let uuid = uuid::Uuid::new_v4();
                let amount = i64::from(
                    u16::from_le_bytes([uuid.as_bytes()[0], uuid.as_bytes()[1]]) % 50_000,
                ) + 1;
                let id = uuid.to_string();
                let (status, body) =
                    post_merchant(&c, &url, &merchant_payment(&id, &cents_text(amount))).await;
                if (200..300).contains(&status) {
                    accepted.lock().unwrap().push((id, amount));
                } else {
                    refused.lock().unwrap().push(format!("{status} {body}"));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
    }

    let mut schedule = SCHEDULE.iter().peekable();
    let mut checkpoints = CHECKPOINTS.iter().peekable();
    while start.elapsed() < LOAD_FOR {
        let now_ms = start.elapsed().as_millis() as u64;
        if let Some((at, what)) = schedule.peek().copied()
            && now_ms >= *at
        {
            schedule.next();
            println!("{:>6} ms: {what}", now_ms);
            match *what {
                "default slow" => d.set_delay(&c, 1_500).await,
                "default failing" => {
                    d.set_delay(&c, 0).await;
                    d.set_failure(&c, true).await;
                }
                "both failing" => f.set_failure(&c, true).await,
                _ => {
                    d.set_failure(&c, false).await;
                    f.set_failure(&c, false).await;
                }
            }
        }
        if let Some(at) = checkpoints.peek().copied()
            && now_ms >= *at
        {
            checkpoints.next();
            let to = iso(Utc::now() - chrono::Duration::from_std(LAG).unwrap());
            let from = iso(t0 - chrono::Duration::seconds(60));
            let (nd, nf) = assert_consistent(
                &c,
                &switch,
                &d,
                &f,
                Some(&from),
                Some(&to),
                &format!("checkpoint at {at} ms"),
            )
            .await;
            println!(
                "{:>6} ms: checkpoint ok: default {nd}, fallback {nf} (requestedAt <= now - {LAG:?})",
                now_ms
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    let payments = accepted.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    assert!(refused.is_empty(), "refused payments: {refused:?}");
    let n = payments.len() as i64;
    println!(
        "{:>6} ms: load stopped, {n} payments accepted by the switch",
        start.elapsed().as_millis()
    );

    wait_forwarded(&c, &switch, n, Duration::from_secs(25)).await;
    println!("{:>6} ms: all forwarded", start.elapsed().as_millis());

    // The whole run, and windows inside it.
    let (at_d, at_f) = assert_consistent(&c, &switch, &d, &f, None, None, "final").await;
    assert_eq!(at_d + at_f, n);
    assert!(
        at_d > 0 && at_f > 0,
        "both processors should have been used: {at_d} / {at_f}"
    );
    for (a, b) in [(0, 5), (5, 15), (10, 20), (15, 40)] {
        let from = iso(t0 + chrono::Duration::seconds(a));
        let to = iso(t0 + chrono::Duration::seconds(b));
        assert_consistent(&c, &switch, &d, &f, Some(&from), Some(&to), "final window").await;
    }
    let ours = switch_summary(&c, &switch.url, None, None).await;
    let sum: i64 = payments.iter().map(|p| p.1).sum();
    assert_eq!(
        cents(&ours["default"]["totalAmount"]) + cents(&ours["fallback"]["totalAmount"]),
        sum
    );
    let (by_id_d, by_id_f) = assert_each_at_exactly_one(&c, &d, &f, &payments).await;
    assert_eq!((by_id_d as i64, by_id_f as i64), (at_d, at_f));

    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state <> 'ACCEPTED'),
                    count(*) FILTER (WHERE holds > 0),
                    count(*) FILTER (WHERE attempts > 1),
                    coalesce(sum(attempts), 0)::bigint
             FROM merchant_payments",
            &[],
        )
        .await
        .unwrap();
    let (unfinished, held, retried, sends): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(unfinished, 0);
    println!(
        "fault schedule: {n} accepted, default {at_d}, fallback {at_f}, held {held}, \
         sent more than once {retried}, POSTs announced {sends}, test {:.1} s",
        test_started.elapsed().as_secs_f64()
    );
    println!("{}", merchant_metrics(&c, &switch).await);
}
