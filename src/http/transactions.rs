//! Client endpoints: `POST /v1/transactions`, `GET /v1/transactions/{id}`,
//! `POST /v1/vpa/validate`. Inputs are parsed once into domain types here; a
//! request that fails any rule gets its 4xx before anything is written. The
//! client POSTs are rate limited per client first (when a limit is set), and
//! use Redis (`adapters::cache`) only to save database reads.

use super::AppState;
use super::problem::{Problem, body_bytes, parse_json};
use crate::actors::registry::{Start, Watch};
use crate::actors::transaction::now_ms;
use crate::adapters::cache::Admission;
use crate::adapters::store::{Created, NewTxn, TxnRequest, TxnRow, VpaRecord};
use crate::domain::{Paise, Vpa, mask_name};
use crate::saga::{Party, PaymentType, Saga, Status};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::{Duration, Instant};
use tracing::Instrument;
use uuid::Uuid;

/// Longest `?wait=` a client may ask for.
pub const MAX_WAIT_MS: u64 = 30_000;
/// How often `?wait=` looks at a transaction whose saga does not run here
/// while this node cannot hear its events (RabbitMQ away).
const ELSEWHERE_POLL: Duration = Duration::from_millis(250);
/// While it hears them, it still looks this often, in case an event is late.
const EVENT_SAFETY_LOOK: Duration = Duration::from_secs(5);
/// Longest note accepted.
const MAX_NOTE_CHARS: usize = 140;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/transactions", web::post().to(create))
        .route("/v1/transactions/{txn_id}", web::get().to(get))
        .route("/v1/vpa/validate", web::post().to(validate_vpa));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(rename = "type")]
    kind: String,
    payer_vpa: String,
    payee_vpa: String,
    amount: Box<RawValue>,
    #[serde(default)]
    note: Option<String>,
}

fn idempotency_key(req: &HttpRequest) -> Result<String, Problem> {
    let value = req.headers().get("Idempotency-Key").ok_or_else(|| {
        Problem::bad_request(
            "IDEMPOTENCY_KEY_MISSING",
            "the Idempotency-Key header is required",
        )
    })?;
    let key = value.to_str().unwrap_or_default();
    // Printable ASCII (HTTP already trims surrounding blanks); spaces inside are fine.
    let ok =
        (1..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if !ok {
        return Err(Problem::bad_request(
            "IDEMPOTENCY_KEY_INVALID",
            "the Idempotency-Key must be 1-64 printable ASCII characters",
        ));
    }
    Ok(key.to_string())
}

fn wait_param(req: &HttpRequest) -> Result<Option<u64>, Problem> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Problem::bad_request("INVALID_QUERY", e.to_string()))?;
    match query.iter().find(|(k, _)| k == "wait") {
        None => Ok(None),
        Some((_, v)) => match v.parse::<u64>() {
            Ok(ms) if ms <= MAX_WAIT_MS => Ok(Some(ms)),
            _ => Err(Problem::bad_request(
                "INVALID_WAIT",
                format!("wait must be a whole number of milliseconds from 0 to {MAX_WAIT_MS}"),
            )),
        },
    }
}

/// Exact amount from the raw JSON text: `"150.75"` or `150.75`, never via a float.
fn parse_amount(raw: &RawValue, limit: Paise) -> Result<Paise, Problem> {
    let text = raw.get().trim();
    let digits = if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|_| {
            Problem::unprocessable(
                "INVALID_AMOUNT",
                "amount must be a decimal string like \"150.75\"",
            )
        })?
    } else if text.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        text.to_string()
    } else {
        return Err(Problem::unprocessable(
            "INVALID_AMOUNT",
            "amount must be a decimal string like \"150.75\"",
        ));
    };
    Paise::parse_rupees(&digits, limit).map_err(|e| Problem::unprocessable(e.code(), e.to_string()))
}

fn parse_vpa(field: &str, text: &str) -> Result<Vpa, Problem> {
    Vpa::parse(text).ok_or_else(|| {
        Problem::unprocessable(
            "INVALID_VPA",
            format!("{field} must look like handle@psp (handle 2-256 of A-Za-z0-9._-, psp 2-64 of A-Za-z0-9)"),
        )
    })
}

fn parse_note(note: Option<String>) -> Result<Option<String>, Problem> {
    match note {
        Some(n) if n.chars().count() > MAX_NOTE_CHARS || n.chars().any(char::is_control) => {
            Err(Problem::unprocessable(
                "INVALID_NOTE",
                format!(
                    "note must be at most {MAX_NOTE_CHARS} characters without control characters"
                ),
            ))
        }
        other => Ok(other),
    }
}

fn accepted_body(txn_id: Uuid, status: Status) -> serde_json::Value {
    serde_json::json!({
        "txn_id": txn_id,
        "status": status.as_str(),
        "poll_uri": format!("/v1/transactions/{txn_id}"),
    })
}

/// Longest `X-Client-Id` accepted.
const MAX_CLIENT_ID_CHARS: usize = 64;

/// Who is asking, for the rate limiter: `X-Client-Id` (1-64 printable ASCII),
/// else the peer's IP address. The two never share a bucket.
fn client_id(req: &HttpRequest) -> Result<String, Problem> {
    if let Some(value) = req.headers().get("X-Client-Id") {
        let id = value.to_str().unwrap_or_default();
        let ok = (1..=MAX_CLIENT_ID_CHARS).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if !ok {
            return Err(Problem::bad_request(
                "CLIENT_ID_INVALID",
                format!("X-Client-Id must be 1-{MAX_CLIENT_ID_CHARS} printable ASCII characters"),
            ));
        }
        return Ok(format!("id:{id}"));
    }
    Ok(match req.peer_addr() {
        Some(addr) => format!("ip:{}", addr.ip()),
        None => "ip:unknown".to_string(),
    })
}

/// Takes one token from the client's bucket, before anything is read or written.
async fn rate_limit(state: &AppState, req: &HttpRequest) -> Result<(), Problem> {
    if !state.cache.limits_rate() {
        return Ok(());
    }
    match state.cache.admit(&client_id(req)?).await {
        Admission::Allowed => Ok(()),
        Admission::Limited { retry_after_s } => Err(Problem {
            retry_after_s: Some(retry_after_s),
            ..Problem::new(
                429,
                "RATE_LIMITED",
                format!("this client is over its rate limit; retry in {retry_after_s} s"),
            )
        }),
        Admission::Unavailable => Err(Problem {
            retry_after_s: Some(1),
            ..Problem::new(
                503,
                "RATE_LIMITER_UNAVAILABLE",
                "the rate limiter cannot be reached and the switch is set to refuse meanwhile; retry shortly",
            )
        }),
    }
}

/// The VPA's registration: Redis if cached there, else Postgres (which fills it).
async fn lookup_vpa(state: &AppState, vpa: &Vpa) -> Result<Option<VpaRecord>, Problem> {
    let store = &state.store;
    state
        .cache
        .vpa_through(vpa, |v| async move { store.vpa(&v).await })
        .await
        .map_err(|e| Problem::unavailable(&e))
}

/// Both parties' registrations, in one Redis round trip when cached.
async fn resolve(state: &AppState, request: &TxnRequest) -> Result<(Party, Party), Problem> {
    let store = &state.store;
    let [payer, payee] = state
        .cache
        .vpas_through([&request.payer_vpa, &request.payee_vpa], |v| async move {
            store.vpa(&v).await
        })
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let unknown = |field: &str, vpa: &Vpa| {
        Problem::unprocessable("UNKNOWN_VPA", format!("{field} {vpa} is not registered"))
    };
    let payer = payer.ok_or_else(|| unknown("payer_vpa", &request.payer_vpa))?;
    let payee = payee.ok_or_else(|| unknown("payee_vpa", &request.payee_vpa))?;
    if payer.bank_code == payee.bank_code && payer.account == payee.account {
        return Err(Problem::unprocessable(
            "SAME_PAYER_PAYEE",
            "payer and payee resolve to the same account",
        ));
    }
    Ok((
        Party {
            bank: payer.bank_code,
            account: payer.account,
        },
        Party {
            bank: payee.bank_code,
            account: payee.account,
        },
    ))
}

async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    rate_limit(&state, &req).await?;
    let key = idempotency_key(&req)?;
    let wait_ms = wait_param(&req)?;
    let body: CreateBody = parse_json(&body_bytes(body)?)?;
    if body.kind != "P2P" {
        return Err(Problem::unprocessable(
            "UNSUPPORTED_TYPE",
            "type must be \"P2P\"",
        ));
    }
    let payer_vpa = parse_vpa("payer_vpa", &body.payer_vpa)?;
    let payee_vpa = parse_vpa("payee_vpa", &body.payee_vpa)?;
    if payer_vpa == payee_vpa {
        return Err(Problem::unprocessable(
            "SAME_PAYER_PAYEE",
            "payer_vpa and payee_vpa must differ",
        ));
    }
    let amount = parse_amount(&body.amount, state.limits.txn_limit)?;
    let request = TxnRequest {
        idempotency_key: key,
        payer_vpa,
        payee_vpa,
        amount,
        note: parse_note(body.note)?,
    };
    // Nothing is read by key first: the insert's unique key decides, so a new
    // payment costs no read. Only a refusal that depends on the world now
    // (a VPA no longer registered, a busy switch) looks the key up: a key
    // seen before answers for its transaction, whatever happened since.
    let admitted = async {
        let (payer, payee) = resolve(&state, &request).await?;
        if state.node.is_draining() {
            return Err(Problem::draining());
        }
        if !state.admission.admits() {
            return Err(Problem::busy(
                "too many transactions are pending; retry shortly",
            ));
        }
        Ok((payer, payee))
    }
    .await;
    let (payer, payee) = match admitted {
        Ok(parties) => parties,
        Err(refusal) => {
            return match state.store.by_idempotency_key(&request).await {
                Ok(Some(earlier)) => replay(&state, earlier, wait_ms).await,
                Ok(None) => Err(refusal),
                Err(e) => Err(Problem::unavailable(&e)),
            };
        }
    };
    // A bank that is DOWN fails the transaction at once: no debit is tried.
    let saga = match down_bank(&state, &payer.bank, &payee.bank) {
        Some(detail) => Saga::failed_at_admission(PaymentType::P2P, Uuid::new_v4(), payer, payee, amount, detail),
        None => Saga::new(Uuid::new_v4(), payer, payee, amount, now_ms()),
    };
    let txn_id = saga.txn_id;
    let span = tracing::info_span!("txn", txn_id = %txn_id);
    accept(&state, request, saga, wait_ms)
        .instrument(span)
        .await
}

/// Makes the new transaction durable (group commit) and starts its saga.
async fn accept(
    state: &AppState,
    request: TxnRequest,
    saga: Saga,
    wait_ms: Option<u64>,
) -> Result<HttpResponse, Problem> {
    let txn_id = saga.txn_id;
    let amount = saga.amount;
    let created = state
        .writer
        .create(NewTxn {
            request,
            saga: saga.clone(),
        })
        .await?;
    if !matches!(created, Created::New) {
        return replay(state, created, wait_ms).await;
    }
    state.metrics.txns_created.with_label_values(&["P2P"]).inc();
    let status = saga.status();
    tracing::info!(amount = %amount, status = status.as_str(), "transaction accepted");
    if status.is_terminal() {
        state
            .metrics
            .txns_finished
            .with_label_values(&["P2P", status.as_str()])
            .inc();
    } else {
        // Not waited for: the saga is durable, and a full mailbox only means
        // the sweep starts it. It runs on this worker's thread.
        let start = Start {
            saga,
            version: 1,
            arbiter: Some(actix::Arbiter::current()),
        };
        if let Err(e) = state.registry.try_send(start) {
            tracing::warn!(error = %e, "registry did not take the saga; the sweep will");
        }
    }
    match wait_ms {
        Some(ms) => status_document(state, txn_id, ms).await,
        None => Ok(HttpResponse::Accepted()
            .insert_header(("Location", format!("/v1/transactions/{txn_id}")))
            .json(accepted_body(txn_id, status))),
    }
}

/// Why a new transaction between these banks cannot start now, if one is
/// DOWN (as its supervisor last published).
fn down_bank(state: &AppState, payer_bank: &str, payee_bank: &str) -> Option<String> {
    [("payer", payer_bank), ("payee", payee_bank)]
        .into_iter()
        .find(|(_, bank)| state.health.is_down(bank))
        .map(|(side, bank)| format!("the {side}'s bank {bank} is down; nothing was debited"))
}

async fn replay(
    state: &AppState,
    created: Created,
    wait_ms: Option<u64>,
) -> Result<HttpResponse, Problem> {
    match created {
        Created::KeyReused => Err(Problem::unprocessable(
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used for a different request",
        )),
        Created::Existing { txn_id, status } => match wait_ms {
            Some(ms) => status_document(state, txn_id, ms).await,
            None => Ok(HttpResponse::Ok().json(accepted_body(txn_id, status))),
        },
        Created::New => Err(Problem::unavailable(&"replay of a new transaction")),
    }
}

/// Waits up to `wait_ms` for the transaction to be terminal, then answers with
/// its status document (`200` when terminal, `202` while still pending).
/// Whichever node runs the saga: here, the registry wakes the caller when
/// the actor stops; elsewhere, the caller follows the transaction's events
/// (`EventFeed`) and reads again at its terminal event.
async fn status_document(
    state: &AppState,
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
    serde_json::json!({
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
    })
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
    let txn_id = parse_txn_id(&path.into_inner())?;
    let wait_ms = wait_param(&req)?.unwrap_or(0);
    let resp = status_document(&state, txn_id, wait_ms).await?;
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
    rate_limit(&state, &req).await?;
    let body: ValidateBody = parse_json(&body_bytes(body)?)?;
    let vpa = parse_vpa("vpa", &body.vpa)?;
    let found = lookup_vpa(&state, &vpa).await?;
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
