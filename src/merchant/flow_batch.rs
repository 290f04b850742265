//! The forwarder's fenced writes of many payments in ONE statement, group
//! committed by the switch's writer (`actors::checkpoint_writer`): announcing
//! a send (SENDING at a processor, its requestedAt fixed, unanswered since
//! now, lease renewed), recording an acceptance (final), and handing a payment
//! back (held until a retry time). Each is fenced by the claim it names, so a
//! forwarder that lost its claim changes nothing (it is absent from the
//! answer) — one stale job never fails the others.
//!
//! The same rules as before they were batched (`merchant::store` has the
//! claim and the reads): the requestedAt of a processor is the first one
//! announced there and never changes; an accepted payment never changes (a
//! trigger too).

use super::policy::ProcessorId;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

pub const SQL: &str = "
WITH a AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[],
                         $5::timestamptz[], $6::float8[])
        AS a(id, claim, p, requested_at, sent_at, lease_s)
), ann AS (
    UPDATE merchant_payments m
    SET state = 'SENDING', processor = a.p,
        default_requested_at = CASE WHEN a.p = 'default'
            THEN coalesce(m.default_requested_at, a.requested_at) ELSE m.default_requested_at END,
        fallback_requested_at = CASE WHEN a.p = 'fallback'
            THEN coalesce(m.fallback_requested_at, a.requested_at) ELSE m.fallback_requested_at END,
        attempts = m.attempts + 1, unanswered_since = a.sent_at,
        lease_until = now() + make_interval(secs => a.lease_s)
    FROM a
    WHERE m.correlation_id = a.id AND m.claim = a.claim AND m.state <> 'ACCEPTED'
    RETURNING m.correlation_id,
        CASE WHEN a.p = 'default' THEN m.default_requested_at ELSE m.fallback_requested_at END AS at
), c AS (
    SELECT * FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::timestamptz[])
        AS c(id, claim, p, requested_at)
), acc AS (
    UPDATE merchant_payments m
    SET state = 'ACCEPTED', processor = c.p, requested_at = c.requested_at, accepted_at = now(),
        claim = NULL, lease_until = NULL, unanswered_since = NULL, last_error = NULL
    FROM c
    WHERE m.correlation_id = c.id AND m.claim = c.claim AND m.state <> 'ACCEPTED'
    RETURNING m.correlation_id
), r AS (
    SELECT * FROM unnest($11::uuid[], $12::uuid[], $13::float8[], $14::text[],
                         $15::timestamptz[], $16::text[])
        AS r(id, claim, after_s, maybe_at, unanswered, last_error)
), rel AS (
    UPDATE merchant_payments m
    SET claim = NULL, lease_until = NULL, holds = m.holds + 1,
        next_attempt_at = now() + make_interval(secs => r.after_s),
        state = CASE WHEN r.maybe_at IS NULL THEN 'PENDING' ELSE 'SENDING' END,
        processor = r.maybe_at, unanswered_since = r.unanswered,
        last_error = coalesce(r.last_error, m.last_error)
    FROM r
    WHERE m.correlation_id = r.id AND m.claim = r.claim AND m.state <> 'ACCEPTED'
    RETURNING m.correlation_id
)
SELECT 'a', correlation_id, at FROM ann
UNION ALL SELECT 'c', correlation_id, NULL FROM acc
UNION ALL SELECT 'r', correlation_id, NULL FROM rel";

/// A send about to leave: SENDING at `p`, `p`'s requestedAt fixed (the one
/// chosen before, else `requested_at`), unanswered as of `sent_at`.
#[derive(Debug, Clone)]
pub struct Announce {
    pub id: Uuid,
    pub claim: Uuid,
    pub p: ProcessorId,
    pub requested_at: DateTime<Utc>,
    pub sent_at: DateTime<Utc>,
    pub lease: Duration,
}

/// `p` has the payment, counted by `requested_at`. Final.
#[derive(Debug, Clone)]
pub struct Accept {
    pub id: Uuid,
    pub claim: Uuid,
    pub p: ProcessorId,
    pub requested_at: DateTime<Utc>,
}

/// The payment goes back, due again after `after`, with what is known: where
/// an outcome is unknown (if anywhere) and since when.
#[derive(Debug, Clone)]
pub struct Release {
    pub id: Uuid,
    pub claim: Uuid,
    pub maybe_at: Option<ProcessorId>,
    pub unanswered_since: Option<DateTime<Utc>>,
    pub after: Duration,
    pub last_error: Option<String>,
}

/// The parameters of one statement, column by column.
#[derive(Default)]
pub struct Columns {
    a_id: Vec<Uuid>,
    a_claim: Vec<Uuid>,
    a_p: Vec<&'static str>,
    a_requested_at: Vec<DateTime<Utc>>,
    a_sent_at: Vec<DateTime<Utc>>,
    a_lease_s: Vec<f64>,
    c_id: Vec<Uuid>,
    c_claim: Vec<Uuid>,
    c_p: Vec<&'static str>,
    c_requested_at: Vec<DateTime<Utc>>,
    r_id: Vec<Uuid>,
    r_claim: Vec<Uuid>,
    r_after_s: Vec<f64>,
    r_maybe_at: Vec<Option<&'static str>>,
    r_unanswered: Vec<Option<DateTime<Utc>>>,
    r_last_error: Vec<Option<String>>,
}

impl Columns {
    pub fn announce(&mut self, a: &Announce) {
        self.a_id.push(a.id);
        self.a_claim.push(a.claim);
        self.a_p.push(a.p.as_str());
        self.a_requested_at.push(a.requested_at);
        self.a_sent_at.push(a.sent_at);
        self.a_lease_s.push(a.lease.as_secs_f64());
    }

    pub fn accept(&mut self, c: &Accept) {
        self.c_id.push(c.id);
        self.c_claim.push(c.claim);
        self.c_p.push(c.p.as_str());
        self.c_requested_at.push(c.requested_at);
    }

    pub fn release(&mut self, r: &Release) {
        self.r_id.push(r.id);
        self.r_claim.push(r.claim);
        self.r_after_s.push(r.after.as_secs_f64());
        self.r_maybe_at.push(r.maybe_at.map(ProcessorId::as_str));
        self.r_unanswered.push(r.unanswered_since);
        self.r_last_error.push(r.last_error.clone());
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 16] {
        [
            &self.a_id,
            &self.a_claim,
            &self.a_p,
            &self.a_requested_at,
            &self.a_sent_at,
            &self.a_lease_s,
            &self.c_id,
            &self.c_claim,
            &self.c_p,
            &self.c_requested_at,
            &self.r_id,
            &self.r_claim,
            &self.r_after_s,
            &self.r_maybe_at,
            &self.r_unanswered,
            &self.r_last_error,
        ]
    }
}

/// What one committed statement did; a job absent from it had lost its claim.
#[derive(Debug, Default)]
pub struct Written {
    /// Announced sends with the requestedAt to send.
    pub announced: Vec<(Uuid, DateTime<Utc>)>,
    pub accepted: Vec<Uuid>,
    pub released: Vec<Uuid>,
}

/// Runs the statement: when it returns `Ok`, every write of it is durable.
pub async fn write(
    client: &Client,
    statement: &tokio_postgres::Statement,
    columns: &Columns,
) -> Result<Written, tokio_postgres::Error> {
    let rows = client.query(statement, &columns.params()).await?;
    let mut written = Written::default();
    for row in rows {
        let id: Uuid = row.get(1);
        match row.get::<_, &str>(0) {
            "a" => {
                let at: Option<DateTime<Utc>> = row.get(2);
                if let Some(at) = at {
                    written.announced.push((id, at));
                }
            }
            "c" => written.accepted.push(id),
            _ => written.released.push(id),
        }
    }
    Ok(written)
}
