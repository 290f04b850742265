//! `POST /v1/transactions`: a new P2P, P2M or REFUND payment, and the
//! acceptance every payment shares (also a collect's, `collects`): parse
//! once, check what needs no lock (types, VPAs, per-transaction and per-MCC
//! limits, the original of a refund), then hand the create to the group
//! commit with its `Guard` (daily limits, refund cap, collect state), where
//! the database's locks decide. A refused request changes nothing.
//!
//! A refusal that depends on the world now (a VPA no longer registered, an
//! original not refundable, a busy switch) first looks the key up: a key
//! seen before answers for its transaction, whatever happened since. A new
//! payment reads nothing by key: the insert's unique key decides.

use super::AppState;
use super::auth::Caller;
use super::input::{
    distinct, idempotency_key, parse_amount, parse_merchant_ref, parse_note, parse_vpa,
    signed_call, stored_vpa, wait_param, within_limit,
};
use super::problem::{Problem, ProblemDoc, body_bytes, parse_json};
use super::transactions::{accepted_body, parse_txn_id, status_document};
use crate::actors::registry::Start;
use crate::actors::transaction::now_ms;
use crate::adapters::store::OriginalRow;
use crate::adapters::store::{Created, NewTxn, TxnRequest, VpaRecord};
use crate::domain::Vpa;
use crate::saga::guards::{Daily, Guard};
use crate::saga::{Party, PaymentType, Saga};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument;
use uuid::Uuid;

/// What a create answers: where to follow the payment, or (with `?wait=`
/// or a replay that waited) its status document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: the handler sends one of the two documents
pub(crate) enum PaymentAnswer {
    Accepted(super::transactions::AcceptedDoc),
    Status(Box<super::transactions::TxnDoc>),
}

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/transactions", web::post().to(create));
}

/// Every field of every type; which may or must appear depends on `type`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PaymentRequest, example = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": "150.75", "note": "dinner"}))]
struct CreateBody {
    /// `P2P`, `P2M` or `REFUND`.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payer_vpa: Option<String>,
    #[serde(default)]
    payee_vpa: Option<String>,
    /// Rupees with at most two decimals, as a string (`"150.75"`) or a JSON
    /// number (read exactly from its text).
    #[schema(value_type = String, example = "150.75")]
    amount: Box<RawValue>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    merchant_ref: Option<String>,
    #[serde(default)]
    original_txn_id: Option<String>,
}

fn required(field: &str, value: Option<String>, kind: PaymentType) -> Result<String, Problem> {
    value.ok_or_else(|| {
        Problem::bad_request(
            "MISSING_FIELD",
            format!("{field} is required for a {} payment", kind.as_str()),
        )
    })
}

fn absent<T>(field: &str, value: &Option<T>, kind: PaymentType) -> Result<(), Problem> {
    match value {
        Some(_) => Err(Problem::bad_request(
            "UNEXPECTED_FIELD",
            format!("{field} does not belong in a {} payment", kind.as_str()),
        )),
        None => Ok(()),
    }
}

/// The payer VPA's daily limits for a payment of `kind`, if any is on.
pub fn daily_guard(state: &AppState, kind: PaymentType, payer: &Vpa) -> Option<Daily> {
    let l = &state.limits;
    (kind.counts_toward_daily_limits() && (l.daily_amount.0 > 0 || l.daily_count > 0)).then(|| {
        Daily {
            payer_vpa: payer.as_str().to_string(),
            amount_limit: l.daily_amount,
            count_limit: l.daily_count,
        }
    })
}

pub fn party(v: &VpaRecord) -> Party {
    Party {
        bank: v.bank_code.clone(),
        account: v.account.clone(),
    }
}

/// Both parties' registrations, in one Redis round trip when cached.
pub async fn resolve(
    state: &AppState,
    payer_vpa: &Vpa,
    payee_vpa: &Vpa,
) -> Result<(VpaRecord, VpaRecord), Problem> {
    let store = &state.store;
    let [payer, payee] = state
        .cache
        .vpas_through(
            [payer_vpa, payee_vpa],
            |v| async move { store.vpa(&v).await },
        )
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let unknown = |field: &str, vpa: &Vpa| {
        Problem::unprocessable("UNKNOWN_VPA", format!("{field} {vpa} is not registered"))
    };
    let payer = payer.ok_or_else(|| unknown("payer_vpa", payer_vpa))?;
    let payee = payee.ok_or_else(|| unknown("payee_vpa", payee_vpa))?;
    if payer.bank_code == payee.bank_code && payer.account == payee.account {
        return Err(Problem::unprocessable(
            "SAME_PAYER_PAYEE",
            "payer and payee resolve to the same account",
        ));
    }
    Ok((payer, payee))
}

/// What a payment needs once the world was consulted.
pub struct Plan {
    pub payer: Party,
    pub payee: Party,
    pub mcc: Option<String>,
    pub guard: Guard,
}

/// The checks of a P2P or P2M payment that read registrations.
async fn plan_transfer(state: &AppState, request: &TxnRequest) -> Result<Plan, Problem> {
    let (payer, payee) = resolve(state, &request.payer_vpa, &request.payee_vpa).await?;
    let mut mcc = None;
    match request.kind {
        PaymentType::P2M => {
            let code = payee
                .mcc
                .as_deref()
                .filter(|m| payee.merchant && m.len() == 4 && m.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    Problem::unprocessable(
                        "PAYEE_NOT_MERCHANT",
                        format!(
                            "payee_vpa {} is not a merchant with an MCC; use type P2P",
                            request.payee_vpa
                        ),
                    )
                })?;
            within_limit(
                request.amount,
                state.limits.p2m_limit(code),
                &format!("P2M (MCC {code})"),
            )?;
            mcc = Some(code.to_string());
        }
        _ => {
            within_limit(request.amount, state.limits.txn_limit, "per-transaction")?;
        }
    }
    Ok(Plan {
        payer: party(&payer),
        payee: party(&payee),
        mcc,
        guard: Guard {
            daily: daily_guard(state, request.kind, &request.payer_vpa),
            ..Guard::default()
        },
    })
}

/// The checks of a refund against its original.
fn plan_refund(request: &TxnRequest, original: &OriginalRow) -> Result<Plan, Problem> {
    let id = original.original.txn_id;
    if !original.original.kind.refundable() || original.status != crate::saga::Status::Success {
        return Err(Problem::unprocessable(
            "ORIGINAL_NOT_REFUNDABLE",
            format!(
                "transaction {id} is a {} {} payment; only a SUCCESS P2P or P2M can be refunded",
                original.status.as_str(),
                original.original.kind.as_str()
            ),
        ));
    }
    if request.amount.0 > original.original.amount.0 {
        return Err(Problem::unprocessable(
            "REFUND_EXCEEDS_ORIGINAL",
            format!(
                "a refund of ₹{} exceeds the original's ₹{}",
                request.amount.to_rupees(),
                original.original.amount.to_rupees()
            ),
        ));
    }
    Ok(Plan {
        payer: original.original.payee.clone(),
        payee: original.original.payer.clone(),
        mcc: None,
        guard: Guard {
            refund_of: Some((id, original.original.amount)),
            ..Guard::default()
        },
    })
}

/// A refund's original, which must exist.
async fn original(state: &AppState, id: Uuid) -> Result<OriginalRow, Problem> {
    state
        .store
        .original(id)
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .ok_or_else(|| Problem::unprocessable("UNKNOWN_ORIGINAL", format!("no transaction {id}")))
}

/// Starts a P2P, P2M or REFUND payment. `202` once it is durable; the same
/// Idempotency-Key again answers for the same transaction (`200`).
#[utoipa::path(post, path = "/v1/transactions", tag = "payments",
    params(
        ("Idempotency-Key" = String, Header, description = "1-64 printable ASCII; per client"),
        ("wait" = Option<u64>, Query, description = "Wait up to this many ms (0-30000) for the outcome; then the status document answers"),
    ),
    request_body = CreateBody,
    responses(
        (status = 202, description = "Accepted (with ?wait=, still pending: the status document)", body = PaymentAnswer,
            headers(("Location" = String, description = "The transaction's status document"))),
        (status = 200, description = "A replay of this Idempotency-Key, or with ?wait= the outcome", body = PaymentAnswer),
        (status = 403, description = "NOT_YOUR_VPA: the payer (or a refund's payee) is not one of this client's handles", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Invalid amount, VPA, type or note; over a limit; a key reused for another request", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let bytes = body_bytes(body)?;
    let caller = signed_call(&state, &req, &bytes).await?;
    let key = idempotency_key(&req)?;
    let wait_ms = wait_param(&req)?;
    let body: CreateBody = parse_json(&bytes)?;
    let kind = match PaymentType::parse(&body.kind) {
        Some(k @ (PaymentType::P2P | PaymentType::P2M | PaymentType::Refund)) => k,
        _ => {
            return Err(Problem::unprocessable(
                "UNSUPPORTED_TYPE",
                "type must be \"P2P\", \"P2M\" or \"REFUND\" (a COLLECT payment is made by approving a collect request)",
            ));
        }
    };
    let amount = parse_amount(&body.amount, state.limits.parse_ceiling(kind))?;
    let note = parse_note(body.note)?;
    let mut refunding = None;
    let request = if kind == PaymentType::Refund {
        absent("payer_vpa", &body.payer_vpa, kind)?;
        absent("payee_vpa", &body.payee_vpa, kind)?;
        absent("merchant_ref", &body.merchant_ref, kind)?;
        let original = parse_txn_id(&required("original_txn_id", body.original_txn_id, kind)?)
            .map_err(|_| {
                Problem::unprocessable("INVALID_ORIGINAL", "original_txn_id must be a UUID")
            })?;
        let row = self::original(&state, original).await?;
        caller.must_serve(&row.payee_vpa, "payee of the original")?;
        // A refund names no parties: they are the original's, swapped.
        let (payer_vpa, payee_vpa) = (stored_vpa(&row.payee_vpa)?, stored_vpa(&row.payer_vpa)?);
        refunding = Some(row);
        TxnRequest {
            client_id: caller.id().to_string(),
            idempotency_key: Some(key),
            kind,
            payer_vpa,
            payee_vpa,
            amount,
            note,
            merchant_ref: None,
            original_txn_id: Some(original),
            collect_id: None,
        }
    } else {
        absent("original_txn_id", &body.original_txn_id, kind)?;
        if kind == PaymentType::P2P {
            absent("merchant_ref", &body.merchant_ref, kind)?;
        }
        let payer_vpa = parse_vpa("payer_vpa", &required("payer_vpa", body.payer_vpa, kind)?)?;
        let payee_vpa = parse_vpa("payee_vpa", &required("payee_vpa", body.payee_vpa, kind)?)?;
        distinct(&payer_vpa, &payee_vpa)?;
        caller.must_serve(payer_vpa.as_str(), "payer")?;
        TxnRequest {
            client_id: caller.id().to_string(),
            idempotency_key: Some(key),
            kind,
            payer_vpa,
            payee_vpa,
            amount,
            note,
            merchant_ref: parse_merchant_ref(body.merchant_ref)?,
            original_txn_id: None,
            collect_id: None,
        }
    };
    let planned = async {
        let plan = match &refunding {
            Some(original) => plan_refund(&request, original)?,
            None => plan_transfer(&state, &request).await?,
        };
        admissible(&state)?;
        Ok(plan)
    }
    .await;
    let plan = match planned {
        Ok(plan) => plan,
        Err(refusal) => return refused(&state, &caller, &request, refusal, wait_ms).await,
    };
    let txn_id = Uuid::new_v4();
    let span = tracing::info_span!("txn", txn_id = %txn_id, kind = kind.as_str());
    accept(&state, &caller, request, plan, txn_id, wait_ms)
        .instrument(span)
        .await
}

/// Whether a new payment may start now (not draining, not overloaded).
pub fn admissible(state: &AppState) -> Result<(), Problem> {
    if state.node.is_draining() {
        return Err(Problem::draining());
    }
    if !state.admission.admits() {
        return Err(Problem::busy(
            "too many transactions are pending; retry shortly",
        ));
    }
    Ok(())
}

/// A refusal that depends on the world now: a key seen before answers for
/// its transaction instead.
async fn refused(
    state: &AppState,
    caller: &Caller,
    request: &TxnRequest,
    refusal: Problem,
    wait_ms: Option<u64>,
) -> Result<HttpResponse, Problem> {
    match state.store.by_idempotency_key(request).await {
        Ok(Some(earlier)) => replay(state, caller, earlier, wait_ms).await,
        Ok(None) => Err(refusal),
        Err(e) => Err(Problem::unavailable(&e)),
    }
}

/// Builds the saga, makes the new transaction durable (group commit, where
/// its guard is decided) and starts it. Answers the create as the writer
/// decided it: new, an earlier transaction of the key, or refused.
pub async fn create_payment(
    state: &AppState,
    request: TxnRequest,
    plan: Plan,
    txn_id: Uuid,
) -> Result<(Created, Saga), Problem> {
    let kind = request.kind;
    let amount = request.amount;
    let Plan {
        payer,
        payee,
        mcc,
        mut guard,
    } = plan;
    // A bank that is DOWN fails the payment at once: no debit is tried. It
    // holds nothing, so it is checked against nothing but its collect.
    let saga = match down_bank(state, &payer.bank, &payee.bank) {
        Some(detail) => {
            guard = Guard {
                collect: guard.collect,
                ..Guard::default()
            };
            Saga::failed_at_admission(kind, txn_id, payer, payee, amount, detail)
        }
        None => Saga::transfer(kind, txn_id, payer, payee, amount, now_ms()),
    };
    let created = state
        .writer
        .create(NewTxn {
            request,
            saga: saga.clone(),
            mcc,
            guard,
        })
        .await?;
    match &created {
        Created::New => started(state, saga.clone()),
        Created::Refused(r) => state
            .metrics
            .refusals
            .with_label_values(&[kind.as_str(), r.code()])
            .inc(),
        _ => {}
    }
    Ok((created, saga))
}

/// Counts a new payment and starts its saga (unless it is terminal already).
fn started(state: &AppState, saga: Saga) {
    let kind = saga.kind.as_str();
    state.metrics.txns_created.with_label_values(&[kind]).inc();
    let status = saga.status();
    tracing::info!(amount = %saga.amount, status = status.as_str(), "transaction accepted");
    if status.is_terminal() {
        state
            .metrics
            .txns_finished
            .with_label_values(&[kind, status.as_str()])
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
}

async fn accept(
    state: &AppState,
    caller: &Caller,
    request: TxnRequest,
    plan: Plan,
    txn_id: Uuid,
    wait_ms: Option<u64>,
) -> Result<HttpResponse, Problem> {
    let (created, saga) = create_payment(state, request, plan, txn_id).await?;
    if !matches!(created, Created::New) {
        return replay(state, caller, created, wait_ms).await;
    }
    match wait_ms {
        Some(ms) => status_document(state, caller, txn_id, ms).await,
        None => Ok(HttpResponse::Accepted()
            .insert_header(("Location", format!("/v1/transactions/{txn_id}")))
            .json(accepted_body(txn_id, saga.status()))),
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

/// The answer to a create that did not make a new transaction.
async fn replay(
    state: &AppState,
    caller: &Caller,
    created: Created,
    wait_ms: Option<u64>,
) -> Result<HttpResponse, Problem> {
    match created {
        Created::KeyReused => Err(Problem::unprocessable(
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used for a different request",
        )),
        Created::Refused(r) => Err(r.into()),
        Created::Existing { txn_id, status } => match wait_ms {
            Some(ms) => status_document(state, caller, txn_id, ms).await,
            None => Ok(HttpResponse::Ok().json(accepted_body(txn_id, status))),
        },
        Created::New => Err(Problem::unavailable(&"replay of a new transaction")),
    }
}
