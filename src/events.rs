//! Domain events of a transaction: what the outbox stores, what the relay
//! publishes to RabbitMQ and what `GET /v1/transactions/{id}/events` streams.
//! Pure: naming, routing keys and the JSON shape, no I/O.
//!
//! One event per saga checkpoint. Its `seq` is the checkpoint version, so the
//! events of one transaction are totally ordered and `event_id`
//! (`<txn_id>:<seq>`) is deterministic: a re-published event carries the same
//! id and consumers dedupe on it (it is the AMQP `message_id`).
//!
//! Every event also carries what analytics needs (`crate::analytics`): the
//! payer and payee bank codes, when the transaction was created (the IST day
//! it counts on), and the merchant's full VPA for P2M and COLLECT payments and
//! for refunds of a P2M (a merchant's VPA is public; a person's stays masked).
//! These fields are optional on input, so events written before them parse.

use crate::domain::{Paise, Vpa};
use crate::saga::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The event type of a checkpoint label (`DEBITED` → `txn.debited`).
pub fn event_type(state: &str) -> String {
    match state {
        // A transaction is born at its first checkpoint, PENDING.
        "PENDING" => "txn.initiated".to_string(),
        "SUCCESS" => "txn.succeeded".to_string(),
        other => format!("txn.{}", other.to_ascii_lowercase()),
    }
}

/// The AMQP routing key of an event: `<type>.<txn_id>`, e.g.
/// `txn.debited.6f1c…`. Bind `txn.#` for everything, `txn.succeeded.*` for
/// one kind, `txn.*.<txn_id>` for one transaction.
pub fn routing_key(event_type: &str, txn_id: Uuid) -> String {
    format!("{event_type}.{txn_id}")
}

/// The binding pattern that selects every event of one transaction.
pub fn txn_binding(txn_id: Uuid) -> String {
    format!("txn.*.{txn_id}")
}

pub fn event_id(txn_id: Uuid, seq: i32) -> String {
    format!("{txn_id}:{seq}")
}

/// Reads the `seq` back out of an event id (for SSE `Last-Event-ID`).
pub fn seq_of_event_id(txn_id: Uuid, id: &str) -> Option<i32> {
    let (txn, seq) = id.rsplit_once(':')?;
    if txn != txn_id.to_string() {
        return None;
    }
    seq.parse().ok().filter(|s| *s >= 0)
}

/// One domain event as published and streamed (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub txn_id: Uuid,
    pub seq: i32,
    pub txn_type: String,
    /// Client-visible status after this step.
    pub status: String,
    /// The checkpoint label (`DEBITED`, `CREDIT_UNKNOWN`, `SUCCESS`, …).
    pub state: String,
    /// Exact rupees, two decimals (`"150.75"`).
    pub amount: String,
    /// Masked VPAs (`al***@hdfc`): events travel further than the API.
    pub payer_vpa: String,
    pub payee_vpa: String,
    pub op_id: Option<String>,
    pub reason_code: Option<String>,
    pub reason_detail: Option<String>,
    pub at: DateTime<Utc>,
    /// Bank code of the payer's account.
    #[serde(default)]
    pub payer_bank: Option<String>,
    /// Bank code of the payee's account.
    #[serde(default)]
    pub payee_bank: Option<String>,
    /// The merchant's full VPA: the payee of a P2M or COLLECT payment, the
    /// payer of a refund of a P2M; `None` otherwise.
    #[serde(default)]
    pub merchant_vpa: Option<String>,
    /// When the transaction was created (it counts on that IST day).
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// The facts of a transaction that never change after it is created.
#[derive(Debug, Clone)]
pub struct TxnFacts {
    pub txn_id: Uuid,
    pub txn_type: String,
    pub payer_vpa: String,
    pub payee_vpa: String,
    pub amount: Paise,
    pub payer_bank: Option<String>,
    pub payee_bank: Option<String>,
    /// See `TxnEvent::merchant_vpa`.
    pub merchant_vpa: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

/// One step of a transaction, as recorded by a checkpoint.
#[derive(Debug, Clone)]
pub struct StepFacts {
    pub seq: i32,
    pub state: String,
    pub status: String,
    pub op_id: Option<String>,
    pub reason_code: Option<String>,
    pub reason_detail: Option<String>,
    pub at: DateTime<Utc>,
}

impl TxnEvent {
    pub fn new(txn: &TxnFacts, step: StepFacts) -> TxnEvent {
        let event_type = event_type(&step.state);
        TxnEvent {
            event_id: event_id(txn.txn_id, step.seq),
            event_type,
            txn_id: txn.txn_id,
            seq: step.seq,
            txn_type: txn.txn_type.clone(),
            status: step.status,
            state: step.state,
            amount: txn.amount.to_rupees(),
            payer_vpa: mask(&txn.payer_vpa),
            payee_vpa: mask(&txn.payee_vpa),
            op_id: step.op_id,
            reason_code: step.reason_code,
            reason_detail: step.reason_detail,
            at: step.at,
            payer_bank: txn.payer_bank.clone(),
            payee_bank: txn.payee_bank.clone(),
            merchant_vpa: txn.merchant_vpa.clone(),
            created_at: txn.created_at,
        }
    }

    pub fn routing_key(&self) -> String {
        routing_key(&self.event_type, self.txn_id)
    }

    /// True for the last event of a transaction.
    pub fn is_terminal(&self) -> bool {
        Status::parse(&self.status).is_some_and(Status::is_terminal)
    }
}

fn mask(vpa: &str) -> String {
    Vpa::parse(vpa).map_or_else(|| "***".to_string(), |v| v.masked())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checkpoint_label_has_a_type() {
        let cases = [
            ("PENDING", "txn.initiated"),
            ("DEBIT_UNKNOWN", "txn.debit_unknown"),
            ("DEBITED", "txn.debited"),
            ("CREDIT_UNKNOWN", "txn.credit_unknown"),
            ("DEBIT_FENCING", "txn.debit_fencing"),
            ("CREDIT_FENCING", "txn.credit_fencing"),
            ("REVERSING", "txn.reversing"),
            ("SUCCESS", "txn.succeeded"),
            ("FAILED", "txn.failed"),
            ("REVERSED", "txn.reversed"),
        ];
        for (state, ty) in cases {
            assert_eq!(event_type(state), ty);
        }
    }

    #[test]
    fn ids_and_keys_round_trip() {
        let txn = Uuid::new_v4();
        let id = event_id(txn, 3);
        assert_eq!(seq_of_event_id(txn, &id), Some(3));
        assert_eq!(seq_of_event_id(Uuid::new_v4(), &id), None);
        assert_eq!(seq_of_event_id(txn, "garbage"), None);
        assert_eq!(
            routing_key("txn.debited", txn),
            format!("txn.debited.{txn}")
        );
        assert_eq!(txn_binding(txn), format!("txn.*.{txn}"));
    }

    #[test]
    fn events_mask_vpas_and_keep_exact_amounts() {
        let txn = TxnFacts {
            txn_id: Uuid::new_v4(),
            txn_type: "P2P".into(),
            payer_vpa: "alice@hdfc".into(),
            payee_vpa: "bob@icici".into(),
            amount: Paise(15075),
            payer_bank: Some("HDFC".into()),
            payee_bank: Some("ICICI".into()),
            merchant_vpa: None,
            created_at: Some(Utc::now()),
        };
        let e = TxnEvent::new(
            &txn,
            StepFacts {
                seq: 4,
                state: "SUCCESS".into(),
                status: "SUCCESS".into(),
                op_id: None,
                reason_code: None,
                reason_detail: None,
                at: Utc::now(),
            },
        );
        assert_eq!(e.amount, "150.75");
        assert_eq!(e.payer_vpa, "al***@hdfc");
        assert_eq!(e.payee_vpa, "bo***@icici");
        assert_eq!(e.event_type, "txn.succeeded");
        assert!(e.is_terminal());
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "txn.succeeded");
        let back: TxnEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn events_without_the_analytics_fields_still_parse() {
        let old = serde_json::json!({
            "event_id": "x:1", "type": "txn.initiated",
            "txn_id": "6f1c0a52-9a41-4c71-9a70-32a7a2b7d0f1", "seq": 1,
            "txn_type": "P2P", "status": "PENDING", "state": "PENDING",
            "amount": "1.00", "payer_vpa": "al***@hdfc", "payee_vpa": "bo***@icici",
            "op_id": null, "reason_code": null, "reason_detail": null,
            "at": "2026-12-01T10:00:00Z"
        });
        let e: TxnEvent = serde_json::from_value(old).unwrap();
        assert_eq!(
            (e.payer_bank, e.merchant_vpa, e.created_at),
            (None, None, None)
        );
    }
}
