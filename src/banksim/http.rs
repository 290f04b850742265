//! The simulator's HTTP face: Bank API v1 under `/v1` (exactly as the spec page
//! says) and the admin endpoints under `/admin` (faults: read, merge, reset;
//! balances) that the spec does not cover. Handlers parse, pass the fault gate,
//! and hand movements to the single writer; they never touch balances themselves.

use super::faults::{self, Endpoint, FaultPatch, Faults, Gate};
use super::ledger::{Reply, Request};
use super::store::BankStore;
use super::writer::{WriteError, Writer};
use crate::adapters::bank_api::{
    AccountBalance, AccountView, Balances, ErrorBody, FeedPage, MoveRequest, ReverseRequest,
};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// Everything the handlers share.
#[derive(Clone)]
pub struct BankState {
    pub code: String,
    pub store: BankStore,
    pub writer: Writer,
    pub faults_tx: std::sync::Arc<watch::Sender<Faults>>,
    pub faults: watch::Receiver<Faults>,
    /// The faults this endpoint started with (its flags): what `DELETE
    /// /admin/faults` puts back.
    pub initial_faults: Faults,
}

/// Routes of the simulator, composed with `App::configure`.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/debit", web::post().to(debit))
        .route("/v1/credit", web::post().to(credit))
        .route("/v1/reverse", web::post().to(reverse))
        .route("/v1/ops", web::get().to(feed))
        .route("/v1/ops/{op_id}", web::get().to(inquiry))
        .route("/v1/accounts/{account}", web::get().to(account))
        .route("/v1/health", web::get().to(health))
        .route("/admin/faults", web::get().to(get_faults))
        .route("/admin/faults", web::put().to(put_faults))
        .route("/admin/faults", web::delete().to(reset_faults))
        .route("/admin/balances", web::get().to(balances));
}

/// A JSON answer: the body serialized once into its own buffer, the content
/// type a static header (no parsing or copying per answer).
fn json<T: Serialize>(status: u16, body: &T) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut buf = Vec::with_capacity(160);
    if let Err(e) = serde_json::to_writer(&mut buf, body) {
        tracing::error!(error = %e, "answer not serializable");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::build(code)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .body(buf)
}

fn error(status: u16, code: &str, detail: impl Into<String>) -> HttpResponse {
    json(
        status,
        &ErrorBody {
            code: code.to_string(),
            detail: Some(detail.into()),
        },
    )
}

fn unavailable(reason: &str) -> HttpResponse {
    error(503, "UNAVAILABLE", reason)
}

/// A malformed request: answered `400 BAD_REQUEST` with this detail.
struct BadRequest(String);

impl BadRequest {
    fn response(self) -> HttpResponse {
        error(400, "BAD_REQUEST", self.0)
    }
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| BadRequest(e.to_string()))
}

fn reply_response(reply: Reply) -> HttpResponse {
    let status = reply.http_status();
    match reply {
        Reply::Moved(answer) => json(status, &answer),
        Reply::Reversed(answer) => json(status, &answer),
        Reply::Refused { code, detail, .. } => error(status, code, detail),
    }
}

/// A movement that passed parsing runs to its end whether or not the client is
/// still waiting, like at a real bank (that is what makes hangs and timeouts
/// realistic). Once it is in the writer's queue it completes anyway, so it
/// needs a task of its own only while an injected delay (latency, jitter,
/// hang) holds it before the queue; without one, it is queued on the first
/// poll of this handler, before anything can cancel it.
async fn movement(
    state: &BankState,
    body: &[u8],
    make: impl FnOnce(&[u8]) -> Result<Request, BadRequest>,
) -> HttpResponse {
    let request = match make(body) {
        Ok(r) => r,
        Err(bad) => return bad.response(),
    };
    let now = state.faults.borrow().clone();
    if !now.delays_movements() {
        return process(state, request, now).await;
    }
    let state = state.clone();
    let task = actix_web::rt::spawn(async move { process(&state, request, now).await });
    task.await
        .unwrap_or_else(|_| unavailable("the movement task failed"))
}

async fn process(state: &BankState, request: Request, now: Faults) -> HttpResponse {
    if let Gate::Refuse(why) = faults::gate_as(&state.faults, now, Endpoint::Movement).await {
        return unavailable(why);
    }
    match state.writer.submit(request).await {
        Ok(reply) => {
            let definitive = matches!(reply, Reply::Moved(_) | Reply::Reversed(_));
            if definitive && faults::lose_reply(&state.faults) {
                return unavailable("LOST_REPLY");
            }
            reply_response(reply)
        }
        Err(WriteError::Busy) => error(429, "BUSY", "the ledger queue is full; retry"),
        Err(e @ WriteError::Unavailable(_)) => unavailable(&e.to_string()),
    }
}

async fn debit(state: web::Data<BankState>, body: web::Bytes) -> HttpResponse {
    movement(&state, &body, |b| {
        parse_body::<MoveRequest>(b).map(Request::Debit)
    })
    .await
}

async fn credit(state: web::Data<BankState>, body: web::Bytes) -> HttpResponse {
    movement(&state, &body, |b| {
        parse_body::<MoveRequest>(b).map(Request::Credit)
    })
    .await
}

async fn reverse(state: web::Data<BankState>, body: web::Bytes) -> HttpResponse {
    movement(&state, &body, |b| {
        parse_body::<ReverseRequest>(b).map(Request::Reverse)
    })
    .await
}

async fn inquiry(state: web::Data<BankState>, path: web::Path<String>) -> HttpResponse {
    if let Gate::Refuse(why) = faults::gate(&state.faults, Endpoint::Read).await {
        return unavailable(why);
    }
    let op_id = path.into_inner();
    match state.store.op(&op_id).await {
        Ok(Some(row)) => json(200, &row.view()),
        Ok(None) => json(
            404,
            &serde_json::json!({"op_id": op_id, "status": "UNKNOWN"}),
        ),
        Err(e) => unavailable(&e.to_string()),
    }
}

fn query_i64(req: &HttpRequest, name: &str, default: i64) -> Result<i64, BadRequest> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| BadRequest(e.to_string()))?;
    match query.iter().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<i64>()
            .map_err(|_| BadRequest(format!("{name} must be an integer"))),
    }
}

async fn feed(state: web::Data<BankState>, req: HttpRequest) -> HttpResponse {
    if let Gate::Refuse(why) = faults::gate(&state.faults, Endpoint::Read).await {
        return unavailable(why);
    }
    let after_seq = match query_i64(&req, "after_seq", 0) {
        Ok(v) if v >= 0 => v,
        Ok(_) => return error(400, "BAD_REQUEST", "after_seq must be >= 0"),
        Err(bad) => return bad.response(),
    };
    let limit = match query_i64(&req, "limit", 100) {
        Ok(v) if v >= 1 => v.min(1000),
        Ok(_) => return error(400, "BAD_REQUEST", "limit must be >= 1"),
        Err(bad) => return bad.response(),
    };
    match state.store.feed(after_seq, limit).await {
        Ok(ops) => {
            let next_after_seq = ops.last().map_or(after_seq, |o| o.seq);
            json(
                200,
                &FeedPage {
                    ops,
                    next_after_seq,
                },
            )
        }
        Err(e) => unavailable(&e.to_string()),
    }
}

async fn account(state: web::Data<BankState>, path: web::Path<String>) -> HttpResponse {
    if let Gate::Refuse(why) = faults::gate(&state.faults, Endpoint::Read).await {
        return unavailable(why);
    }
    match state.store.account(&path.into_inner()).await {
        Ok(Some(acc)) => json(
            200,
            &AccountView {
                account: acc.account,
                name: acc.name,
                status: if acc.frozen { "FROZEN" } else { "ACTIVE" }.into(),
            },
        ),
        Ok(None) => error(404, "ACCOUNT_NOT_FOUND", "no such account"),
        Err(e) => unavailable(&e.to_string()),
    }
}

async fn health(state: web::Data<BankState>) -> HttpResponse {
    if faults::gate(&state.faults, Endpoint::Health).await != Gate::Proceed
        || !*state.writer.healthy.borrow()
    {
        return json(503, &serde_json::json!({"status": "DOWN"}));
    }
    json(200, &serde_json::json!({"status": "UP"}))
}

async fn get_faults(state: web::Data<BankState>) -> HttpResponse {
    json(200, &*state.faults.borrow())
}

async fn put_faults(state: web::Data<BankState>, body: web::Bytes) -> HttpResponse {
    let patch: FaultPatch = match parse_body(&body) {
        Ok(p) => p,
        Err(bad) => return bad.response(),
    };
    let next = state.faults.borrow().patched(patch);
    if let Err(detail) = next.validate() {
        return error(400, "BAD_REQUEST", detail);
    }
    tracing::info!(bank = %state.code, faults = ?next, "faults changed");
    state.faults_tx.send_replace(next.clone());
    json(200, &next)
}

/// Back to the faults the endpoint started with (none unless its flags set
/// some): a `PUT` merges into the current faults, so this is the way to
/// clear them all at once.
async fn reset_faults(state: web::Data<BankState>) -> HttpResponse {
    let next = state.initial_faults.clone();
    tracing::info!(bank = %state.code, faults = ?next, "faults reset");
    state.faults_tx.send_replace(next.clone());
    json(200, &next)
}

async fn balances(state: web::Data<BankState>) -> HttpResponse {
    match state.store.accounts().await {
        Ok(accounts) => {
            let total: i128 = accounts.iter().map(|a| i128::from(a.balance_paise)).sum();
            let accounts = accounts
                .into_iter()
                .map(|a| AccountBalance {
                    account: a.account,
                    balance_paise: a.balance_paise,
                    status: if a.frozen { "FROZEN" } else { "ACTIVE" }.into(),
                })
                .collect();
            json(
                200,
                &Balances {
                    bank_code: state.code.clone(),
                    accounts,
                    total_paise: i64::try_from(total).unwrap_or(i64::MAX),
                },
            )
        }
        Err(e) => unavailable(&e.to_string()),
    }
}

/// JSON `404` for every path that is not a route.
pub async fn not_found() -> HttpResponse {
    error(404, "NOT_FOUND", "no such endpoint")
}
