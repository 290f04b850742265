//! One delivery from `upi.events`, checked: the pure validation between the
//! raw store (every delivery as received) and the clean store (only what
//! passed). It owns the rules of a valid event and the reason a delivery is
//! refused; it does no I/O and reads no clock (the reference time is the
//! delivery's `received_at`, so a rebuild from the raw store decides exactly
//! as the live ingest did).

use super::day::ist_day;
use crate::domain::{BankCode, Paise, Vpa};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest body kept as received; a larger one is refused (and kept cut).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest message id used as the dedupe key; a longer one is replaced by
/// the body's digest.
const MAX_MESSAGE_ID: usize = 200;
/// A transaction's creation time must lie within this many days before its
/// event was received (older: refused, not a partition of its own)…
const MAX_AGE_DAYS: i64 = 400;
/// …and at most this far after it (clock skew between hosts).
const MAX_SKEW: Duration = Duration::minutes(10);

/// A message as it came off the queue.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The AMQP `message_id` (the relay sets `<txn_id>:<seq>`).
    pub message_id: Option<String>,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

/// A valid event: the facts the clean store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanEvent {
    pub txn_id: Uuid,
    pub seq: i32,
    pub txn_type: &'static str,
    pub status: &'static str,
    pub amount: Paise,
    pub payer_bank: String,
    pub payee_bank: String,
    pub merchant_vpa: Option<String>,
    pub created_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
    /// IST day of `created_at`: where it counts.
    pub day: NaiveDate,
}

/// A delivery after validation.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The dedupe key: the message id, else the body's `event_id`, else
    /// `sha256:<hex of the body>`.
    pub message_id: String,
    /// The raw store's partition: the event's IST creation day, or the day it
    /// was received when it names none that is valid.
    pub day: NaiveDate,
    /// The event, or why it was refused (`CODE: detail`).
    pub outcome: Result<CleanEvent, String>,
}

/// Checks one delivery.
pub fn check(d: &Delivery) -> Checked {
    let received_day = ist_day(d.received_at);
    let body_id = || -> Option<String> {
        let v: Value = serde_json::from_slice(&d.body).ok()?;
        v.get("event_id")?.as_str().map(str::to_string)
    };
    let message_id = d
        .message_id
        .clone()
        .filter(|m| !m.is_empty() && m.len() <= MAX_MESSAGE_ID)
        .or_else(|| body_id().filter(|m| !m.is_empty() && m.len() <= MAX_MESSAGE_ID))
        .unwrap_or_else(|| digest_id(&d.body));
    let outcome = validate(d, &message_id);
    let day = outcome.as_ref().map_or(received_day, |e| e.day);
    Checked {
        message_id,
        day,
        outcome,
    }
}

fn digest_id(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn validate(d: &Delivery, message_id: &str) -> Result<CleanEvent, String> {
    if d.body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "TOO_LARGE: body of {} bytes, at most {MAX_BODY_BYTES}",
            d.body.len()
        ));
    }
    let value: Value = serde_json::from_slice(&d.body).map_err(|e| format!("NOT_JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "NOT_JSON: the body is not a JSON object".to_string())?;
    let txn_id = Uuid::parse_str(text(obj, "txn_id")?)
        .map_err(|_| "BAD_FIELD: txn_id is not a UUID".to_string())?;
    let seq = obj
        .get("seq")
        .and_then(Value::as_i64)
        .filter(|s| (1..=i64::from(i32::MAX)).contains(s))
        .ok_or_else(|| "BAD_FIELD: seq must be a whole number from 1".to_string())?
        as i32;
    let event_id = text(obj, "event_id")?;
    if event_id != crate::events::event_id(txn_id, seq) {
        return Err(format!(
            "BAD_FIELD: event_id {event_id:?} is not <txn_id>:<seq>"
        ));
    }
    if message_id != event_id {
        return Err(format!(
            "ID_MISMATCH: message_id {message_id:?} differs from event_id {event_id:?}"
        ));
    }
    let txn_type = match text(obj, "txn_type")? {
        "P2P" => "P2P",
        "P2M" => "P2M",
        "REFUND" => "REFUND",
        "COLLECT" => "COLLECT",
        other => return Err(format!("UNKNOWN_TYPE: txn_type {other:?}")),
    };
    let status = match text(obj, "status")? {
        "PENDING" => "PENDING",
        "SUCCESS" => "SUCCESS",
        "FAILED" => "FAILED",
        "REVERSED" => "REVERSED",
        other => return Err(format!("UNKNOWN_STATUS: status {other:?}")),
    };
    // Exact decimal text only: a JSON number could have been through a float.
    let amount_text = text(obj, "amount")?;
    let amount = Paise::parse_rupees(amount_text, Paise(i64::MAX))
        .map_err(|e| format!("BAD_AMOUNT: {amount_text:?}: {e}"))?;
    let payer_bank = bank(obj, "payer_bank")?;
    let payee_bank = bank(obj, "payee_bank")?;
    let merchant_vpa = match obj.get("merchant_vpa") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            Vpa::parse(s)
                .ok_or_else(|| format!("BAD_FIELD: merchant_vpa {s:?} is not a VPA"))?
                .as_str()
                .to_string(),
        ),
        Some(_) => return Err("BAD_FIELD: merchant_vpa must be a string".into()),
    };
    match (txn_type, &merchant_vpa) {
        ("P2M" | "COLLECT", None) => {
            return Err(format!(
                "MISSING_FIELD: merchant_vpa (a {txn_type} names its merchant)"
            ));
        }
        ("P2P", Some(_)) => return Err("BAD_FIELD: a P2P payment names no merchant".into()),
        _ => {}
    }
    let created_at = time(obj, "created_at")?;
    let at = time(obj, "at")?;
    if created_at > d.received_at + MAX_SKEW
        || created_at < d.received_at - Duration::days(MAX_AGE_DAYS)
    {
        return Err(format!(
            "BAD_TIMESTAMP: created_at {created_at} is not within {MAX_AGE_DAYS} days before its receipt ({})",
            d.received_at
        ));
    }
    if at + MAX_SKEW < created_at {
        return Err(format!(
            "BAD_TIMESTAMP: at {at} is before created_at {created_at}"
        ));
    }
    Ok(CleanEvent {
        txn_id,
        seq,
        txn_type,
        status,
        amount,
        payer_bank,
        payee_bank,
        merchant_vpa,
        created_at,
        at,
        day: ist_day(created_at),
    })
}

fn text<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(format!("MISSING_FIELD: {name}")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("BAD_FIELD: {name} must be a string")),
    }
}

fn bank(obj: &Map<String, Value>, name: &str) -> Result<String, String> {
    let code = text(obj, name)?;
    BankCode::parse(code)
        .map(|b| b.as_str().to_string())
        .ok_or_else(|| format!("BAD_FIELD: {name} {code:?} is not a bank code"))
}

fn time(obj: &Map<String, Value>, name: &str) -> Result<DateTime<Utc>, String> {
    let t = text(obj, name)?;
    DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("BAD_TIMESTAMP: {name} {t:?} is not RFC 3339"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(txn: Uuid, seq: i32) -> Value {
        serde_json::json!({
            "event_id": format!("{txn}:{seq}"), "type": "txn.succeeded", "txn_id": txn,
            "seq": seq, "txn_type": "P2M", "status": "SUCCESS", "state": "SUCCESS",
            "amount": "150.75", "payer_vpa": "al***@hdfc", "payee_vpa": "sh***@icici",
            "payer_bank": "HDFC", "payee_bank": "ICICI", "merchant_vpa": "Shop@icici",
            "created_at": "2026-12-01T18:29:59Z", "at": "2026-12-01T18:30:01Z"
        })
    }

    fn delivery(body: &Value, id: Option<String>) -> Delivery {
        Delivery {
            message_id: id,
            routing_key: "txn.succeeded.x".into(),
            body: serde_json::to_vec(body).unwrap(),
            received_at: "2026-12-01T18:30:02Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_relay_event_is_clean_and_counts_on_its_creation_day() {
        let txn = Uuid::new_v4();
        let c = check(&delivery(&event(txn, 3), Some(format!("{txn}:3"))));
        let e = c.outcome.unwrap();
        assert_eq!(e.amount, Paise(15075));
        assert_eq!(e.merchant_vpa.as_deref(), Some("shop@icici"));
        assert_eq!(e.day.to_string(), "2026-12-01");
        assert_eq!(c.day, e.day);
        assert_eq!(c.message_id, format!("{txn}:3"));
    }

    #[test]
    fn bad_records_are_refused_with_a_reason_and_filed_on_the_day_received() {
        let txn = Uuid::new_v4();
        let id = Some(format!("{txn}:3"));
        let cases: Vec<(&str, Value)> = vec![
            ("BAD_AMOUNT", serde_json::json!("150.755")),
            ("BAD_AMOUNT", serde_json::json!("-1.00")),
            ("BAD_FIELD", serde_json::json!(150.75)),
        ];
        for (code, amount) in cases {
            let mut e = event(txn, 3);
            e["amount"] = amount;
            let c = check(&delivery(&e, id.clone()));
            assert!(c.outcome.unwrap_err().starts_with(code), "{code}");
        }
        for (field, value, code) in [
            ("status", serde_json::json!("DONE"), "UNKNOWN_STATUS"),
            ("txn_type", serde_json::json!("X"), "UNKNOWN_TYPE"),
            ("payer_bank", Value::Null, "MISSING_FIELD"),
            ("merchant_vpa", Value::Null, "MISSING_FIELD"),
            (
                "created_at",
                serde_json::json!("yesterday"),
                "BAD_TIMESTAMP",
            ),
            (
                "created_at",
                serde_json::json!("2020-01-01T00:00:00Z"),
                "BAD_TIMESTAMP",
            ),
            ("seq", serde_json::json!(0), "BAD_FIELD"),
        ] {
            let mut e = event(txn, 3);
            e[field] = value;
            let c = check(&delivery(&e, id.clone()));
            let reason = c.outcome.unwrap_err();
            assert!(reason.starts_with(code), "{field}: {reason}");
            assert_eq!(c.day.to_string(), "2026-12-02", "received day");
        }
        let c = check(&delivery(&event(txn, 3), Some(format!("{txn}:4"))));
        assert!(c.outcome.unwrap_err().starts_with("ID_MISMATCH"));
    }

    #[test]
    fn garbage_gets_a_stable_id_from_its_digest() {
        let d = Delivery {
            message_id: None,
            routing_key: "txn.x".into(),
            body: b"not json".to_vec(),
            received_at: Utc::now(),
        };
        let (a, b) = (check(&d), check(&d));
        assert!(a.message_id.starts_with("sha256:"));
        assert_eq!(a.message_id, b.message_id);
        assert!(a.outcome.unwrap_err().starts_with("NOT_JSON"));
    }
}
