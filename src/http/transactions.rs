//! Client reads: `GET /v1/transactions/{id}` (the status document, with
//! `?wait=` whichever node runs the saga) and `POST /v1/vpa/validate`.
//! Creating a payment is `payments`'.

use super::AppState;
use super::auth::Caller;
use super::problem::{Problem, body_bytes, parse_json};
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

pub fn accepted_body(txn_id: Uuid, status: Status) -> serde_json::Value {
    serde_json::json!({
        "txn_id": txn_id,
        "status": status.as_str(),
        "poll_uri": format!("/v1/transactions/{txn_id}"),
    })
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

pub fn txn_json(row: &TxnRow) -> serde_json::Value {
    let reason = match (&row.reason_code, &row.reason_detail) {
        (Some(code), detail) => serde_json::json!({"code": code, "detail": detail}),
        _ => serde_json::Value::Null,
    };
    let steps: Vec<_> = row
        .steps
        .iter()
        .map(|s| {
            let mut step = serde_json::json!({"state": s.state, "at": s.at});
            if let Some(op) = &s.op_id {
                step["op_id"] = op.clone().into();
            }
            if let Some(d) = &s.detail {
                step["detail"] = d.clone().into();
            }
            step
        })
        .collect();
    let mut doc = serde_json::json!({
        "txn_id": row.txn_id,
        "type": row.kind,
        "status": row.status.as_str(),
        "payer_vpa": row.payer_vpa,
        "payee_vpa": row.payee_vpa,
        "amount": row.amount.to_rupees(),
        "note": row.note,
        "reason": reason,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "steps": steps,
    });
    match row.kind.as_str() {
        "P2P" | "P2M" => doc["refunded"] = row.refunded.to_rupees().into(),
        "REFUND" => doc["original_txn_id"] = serde_json::json!(row.original_txn_id),
        "COLLECT" => doc["collect_id"] = serde_json::json!(row.collect_id),
        _ => {}
    }
    if let Some(r) = &row.merchant_ref {
        doc["merchant_ref"] = r.clone().into();
    }
    doc
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

async fn get(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    vpa: String,
}

async fn validate_vpa(
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
        Some(v) => serde_json::json!({
            "vpa": v.vpa,
            "valid": true,
            "name": mask_name(&v.name),
            "bank_code": v.bank_code,
        }),
        None => serde_json::json!({"vpa": vpa.as_str(), "valid": false}),
    }))
}
