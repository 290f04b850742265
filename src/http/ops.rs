//! Operator endpoints for the supervision tree: `GET /v1/ops/banks` (health,
//! per-endpoint circuit, success rate, latency, in flight — exactly as the
//! spec lists), `PUT /v1/admin/banks/{code}/circuit` (force open / closed /
//! auto) and `POST /v1/admin/banks/{code}/adapters/restart`; and
//! `GET /v1/ops/outbox` (events waiting for RabbitMQ, the oldest one's age,
//! whether the relay is connected and leading); `GET /v1/ops/nodes` (the
//! cluster's nodes, their leases and the sagas each holds).
//!
//! A circuit override is stored in Postgres first (every node applies it
//! through `cluster::config_sync`, and again after a restart), then applied
//! here at once so the answer shows it.

use super::AppState;
use super::admin::authorise;
use super::problem::{Problem, body_bytes, parse_json};
use crate::actors::bank_router::{AllBanks, Lookup};
use crate::actors::bank_supervisor::{BankHealthSupervisor, RestartAdapters, View};
use crate::domain::breaker::Mode;
use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/ops/banks", web::get().to(banks))
        .route("/v1/ops/outbox", web::get().to(outbox))
        .route("/v1/ops/nodes", web::get().to(nodes))
        .route("/v1/ops/audit", web::get().to(audit))
        .route("/v1/admin/banks/{code}/circuit", web::put().to(set_circuit))
        .route(
            "/v1/admin/banks/{code}/adapters/restart",
            web::post().to(restart),
        );
}

async fn banks(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let all = state
        .banks
        .send(AllBanks)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let views = futures::future::join_all(all.iter().map(|(_, sup)| sup.send(View))).await;
    let banks: Vec<_> = views.into_iter().filter_map(Result::ok).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "banks": banks })))
}

async fn outbox(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let mut body = serde_json::to_value(state.outbox.snapshot()).unwrap_or_default();
    body["event_feed_connected"] = state.events.feed.connected().into();
    Ok(HttpResponse::Ok().json(body))
}

async fn supervisor(state: &AppState, code: String) -> Result<Addr<BankHealthSupervisor>, Problem> {
    state
        .banks
        .send(Lookup(code.clone()))
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .ok_or_else(|| Problem::not_found("UNKNOWN_BANK", format!("bank {code} is not registered")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitBody {
    endpoint: Option<String>,
    mode: String,
}

async fn set_circuit(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, Problem> {
    let actor = authorise(&state, &req)?;
    let body: CircuitBody = parse_json(&body_bytes(body)?)?;
    let mode = Mode::parse(&body.mode).ok_or_else(|| {
        Problem::unprocessable(
            "INVALID_MODE",
            "mode must be \"open\", \"closed\" or \"auto\"",
        )
    })?;
    let code = path.into_inner();
    let sup = supervisor(&state, code.clone()).await?;
    let view = sup.send(View).await.map_err(|e| Problem::unavailable(&e))?;
    let trimmed = body.endpoint.as_deref().map(|u| u.trim_end_matches('/'));
    if let Some(url) = trimmed
        && !view
            .endpoints
            .iter()
            .any(|e| e.url.trim_end_matches('/') == url)
    {
        return Err(Problem::unprocessable(
            "UNKNOWN_ENDPOINT",
            format!("{url:?} is not an endpoint of this bank"),
        ));
    }
    state
        .store
        .set_circuit_override(&code, trimmed, mode.as_str(), &actor)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    // Applied here at once, from the stored state, as every node applies it.
    crate::cluster::config_sync::apply_overrides(&state.store, &state.banks, [code])
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    tracing::info!(endpoint = ?body.endpoint, mode = mode.as_str(), "operator set circuit mode");
    let view = sup.send(View).await.map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(view))
}

async fn nodes(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let nodes = state
        .store
        .nodes()
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "this_node": state.node.id(),
        "nodes": nodes,
    })))
}

async fn restart(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let actor = authorise(&state, &req)?;
    let code = path.into_inner();
    let sup = supervisor(&state, code.clone()).await?;
    let stopped = sup
        .send(RestartAdapters)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    state
        .store
        .audit(&actor, "adapters.restart", &code)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    tracing::info!(bank = %code, stopped, "operator restarted adapters");
    Ok(HttpResponse::Accepted().json(serde_json::json!({"code": code, "restarted": stopped})))
}

/// `GET /v1/ops/audit?limit=100&before=<id>`: the newest entries first.
async fn audit(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let (limit, before) = super::input::paging(&req, "audit")?;
    let entries = state
        .store
        .audit_entries(limit, before)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "entries": entries })))
}
