//! Authentication at the edge of the API: client calls (`/v1/transactions`,
//! `/v1/collects`, `/v1/vpa`) must be signed by a registered client's key
//! (`auth::signature`; the nonce is used up in Postgres once the signature
//! verified), operator calls (`/v1/admin/*`, `/v1/ops/*`, `/v1/settlement/*`,
//! `/v1/reconciliation/*`, `/v1/ledger/*`) carry the bearer
//! token, compared in constant time. `serve --insecure-no-auth` turns both
//! off for local experiments.

use super::AppState;
use super::problem::Problem;
use crate::auth::Client;
use crate::auth::signature::{self, AuthError, NONCE_TTL_S};
use actix_web::HttpRequest;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Who made a client call.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off (`--insecure-no-auth`).
    Anyone,
    Client(Arc<Client>),
}

impl Caller {
    /// The id stored with what it creates (`""` when authentication is off):
    /// idempotency keys are per this id.
    pub fn id(&self) -> &str {
        match self {
            Caller::Anyone => "",
            Caller::Client(c) => &c.client_id,
        }
    }

    /// Whether it serves the PSP handle of this stored VPA.
    pub fn serves(&self, vpa: &str) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Client(c) => {
                let psp = crate::domain::psp_of(vpa);
                c.handles.iter().any(|h| h == psp)
            }
        }
    }

    /// `403 NOT_YOUR_VPA` unless it serves `vpa` (acting as `role`).
    pub fn must_serve(&self, vpa: &str, role: &str) -> Result<(), Problem> {
        if self.serves(vpa) {
            Ok(())
        } else {
            Err(Problem::new(
                403,
                "NOT_YOUR_VPA",
                format!("this client does not serve the handle of {vpa}, the {role}"),
            ))
        }
    }

    /// Whether it may see something created by `creator` between these VPAs:
    /// it created it, or serves the payer's or the payee's handle.
    pub fn may_see(&self, creator: &str, payer_vpa: &str, payee_vpa: &str) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Client(c) => {
                c.client_id == creator || self.serves(payer_vpa) || self.serves(payee_vpa)
            }
        }
    }
}

fn refused(e: AuthError) -> Problem {
    Problem::new(401, e.code(), e.to_string())
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks a client call's signature over `body` (the bytes as received;
/// empty for a GET), then uses up its nonce.
pub async fn client(state: &AppState, req: &HttpRequest, body: &[u8]) -> Result<Caller, Problem> {
    if !state.auth_on {
        return Ok(Caller::Anyone);
    }
    let h = signature::headers(|name| req.headers().get(name).and_then(|v| v.to_str().ok()))
        .map_err(refused)?;
    let client = state
        .clients
        .get(&h.client_id)
        .ok_or_else(|| refused(AuthError::UnknownClient))?;
    let key = client
        .keys
        .get(&h.key_id)
        .ok_or_else(|| refused(AuthError::UnknownClient))?;
    signature::fresh(&h.timestamp, now_s()).map_err(refused)?;
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |pq| pq.as_str().to_string());
    let message = signature::message(req.method().as_str(), &target, &h.timestamp, &h.nonce, body);
    signature::verify(key, &message, &h.signature).map_err(refused)?;
    let fresh = state
        .store
        .use_nonce(&client.client_id, &h.nonce, NONCE_TTL_S)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    if !fresh {
        return Err(refused(AuthError::ReplayedNonce));
    }
    Ok(Caller::Client(client))
}

/// Checks `Authorization: Bearer <admin token>` of an operator call; the
/// operator as the audit log names it: `operator:<token fingerprint>@<peer>`
/// (the first 8 hex digits of the token's SHA-256, so entries tell tokens
/// apart across a rotation without storing them), or `anyone@<peer>` when
/// authentication is off.
pub fn operator(state: &AppState, req: &HttpRequest) -> Result<String, Problem> {
    let peer = req
        .peer_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    let Some(token) = &state.admin_token else {
        // No token: only possible with --insecure-no-auth (serve refuses
        // to start otherwise).
        return Ok(format!("anyone@{peer}"));
    };
    let given = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(token.as_bytes());
        let print: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("operator:{print}@{peer}"))
    } else {
        Err(Problem::new(
            401,
            "UNAUTHORIZED",
            "operator endpoints need Authorization: Bearer <admin token>",
        ))
    }
}
