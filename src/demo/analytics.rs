//! The demo's last section: today's summary as the analytics API serves it
//! (`GET /v1/analytics/daily`, `/banks/daily`, `/status`), once the ingest
//! (`serve --analytics`, which the demo turns on) has caught up with the
//! events. Reads only; it waits at most `CATCH_UP_LIMIT`, and 3 s when
//! nothing arrives (RabbitMQ away: the events wait in the outbox).

use reqwest::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

async fn get(http: &Client, url: String) -> Option<Value> {
    let resp = http.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// An API amount (exact rupees text) with Indian grouping, as the rest of
/// the summary shows money.
fn inr(amount: &Value) -> String {
    use crate::domain::Paise;
    let text = amount.as_str().unwrap_or("?");
    match Paise::parse_rupees(text, Paise(i64::MAX)) {
        Ok(p) => p.to_inr(),
        Err(_) => format!("₹{text}"),
    }
}

/// Waits until the ingest stored every event (no pending transaction and
/// the count steady for half a second), then renders today's numbers.
pub async fn today(http: &Client, switch: &str) -> String {
    let started = Instant::now();
    let mut last_ingested = -1;
    let mut unchanged = 0;
    let (daily, status) = loop {
        let status = get(http, format!("{switch}/v1/analytics/status")).await;
        let daily = get(http, format!("{switch}/v1/analytics/daily")).await;
        let ingested = status
            .as_ref()
            .and_then(|s| s["events_ingested"].as_i64())
            .unwrap_or(-1);
        let pending = daily
            .as_ref()
            .and_then(|d| d["days"][0]["pending"].as_i64())
            .unwrap_or(-1);
        unchanged = if ingested == last_ingested {
            unchanged + 1
        } else {
            0
        };
        // Caught up; or nothing moves for 3 s (no RabbitMQ: nothing comes).
        let steady = unchanged >= 1 && ingested > 0 && pending == 0;
        if steady || unchanged >= 6 || started.elapsed() > CATCH_UP_LIMIT {
            break (daily, status);
        }
        last_ingested = ingested;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let Some(day) = daily.as_ref().map(|d| &d["days"][0]) else {
        return "== analytics (GET /v1/analytics/daily) ==\nunavailable".into();
    };
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    let mut out = vec![
        format!(
            "== analytics, today IST {} (GET /v1/analytics/daily) ==",
            day["date"].as_str().unwrap_or("?")
        ),
        format!(
            "transactions:                 {}  (success {}, failed {}, reversed {}, pending {})",
            n(day, "total"),
            n(day, "success"),
            n(day, "failed"),
            n(day, "reversed"),
            n(day, "pending")
        ),
        format!(
            "success rate:                 {:.2}%",
            day["success_rate"].as_f64().unwrap_or(0.0) * 100.0
        ),
        format!(
            "amount success / total:       {} / {}",
            inr(&day["amount_success"]),
            inr(&day["amount_total"])
        ),
    ];
    if let Some(banks) = get(http, format!("{switch}/v1/analytics/banks/daily")).await {
        for b in banks["days"].as_array().into_iter().flatten() {
            out.push(format!(
                "  {:<28}{} transactions, {} success, {}",
                format!(
                    "{} -> {}",
                    b["payer_bank"].as_str().unwrap_or("?"),
                    b["payee_bank"].as_str().unwrap_or("?")
                ),
                n(b, "total"),
                n(b, "success"),
                inr(&b["amount_total"])
            ));
        }
    }
    if let Some(s) = status {
        if n(&s, "events_ingested") == 0 {
            out.push("(the ingest got no events: is RabbitMQ running?)".into());
        }
        out.push(format!(
            "events ingested:              {}  (rejected {}, duplicates {}, lag {:.0} ms)",
            n(&s, "events_ingested"),
            n(&s, "events_rejected"),
            n(&s, "duplicates"),
            s["lag_seconds"].as_f64().unwrap_or(0.0) * 1000.0
        ));
    }
    out.join("\n")
}
