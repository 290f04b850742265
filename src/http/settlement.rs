//! Settlement, ledger and reconciliation endpoints (operator token on
//! every one): `GET /v1/ledger/balances`, `GET /v1/settlement/windows`,
//! `GET /v1/settlement/windows/{id}`, `GET /v1/settlement/windows/{id}/report.csv?bank=`,
//! `POST /v1/admin/settlement/close`, `GET /v1/reconciliation/{window_id}`,
//! `POST /v1/admin/reconciliation/run`.
//!
//! Amounts are paise inside and exact decimal strings here. The report is
//! streamed page by page (`REPORT_PAGE` journals at a time), never read
//! whole. What it does not do: compute positions or judge ops (the store
//! and `settlement::recon` do).

use super::AppState;
use super::admin::authorise;
use super::input::paging;
use super::problem::{Problem, ProblemDoc, body_bytes, parse_json};
use crate::adapters::store::recon::ppm;
use crate::adapters::store::settlement::WindowRow;
use crate::domain::{BankCode, Paise};
use crate::settlement::{
    AccountBalance, CloseAnswer, LedgerBalances, PositionView, WindowDetail, WindowList,
    WindowSummary, status_text,
};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

/// Journals per page of a streamed report.
const REPORT_PAGE: i64 = 2_000;
/// Mismatches listed in a reconciliation result at most.
const MAX_MISMATCHES_LISTED: i64 = 1_000;
/// The report's header row (the contract's).
pub const REPORT_HEADER: &str = "txn_id,type,direction,amount,counterparty_bank,settled_at\n";

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/ledger/balances", web::get().to(balances))
        .route("/v1/settlement/windows", web::get().to(windows))
        .route("/v1/settlement/windows/{id}", web::get().to(window))
        .route(
            "/v1/settlement/windows/{id}/report.csv",
            web::get().to(report),
        )
        .route("/v1/admin/settlement/close", web::post().to(close))
        .route(
            "/v1/reconciliation/{window_id}",
            web::get().to(reconciliation),
        )
        .route(
            "/v1/admin/reconciliation/run",
            web::post().to(run_reconciliation),
        );
}

/// `GET /v1/reconciliation/{window_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReconResult {
    pub window_id: String,
    /// `RUNNING` (queued or running) or `DONE`.
    pub status: String,
    pub matched: i64,
    pub mismatches: Vec<MismatchView>,
    pub mismatch_ppm: i64,
}

/// One mismatch of a reconciliation.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MismatchView {
    pub kind: String,
    pub bank_code: String,
    pub op_id: String,
    pub txn_id: Option<String>,
    pub detail: String,
}

/// `POST /v1/admin/reconciliation/run` body: the window, as a string or a number.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"window_id": "1"}))]
pub struct RunRequest {
    #[schema(value_type = String)]
    pub window_id: serde_json::Value,
}

/// `202` answer of `POST /v1/admin/reconciliation/run`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunAccepted {
    pub window_id: String,
    /// Always `RUNNING`: the run is queued (or running).
    pub status: String,
}

fn unknown_window(id: &str) -> Problem {
    Problem::not_found(
        "UNKNOWN_WINDOW",
        format!("there is no settlement window {id:?}"),
    )
}

/// A window id of the path: digits only, else it names no window.
fn window_id(text: &str) -> Result<i64, Problem> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0 && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| unknown_window(text))
}

/// An operator's call about the window the path names: authorised, and
/// the window exists (else `404 UNKNOWN_WINDOW`).
async fn load_window(
    state: &AppState,
    req: &HttpRequest,
    text: &str,
) -> Result<WindowRow, Problem> {
    authorise(state, req)?;
    let id = window_id(text)?;
    state
        .store
        .window(id)
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .ok_or_else(|| unknown_window(text))
}

/// The switch's ledger: every bank's settlement account (credits − debits
/// of all postings); the total is always 0.00.
#[utoipa::path(get, path = "/v1/ledger/balances", tag = "settlement",
    responses((status = 200, description = "Balances", body = LedgerBalances)))]
pub(crate) async fn balances(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let rows = state
        .store
        .ledger_balances()
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let total = Paise(rows.iter().map(|(_, b)| b.0).sum());
    Ok(HttpResponse::Ok().json(LedgerBalances {
        accounts: rows
            .into_iter()
            .map(|(bank_code, b)| AccountBalance {
                bank_code,
                balance: b.to_rupees(),
            })
            .collect(),
        total: total.to_rupees(),
    }))
}

/// Settlement windows, newest first (one is always OPEN).
#[utoipa::path(get, path = "/v1/settlement/windows", tag = "settlement",
    responses((status = 200, description = "Windows", body = WindowList)))]
pub(crate) async fn windows(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let (limit, before) = paging(&req, "windows")?;
    let rows = state
        .store
        .windows(limit, before)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(WindowList {
        windows: rows
            .iter()
            .map(|w| WindowSummary {
                window_id: w.window_id.to_string(),
                status: status_text(w.open).into(),
                opened_at: w.opened_at,
                closed_at: w.closed_at,
            })
            .collect(),
    }))
}

/// One window with its multilateral net positions (closed windows).
#[utoipa::path(get, path = "/v1/settlement/windows/{id}", tag = "settlement",
    params(("id" = String, Path, description = "A window id (digits)", example = "1")),
    responses(
        (status = 200, description = "The window", body = WindowDetail),
        (status = 404, description = "UNKNOWN_WINDOW", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn window(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let w = load_window(&state, &req, &path).await?;
    let netting = state
        .store
        .netting(&w)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(WindowDetail {
        window_id: w.window_id.to_string(),
        status: status_text(w.open).into(),
        opened_at: w.opened_at,
        closed_at: w.closed_at,
        txn_count: netting.txn_count,
        gross: netting.gross.to_rupees(),
        positions: netting.positions.iter().map(PositionView::from).collect(),
    }))
}

/// The `bank` query parameter of a report, exactly once.
fn report_bank(req: &HttpRequest) -> Result<String, Problem> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Problem::bad_request("INVALID_QUERY", e.to_string()))?;
    match query.as_slice() {
        [(k, v)] if k == "bank" => BankCode::parse(v)
            .map(|b| b.as_str().to_string())
            .ok_or_else(|| {
                Problem::bad_request(
                    "INVALID_BANK_CODE",
                    "bank must be a bank code: 2-12 of A-Z and 0-9",
                )
            }),
        _ => Err(Problem::bad_request(
            "INVALID_QUERY",
            "report.csv takes exactly one parameter: bank=<bank code>",
        )),
    }
}

/// One bank's side of every payment in a window, as CSV.
#[utoipa::path(get, path = "/v1/settlement/windows/{id}/report.csv", tag = "settlement",
    params(("id" = String, Path, description = "A window id (digits)", example = "1"), ("bank" = String, Query, description = "A bank code", example = "HDFC")),
    responses(
        (status = 200, description = "txn_id,type,direction,amount,counterparty_bank,settled_at", content_type = "text/csv", body = String),
        (status = 404, description = "UNKNOWN_WINDOW or UNKNOWN_BANK", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn report(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let w = load_window(&state, &req, &path).await?;
    let bank = report_bank(&req)?;
    if state
        .store
        .bank(&bank)
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .is_none()
    {
        return Err(Problem::not_found(
            "UNKNOWN_BANK",
            format!("bank {bank} is not registered"),
        ));
    }
    // The first page is read before answering, so a failing database is a
    // 503, not a cut stream.
    let first = state
        .store
        .report_page(&w, &bank, 0, REPORT_PAGE)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let store = state.store.clone();
    let pages = futures::stream::unfold(Some((first, true)), move |next| {
        let (store, w, bank) = (store.clone(), w.clone(), bank.clone());
        async move {
            let (lines, first) = next?;
            let mut text = String::with_capacity(lines.len() * 96 + REPORT_HEADER.len());
            if first {
                text.push_str(REPORT_HEADER);
            }
            for l in &lines {
                text.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    l.txn_id,
                    l.txn_type,
                    if l.debit { "DEBIT" } else { "CREDIT" },
                    l.amount.to_rupees(),
                    l.counterparty_bank,
                    l.settled_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ));
            }
            let after = lines.last().map(|l| l.journal_id);
            let following = match after {
                Some(after) => match store.report_page(&w, &bank, after, REPORT_PAGE).await {
                    Ok(more) if !more.is_empty() => Some((more, false)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "report stream cut: the database failed");
                        return Some((
                            Err(actix_web::error::ErrorServiceUnavailable("database")),
                            None,
                        ));
                    }
                },
                None => None,
            };
            Some((Ok::<_, actix_web::Error>(web::Bytes::from(text)), following))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .streaming(pages))
}

/// Closes the open window (an empty one too) and opens the next; atomic,
/// finished exactly once even if the switch dies midway (audited).
#[utoipa::path(post, path = "/v1/admin/settlement/close", tag = "settlement",
    request_body(content = Option<Object>, description = "Empty, or a JSON object (ignored)"),
    responses((status = 200, description = "Closed and opened", body = CloseAnswer)))]
pub(crate) async fn close(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let actor = authorise(&state, &req)?;
    let body = body_bytes(body)?;
    if !body.is_empty() {
        let _: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    }
    let (closed, opened) = state
        .settlement
        .close_now(&actor)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(CloseAnswer {
        closed: closed.to_string(),
        opened: opened.to_string(),
    }))
}

/// A closed window's reconciliation against the banks' change feeds.
#[utoipa::path(get, path = "/v1/reconciliation/{window_id}", tag = "settlement",
    params(("window_id" = String, Path, description = "A window id (digits)", example = "1")),
    responses(
        (status = 200, description = "The run's result so far", body = ReconResult),
        (status = 404, description = "UNKNOWN_WINDOW, or no run for it", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn reconciliation(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let id = window_id(&path)?;
    let Some((run, mismatches)) = state
        .store
        .recon_result(id, MAX_MISMATCHES_LISTED)
        .await
        .map_err(|e| Problem::unavailable(&e))?
    else {
        return Err(Problem::not_found(
            "NO_RECONCILIATION",
            format!("window {path} has no reconciliation: it is open or does not exist"),
        ));
    };
    Ok(HttpResponse::Ok().json(ReconResult {
        window_id: id.to_string(),
        status: if run.done { "DONE" } else { "RUNNING" }.into(),
        matched: run.matched,
        mismatch_ppm: ppm(run.mismatch_count, run.matched + run.mismatch_count),
        mismatches: mismatches
            .into_iter()
            .map(|m| MismatchView {
                kind: m.kind,
                bank_code: m.bank_code,
                op_id: m.op_id,
                txn_id: m.txn_id,
                detail: m.detail,
            })
            .collect(),
    }))
}

/// Queues (again) the reconciliation of a closed window (audited).
#[utoipa::path(post, path = "/v1/admin/reconciliation/run", tag = "settlement",
    request_body = RunRequest,
    responses(
        (status = 202, description = "Queued", body = RunAccepted),
        (status = 404, description = "UNKNOWN_WINDOW", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "WINDOW_OPEN: close it first", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "INVALID_WINDOW_ID", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn run_reconciliation(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let actor = authorise(&state, &req)?;
    let body: RunRequest = parse_json(&body_bytes(body)?)?;
    let text = match &body.window_id {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err(Problem::unprocessable(
                "INVALID_WINDOW_ID",
                "window_id must be a window's id (a string or a number)",
            ));
        }
    };
    let w = load_window(&state, &req, &text).await?;
    if w.open {
        return Err(Problem::new(
            409,
            "WINDOW_OPEN",
            format!("window {} is open: close it first", w.window_id),
        ));
    }
    let queued = state
        .store
        .request_recon(w.window_id, &actor)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    if !queued {
        return Err(unknown_window(&text));
    }
    state.settlement.recon_wake.notify_one();
    Ok(HttpResponse::Accepted().json(RunAccepted {
        window_id: w.window_id.to_string(),
        status: "RUNNING".into(),
    }))
}
