//! One arrival of the load generator: what its type (`--mix`) makes it send
//! and how it is followed. P2P and P2M post `POST /v1/transactions`; a REFUND
//! posts one for half of what is left of an earlier SUCCESS P2P/P2M of this
//! run (a P2P or P2M instead while none is known); a COLLECT posts
//! `POST /v1/collects` (same Idempotency-Key scheme) and then approves it,
//! and the payment the approval answers with is followed like any other.
//! Latency counts from the arrival's intended time to the answer that
//! accepted the payment (for a collect: the approval's).

use super::{Shared, wire};
use crate::domain::{Paise, Vpa};
use crate::loadgen::mix::{CollectBody, TxnBody};
use crate::saga::PaymentType;
use crate::traffic::{self, Accepted, Counters, SendError, Status};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// Most refundable payments kept for refunds to draw from.
pub(super) const KEEP_ORIGINALS: usize = 10_000;
/// Most unconfirmed payments kept with `--no-follow`.
const KEEP_UNCONFIRMED: usize = 10_000;
/// Attempts of one approval (approving again is idempotent) on 429/5xx/transport errors.
const APPROVE_ATTEMPTS: u32 = 3;
const APPROVE_PAUSE: Duration = Duration::from_millis(200);

/// One arrival: send it as its type says, then follow the payment until
/// terminal or the drain deadline.
pub(super) async fn pay(
    shared: Arc<Shared>,
    i: u64,
    intended: Instant,
    _slot: OwnedSemaphorePermit,
) {
    let sent_at = Instant::now();
    Counters::bump(&shared.counters.sent);
    let lag = sent_at.saturating_duration_since(intended);
    let cfg = &shared.cfg;
    let key = format!("{}-{i}", cfg.run_id);
    let (kind, amount, posted) = send(&shared, i, &key).await;
    let accepted_at = Instant::now();
    let accepted = match posted {
        Ok(a) => a,
        Err(e) => {
            // P2P errors keep their plain names (`POST 503 SWITCH_BUSY`); other types say theirs.
            let named = if kind == PaymentType::P2P {
                e.clone()
            } else {
                format!("{} {e}", kind.as_str())
            };
            Counters::bump(&shared.counters.errors);
            shared.send_errors.add(named);
            shared.tally(|t| {
                t.lateness.record(lag);
                t.lag.record(lag);
                let of = t.of(kind);
                of.sent += 1;
                of.errors += 1;
                *of.errors_by_kind.entry(e).or_default() += 1;
            });
            return;
        }
    };
    Counters::bump(&shared.counters.accepted);
    shared.tally(|t| {
        t.lateness.record(lag);
        t.lag.record(lag);
        t.accept
            .record(accepted_at.saturating_duration_since(intended));
        t.accept_service
            .record(accepted_at.saturating_duration_since(sent_at));
        let of = t.of(kind);
        of.sent += 1;
        of.accepted += 1;
        if !cfg.follow {
            // Only posted: the answer's status is all this run knows.
            count_status(&mut t.statuses, accepted.status);
            count_status(&mut t.of(kind).statuses, accepted.status);
        }
    });
    if !cfg.follow {
        if kind.refundable() {
            remember(&shared, kind, accepted.txn_id, accepted.status, amount);
        }
        return;
    }
    // Even a transaction decided at once is asked for once: its reason.
    let mut stop = shared.stop.clone();
    let followed = tokio::select! {
        f = traffic::follow(
            &shared.http,
            shared.signer.as_deref(),
            &cfg.switch,
            &accepted.txn_id,
            &cfg.poll,
            shared.drain_deadline,
            |kind| {
                Counters::bump(&shared.counters.errors);
                shared.follow_errors.add(kind);
            },
        ) => f,
        _ = stop.wait_for(Option::is_some) => traffic::Followed { status: Status::Pending, reason: None },
    };
    let done = Instant::now();
    if followed.status.is_terminal() {
        Counters::bump(&shared.counters.terminal);
        if let Some(reason) = followed.reason {
            shared.reasons.add(reason);
        }
    }
    if kind.refundable() && followed.status == Status::Success {
        remember(&shared, kind, accepted.txn_id, followed.status, amount);
    }
    shared.tally(|t| {
        if followed.status.is_terminal() {
            t.accept_to_terminal
                .record(done.saturating_duration_since(accepted_at));
            t.end_to_end
                .record(done.saturating_duration_since(intended));
        }
        count_status(&mut t.statuses, followed.status);
        count_status(&mut t.of(kind).statuses, followed.status);
    });
}

/// Sends arrival `i`: (its type as sent, its amount, the payment accepted or
/// the error's kind).
async fn send(
    shared: &Shared,
    i: u64,
    key: &str,
) -> (PaymentType, Paise, Result<Accepted, String>) {
    let cfg = &shared.cfg;
    let draw = cfg.draw(i);
    let mut kind = cfg.kind(i);
    if kind == PaymentType::Refund {
        if let Some((original, amount)) = refundable(shared, draw).await {
            let body = TxnBody::refund(&original, amount, &cfg.note);
            return (kind, amount, post_txn(shared, key, &body).await);
        }
        kind = cfg.mix.fallback(draw);
        shared.tally(|t| t.refund_fallbacks += 1);
    }
    let amount = cfg.amount(i);
    let posted = if kind == PaymentType::Collect {
        let (payer, payee) = cfg.pair(i);
        collect(shared, key, payer, payee, amount).await
    } else {
        let (payer, payee) = cfg.parties(kind, i);
        let body = TxnBody::pay(
            kind,
            payer.as_str(),
            payee.as_str(),
            amount,
            Some(key),
            &cfg.note,
        );
        post_txn(shared, key, &body).await
    };
    (kind, amount, posted)
}

/// `POST /v1/transactions` with the lean client.
async fn post_txn(shared: &Shared, key: &str, body: &TxnBody<'_>) -> Result<Accepted, String> {
    // A struct of strings always serialises; were it not to, the switch would answer 400.
    let json = serde_json::to_string(body).unwrap_or_default();
    let path = shared.posts.endpoint().path("/v1/transactions");
    // Once more (signed afresh, the same key) when a balancer's retry of the
    // first send met the nonce a dying node had used: the key decides.
    let mut attempt = 1;
    loop {
        match shared.posts.post(&path, Some(key), &json).await {
            Err(SendError::Refused { status: 401, code })
                if code == "REPLAYED_NONCE" && attempt < 2 =>
            {
                attempt += 1;
            }
            other => return other.map_err(|e| e.to_string()),
        }
    }
}

/// A collect request from `payee` to `payer`, then its approval: the payment.
async fn collect(
    shared: &Shared,
    key: &str,
    payer: &Vpa,
    payee: &Vpa,
    amount: Paise,
) -> Result<Accepted, String> {
    let cfg = &shared.cfg;
    let endpoint = shared.posts.endpoint();
    let body = CollectBody::new(payee.as_str(), payer.as_str(), amount, &cfg.note);
    let json = serde_json::to_string(&body).unwrap_or_default();
    let collect_id = shared
        .posts
        .post_with(
            &endpoint.path("/v1/collects"),
            Some(key),
            &json,
            wire::judge_collect,
        )
        .await
        .map_err(|e| format!("request: {e}"))?;
    let path = endpoint.path(&format!("/v1/collects/{collect_id}/approve"));
    let mut attempt = 1;
    loop {
        // Signed afresh each time (a new nonce).
        match shared.posts.post(&path, None, "{}").await {
            Ok(accepted) => return Ok(accepted),
            Err(e) if retry_approval(&e, attempt) && shared.stop.borrow().is_none() => {
                tokio::time::sleep(APPROVE_PAUSE).await;
                attempt += 1;
            }
            Err(e) => return Err(format!("approve: {e}")),
        }
    }
}

fn retry_approval(e: &SendError, attempt: u32) -> bool {
    e.retryable() && attempt < APPROVE_ATTEMPTS
}

/// A refund for `draw`: an original and an amount, if this run knows one.
/// With `--no-follow` the oldest unconfirmed payment is looked up (one `GET`)
/// when none is known to have succeeded yet.
async fn refundable(shared: &Shared, draw: u64) -> Option<(String, Paise)> {
    if let Some(found) = shared.originals.lock().ok()?.take(draw) {
        return Some(found);
    }
    if shared.cfg.follow {
        return None;
    }
    let (txn_id, amount) = shared.unconfirmed.lock().ok()?.pop_front()?;
    match status_of(shared, &txn_id).await {
        Some(Status::Success) => {
            let mut originals = shared.originals.lock().ok()?;
            originals.add(txn_id, amount);
            originals.take(draw)
        }
        // Still running (or the switch did not say): look again later.
        Some(Status::Pending) | None => {
            if let Ok(mut list) = shared.unconfirmed.lock() {
                list.push_back((txn_id, amount));
            }
            None
        }
        Some(_) => None,
    }
}

/// A P2P/P2M payment of this run: refundable when it succeeded; with
/// `--no-follow` one not known to have ended is kept to be looked up.
fn remember(shared: &Shared, kind: PaymentType, txn_id: String, status: Status, amount: Paise) {
    if !kind.refundable() {
        return;
    }
    if status == Status::Success {
        if let Ok(mut originals) = shared.originals.lock() {
            originals.add(txn_id, amount);
        }
    } else if status == Status::Pending
        && let Ok(mut list) = shared.unconfirmed.lock()
    {
        if list.len() >= KEEP_UNCONFIRMED {
            list.pop_front();
        }
        list.push_back((txn_id, amount));
    }
}

/// A transaction's status now (`None`: the switch did not say).
async fn status_of(shared: &Shared, txn_id: &str) -> Option<Status> {
    let url = format!("{}/v1/transactions/{txn_id}", shared.cfg.switch);
    let mut request = shared.http.get(&url);
    if let Some(signer) = &shared.signer {
        let target = crate::auth::signer::path_and_query(&url);
        request = signer.sign_request(request, "GET", &target, b"");
    }
    let resp = request.send().await.ok()?;
    let doc: serde_json::Value = resp.json().await.ok()?;
    doc["status"].as_str().and_then(Status::parse)
}

/// One more of `status` (no allocation once the status is in the map).
fn count_status(statuses: &mut BTreeMap<String, u64>, status: Status) {
    match statuses.get_mut(status.as_str()) {
        Some(n) => *n += 1,
        None => {
            statuses.insert(status.as_str().to_string(), 1);
        }
    }
}
