//! The demo's traffic: what each payment is (its type from `--mix`, who pays
//! whom, how much), sending it (retried with the same key while the answer is
//! unknown or the switch is busy) and following it to its end. P2P payments
//! go to frozen payees and from poor payers in fixed shares, so every end
//! state shows; P2M payments go to the demo's merchants; a collect is
//! requested by the payee and approved by the payer; a refund asks back half
//! of an earlier SUCCESS P2P or P2M of this run (a P2P or P2M instead while
//! none has succeeded yet).

use super::{
    AMOUNT_PAISE, FOLLOW_LIMIT, FROZEN_SHARE, NOTES, POLL, POOR_AMOUNT_PAISE, POOR_SHARE,
    POST_ATTEMPTS,
};
use crate::domain::Paise;
use crate::loadgen::mix::{CollectBody, Mix, Originals, TxnBody};
use crate::rig::layout::{Account, Kind};
use crate::saga::PaymentType;
use crate::traffic::{self, Accepted, Counters, Kinds, Pairs, SendError, Status};
use rand::RngExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One payment to send: its type, indices into the people list and an amount.
pub(super) struct Plan {
    pub(super) kind: PaymentType,
    /// What a refund is sent as when nothing can be refunded yet (P2P or P2M);
    /// payer, payee and amount are for that.
    pub(super) fallback: PaymentType,
    pub(super) payer: usize,
    pub(super) payee: usize,
    pub(super) amount_paise: i64,
    pub(super) note: &'static str,
}

pub(super) fn plan(people: &[Account], n: usize, mix: &Mix) -> Vec<Plan> {
    let of = |kind: Kind| -> Vec<usize> {
        (0..people.len())
            .filter(|&i| people[i].kind == kind)
            .collect()
    };
    let (rich, frozen, poor, shops) = (
        of(Kind::Ordinary),
        of(Kind::Frozen),
        of(Kind::Poor),
        of(Kind::Merchant),
    );
    let rich_pairs = Pairs::new(rich.len()).expect("the demo has many rich people");
    let mut rng = rand::rng();
    (0..n)
        .map(|_| {
            let kind = mix.pick(rng.random());
            let fallback = mix.fallback(rng.random());
            let as_kind = if kind == PaymentType::Refund {
                fallback
            } else {
                kind
            };
            let roll: f64 = rng.random();
            let (payer, payee, amount_paise) = match as_kind {
                PaymentType::P2M if !shops.is_empty() => {
                    let payer = rich[rng.random_range(0..rich.len())];
                    let shop = shops[rng.random_range(0..shops.len())];
                    (payer, shop, rng.random_range(AMOUNT_PAISE))
                }
                PaymentType::P2P if roll < FROZEN_SHARE => {
                    let payer = rich[rng.random_range(0..rich.len())];
                    let payee = frozen[rng.random_range(0..frozen.len())];
                    (payer, payee, rng.random_range(AMOUNT_PAISE))
                }
                PaymentType::P2P if roll < FROZEN_SHARE + POOR_SHARE => {
                    let payer = poor[rng.random_range(0..poor.len())];
                    let payee = rich[rng.random_range(0..rich.len())];
                    (payer, payee, rng.random_range(POOR_AMOUNT_PAISE))
                }
                _ => {
                    let (payer, payee) = rich_pairs.nth(rng.random());
                    (rich[payer], rich[payee], rng.random_range(AMOUNT_PAISE))
                }
            };
            Plan {
                kind,
                fallback,
                payer,
                payee,
                amount_paise,
                note: NOTES[rng.random_range(0..NOTES.len())],
            }
        })
        .collect()
}

pub(super) fn show_progress(
    counters: &Counters,
    total: usize,
    elapsed: Duration,
    tty: bool,
    last: bool,
) {
    let now = counters.read();
    let line = format!(
        "  sent {}/{total}  accepted {}  terminal {}  http errors {}  ({:.1} s)",
        now.sent,
        now.accepted,
        now.terminal,
        now.errors,
        elapsed.as_secs_f64()
    );
    if tty {
        eprint!("\r\x1b[2K{line}");
        if last {
            eprintln!();
        }
    } else {
        eprintln!("{line}");
    }
}

/// What refunds draw from: the refundable payments, and each one's (payer, payee).
pub(super) type Refundable = (Originals, HashMap<String, (usize, usize)>);

pub(super) struct Ctx<'a> {
    pub(super) http: &'a reqwest::Client,
    /// The rig's client key (none when its switch runs without authentication).
    pub(super) signer: Option<&'a crate::auth::signer::ClientKey>,
    pub(super) switch_url: &'a str,
    pub(super) people: &'a [Account],
    pub(super) progress: Counters,
    /// HTTP errors by kind, e.g. `POST 503 SWITCH_BUSY`, `GET timeout`.
    pub(super) errors: Kinds,
    /// SUCCESS P2P/P2M payments refunds may ask back, and their (payer, payee).
    pub(super) originals: Mutex<Refundable>,
}

impl Ctx<'_> {
    fn error(&self, kind: String) {
        Counters::bump(&self.progress.errors);
        self.errors.add(kind);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// The last status seen: terminal, or `PENDING` after `FOLLOW_LIMIT`.
    Seen(Status),
    /// Never accepted; the last answer's kind.
    NotAccepted(String),
}

/// One payment as it went: its type, parties and amount as sent.
pub(super) struct Outcome {
    pub(super) kind: PaymentType,
    pub(super) payer: usize,
    pub(super) payee: usize,
    pub(super) amount_paise: i64,
    /// A refund sent as a P2P or P2M: nothing could be refunded yet.
    pub(super) fell_back: bool,
    pub(super) txn_id: Option<String>,
    pub(super) end: End,
    pub(super) reason: Option<String>,
    pub(super) accept: Option<Duration>,
    pub(super) e2e: Option<Duration>,
}

/// Sends one payment and follows it to a terminal status.
pub(super) async fn follow_one(ctx: &Ctx<'_>, plan: &Plan) -> Outcome {
    let mut outcome = Outcome {
        kind: plan.kind,
        payer: plan.payer,
        payee: plan.payee,
        amount_paise: plan.amount_paise,
        fell_back: false,
        txn_id: None,
        end: End::Seen(Status::Pending),
        reason: None,
        accept: None,
        e2e: None,
    };
    let refund = match plan.kind {
        PaymentType::Refund => {
            let draw: u64 = rand::rng().random();
            let taken = ctx.originals.lock().ok().and_then(|mut o| {
                let (txn_id, amount) = o.0.take(draw)?;
                let (payer, payee) = *o.1.get(&txn_id)?;
                Some((txn_id, amount, payer, payee))
            });
            match taken {
                // Back from the original's payee to its payer.
                Some((txn_id, amount, payer, payee)) => {
                    (outcome.payer, outcome.payee) = (payee, payer);
                    outcome.amount_paise = amount.0;
                    Some(txn_id)
                }
                None => {
                    outcome.kind = plan.fallback;
                    outcome.fell_back = true;
                    None
                }
            }
        }
        _ => None,
    };
    let key = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    Counters::bump(&ctx.progress.sent);
    let sent = match (&refund, outcome.kind) {
        (Some(original), _) => {
            let body = TxnBody::refund(original, Paise(outcome.amount_paise), plan.note);
            post_payment(ctx, outcome.kind, &key, &body).await
        }
        (None, PaymentType::Collect) => collect(ctx, &outcome, &key, plan.note).await,
        (None, kind) => {
            let (payer, payee) = (&ctx.people[outcome.payer], &ctx.people[outcome.payee]);
            let body = TxnBody::pay(
                kind,
                &payer.vpa,
                &payee.vpa,
                Paise(outcome.amount_paise),
                Some(&key),
                plan.note,
            );
            post_payment(ctx, kind, &key, &body).await
        }
    };
    let accepted = match sent {
        Ok(accepted) => accepted,
        Err(kind) => {
            outcome.end = End::NotAccepted(kind);
            return outcome;
        }
    };
    outcome.accept = Some(started.elapsed());
    Counters::bump(&ctx.progress.accepted);
    let followed = traffic::follow(
        ctx.http,
        ctx.signer,
        ctx.switch_url,
        &accepted.txn_id,
        &POLL,
        Instant::now() + FOLLOW_LIMIT,
        |kind| ctx.error(kind),
    )
    .await;
    if followed.status == Status::Success
        && outcome.kind.refundable()
        && let Ok(mut o) = ctx.originals.lock()
    {
        o.0.add(accepted.txn_id.clone(), Paise(outcome.amount_paise));
        o.1.insert(accepted.txn_id.clone(), (outcome.payer, outcome.payee));
    }
    outcome.txn_id = Some(accepted.txn_id);
    outcome.end = End::Seen(followed.status);
    if followed.status.is_terminal() {
        outcome.e2e = Some(started.elapsed());
        outcome.reason = followed.reason;
        Counters::bump(&ctx.progress.terminal);
    }
    outcome
}

/// The name an error of `kind` is counted under (P2P's plain, as always).
fn named(kind: PaymentType, e: &SendError) -> String {
    match kind {
        PaymentType::P2P => e.to_string(),
        other => format!("{} {e}", other.as_str()),
    }
}

/// `call` until it is accepted, at most [`POST_ATTEMPTS`] times while the
/// error is worth retrying (the same key or collect makes that safe);
/// `Err` is the last error's name.
async fn retried<T, F, Fut>(ctx: &Ctx<'_>, kind: PaymentType, mut call: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SendError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                ctx.error(named(kind, &e));
                if !e.retryable() || attempt >= POST_ATTEMPTS {
                    return Err(named(kind, &e));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100 << (attempt - 1).min(4))).await;
    }
}

async fn post_payment(
    ctx: &Ctx<'_>,
    kind: PaymentType,
    key: &str,
    body: &TxnBody<'_>,
) -> Result<Accepted, String> {
    retried(ctx, kind, || {
        traffic::post_payment(ctx.http, ctx.signer, ctx.switch_url, key, body, None)
    })
    .await
}

/// The payee asks (`POST /v1/collects`), the payer approves: the payment.
async fn collect(
    ctx: &Ctx<'_>,
    outcome: &Outcome,
    key: &str,
    note: &str,
) -> Result<Accepted, String> {
    let (payer, payee) = (&ctx.people[outcome.payer], &ctx.people[outcome.payee]);
    let body = CollectBody::new(&payee.vpa, &payer.vpa, Paise(outcome.amount_paise), note);
    let url = format!("{}/v1/collects", ctx.switch_url);
    let collect_id = retried(ctx, PaymentType::Collect, || async {
        let (status, answer) =
            traffic::post_to(ctx.http, ctx.signer, &url, Some(key), &body, None).await?;
        match (status, answer["collect_id"].as_str()) {
            (200 | 201, Some(id)) => Ok(id.to_string()),
            (200 | 201, None) => Err(SendError::NoTxnId(status)),
            _ => Err(SendError::Refused {
                status,
                code: traffic::problem_code(&answer).to_string(),
            }),
        }
    })
    .await?;
    let approve = format!("{}/v1/collects/{collect_id}/approve", ctx.switch_url);
    retried(ctx, PaymentType::Collect, || async {
        let (status, answer) = traffic::post_to(
            ctx.http,
            ctx.signer,
            &approve,
            None,
            &Value::Object(Default::default()),
            None,
        )
        .await?;
        traffic::accepted(status, &answer)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_sends_every_kind_and_never_pays_oneself() {
        let people = super::super::people();
        let mix = Mix::parse(crate::loadgen::mix::ALL_TYPES).unwrap();
        let plans = plan(&people, 2000, &mix);
        assert!(plans.iter().all(|p| p.payer != p.payee));
        assert!(plans.iter().any(|p| people[p.payee].kind == Kind::Frozen));
        assert!(plans.iter().any(|p| people[p.payer].kind == Kind::Poor));
        // Poor accounts never receive money and frozen ones never pay, so every run can show both.
        assert!(plans.iter().all(|p| people[p.payee].kind != Kind::Poor));
        assert!(plans.iter().all(|p| people[p.payer].kind != Kind::Frozen));
        assert!(plans.iter().all(|p| p.amount_paise >= 100));
        for kind in PaymentType::ALL {
            assert!(plans.iter().any(|p| p.kind == kind), "{kind:?}");
        }
        // P2M payments (and refunds that fall back to one) go to merchants, and only they do.
        for p in &plans {
            let as_kind = if p.kind == PaymentType::Refund {
                p.fallback
            } else {
                p.kind
            };
            let to_shop = people[p.payee].kind == Kind::Merchant;
            assert_eq!(as_kind == PaymentType::P2M, to_shop, "{as_kind:?}");
        }
    }
}
