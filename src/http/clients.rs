//! `PUT /v1/admin/clients/{client_id}`: an operator registers a client (a
//! PSP app) with the handles it serves and its Ed25519 public keys. The
//! registration replaces the previous one: a key left out is revoked, on
//! every node at once (the row's notice reloads it everywhere; this node
//! applies it before answering).

use super::AppState;
use super::admin::authorise;
use super::problem::{Problem, ProblemDoc, body_bytes, parse_json};
use crate::adapters::store::clients::{ClientKeyRecord, ClientRecord};
use crate::auth::{Client, signature};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use std::collections::BTreeSet;

/// A registered client as the switch answers: its key ids (never the keys).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClientDoc {
    pub client_id: String,
    pub name: String,
    pub handles: Vec<String>,
    /// The ids of its registered keys.
    pub keys: Vec<String>,
}

const MAX_HANDLES: usize = 64;
const MAX_KEYS: usize = 8;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ClientRequest, example = json!({"name": "OK Pay", "handles": ["okhdfc"], "keys": [{"key_id": "k1", "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}]}))]
struct ClientBody {
    name: String,
    handles: Vec<String>,
    keys: Vec<ClientKeyRecord>,
}

/// 1-64 of `[a-z0-9_-]` (client and key ids).
fn is_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check(client_id: &str, body: ClientBody) -> Result<ClientRecord, Problem> {
    if !is_id(client_id) {
        return Err(Problem::unprocessable(
            "INVALID_CLIENT_ID",
            "a client id is 1-64 of a-z, 0-9, _ and -",
        ));
    }
    let name = super::admin::check_name(&body.name)?;
    let mut handles = BTreeSet::new();
    for h in &body.handles {
        if !(2..=64).contains(&h.len()) || !h.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Problem::unprocessable(
                "INVALID_HANDLE",
                format!("{h:?}: a handle is 2-64 of A-Z, a-z and 0-9"),
            ));
        }
        handles.insert(h.to_ascii_lowercase());
    }
    if handles.len() > MAX_HANDLES || body.keys.len() > MAX_KEYS {
        return Err(Problem::unprocessable(
            "TOO_MANY",
            format!("at most {MAX_HANDLES} handles and {MAX_KEYS} keys"),
        ));
    }
    let mut ids = BTreeSet::new();
    for k in &body.keys {
        if !is_id(&k.key_id) || !ids.insert(k.key_id.clone()) {
            return Err(Problem::unprocessable(
                "INVALID_KEY_ID",
                format!(
                    "{:?}: key ids are 1-64 of a-z, 0-9, _ and -, each once",
                    k.key_id
                ),
            ));
        }
        if signature::public_key(&k.public_key).is_none() {
            return Err(Problem::unprocessable(
                "INVALID_PUBLIC_KEY",
                format!(
                    "key {:?}: public_key must be standard base64 (padded) of a 32-byte Ed25519 public key",
                    k.key_id
                ),
            ));
        }
    }
    Ok(ClientRecord {
        client_id: client_id.to_string(),
        name,
        handles: handles.into_iter().collect(),
        keys: body.keys,
    })
}

/// Registers a client (a PSP app) with its handles and Ed25519 public keys,
/// or replaces them: a key left out is revoked at once on every node (audited).
#[utoipa::path(put, path = "/v1/admin/clients/{client_id}", tag = "admin",
    params(("client_id" = String, Path, description = "1-64 of a-z, 0-9, _ and -")),
    request_body = ClientBody,
    responses(
        (status = 201, description = "Registered", body = ClientDoc),
        (status = 200, description = "Replaced", body = ClientDoc),
        (status = 422, description = "Invalid id, name, handles or keys", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn put_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let actor = authorise(&state, &req)?;
    let body: ClientBody = parse_json(&body_bytes(body)?)?;
    let record = check(&path.into_inner(), body)?;
    let created = state
        .store
        .upsert_client(&record, &actor)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    state.clients.set(Client::from_record(&record));
    tracing::info!(client = %record.client_id, keys = record.keys.len(), handles = ?record.handles, "client registered");
    let body = ClientDoc {
        keys: record.keys.iter().map(|k| k.key_id.clone()).collect(),
        client_id: record.client_id,
        name: record.name,
        handles: record.handles,
    };
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}
