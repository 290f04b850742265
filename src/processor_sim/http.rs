//! The simulator's HTTP face, exactly the processor side of
//! `docs/processor-api.md`: `POST /payments`, `GET /payments/{id}`,
//! `GET /payments/service-health` (one answer per 5 s, shared), and the
//! `X-Rinha-Token` admin endpoints (summary, delay, failure, purge).
//!
//! A malformed payment is `400` (never `422`, which means "already have it", so
//! that a client cannot mistake its own bug for an acceptance). A payment that
//! passed parsing runs to its end on its own task, like at a real processor:
//! a client that gives up does not stop it from being stored.

use super::Settings;
use super::book::{HealthSlot, Lookup, PaymentBook, Purge, Record, Summarise};
use super::ledger::{Fee, Payment, Stored, cents_text};
use crate::domain::{MAX_WIRE_PAISE, Paise};
use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Longest delay an operator may configure.
pub const MAX_DELAY_MS: u64 = 600_000;

/// Everything the handlers share.
#[derive(Clone)]
pub struct SimState {
    pub book: Addr<PaymentBook>,
    pub settings: Arc<watch::Sender<Settings>>,
    pub token: String,
    pub fee: Fee,
}

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/payments", web::post().to(pay))
        .route("/payments/service-health", web::get().to(health))
        .route("/payments/{id}", web::get().to(payment))
        .route("/admin/payments-summary", web::get().to(summary))
        .route("/admin/configurations/delay", web::put().to(set_delay))
        .route("/admin/configurations/failure", web::put().to(set_failure))
        .route("/admin/purge-payments", web::post().to(purge));
}

fn message(status: u16, text: &str) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code).json(serde_json::json!({ "message": text }))
}

/// Raw JSON text as a response body (numbers written exactly as computed).
fn raw_json(status: u16, body: String) -> HttpResponse {
    let code =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(code)
        .content_type("application/json")
        .body(body)
}

pub async fn not_found() -> HttpResponse {
    message(404, "no such endpoint")
}

fn unavailable() -> HttpResponse {
    message(503, "the simulator is shutting down")
}

/// `requestedAt` as written back: milliseconds when that is exact, else nanoseconds.
pub fn timestamp_text(at: &DateTime<Utc>) -> String {
    let format = if at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        SecondsFormat::Millis
    } else {
        SecondsFormat::Nanos
    };
    at.to_rfc3339_opts(format, true)
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentIn {
    correlation_id: String,
    amount: Box<RawValue>,
    requested_at: String,
}

fn parse_payment(body: &[u8]) -> Result<(Uuid, Payment), String> {
    let p: PaymentIn = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let id = Uuid::parse_str(&p.correlation_id)
        .map_err(|_| "correlationId must be a UUID".to_string())?;
    let text = p.amount.get().trim();
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        return Err("amount must be a JSON number".into());
    }
    let cents = Paise::parse_rupees(text, Paise(MAX_WIRE_PAISE))
        .map_err(|e| format!("amount: {e}"))?
        .0;
    let requested_at = parse_timestamp(&p.requested_at)
        .ok_or_else(|| "requestedAt must be an ISO-8601 timestamp".to_string())?;
    Ok((
        id,
        Payment {
            amount_cents: cents,
            requested_at,
        },
    ))
}

async fn pay(state: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    let (id, payment) = match parse_payment(&body) {
        Ok(p) => p,
        Err(why) => return message(400, &why),
    };
    let settings = *state.settings.borrow();
    let book = state.book.clone();
    let task = actix_web::rt::spawn(async move {
        if settings.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(settings.delay_ms)).await;
        }
        if settings.failure {
            return message(500, "payment processing failed (simulated failure)");
        }
        match book.send(Record { id, payment }).await {
            Ok(Stored::New) => message(200, "payment processed successfully"),
            Ok(Stored::AlreadyHad) => message(422, "correlationId already processed"),
            Err(_) => unavailable(),
        }
    });
    task.await.unwrap_or_else(|_| unavailable())
}

async fn payment(state: web::Data<SimState>, path: web::Path<String>) -> HttpResponse {
    let Ok(id) = Uuid::parse_str(&path.into_inner()) else {
        return message(400, "the payment id must be a UUID");
    };
    match state.book.send(Lookup(id)).await {
        Ok(Some(p)) => raw_json(
            200,
            format!(
                r#"{{"correlationId":"{id}","amount":{},"requestedAt":"{}"}}"#,
                cents_text(i128::from(p.amount_cents)),
                timestamp_text(&p.requested_at)
            ),
        ),
        Ok(None) => message(404, "payment not found"),
        Err(_) => unavailable(),
    }
}

async fn health(state: web::Data<SimState>) -> HttpResponse {
    match state.book.send(HealthSlot).await {
        Ok(true) => {
            let s = *state.settings.borrow();
            HttpResponse::Ok()
                .json(serde_json::json!({"failing": s.failure, "minResponseTime": s.delay_ms}))
        }
        Ok(false) => message(429, "at most one health check every 5 seconds"),
        Err(_) => unavailable(),
    }
}

/// The refusal, if any: `401` without the token header, `403` with a wrong one.
fn denied(state: &SimState, req: &HttpRequest) -> Option<HttpResponse> {
    match req.headers().get("X-Rinha-Token") {
        None => Some(message(401, "the X-Rinha-Token header is required")),
        Some(v) if v.as_bytes() == state.token.as_bytes() => None,
        Some(_) => Some(message(403, "invalid X-Rinha-Token")),
    }
}

/// `[from, to]`, either bound optional.
type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn window(req: &HttpRequest) -> Result<Window, String> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| e.to_string())?;
    let mut bounds = (None, None);
    for (k, v) in query.iter() {
        let slot = match k.as_str() {
            "from" => &mut bounds.0,
            "to" => &mut bounds.1,
            _ => continue,
        };
        *slot =
            Some(parse_timestamp(v).ok_or_else(|| format!("{k} must be an ISO-8601 timestamp"))?);
    }
    Ok(bounds)
}

async fn summary(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(refusal) = denied(&state, &req) {
        return refusal;
    }
    let (from, to) = match window(&req) {
        Ok(w) => w,
        Err(why) => return message(400, &why),
    };
    match state.book.send(Summarise { from, to }).await {
        Ok(t) => raw_json(
            200,
            format!(
                r#"{{"totalRequests":{},"totalAmount":{},"totalFee":{},"feePerTransaction":{}}}"#,
                t.requests,
                cents_text(t.amount_cents),
                state.fee.of_cents_text(t.amount_cents),
                state.fee.text()
            ),
        ),
        Err(_) => unavailable(),
    }
}

#[derive(Deserialize)]
struct DelayIn {
    delay: u64,
}

async fn set_delay(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(refusal) = denied(&state, &req) {
        return refusal;
    }
    match serde_json::from_slice::<DelayIn>(&body) {
        Ok(d) if d.delay <= MAX_DELAY_MS => {
            state.settings.send_modify(|s| s.delay_ms = d.delay);
            message(200, "delay updated")
        }
        Ok(_) => message(400, &format!("delay must be at most {MAX_DELAY_MS} ms")),
        Err(e) => message(400, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct FailureIn {
    failure: bool,
}

async fn set_failure(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refusal) = denied(&state, &req) {
        return refusal;
    }
    match serde_json::from_slice::<FailureIn>(&body) {
        Ok(f) => {
            state.settings.send_modify(|s| s.failure = f.failure);
            message(200, "failure updated")
        }
        Err(e) => message(400, &e.to_string()),
    }
}

async fn purge(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(refusal) = denied(&state, &req) {
        return refusal;
    }
    match state.book.send(Purge).await {
        Ok(n) => {
            tracing::info!(purged = n, "payments purged");
            message(200, "all payments purged")
        }
        Err(_) => unavailable(),
    }
}
