//! Client reads: `GET /v1/transactions/{id}` (the status document, with
//! `?wait=` whichever node runs the saga) and `POST /v1/vpa/validate`.
//! Creating a payment is `payments`'.

use super::AppState;
use super::auth::Caller;
use super::problem::{Problem, ProblemDoc, body_bytes, parse_json};
use crate::actors::registry::Watch;
use crate::adapters::store::TxnRow;
use crate::domain::mask_name;
use crate::saga::Status;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longest `?wait=` a client may ask for.
pub const MAX_WAIT_MS: u64 = 30_000;
/// How often `?wait=` looks at a transaction whose saga does not run here
/// while this node cannot hear its events (RabbitMQ away).
const ELSEWHERE_POLL: Duration = Duration::from_millis(250);
/// While it hears them, it still looks this often, in case an event is late.
const EVENT_SAFETY_LOOK: Duration = Duration::from_secs(5);

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/transactions/{txn_id}", web::get().to(get))
        .route("/v1/vpa/validate", web::post().to(validate_vpa));
}

/// `202` (or a replay's `200`) to a new payment: where to follow it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AcceptedDoc {
    pub txn_id: Uuid,
    /// `PENDING` for a new payment; a replay says the transaction's status now.
    #[schema(example = "PENDING")]
    pub status: &'static str,
    #[schema(example = "/v1/transactions/6f0e9c1e-8d8f-4d57-9a31-0e3e1c1d2b10")]
    pub poll_uri: String,
}

pub fn accepted_body(txn_id: Uuid, status: Status) -> AcceptedDoc {
    AcceptedDoc {
        txn_id,
        status: status.as_str(),
        poll_uri: format!("/v1/transactions/{txn_id}"),
    }
}

/// Waits up to `wait_ms` for the transaction to be terminal, then answers with
/// its status document (`200` when terminal, `202` while still pending).
/// Whichever node runs the saga: here, the registry wakes the caller when
/// the actor stops; elsewhere, the caller follows the transaction's events
/// (`EventFeed`) and reads again at its terminal event.
/// A caller that may not see the transaction gets `404`, as for none
/// (checked on every row read: a plain GET reads once).
pub async fn status_document(
    state: &AppState,
    caller: &Caller,
    txn_id: Uuid,
    wait_ms: u64,
) -> Result<HttpResponse, Problem> {
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let watch = |state: &AppState| {
        let registry = state.registry.clone();
        async move {
            if wait_ms == 0 {
                return None;
            }
            registry.send(Watch(txn_id)).await.ok().flatten()
        }
    };
    let wakeups = &state.metrics.wait_wakeups;
    let feed = &state.events.feed;
    let mut subscription = None;
    // Watch before reading: a saga that ends in between is seen by the read.
    let mut watching = watch(state).await;
    let row = loop {
        // Its saga runs here: it is not terminal before its actor stops, and
        // the registry wakes us then (finished, or handed back). Nothing is
        // read or polled meanwhile.
        if let Some((rx, true)) = watching.take() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if let Ok(Ok(())) = tokio::time::timeout(remaining, rx).await {
                wakeups.with_label_values(&["here"]).inc();
            }
        }
        let row = state
            .store
            .txn(txn_id)
            .await
            .map_err(|e| Problem::unavailable(&e))?
            .filter(|r| caller.may_see(&r.client_id, &r.payer_vpa, &r.payee_vpa))
            .ok_or_else(|| {
                Problem::not_found("TXN_NOT_FOUND", format!("no transaction {txn_id}"))
            })?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if row.status.is_terminal() || remaining.is_zero() {
            break row;
        }
        watching = watch(state).await;
        let elsewhere = match watching.take() {
            Some((rx, true)) => {
                watching = Some((rx, true));
                continue;
            }
            other => other,
        };
        // Not running here (another node, or waiting for a slot). Follow its
        // events; the read after subscribing sees an end that came before.
        if subscription.is_none() && feed.connected() {
            subscription = Some(feed.subscribe(txn_id).await);
            continue;
        }
        let hearing = subscription.is_some() && feed.connected();
        let nap = remaining.min(if hearing {
            EVENT_SAFETY_LOOK
        } else {
            ELSEWHERE_POLL
        });
        let here = async {
            match elsewhere {
                Some((rx, _)) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        };
        let terminal_event = async {
            match subscription.as_mut() {
                Some(sub) => loop {
                    match sub.events.recv().await {
                        Some(e) if Status::parse(&e.status).is_some_and(Status::is_terminal) => {
                            break;
                        }
                        Some(_) => {}
                        None => std::future::pending::<()>().await,
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = here => wakeups.with_label_values(&["here"]).inc(),
            () = terminal_event => wakeups.with_label_values(&["event"]).inc(),
            () = tokio::time::sleep(nap) => wakeups.with_label_values(&["poll"]).inc(),
        }
    };
    let body = txn_json(&row);
    Ok(if row.status.is_terminal() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Accepted().json(body)
    })
}

/// Why a transaction failed or was reversed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReasonDoc {
    #[schema(example = "INSUFFICIENT_FUNDS")]
    pub code: String,
    pub detail: Option<String>,
}

/// One step of the saga, as checkpointed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StepDoc {
    #[schema(example = "DEBITED")]
    pub state: String,
    pub at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The status document of one transaction (`GET /v1/transactions/{id}`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TxnDoc {
    pub txn_id: Uuid,
    /// `P2P`, `P2M`, `REFUND` or `COLLECT`.
    #[serde(rename = "type")]
    #[schema(example = "P2P")]
    pub kind: String,
    /// `PENDING`, `SUCCESS`, `FAILED` or `REVERSED`.
    #[schema(example = "SUCCESS")]
    pub status: &'static str,
    #[schema(example = "alice@hdfc")]
    pub payer_vpa: String,
    #[schema(example = "bob@icici")]
    pub payee_vpa: String,
    /// Rupees, exact, two decimals.
    #[schema(example = "150.75")]
    pub amount: String,
    pub note: Option<String>,
    pub reason: Option<ReasonDoc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub steps: Vec<StepDoc>,
    /// P2P and P2M: how much has been refunded so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded: Option<String>,
    /// REFUND: the payment it refunds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_txn_id: Option<Uuid>,
    /// COLLECT: the collect request it pays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collect_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_ref: Option<String>,
}

pub fn txn_json(row: &TxnRow) -> TxnDoc {
    let kind = row.kind.as_str();
    TxnDoc {
        txn_id: row.txn_id,
        kind: row.kind.clone(),
        status: row.status.as_str(),
        payer_vpa: row.payer_vpa.clone(),
        payee_vpa: row.payee_vpa.clone(),
        amount: row.amount.to_rupees(),
        note: row.note.clone(),
        reason: row.reason_code.as_ref().map(|code| ReasonDoc {
            code: code.clone(),
            detail: row.reason_detail.clone(),
        }),
        created_at: row.created_at,
        updated_at: row.updated_at,
        steps: row
            .steps
            .iter()
            .map(|s| StepDoc {
                state: s.state.clone(),
                at: s.at,
                op_id: s.op_id.clone(),
                detail: s.detail.clone(),
            })
            .collect(),
        refunded: matches!(kind, "P2P" | "P2M").then(|| row.refunded.to_rupees()),
        original_txn_id: if kind == "REFUND" {
            row.original_txn_id
        } else {
            None
        },
        collect_id: if kind == "COLLECT" {
            row.collect_id
        } else {
            None
        },
        merchant_ref: row.merchant_ref.clone(),
    }
}

/// `404` for a transaction this caller may not see (it did not create it
/// and serves neither party's handle), as for one that does not exist.
pub async fn must_see(
    state: &AppState,
    caller: &super::auth::Caller,
    txn_id: Uuid,
) -> Result<(), Problem> {
    if matches!(caller, super::auth::Caller::Anyone) {
        return Ok(());
    }
    let row = state
        .store
        .txn(txn_id)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    match row {
        Some(r) if caller.may_see(&r.client_id, &r.payer_vpa, &r.payee_vpa) => Ok(()),
        _ => Err(Problem::not_found(
            "TXN_NOT_FOUND",
            format!("no transaction {txn_id}"),
        )),
    }
}

/// A transaction id from a path segment.
pub fn parse_txn_id(text: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(text)
        .map_err(|_| Problem::bad_request("INVALID_TXN_ID", "the transaction id must be a UUID"))
}

/// The status document of a transaction this client created or serves a
/// party of.
#[utoipa::path(get, path = "/v1/transactions/{txn_id}", tag = "payments",
    params(
        ("txn_id" = uuid::Uuid, Path, description = "The transaction's id"),
        ("wait" = Option<u64>, Query, description = "Wait up to this many ms (0-30000) for a terminal status"),
    ),
    responses(
        (status = 200, description = "The status document", body = TxnDoc),
        (status = 404, description = "TXN_NOT_FOUND: none this client may see", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let caller = super::auth::client(&state, &req, b"").await?;
    let txn_id = parse_txn_id(&path.into_inner())?;
    let wait_ms = super::input::wait_param(&req)?.unwrap_or(0);
    // A wait may start before the first read: a caller that may not see
    // the transaction is turned away before it waits.
    if wait_ms > 0 {
        must_see(&state, &caller, txn_id).await?;
    }
    let resp = status_document(&state, &caller, txn_id, wait_ms).await?;
    // A plain GET always answers 200 with the document, whatever the status.
    let mut resp = resp;
    *resp.status_mut() = actix_web::http::StatusCode::OK;
    Ok(resp)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VpaValidateRequest, example = json!({"vpa": "bob@icici"}))]
struct ValidateBody {
    vpa: String,
}

/// Whether a VPA is registered, and its holder's masked name.
#[utoipa::path(post, path = "/v1/vpa/validate", tag = "payments",
    request_body = ValidateBody,
    responses(
        (status = 200, description = "Found or not", body = VpaValidation),
        (status = 422, description = "INVALID_VPA", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn validate_vpa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let bytes = body_bytes(body)?;
    super::input::signed_call(&state, &req, &bytes).await?;
    let body: ValidateBody = parse_json(&bytes)?;
    let vpa = super::input::parse_vpa("vpa", &body.vpa)?;
    let found = super::input::lookup_vpa(&state, &vpa).await?;
    Ok(HttpResponse::Ok().json(match found {
        Some(v) => VpaValidation {
            name: Some(mask_name(&v.name)),
            bank_code: Some(v.bank_code),
            vpa: v.vpa,
            valid: true,
        },
        None => VpaValidation {
            vpa: vpa.as_str().to_string(),
            valid: false,
            name: None,
            bank_code: None,
        },
    }))
}

/// `POST /v1/vpa/validate`'s answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct VpaValidation {
    #[schema(example = "bob@icici")]
    pub vpa: String,
    pub valid: bool,
    /// The holder's name, masked (`B** K****`); only when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ICICI")]
    pub bank_code: Option<String>,
}
