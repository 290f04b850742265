//! `Problem`: the one error type of the switch's HTTP boundary, rendered as
//! `application/problem+json` `{"type","title","status","detail","code"}` with a
//! stable UPPER_SNAKE `code`. Internal failures become a generic 503 without
//! leaking internals; a client's mistake is always a 4xx, never a 500.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use serde::de::DeserializeOwned;
use std::fmt;

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after_s: Option<u64>,
}

impl Problem {
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(400, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(422, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(404, code, detail)
    }

    /// A dependency failed; the client may retry. The cause is logged, not sent.
    pub fn unavailable(cause: &dyn fmt::Display) -> Problem {
        tracing::warn!(error = %cause, "request failed on a dependency");
        Problem {
            retry_after_s: Some(1),
            ..Problem::new(
                503,
                "SERVICE_UNAVAILABLE",
                "a dependency of the switch is unavailable; retry shortly",
            )
        }
    }

    /// This node is shutting down: another node (behind the same load
    /// balancer) takes the request.
    pub fn draining() -> Problem {
        Problem {
            retry_after_s: Some(1),
            ..Problem::new(
                503,
                "SWITCH_DRAINING",
                "this switch node is shutting down; retry (another node answers)",
            )
        }
    }

    pub fn busy(detail: impl Into<String>) -> Problem {
        Problem {
            retry_after_s: Some(1),
            ..Problem::new(503, "SWITCH_BUSY", detail)
        }
    }
}

/// The group-commit writer refusing or failing a client's write: `503`
/// either way (busy: retry shortly; unavailable: a dependency failed).
impl From<crate::actors::checkpoint_writer::WriteError> for Problem {
    fn from(e: crate::actors::checkpoint_writer::WriteError) -> Problem {
        match e {
            crate::actors::checkpoint_writer::WriteError::Busy => {
                Problem::busy("the switch is writing as fast as it can; retry shortly")
            }
            other => Problem::unavailable(&other),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

/// A create its acceptance checks refused: their status and code.
impl From<crate::saga::guards::Refusal> for Problem {
    fn from(r: crate::saga::guards::Refusal) -> Problem {
        Problem::new(r.status(), r.code(), r.detail())
    }
}

/// A problem as it is sent (RFC 9457 `application/problem+json`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProblemDoc<'a> {
    #[serde(rename = "type")]
    #[schema(example = "urn:upi-switch:problem:invalid-amount")]
    pub kind: String,
    #[schema(example = "Unprocessable Entity")]
    pub title: &'a str,
    #[schema(example = 422)]
    pub status: u16,
    pub detail: &'a str,
    /// Stable UPPER_SNAKE word a program can switch on.
    #[schema(example = "INVALID_AMOUNT")]
    pub code: &'a str,
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = ProblemDoc {
            kind: format!(
                "urn:upi-switch:problem:{}",
                self.code.to_ascii_lowercase().replace('_', "-")
            ),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
        };
        let mut resp = HttpResponse::build(self.status);
        resp.content_type("application/problem+json");
        if let Some(s) = self.retry_after_s {
            resp.insert_header(("Retry-After", s.to_string()));
        }
        resp.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

/// The request body, or a problem when it could not be read: a body over
/// `MAX_BODY_BYTES` is a `413` problem, not actix's plain-text answer.
/// (Handlers take `Result<web::Bytes, actix_web::Error>` and call this.)
pub fn body_bytes(body: Result<web::Bytes, actix_web::Error>) -> Result<web::Bytes, Problem> {
    body.map_err(|e| {
        if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                413,
                "PAYLOAD_TOO_LARGE",
                format!(
                    "the request body is larger than {} bytes",
                    super::MAX_BODY_BYTES
                ),
            )
        } else if e.to_string().contains(super::body_deadline::TIMED_OUT) {
            Problem::new(
                408,
                "BODY_TIMEOUT",
                format!(
                    "the request body did not arrive within {} s",
                    super::body_deadline::BODY_READ_TIMEOUT.as_secs()
                ),
            )
        } else {
            Problem::bad_request(
                "INVALID_BODY",
                format!("the request body could not be read: {e}"),
            )
        }
    })
}

/// Parses a JSON body strictly, mapping every failure to a 400 with a code.
/// The body must be a JSON object (serde would also take a struct as an array).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.is_empty() {
        return Err(Problem::bad_request(
            "MALFORMED_JSON",
            "the request body is empty; send a JSON object",
        ));
    }
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(Problem::bad_request(
            "INVALID_BODY",
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let text = e.to_string();
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => Problem::bad_request(
                "MALFORMED_JSON",
                format!("the body is not valid JSON: {text}"),
            ),
            Category::Data if text.starts_with("unknown field") => {
                Problem::bad_request("UNKNOWN_FIELD", text)
            }
            Category::Data if text.starts_with("missing field") => {
                Problem::bad_request("MISSING_FIELD", text)
            }
            Category::Data => Problem::bad_request("INVALID_FIELD", text),
        }
    })
}
