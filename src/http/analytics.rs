//! `GET /v1/analytics/*` (operators): the daily summaries the analytics
//! ingest maintains (`crate::analytics`), read from its tables. Query
//! parameters are parsed once here; a bad date, `from` after `to` or a range
//! over 366 days is a `422` with a stable code, never a 500.

use super::AppState;
use super::admin::authorise;
use super::input::query_pairs;
use super::problem::{Problem, ProblemDoc};
use crate::analytics::day::{DayRange, ist_day};
use crate::analytics::summary::Counts;
use crate::domain::{Paise, Vpa};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDate;
use serde::Serialize;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/analytics/daily", web::get().to(daily))
        .route(
            "/v1/analytics/merchants/{vpa}/daily",
            web::get().to(merchant),
        )
        .route("/v1/analytics/banks/daily", web::get().to(banks))
        .route("/v1/analytics/status", web::get().to(status));
}

/// The counts of one summary row, as the API shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DayCounts {
    pub date: String,
    pub total: i64,
    pub success: i64,
    pub failed: i64,
    pub reversed: i64,
    pub pending: i64,
    /// success / (success + failed + reversed), 0 when none ended.
    pub success_rate: f64,
    /// Exact rupees.
    pub amount_success: String,
    pub amount_total: String,
}

impl DayCounts {
    fn of(date: NaiveDate, c: &Counts) -> DayCounts {
        DayCounts {
            date: date.to_string(),
            total: c.total,
            success: c.success,
            failed: c.failed,
            reversed: c.reversed,
            pending: c.pending,
            success_rate: c.success_rate(),
            amount_success: Paise(c.amount_success).to_rupees(),
            amount_total: Paise(c.amount_total).to_rupees(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DailyResponse {
    pub days: Vec<DayCounts>,
}

/// A merchant's day: its P2M and COLLECT payments, and what it refunded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MerchantDay {
    #[serde(flatten)]
    pub counts: DayCounts,
    /// SUCCESS refunds of its P2M payments created that day, exact rupees.
    pub refunded: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MerchantResponse {
    pub merchant_vpa: String,
    pub days: Vec<MerchantDay>,
}

/// One (day, payer bank, payee bank).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BankDay {
    pub payer_bank: String,
    pub payee_bank: String,
    #[serde(flatten)]
    pub counts: DayCounts,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BanksResponse {
    pub days: Vec<BankDay>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusResponse {
    /// Valid events stored (each message id once).
    pub events_ingested: i64,
    /// Deliveries refused (in `analytics_rejects` and the dead-letter queue).
    pub events_rejected: i64,
    /// Age of the newest event of the last stored batch when it was stored.
    pub lag_seconds: f64,
    /// Deliveries of a message id already stored (redeliveries, replays).
    pub duplicates: i64,
    /// When the last batch was stored (null: never).
    pub last_batch_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `from`/`to` of the query (`to` defaults to today in IST, `from` to `to`).
fn range(req: &HttpRequest) -> Result<DayRange, Problem> {
    let query = query_pairs(req)?;
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    DayRange::parse(get("from"), get("to"), ist_day(chrono::Utc::now()))
        .map_err(|e| Problem::unprocessable(e.code(), e.to_string()))
}

/// The days every summary reads (IST calendar days, both included; a
/// schema only: `range` parses the query itself, strictly).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DayRangeQuery {
    /// First IST day, YYYY-MM-DD.
    #[param(example = "2026-12-01")]
    from: String,
    /// Last IST day (at most 366 days after `from`).
    #[param(example = "2026-12-02")]
    to: String,
}

/// Payments per IST day (by the day they were created).
#[utoipa::path(get, path = "/v1/analytics/daily", tag = "analytics",
    params(DayRangeQuery),
    responses((status = 200, description = "Days", body = DailyResponse), (status = 422, description = "INVALID_DATE, INVALID_DATE_RANGE or DATE_RANGE_TOO_LONG", body = ProblemDoc, content_type = "application/problem+json")))]
pub(crate) async fn daily(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let range = range(&req)?;
    let rows = state
        .analytics
        .daily(range)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(DailyResponse {
        days: rows.iter().map(|(d, c)| DayCounts::of(*d, c)).collect(),
    }))
}

/// A merchant's P2M and COLLECT payments per IST day, and its refunds.
#[utoipa::path(get, path = "/v1/analytics/merchants/{vpa}/daily", tag = "analytics",
    params(("vpa" = String, Path, description = "The merchant's VPA", example = "shop01@hdfc"), DayRangeQuery),
    responses((status = 200, description = "Days", body = MerchantResponse), (status = 422, description = "INVALID_DATE, INVALID_DATE_RANGE or DATE_RANGE_TOO_LONG", body = ProblemDoc, content_type = "application/problem+json")))]
pub(crate) async fn merchant(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let vpa = Vpa::parse(&path).ok_or_else(|| {
        Problem::unprocessable("INVALID_VPA", "the merchant must be a VPA like shop@icici")
    })?;
    let range = range(&req)?;
    let rows = state
        .analytics
        .merchant_daily(vpa.as_str(), range)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(MerchantResponse {
        merchant_vpa: vpa.as_str().to_string(),
        days: rows
            .iter()
            .map(|(d, c)| MerchantDay {
                counts: DayCounts::of(*d, c),
                refunded: Paise(c.refunded).to_rupees(),
            })
            .collect(),
    }))
}

/// Payments per (IST day, payer bank, payee bank).
#[utoipa::path(get, path = "/v1/analytics/banks/daily", tag = "analytics",
    params(DayRangeQuery),
    responses((status = 200, description = "Days", body = BanksResponse), (status = 422, description = "INVALID_DATE, INVALID_DATE_RANGE or DATE_RANGE_TOO_LONG", body = ProblemDoc, content_type = "application/problem+json")))]
pub(crate) async fn banks(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let range = range(&req)?;
    let rows = state
        .analytics
        .bank_daily(range)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(BanksResponse {
        days: rows
            .iter()
            .map(|(d, payer, payee, c)| BankDay {
                payer_bank: payer.clone(),
                payee_bank: payee.clone(),
                counts: DayCounts::of(*d, c),
            })
            .collect(),
    }))
}

/// The ingest: events stored and refused, and its lag.
#[utoipa::path(get, path = "/v1/analytics/status", tag = "analytics",
    responses((status = 200, description = "The ingest's status", body = StatusResponse)))]
pub(crate) async fn status(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let c = state
        .analytics
        .counters()
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(StatusResponse {
        events_ingested: c.events_ingested,
        events_rejected: c.events_rejected,
        lag_seconds: c.lag_ms as f64 / 1000.0,
        duplicates: c.duplicates,
        last_batch_at: c.last_batch_at,
    }))
}
