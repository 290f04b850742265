//! Client input parsed once into domain types: the idempotency key, `?wait=`,
//! exact amounts, VPAs, notes, merchant references; and who is asking (for
//! the rate limiter, which runs before anything is read or written).

use super::AppState;
use super::problem::Problem;
use super::transactions::MAX_WAIT_MS;
use crate::adapters::cache::Admission;
use crate::adapters::store::VpaRecord;
use crate::domain::{Paise, Vpa};
use actix_web::{HttpRequest, web};
use serde_json::value::RawValue;

/// Longest note accepted.
const MAX_NOTE_CHARS: usize = 140;
/// Longest merchant reference accepted.
const MAX_MERCHANT_REF_CHARS: usize = 64;

pub fn idempotency_key(req: &HttpRequest) -> Result<String, Problem> {
    if req.headers().get_all("Idempotency-Key").count() > 1 {
        return Err(Problem::bad_request(
            "IDEMPOTENCY_KEY_INVALID",
            "send one Idempotency-Key header, not several",
        ));
    }
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

/// `limit` (1-1000, default 100) and `before` (an id) of a listing that
/// pages backwards, newest first; anything else is `400 INVALID_QUERY`.
pub fn paging(req: &HttpRequest, what: &str) -> Result<(i64, Option<i64>), Problem> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Problem::bad_request("INVALID_QUERY", e.to_string()))?;
    let mut limit = None;
    let mut before = None;
    for (k, v) in query.iter() {
        let n = v.parse::<i64>().ok().filter(|n| *n > 0);
        match (k.as_str(), n) {
            ("limit", Some(n)) if n <= 1000 && limit.is_none() => limit = Some(n),
            ("before", Some(n)) if before.is_none() => before = Some(n),
            _ => {
                return Err(Problem::bad_request(
                    "INVALID_QUERY",
                    format!("{what} takes limit (1-1000) and before (an id), each at most once"),
                ));
            }
        }
    }
    Ok((limit.unwrap_or(100), before))
}

/// The query's parameters, each named once (`400 INVALID_QUERY` otherwise).
pub fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, Problem> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Problem::bad_request("INVALID_QUERY", e.to_string()))?
        .into_inner();
    let mut names = std::collections::HashSet::new();
    if let Some((k, _)) = query.iter().find(|(k, _)| !names.insert(k.as_str())) {
        return Err(Problem::bad_request(
            "INVALID_QUERY",
            format!("the query parameter {k:?} appears more than once"),
        ));
    }
    Ok(query)
}

pub fn wait_param(req: &HttpRequest) -> Result<Option<u64>, Problem> {
    let query = query_pairs(req)?;
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
pub fn parse_amount(raw: &RawValue, limit: Paise) -> Result<Paise, Problem> {
    // No limit (0): only what fits in paise.
    let limit = if limit.0 > 0 { limit } else { Paise(i64::MAX) };
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

pub fn parse_vpa(field: &str, text: &str) -> Result<Vpa, Problem> {
    Vpa::parse(text).ok_or_else(|| {
        Problem::unprocessable(
            "INVALID_VPA",
            format!("{field} must look like handle@psp (handle 2-256 of A-Za-z0-9._-, psp 2-64 of A-Za-z0-9)"),
        )
    })
}

pub fn parse_note(note: Option<String>) -> Result<Option<String>, Problem> {
    match note {
        Some(n)
            if n.chars().count() > MAX_NOTE_CHARS
                || n.chars().any(|c| c.is_control() || is_format_char(c)) =>
        {
            Err(Problem::unprocessable(
                "INVALID_NOTE",
                format!(
                    "note must be at most {MAX_NOTE_CHARS} characters without control or format characters (bidi overrides, zero-width characters)"
                ),
            ))
        }
        other => Ok(other),
    }
}

/// Unicode format characters (category Cf) that can make a note display
/// other than it reads: bidi embeddings, overrides and isolates, zero-width
/// characters, the soft hyphen, invisible operators, tags.
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
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
/// The authenticated client's bucket; without authentication, the one of
/// `X-Client-Id` or the peer's address.
pub async fn rate_limit(
    state: &AppState,
    req: &HttpRequest,
    caller: &super::auth::Caller,
) -> Result<(), Problem> {
    if !state.cache.limits_rate() {
        return Ok(());
    }
    let bucket = match caller {
        super::auth::Caller::Client(c) => format!("client:{}", c.client_id),
        super::auth::Caller::Anyone => client_id(req)?,
    };
    match state.cache.admit(&bucket).await {
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
pub async fn lookup_vpa(state: &AppState, vpa: &Vpa) -> Result<Option<VpaRecord>, Problem> {
    let store = &state.store;
    state
        .cache
        .vpa_through(vpa, |v| async move { store.vpa(&v).await })
        .await
        .map_err(|e| Problem::unavailable(&e))
}

/// A merchant's reference for a P2M payment: 1-64 printable ASCII characters.
pub fn parse_merchant_ref(text: Option<String>) -> Result<Option<String>, Problem> {
    match text {
        Some(r)
            if r.is_empty()
                || r.len() > MAX_MERCHANT_REF_CHARS
                || !r.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            Err(Problem::unprocessable(
                "INVALID_MERCHANT_REF",
                format!(
                    "merchant_ref must be 1-{MAX_MERCHANT_REF_CHARS} printable ASCII characters"
                ),
            ))
        }
        other => Ok(other),
    }
}

/// An amount no larger than `limit` (`0` turns the limit off).
pub fn within_limit(amount: Paise, limit: Paise, what: &str) -> Result<Paise, Problem> {
    if limit.0 > 0 && amount.0 > limit.0 {
        return Err(Problem::unprocessable(
            "AMOUNT_OVER_LIMIT",
            format!(
                "amount ₹{} is over the {what} limit of ₹{}",
                amount.to_rupees(),
                limit.to_rupees()
            ),
        ));
    }
    Ok(amount)
}

/// What every client POST starts with: the signed caller, then its rate
/// limit.
pub async fn signed_call(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<super::auth::Caller, Problem> {
    let caller = super::auth::client(state, req, body).await?;
    rate_limit(state, req, &caller).await?;
    Ok(caller)
}

/// A payer and a payee that are not the same VPA.
pub fn distinct(payer: &Vpa, payee: &Vpa) -> Result<(), Problem> {
    if payer == payee {
        return Err(Problem::unprocessable(
            "SAME_PAYER_PAYEE",
            "payer_vpa and payee_vpa must differ",
        ));
    }
    Ok(())
}

/// A VPA as stored (it parsed when it was registered).
pub fn stored_vpa(text: &str) -> Result<Vpa, Problem> {
    Vpa::parse(text).ok_or_else(|| Problem::unavailable(&"a stored VPA does not parse"))
}
