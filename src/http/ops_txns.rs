//! Operators' reads of transactions, for the console and scripts:
//! `GET /v1/ops/sagas` (unfinished sagas by step, the oldest ones) and
//! `GET /v1/ops/transactions` (search by id, VPA or status, newest first,
//! paged by `before`). Operators see full VPAs and every client's
//! transactions; clients have their own, signed reads.

use super::AppState;
use super::admin::authorise;
use super::problem::{Problem, ProblemDoc};
use crate::adapters::store::ops_reads::{MAX_COUNTED, OpsTxn, StepCount, TxnSearch};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/ops/sagas", web::get().to(sagas))
        .route("/v1/ops/transactions", web::get().to(search));
}

/// `GET /v1/ops/sagas`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SagasDoc {
    /// Unfinished sagas counted (at most `counted_cap`, the oldest first).
    pub counted: i64,
    pub counted_cap: i64,
    pub by_step: Vec<StepCount>,
    pub oldest: Vec<OpsTxn>,
}

/// `GET /v1/ops/transactions`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TxnListDoc {
    pub transactions: Vec<OpsTxn>,
    /// `before` for the next page (absent on the last).
    pub next_before: Option<String>,
}

/// The query's pairs (each name at most once: `input::query_pairs`), all
/// of them `known`.
fn known_pairs(req: &HttpRequest, known: &[&str]) -> Result<Vec<(String, String)>, Problem> {
    let query = super::input::query_pairs(req)?;
    if let Some((k, _)) = query.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(Problem::bad_request(
            "INVALID_QUERY",
            format!(
                "unknown query parameter {k:?} (known: {})",
                known.join(", ")
            ),
        ));
    }
    Ok(query)
}

/// A page cursor: the last row's `created_at` (RFC 3339) and id.
fn cursor(t: &OpsTxn) -> String {
    format!(
        "{}~{}",
        t.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        t.txn_id
    )
}

fn parse_cursor(text: &str) -> Result<(DateTime<Utc>, uuid::Uuid), Problem> {
    let bad = || Problem::bad_request("INVALID_QUERY", "before must be a next_before value");
    let (at, id) = text.split_once('~').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at.with_timezone(&Utc), id))
}

fn bounded(name: &str, text: &str, max: i64) -> Result<i64, Problem> {
    text.parse::<i64>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| Problem::bad_request("INVALID_QUERY", format!("{name} must be 1-{max}")))
}

/// Unfinished sagas by their last checkpointed step, and the oldest ones.
#[utoipa::path(get, path = "/v1/ops/sagas", tag = "ops",
    params(("oldest" = Option<i64>, Query, description = "How many of the oldest to list, 1-100 (default 10)", minimum = 1, maximum = 100)),
    responses((status = 200, description = "Sagas in flight", body = SagasDoc)))]
pub(crate) async fn sagas(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let mut oldest = 10;
    for (k, v) in known_pairs(&req, &["oldest"])? {
        if k == "oldest" {
            oldest = bounded("oldest", &v, 100)?;
        }
    }
    let (by_step, counted, oldest) = state
        .store
        .sagas_by_step(oldest)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(SagasDoc {
        counted,
        counted_cap: MAX_COUNTED,
        by_step,
        oldest,
    }))
}

/// Transactions by id, VPA (payer or payee) or status, newest first.
#[utoipa::path(get, path = "/v1/ops/transactions", tag = "ops",
    params(
        ("txn_id" = Option<uuid::Uuid>, Query, description = "One transaction"),
        ("vpa" = Option<String>, Query, description = "Either party", example = "cust01@hdfc"),
        ("status" = Option<String>, Query, description = "PENDING, SUCCESS, FAILED or REVERSED"),
        ("before" = Option<String>, Query, description = "The previous page's next_before"),
        ("limit" = Option<i64>, Query, description = "1-200 (default 50)", minimum = 1, maximum = 200),
    ),
    responses(
        (status = 200, description = "Matching transactions", body = TxnListDoc),
        (status = 422, description = "INVALID_VPA or INVALID_STATUS", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn search(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let mut search = TxnSearch {
        limit: 50,
        ..TxnSearch::default()
    };
    for (k, v) in known_pairs(&req, &["txn_id", "vpa", "status", "before", "limit"])? {
        match k.as_str() {
            "txn_id" => search.txn_id = Some(super::transactions::parse_txn_id(&v)?),
            "vpa" => search.vpa = Some(super::input::parse_vpa("vpa", &v)?.as_str().to_string()),
            "status" => {
                let status = crate::saga::Status::parse(&v).ok_or_else(|| {
                    Problem::unprocessable(
                        "INVALID_STATUS",
                        "status must be PENDING, SUCCESS, FAILED or REVERSED",
                    )
                })?;
                search.status = Some(status.as_str().to_string());
            }
            "before" => search.before = Some(parse_cursor(&v)?),
            "limit" => search.limit = bounded("limit", &v, 200)?,
            _ => {}
        }
    }
    let transactions = state
        .store
        .search_txns(&search)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let next_before = (transactions.len() as i64 == search.limit)
        .then(|| transactions.last().map(cursor))
        .flatten();
    Ok(HttpResponse::Ok().json(TxnListDoc {
        transactions,
        next_before,
    }))
}
