//! Collect requests (the payee asks, the payer approves): `POST
//! /v1/collects`, `GET /v1/collects/{id}`, `POST /v1/collects/{id}/approve`
//! and `/decline`. Approving runs the request's `COLLECT` payment through the
//! same acceptance as any payment (`payments::create_payment`): the
//! request's `APPROVED` and its payment are one statement, under the
//! request's row lock, so a collect is paid at most once however often and
//! wherever it is approved, and never after its deadline. A refused
//! approval (a limit) leaves the request `REQUESTED`.

use super::AppState;
use super::input::{
    distinct, idempotency_key, parse_amount, parse_note, parse_vpa, signed_call, stored_vpa,
    within_limit,
};
use super::payments::{Plan, admissible, create_payment, daily_guard, party, resolve};
use super::problem::ProblemDoc;
use super::problem::{Problem, body_bytes, parse_json};
use crate::adapters::store::collects::{CollectCreated, CollectRow, NewCollect};
use crate::adapters::store::{Created, TxnRequest};
use crate::saga::guards::Guard;
use crate::saga::{CollectStatus, PaymentType};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument;
use uuid::Uuid;

/// Shortest and longest life of a collect request, and its default.
pub const MIN_EXPIRY_S: i64 = 60;
pub const MAX_EXPIRY_S: i64 = 86_400;
pub const DEFAULT_EXPIRY_S: i64 = 1_800;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/collects", web::post().to(create))
        .route("/v1/collects/{id}", web::get().to(get))
        .route("/v1/collects/{id}/approve", web::post().to(approve))
        .route("/v1/collects/{id}/decline", web::post().to(decline));
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CollectRequest, example = json!({"payee_vpa": "shop@icici", "payer_vpa": "alice@hdfc", "amount": "99.00", "expires_in_s": 600}))]
struct CreateBody {
    payee_vpa: String,
    payer_vpa: String,
    /// Rupees with at most two decimals, a string or a JSON number.
    #[schema(value_type = String, example = "99.00")]
    amount: Box<RawValue>,
    /// Seconds until the request expires (default 600).
    #[serde(default)]
    #[schema(value_type = Option<i64>, example = 600)]
    expires_in_s: Option<Box<RawValue>>,
    #[serde(default)]
    note: Option<String>,
}

fn parse_expiry(raw: Option<&RawValue>) -> Result<i64, Problem> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_EXPIRY_S);
    };
    match raw.get().trim().parse::<i64>() {
        Ok(s) if (MIN_EXPIRY_S..=MAX_EXPIRY_S).contains(&s) => Ok(s),
        _ => Err(Problem::unprocessable(
            "INVALID_EXPIRY",
            format!(
                "expires_in_s must be a whole number of seconds from {MIN_EXPIRY_S} to {MAX_EXPIRY_S}"
            ),
        )),
    }
}

fn parse_collect_id(text: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(text)
        .map_err(|_| Problem::bad_request("INVALID_COLLECT_ID", "the collect id must be a UUID"))
}

/// A collect request (`/v1/collects/{id}`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CollectDoc {
    pub collect_id: Uuid,
    /// `REQUESTED`, `APPROVED`, `DECLINED` or `EXPIRED`.
    #[schema(example = "REQUESTED")]
    pub status: &'static str,
    #[schema(example = "shop@icici")]
    pub payee_vpa: String,
    #[schema(example = "alice@hdfc")]
    pub payer_vpa: String,
    #[schema(example = "99.00")]
    pub amount: String,
    pub note: Option<String>,
    /// RFC 3339, milliseconds, UTC.
    pub expires_at: String,
    /// The payment an approval started.
    pub txn_id: Option<Uuid>,
}

/// `202` to an approval: the payment it started.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CollectApprovedDoc {
    pub collect_id: Uuid,
    #[schema(example = "APPROVED")]
    pub status: &'static str,
    pub txn_id: Uuid,
    pub poll_uri: String,
}

/// `200` to a decline.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CollectDeclinedDoc {
    pub collect_id: Uuid,
    #[schema(example = "DECLINED")]
    pub status: &'static str,
}

fn collect_json(c: &CollectRow) -> CollectDoc {
    CollectDoc {
        collect_id: c.collect_id,
        status: c.status.as_str(),
        payee_vpa: c.payee_vpa.clone(),
        payer_vpa: c.payer_vpa.clone(),
        amount: c.amount.to_rupees(),
        note: c.note.clone(),
        expires_at: c
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        txn_id: c.txn_id,
    }
}

fn not_pending(c: &CollectRow) -> Problem {
    Problem::new(
        409,
        "COLLECT_NOT_PENDING",
        format!(
            "the collect request is {}, not REQUESTED",
            c.status.as_str()
        ),
    )
}

/// The collect request if this caller may see it (it asked, or serves the
/// payer's or payee's handle); else, as for one that does not exist, `404`.
async fn visible(
    state: &AppState,
    caller: &super::auth::Caller,
    id: Uuid,
) -> Result<CollectRow, Problem> {
    let c = found(state, id).await?;
    if caller.may_see(&c.client_id, &c.payer_vpa, &c.payee_vpa) {
        Ok(c)
    } else {
        Err(Problem::not_found(
            "COLLECT_NOT_FOUND",
            format!("no collect request {id}"),
        ))
    }
}

async fn found(state: &AppState, id: Uuid) -> Result<CollectRow, Problem> {
    state
        .store
        .collect(id)
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .ok_or_else(|| Problem::not_found("COLLECT_NOT_FOUND", format!("no collect request {id}")))
}

/// The payee's PSP asks the payer for money.
#[utoipa::path(post, path = "/v1/collects", tag = "collects",
    params(("Idempotency-Key" = String, Header, description = "1-64 printable ASCII; per client")),
    request_body = CreateBody,
    responses(
        (status = 201, description = "Requested", body = CollectDoc,
            headers(("Location" = String, description = "The collect request"))),
        (status = 200, description = "A replay of this Idempotency-Key", body = CollectDoc),
        (status = 403, description = "NOT_YOUR_VPA: the payee is not one of this client's handles", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid amount, VPA, expiry or note; a key reused", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let bytes = body_bytes(body)?;
    let caller = signed_call(&state, &req, &bytes).await?;
    let key = idempotency_key(&req)?;
    let body: CreateBody = parse_json(&bytes)?;
    let payee_vpa = parse_vpa("payee_vpa", &body.payee_vpa)?;
    let payer_vpa = parse_vpa("payer_vpa", &body.payer_vpa)?;
    distinct(&payer_vpa, &payee_vpa)?;
    caller.must_serve(payee_vpa.as_str(), "payee")?;
    let amount = parse_amount(&body.amount, state.limits.txn_limit)?;
    let new = NewCollect {
        client_id: caller.id().to_string(),
        idempotency_key: key,
        payee_vpa,
        payer_vpa,
        amount,
        note: parse_note(body.note)?,
        expires_in_s: parse_expiry(body.expires_in_s.as_deref())?,
    };
    // Both must be registered when asked; the payment resolves them again
    // when approved.
    resolve(&state, &new.payer_vpa, &new.payee_vpa).await?;
    match state
        .store
        .create_collect(&new)
        .await
        .map_err(|e| Problem::unavailable(&e))?
    {
        CollectCreated::New(c) => {
            state
                .metrics
                .collects
                .with_label_values(&["REQUESTED"])
                .inc();
            tracing::info!(collect_id = %c.collect_id, amount = %c.amount, "collect requested");
            Ok(HttpResponse::Created()
                .insert_header(("Location", format!("/v1/collects/{}", c.collect_id)))
                .json(collect_json(&c)))
        }
        CollectCreated::Existing(c) => Ok(HttpResponse::Ok().json(collect_json(&c))),
        CollectCreated::KeyReused => Err(Problem::unprocessable(
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used for a different collect request",
        )),
    }
}

/// A collect request this client asked for or serves the payer of.
#[utoipa::path(get, path = "/v1/collects/{id}", tag = "collects",
    params(("id" = uuid::Uuid, Path, description = "The collect request's id")),
    responses(
        (status = 200, description = "The collect request", body = CollectDoc),
        (status = 404, description = "COLLECT_NOT_FOUND", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let caller = super::auth::client(&state, &req, b"").await?;
    let id = parse_collect_id(&path.into_inner())?;
    Ok(HttpResponse::Ok().json(collect_json(&visible(&state, &caller, id).await?)))
}

/// What approving and declining start with: the signed caller, the collect
/// request it may see, and that it serves the payer's handle.
async fn payer_acts(
    state: &AppState,
    req: &HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<(super::auth::Caller, CollectRow), Problem> {
    let caller = signed_call(state, req, &body_bytes(body)?).await?;
    let id = parse_collect_id(&path.into_inner())?;
    let collect = visible(state, &caller, id).await?;
    caller.must_serve(&collect.payer_vpa, "payer")?;
    Ok((caller, collect))
}

fn approved(collect_id: Uuid, txn_id: Uuid) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header(("Location", format!("/v1/transactions/{txn_id}")))
        .json(CollectApprovedDoc {
            collect_id,
            status: CollectStatus::Approved.as_str(),
            txn_id,
            poll_uri: format!("/v1/transactions/{txn_id}"),
        })
}

/// The payer's PSP approves: the `COLLECT` payment starts (at most once).
#[utoipa::path(post, path = "/v1/collects/{id}/approve", tag = "collects",
    params(("id" = uuid::Uuid, Path, description = "The collect request's id")),
    responses(
        (status = 202, description = "Approved: the payment started (again: the same payment)", body = CollectApprovedDoc,
            headers(("Location" = String, description = "The payment's status document"))),
        (status = 403, description = "NOT_YOUR_VPA: the payer is not one of this client's handles", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "COLLECT_NOT_FOUND", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "COLLECT_NOT_PENDING: declined or expired", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A limit refused the payment (the request stays REQUESTED)", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let (caller, collect) = payer_acts(&state, &req, path, body).await?;
    let id = collect.collect_id;
    match (collect.status, collect.txn_id) {
        (CollectStatus::Approved, Some(txn_id)) => return Ok(approved(id, txn_id)),
        (CollectStatus::Requested, _) => {}
        _ => return Err(not_pending(&collect)),
    }
    let (payer_vpa, payee_vpa) = (
        stored_vpa(&collect.payer_vpa)?,
        stored_vpa(&collect.payee_vpa)?,
    );
    // Checked now, when it is paid: the limits of today and the parties'
    // registrations of today. A refusal leaves the request REQUESTED.
    within_limit(collect.amount, state.limits.txn_limit, "per-transaction")?;
    let (payer, payee) = resolve(&state, &payer_vpa, &payee_vpa).await?;
    admissible(&state)?;
    let plan = Plan {
        payer: party(&payer),
        payee: party(&payee),
        mcc: None,
        guard: Guard {
            daily: daily_guard(&state, PaymentType::Collect, &payer_vpa),
            collect: Some(id),
            ..Guard::default()
        },
    };
    let request = TxnRequest {
        client_id: caller.id().to_string(),
        idempotency_key: None,
        kind: PaymentType::Collect,
        payer_vpa,
        payee_vpa,
        amount: collect.amount,
        note: collect.note.clone(),
        merchant_ref: None,
        original_txn_id: None,
        collect_id: Some(id),
    };
    let txn_id = Uuid::new_v4();
    let span = tracing::info_span!("txn", txn_id = %txn_id, kind = "COLLECT", collect_id = %id);
    let (created, _) = create_payment(&state, request, plan, txn_id)
        .instrument(span)
        .await?;
    match created {
        Created::New => {
            state
                .metrics
                .collects
                .with_label_values(&["APPROVED"])
                .inc();
            Ok(approved(id, txn_id))
        }
        // Approved meanwhile (here or on another node): that payment.
        Created::Existing { txn_id, .. } => Ok(approved(id, txn_id)),
        Created::Refused(r) => Err(r.into()),
        Created::KeyReused => Err(Problem::unavailable(&"a collect's payment met another key")),
    }
}

/// The payer's PSP declines.
#[utoipa::path(post, path = "/v1/collects/{id}/decline", tag = "collects",
    params(("id" = uuid::Uuid, Path, description = "The collect request's id")),
    responses(
        (status = 200, description = "Declined (again: the same answer)", body = CollectDeclinedDoc),
        (status = 403, description = "NOT_YOUR_VPA", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "COLLECT_NOT_FOUND", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "COLLECT_NOT_PENDING: approved or expired", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn decline(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let (_, asked) = payer_acts(&state, &req, path, body).await?;
    let id = asked.collect_id;
    let (collect, declined) = state
        .store
        .decline_collect(id)
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .ok_or_else(|| {
            Problem::not_found("COLLECT_NOT_FOUND", format!("no collect request {id}"))
        })?;
    match collect.status {
        CollectStatus::Declined if declined => {
            state
                .metrics
                .collects
                .with_label_values(&["DECLINED"])
                .inc();
            Ok(HttpResponse::Ok().json(CollectDeclinedDoc {
                collect_id: id,
                status: CollectStatus::Declined.as_str(),
            }))
        }
        _ => Err(not_pending(&collect)),
    }
}
