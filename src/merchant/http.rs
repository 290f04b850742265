//! Merchant endpoints of the switch (the "Rinha de Backend 2025" contract,
//! `docs/processor-api.md`): `POST /payments` answers `202` only once
//! the payment is durable in Postgres, written by the switch's group-commit
//! writer (a repeated correlationId with the same amount answers `200` and
//! changes nothing); `GET /payments-summary` counts
//! what each processor accepted, by the requestedAt the switch sent it;
//! `POST /purge-payments` forgets every merchant payment. Errors are
//! problem+json with a stable code; the amount is read exactly from the raw
//! JSON text, never through a float.
//!
//! Handlers reach Postgres through the switch's `AppState` pool; the forwarder
//! finds new payments by polling, and is woken at once when the server also
//! registers a `web::Data<MerchantHandle>`.

use super::MerchantHandle;
use super::store::{MerchantStore, Received};
use crate::domain::{MAX_WIRE_PAISE, Paise};
use crate::http::AppState;
use crate::http::problem::{Problem, ProblemDoc, body_bytes, parse_json};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/payments", web::post().to(receive))
        .route("/payments-summary", web::get().to(summary))
        .route("/purge-payments", web::post().to(purge))
        .route("/v1/ops/processors", web::get().to(processors));
}

fn store(state: &AppState) -> MerchantStore {
    MerchantStore::new(state.store.pool.clone())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = MerchantPaymentRequest, example = json!({"correlationId": "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3", "amount": 19.90}))]
struct PaymentBody {
    /// A UUID.
    correlation_id: String,
    /// Decimal, at most two places (a number or a string), read exactly.
    #[schema(value_type = f64, example = 19.90)]
    amount: Box<RawValue>,
}

/// Exact cents from the raw JSON text (`19.90` or `"19.90"`).
fn parse_amount(raw: &RawValue) -> Result<i64, Problem> {
    let text = raw.get().trim();
    let digits = if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|_| invalid_amount())?
    } else if text.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        text.to_string()
    } else {
        return Err(invalid_amount());
    };
    Paise::parse_rupees(&digits, Paise(MAX_WIRE_PAISE))
        .map(|p| p.0)
        .map_err(|e| Problem::unprocessable(e.code(), e.to_string()))
}

fn invalid_amount() -> Problem {
    Problem::unprocessable(
        "INVALID_AMOUNT",
        "amount must be a decimal number greater than 0 with at most 2 decimals, like 19.90",
    )
}

/// A merchant payment, forwarded to the default or fallback processor.
/// `202` once durable; the same correlationId and amount again: `200`.
#[utoipa::path(post, path = "/payments", tag = "merchant",
    request_body = PaymentBody,
    responses(
        (status = 202, description = "Received", body = MerchantReceived),
        (status = 200, description = "Received before", body = MerchantReceived),
        (status = 422, description = "Invalid correlationId or amount; a correlationId reused with another amount", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let body: PaymentBody = parse_json(&body_bytes(body)?)?;
    let id = Uuid::parse_str(&body.correlation_id).map_err(|_| {
        Problem::unprocessable("INVALID_CORRELATION_ID", "correlationId must be a UUID")
    })?;
    let amount_cents = parse_amount(&body.amount)?;
    let received = record(&state, id, amount_cents).await?;
    let answer = MerchantReceived {
        correlation_id: id,
        status: "RECEIVED",
    };
    match received {
        Received::New => {
            if let Some(handle) = req.app_data::<web::Data<MerchantHandle>>() {
                handle.kick();
            }
            Ok(HttpResponse::Accepted().json(answer))
        }
        Received::Duplicate { amount_cents: a } if a == amount_cents => {
            Ok(HttpResponse::Ok().json(answer))
        }
        Received::Duplicate { .. } => Err(Problem::unprocessable(
            "CORRELATION_ID_REUSED",
            "this correlationId was already received with another amount",
        )),
    }
}

/// Records the payment through the group-commit writer (the `202` comes
/// after its commit), once per correlationId: the insert decides, and only a
/// payment already there is read back for its amount.
async fn record(state: &AppState, id: Uuid, amount_cents: i64) -> Result<Received, Problem> {
    // Twice at most: a purge may remove the conflicting row before it is read.
    for _ in 0..2 {
        let inserted = state.writer.receive(id, amount_cents).await?;
        if inserted {
            return Ok(Received::New);
        }
        if let Some(amount_cents) = store(state)
            .amount_of(id)
            .await
            .map_err(|e| Problem::unavailable(&e))?
        {
            return Ok(Received::Duplicate { amount_cents });
        }
    }
    Err(Problem::unavailable(&format!(
        "payment {id} neither inserted nor found"
    )))
}

/// `from`/`to` (both optional, ISO-8601). Stored times have microsecond
/// precision, so `from` is rounded up and `to` down to a microsecond: the same
/// payments fall inside as with nanosecond comparisons.
/// `[from, to]`, either bound optional.
type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn window(req: &HttpRequest) -> Result<Window, Problem> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Problem::bad_request("INVALID_QUERY", e.to_string()))?;
    let mut bounds = (None, None);
    for (k, v) in query.iter() {
        let round_up = match k.as_str() {
            "from" => true,
            "to" => false,
            _ => continue,
        };
        let at = DateTime::parse_from_rfc3339(v)
            .map_err(|_| {
                Problem::bad_request(
                    "INVALID_TIMESTAMP",
                    format!("{k} must be an ISO-8601 timestamp like 2025-07-15T12:34:56.000Z"),
                )
            })?
            .with_timezone(&Utc);
        let sub_micro = i64::from(at.timestamp_subsec_nanos() % 1_000);
        let at = if sub_micro == 0 {
            at
        } else if round_up {
            at + ChronoDuration::nanoseconds(1_000 - sub_micro)
        } else {
            at - ChronoDuration::nanoseconds(sub_micro)
        };
        if round_up {
            bounds.0 = Some(at);
        } else {
            bounds.1 = Some(at);
        }
    }
    Ok(bounds)
}

/// What each processor accepted, by the time the switch sent it.
#[utoipa::path(get, path = "/payments-summary", tag = "merchant",
    params(
        ("from" = Option<String>, Query, description = "ISO-8601 timestamp"),
        ("to" = Option<String>, Query, description = "ISO-8601 timestamp"),
    ),
    responses((status = 200, description = "Totals per processor", body = MerchantSummary)))]
pub(crate) async fn summary(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    let (from, to) = window(&req)?;
    let totals = store(&state)
        .summary(from, to)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    // Amounts are written from integer cents as exact decimal text.
    let part = |i: usize| {
        format!(
            r#"{{"totalRequests":{},"totalAmount":{}}}"#,
            totals[i].requests,
            Paise(totals[i].amount_cents).to_rupees()
        )
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(format!(
            r#"{{"default":{},"fallback":{}}}"#,
            part(0),
            part(1)
        )))
}

/// Forgets every merchant payment (an operator's call).
#[utoipa::path(post, path = "/purge-payments", tag = "merchant",
    responses((status = 200, description = "Purged", body = PurgedDoc)))]
pub(crate) async fn purge(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, Problem> {
    // Deletes every merchant record: an operator's call.
    crate::http::auth::operator(&state, &req)?;
    let purged = store(&state)
        .purge()
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    tracing::info!(purged, "merchant payments purged");
    Ok(HttpResponse::Ok().json(PurgedDoc { purged }))
}

/// `POST /payments`' answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MerchantReceived {
    pub correlation_id: Uuid,
    #[schema(example = "RECEIVED")]
    pub status: &'static str,
}

/// `POST /purge-payments`' answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PurgedDoc {
    /// Merchant payments deleted.
    pub purged: u64,
}

/// One processor's totals (the body is written as exact text; this is its shape).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only
#[schema(rename_all = "camelCase")]
pub(crate) struct ProcessorTotals {
    total_requests: i64,
    /// An exact decimal JSON number.
    total_amount: f64,
}

/// `GET /payments-summary`'s answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only
pub(crate) struct MerchantSummary {
    default: ProcessorTotals,
    fallback: ProcessorTotals,
}

/// One payment processor as operators see it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProcessorDoc {
    /// `default` (the lower fee: preferred) or `fallback`.
    pub processor: &'static str,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// The last health answer said failing.
    pub failing: bool,
    /// Estimated response time (0: unknown).
    pub latency_ms: u64,
    pub in_flight: usize,
    pub capacity: usize,
    /// Payments it accepted, and their total (exact decimal).
    pub accepted: i64,
    pub accepted_amount: String,
}

/// `GET /v1/ops/processors`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProcessorsDoc {
    /// Merchant forwarding runs in this switch.
    pub enabled: bool,
    pub processors: Vec<ProcessorDoc>,
}

/// Merchant forwarding's two processors: circuit, speed, load, and what each
/// accepted (the routing share).
#[utoipa::path(get, path = "/v1/ops/processors", tag = "ops",
    responses((status = 200, description = "The processors", body = ProcessorsDoc)))]
pub(crate) async fn processors(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    crate::http::auth::operator(&state, &req)?;
    let Some(handle) = req.app_data::<web::Data<MerchantHandle>>() else {
        return Ok(HttpResponse::Ok().json(ProcessorsDoc {
            enabled: false,
            processors: Vec::new(),
        }));
    };
    let view = handle
        .supervisor
        .send(super::supervisor::View)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let totals = store(&state)
        .summary(None, None)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let now = std::time::Instant::now();
    let processors = ["default", "fallback"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let s = &view.snapshots[i];
            ProcessorDoc {
                processor: name,
                circuit: s.circuit.as_str(),
                failing: s.failing,
                latency_ms: s.latency.estimate_ms(now),
                in_flight: s.in_flight,
                capacity: s.capacity,
                accepted: totals[i].requests,
                accepted_amount: Paise(totals[i].amount_cents).to_rupees(),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(ProcessorsDoc {
        enabled: true,
        processors,
    }))
}
