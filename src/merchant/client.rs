//! The switch's HTTP client for one payment processor (the processor side of
//! `docs/processor-api.md`): `POST /payments`, `GET /payments/{id}`,
//! `GET /payments/service-health`. Every answer folds into a few outcomes and
//! never into a guess: only `200` and `422` mean accepted, only a connection
//! that could not be opened means "not delivered", and an answer that never
//! came (timeout, reset) is kept apart from one that came back as an error.
//! Amounts go out as exact decimal text built from integer cents.

use crate::domain::{MAX_WIRE_PAISE, Paise};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;
use uuid::Uuid;

/// Outcome of `POST /payments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// `200` (`already == false`) or `422` (`already == true`: it had the payment).
    Accepted { already: bool },
    /// Not sent: the adapter's circuit or bulkhead refused it (nothing left the switch).
    Refused(&'static str),
    /// The connection could not be opened: this attempt cannot have arrived.
    NotDelivered(String),
    /// An answer came back but was not an acceptance (5xx, 429, other 4xx). That
    /// request is finished at the processor, whatever it did.
    Answered(u16),
    /// No answer (timeout, reset, unreadable): the request may still land later.
    Unanswered(String),
}

impl PostOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            PostOutcome::Accepted { already: false } => "accepted",
            PostOutcome::Accepted { already: true } => "already_had",
            PostOutcome::Refused(_) => "refused",
            PostOutcome::NotDelivered(_) => "not_delivered",
            PostOutcome::Answered(_) => "error_answer",
            PostOutcome::Unanswered(_) => "no_answer",
        }
    }
}

/// Outcome of `GET /payments/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The processor has it, with the `requestedAt` it counts it by.
    Found {
        requested_at: DateTime<Utc>,
        amount_cents: i64,
    },
    /// `404`: the processor does not have it (as of now).
    NotFound,
    Unknown(String),
}

/// Outcome of `GET /payments/service-health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthOutcome {
    Health {
        failing: bool,
        min_response_ms: u64,
    },
    /// `429`: someone asked within the last 5 s.
    RateLimited,
    Unavailable(String),
}

/// A client for one processor.
#[derive(Clone, Debug)]
pub struct ProcessorClient {
    http: reqwest::Client,
    base_url: String,
    post_timeout: Duration,
    read_timeout: Duration,
}

/// `requestedAt` on the wire: UTC with milliseconds.
pub fn wire_timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl ProcessorClient {
    pub fn new(base_url: &str, post_timeout: Duration, read_timeout: Duration) -> ProcessorClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(1_000))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        ProcessorClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            post_timeout,
            read_timeout,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn post_payment(
        &self,
        id: Uuid,
        amount_cents: i64,
        requested_at: &DateTime<Utc>,
    ) -> PostOutcome {
        let body = format!(
            r#"{{"correlationId":"{id}","amount":{},"requestedAt":"{}"}}"#,
            Paise(amount_cents).to_rupees(),
            wire_timestamp(requested_at)
        );
        let sent = self
            .http
            .post(format!("{}/payments", self.base_url))
            .timeout(self.post_timeout)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return PostOutcome::NotDelivered(chain(&e)),
            Err(e) => return PostOutcome::Unanswered(chain(&e)),
        };
        let status = resp.status().as_u16();
        // Read the body so the connection can be reused; the status alone decides.
        let _ = resp.bytes().await;
        match status {
            200 => PostOutcome::Accepted { already: false },
            422 => PostOutcome::Accepted { already: true },
            other => PostOutcome::Answered(other),
        }
    }

    pub async fn lookup(&self, id: Uuid) -> LookupOutcome {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Found {
            correlation_id: String,
            amount: Box<RawValue>,
            requested_at: String,
        }
        let sent = self
            .http
            .get(format!("{}/payments/{id}", self.base_url))
            .timeout(self.read_timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return LookupOutcome::Unknown(chain(&e)),
        };
        let status = resp.status().as_u16();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return LookupOutcome::Unknown(chain(&e)),
        };
        match status {
            200 => {
                let found: Found = match serde_json::from_slice(&body) {
                    Ok(f) => f,
                    Err(e) => return LookupOutcome::Unknown(format!("unreadable payment: {e}")),
                };
                if Uuid::parse_str(&found.correlation_id).ok() != Some(id) {
                    return LookupOutcome::Unknown(format!(
                        "answer names correlationId {:?}",
                        found.correlation_id
                    ));
                }
                let requested_at = match DateTime::parse_from_rfc3339(&found.requested_at) {
                    Ok(t) => t.with_timezone(&Utc),
                    Err(_) => {
                        return LookupOutcome::Unknown(format!(
                            "unreadable requestedAt {:?}",
                            found.requested_at
                        ));
                    }
                };
                match Paise::parse_rupees(found.amount.get().trim(), Paise(MAX_WIRE_PAISE)) {
                    Ok(p) => LookupOutcome::Found {
                        requested_at,
                        amount_cents: p.0,
                    },
                    Err(_) => {
                        LookupOutcome::Unknown(format!("unreadable amount {}", found.amount.get()))
                    }
                }
            }
            404 => LookupOutcome::NotFound,
            other => LookupOutcome::Unknown(format!("status {other}")),
        }
    }

    pub async fn health(&self) -> HealthOutcome {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Health {
            failing: bool,
            min_response_time: u64,
        }
        let sent = self
            .http
            .get(format!("{}/payments/service-health", self.base_url))
            .timeout(self.read_timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return HealthOutcome::Unavailable(chain(&e)),
        };
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        match status {
            200 => match serde_json::from_slice::<Health>(&body) {
                Ok(h) => HealthOutcome::Health {
                    failing: h.failing,
                    min_response_ms: h.min_response_time,
                },
                Err(e) => HealthOutcome::Unavailable(format!("unreadable health: {e}")),
            },
            429 => HealthOutcome::RateLimited,
            other => HealthOutcome::Unavailable(format!("status {other}")),
        }
    }
}

/// An error with its causes ("error sending request" alone says nothing).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
