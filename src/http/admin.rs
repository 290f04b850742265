//! Operator setup endpoints: `PUT /v1/admin/banks/{code}`,
//! `PUT /v1/admin/vpas/{vpa}` and (in `clients`) `PUT /v1/admin/clients/{id}`. Registrations are durable before they are
//! acknowledged; the bank directory learns of a bank only after that.

use super::AppState;
use super::problem::ProblemDoc;
use super::problem::{Problem, body_bytes, parse_json};
use crate::actors::bank_router::SetBank;
use crate::adapters::store::{BankEndpoint, BankRecord, StoreError, VpaRecord};
use crate::domain::{BankCode, Vpa};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

const MAX_ENDPOINTS: usize = 8;
const MAX_NAME_CHARS: usize = 128;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/admin/banks/{code}", web::put().to(put_bank))
        .route("/v1/admin/vpas/{vpa}", web::put().to(put_vpa))
        .route(
            "/v1/admin/clients/{client_id}",
            web::put().to(super::clients::put_client),
        );
}

/// Checks the operator's `Authorization: Bearer <token>` (`auth::operator`).
pub fn authorise(state: &AppState, req: &HttpRequest) -> Result<String, Problem> {
    super::auth::operator(state, req)
}

fn parse_bank_code(text: &str) -> Result<BankCode, Problem> {
    BankCode::parse(text).ok_or_else(|| {
        Problem::unprocessable("INVALID_BANK_CODE", "a bank code is 2-12 of A-Z and 0-9")
    })
}

pub(super) fn check_name(name: &str) -> Result<String, Problem> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(Problem::unprocessable(
            "INVALID_NAME",
            format!("name must be 1-{MAX_NAME_CHARS} characters without control characters"),
        ));
    }
    Ok(name.to_string())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BankRequest, example = json!({"name": "HDFC Bank", "endpoints": [{"url": "http://127.0.0.1:9101", "priority": 0}]}))]
struct BankBody {
    name: String,
    endpoints: Vec<BankEndpoint>,
}

/// Registers a bank or replaces its endpoints (audited). Endpoints must be
/// allowed by `--bank-url-allow`.
#[utoipa::path(put, path = "/v1/admin/banks/{code}", tag = "admin",
    params(("code" = String, Path, description = "2-12 of A-Z and 0-9", example = "HDFC")),
    request_body = BankBody,
    responses(
        (status = 201, description = "Registered", body = BankRecord),
        (status = 200, description = "Replaced", body = BankRecord),
        (status = 422, description = "Invalid code, name or endpoints; an endpoint not allowed", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn put_bank(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let actor = authorise(&state, &req)?;
    let code = parse_bank_code(&path.into_inner())?;
    let body: BankBody = parse_json(&body_bytes(body)?)?;
    let name = check_name(&body.name)?;
    if body.endpoints.is_empty() || body.endpoints.len() > MAX_ENDPOINTS {
        return Err(Problem::unprocessable(
            "INVALID_ENDPOINTS",
            format!("a bank needs 1-{MAX_ENDPOINTS} endpoints"),
        ));
    }
    for e in &body.endpoints {
        let url = reqwest::Url::parse(&e.url).map_err(|_| {
            Problem::unprocessable("INVALID_ENDPOINT_URL", format!("{:?} is not a URL", e.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Problem::unprocessable(
                "INVALID_ENDPOINT_URL",
                format!("{:?} must be an http(s) URL with a host", e.url),
            ));
        }
        if !state.bank_url_allow.allows(&url) {
            return Err(Problem::unprocessable(
                "ENDPOINT_NOT_ALLOWED",
                format!(
                    "{:?}: the switch may not call this host (serve --bank-url-allow lists the hosts and networks it may)",
                    e.url
                ),
            ));
        }
        if !(0..=1000).contains(&e.priority) {
            return Err(Problem::unprocessable(
                "INVALID_PRIORITY",
                "priority must be 0-1000",
            ));
        }
    }
    let record = BankRecord {
        code: code.to_string(),
        name,
        endpoints: body.endpoints,
    };
    let created = state
        .store
        .upsert_bank(&record, &actor)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    state
        .banks
        .send(SetBank {
            code: record.code.clone(),
            endpoints: record.endpoints.clone(),
        })
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    tracing::info!(bank = %record.code, created, "bank registered");
    Ok(if created {
        HttpResponse::Created().json(&record)
    } else {
        HttpResponse::Ok().json(&record)
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VpaRequest, example = json!({"bank_code": "HDFC", "account": "HDFC000001", "name": "Alice Kumar"}))]
struct VpaBody {
    bank_code: String,
    account: String,
    name: String,
    #[serde(default)]
    merchant: bool,
    #[serde(default)]
    mcc: Option<String>,
}

/// Registers a VPA or re-points it to another account (audited).
#[utoipa::path(put, path = "/v1/admin/vpas/{vpa}", tag = "admin",
    params(("vpa" = String, Path, description = "handle@psp", example = "cust01@hdfc")),
    request_body = VpaBody,
    responses(
        (status = 201, description = "Registered", body = VpaRecord),
        (status = 200, description = "Replaced", body = VpaRecord),
        (status = 422, description = "Invalid VPA, account, name or MCC; an unknown bank", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn put_vpa(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let actor = authorise(&state, &req)?;
    let vpa = Vpa::parse(&path.into_inner()).ok_or_else(|| {
        Problem::unprocessable(
            "INVALID_VPA",
            "a VPA is handle@psp (handle 2-256 of A-Za-z0-9._-, psp 2-64 of A-Za-z0-9)",
        )
    })?;
    let body: VpaBody = parse_json(&body_bytes(body)?)?;
    let bank = parse_bank_code(&body.bank_code)?;
    let account_ok = (1..=64).contains(&body.account.len())
        && body
            .account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !account_ok {
        return Err(Problem::unprocessable(
            "INVALID_ACCOUNT",
            "account must be 1-64 of A-Za-z0-9._-",
        ));
    }
    if let Some(mcc) = &body.mcc
        && !(mcc.len() == 4 && mcc.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Problem::unprocessable(
            "INVALID_MCC",
            "mcc must be 4 digits or null",
        ));
    }
    let record = VpaRecord {
        vpa: vpa.as_str().to_string(),
        bank_code: bank.to_string(),
        account: body.account,
        name: check_name(&body.name)?,
        merchant: body.merchant,
        mcc: body.mcc,
    };
    let created = match state.store.upsert_vpa(&record, &actor).await {
        Ok(created) => created,
        Err(StoreError::UnknownBank(code)) => {
            return Err(Problem::unprocessable(
                "UNKNOWN_BANK",
                format!("bank {code} is not registered"),
            ));
        }
        Err(e) => return Err(Problem::unavailable(&e)),
    };
    // Durable first, then the cache forgets the old mapping. (A bank's
    // re-registration changes only its endpoints, which are not cached.)
    state.cache.forget_vpa(&vpa).await;
    Ok(if created {
        HttpResponse::Created().json(&record)
    } else {
        HttpResponse::Ok().json(&record)
    })
}
