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
use super::problem::{Problem, ProblemDoc, body_bytes, parse_json};
use crate::actors::bank_router::{AllBanks, Lookup};
use crate::actors::bank_supervisor::{BankHealthSupervisor, RestartAdapters, View};
use crate::actors::bank_supervisor::{BankView, History};
use crate::actors::health_history::HealthSample;
use crate::actors::outbox_relay::RelaySnapshot;
use crate::adapters::store::audit::AuditEntry;
use crate::adapters::store::cluster::NodeRow;
use crate::domain::breaker::Mode;
use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

/// `GET /v1/ops/banks`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct BanksDoc {
    pub banks: Vec<BankView>,
}

/// One bank's health over the last minutes.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct BankHistory {
    pub code: String,
    /// Its endpoints' URLs, in the order of each sample's `circuits`.
    pub endpoints: Vec<String>,
    /// One per 5 s, oldest first, the worst state seen in each.
    pub samples: Vec<HealthSample>,
}

/// `GET /v1/ops/banks/history`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct BanksHistoryDoc {
    pub bucket_ms: i64,
    pub banks: Vec<BankHistory>,
}

/// `GET /v1/ops/outbox`: the relay's status and this node's event feed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OutboxDoc {
    #[serde(flatten)]
    pub relay: RelaySnapshot,
    /// This node's consumer of transaction events (SSE, `?wait=`).
    pub event_feed_connected: bool,
}

/// `GET /v1/ops/nodes`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NodesDoc {
    pub this_node: uuid::Uuid,
    pub nodes: Vec<NodeRow>,
}

/// `POST /v1/admin/banks/{code}/adapters/restart`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RestartDoc {
    pub code: String,
    /// Adapters stopped (their supervisor starts them again).
    pub restarted: usize,
}

/// `GET /v1/ops/audit`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditDoc {
    pub entries: Vec<AuditEntry>,
}

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/ops/banks", web::get().to(banks))
        .route("/v1/ops/banks/history", web::get().to(history))
        .route("/v1/ops/outbox", web::get().to(outbox))
        .route("/v1/ops/nodes", web::get().to(nodes))
        .route("/v1/ops/audit", web::get().to(audit))
        .route("/v1/admin/banks/{code}/circuit", web::put().to(set_circuit))
        .route(
            "/v1/admin/banks/{code}/adapters/restart",
            web::post().to(restart),
        );
}

/// Every bank as its supervisor sees it: health, and per endpoint the
/// circuit, success rate, latency and calls in flight.
#[utoipa::path(get, path = "/v1/ops/banks", tag = "ops",
    responses((status = 200, description = "The banks", body = BanksDoc)))]
pub(crate) async fn banks(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let all = state
        .banks
        .send(AllBanks)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let views = futures::future::join_all(all.iter().map(|(_, sup)| sup.send(View))).await;
    let banks: Vec<_> = views.into_iter().filter_map(Result::ok).collect();
    Ok(HttpResponse::Ok().json(BanksDoc { banks }))
}

/// Every bank's health over the last 10 minutes, as its supervisor saw it
/// (this node's): one sample per 5 s with the worst state in it.
#[utoipa::path(get, path = "/v1/ops/banks/history", tag = "ops",
    responses((status = 200, description = "The banks' recent health", body = BanksHistoryDoc)))]
pub(crate) async fn history(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let all = state
        .banks
        .send(AllBanks)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let asks = all.iter().map(|(code, sup)| async move {
        let (endpoints, samples) = sup.send(History).await.ok()?;
        Some(BankHistory {
            code: code.clone(),
            endpoints,
            samples,
        })
    });
    let banks = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    Ok(HttpResponse::Ok().json(BanksHistoryDoc {
        bucket_ms: crate::actors::health_history::BUCKET_MS,
        banks,
    }))
}

/// Events waiting for RabbitMQ, the oldest one's age, the relay's state.
#[utoipa::path(get, path = "/v1/ops/outbox", tag = "ops",
    responses((status = 200, description = "The outbox", body = OutboxDoc)))]
pub(crate) async fn outbox(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    Ok(HttpResponse::Ok().json(OutboxDoc {
        relay: state.outbox.snapshot(),
        event_feed_connected: state.events.feed.connected(),
    }))
}

async fn supervisor(state: &AppState, code: String) -> Result<Addr<BankHealthSupervisor>, Problem> {
    state
        .banks
        .send(Lookup(code.clone()))
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .ok_or_else(|| Problem::not_found("UNKNOWN_BANK", format!("bank {code} is not registered")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CircuitRequest, example = json!({"mode": "open"}))]
struct CircuitBody {
    /// One endpoint's URL; all of the bank's when absent.
    endpoint: Option<String>,
    /// `open`, `closed` or `auto`.
    mode: String,
}

/// Forces a bank's circuits (or one endpoint's) open or closed, or hands
/// them back to the breaker (`auto`); stored, applied on every node, audited.
#[utoipa::path(put, path = "/v1/admin/banks/{code}/circuit", tag = "ops",
    params(("code" = String, Path, description = "The bank's code", example = "HDFC")),
    request_body = CircuitBody,
    responses(
        (status = 200, description = "The bank as its supervisor now sees it", body = BankView),
        (status = 404, description = "UNKNOWN_BANK", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "INVALID_MODE or UNKNOWN_ENDPOINT", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn set_circuit(
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

/// The cluster's nodes, their leases and the sagas each holds.
#[utoipa::path(get, path = "/v1/ops/nodes", tag = "ops",
    responses((status = 200, description = "The nodes", body = NodesDoc)))]
pub(crate) async fn nodes(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let nodes = state
        .store
        .nodes()
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(NodesDoc {
        this_node: state.node.id(),
        nodes,
    }))
}

/// Stops a bank's adapters; its supervisor starts them again (audited).
#[utoipa::path(post, path = "/v1/admin/banks/{code}/adapters/restart", tag = "ops",
    params(("code" = String, Path, description = "The bank's code", example = "HDFC")),
    responses(
        (status = 202, description = "Restarting", body = RestartDoc),
        (status = 404, description = "UNKNOWN_BANK", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn restart(
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
    Ok(HttpResponse::Accepted().json(RestartDoc {
        code,
        restarted: stopped,
    }))
}

/// `GET /v1/ops/audit?limit=100&before=<id>`: the newest entries first.
/// The audit log, newest first: who changed what, before and after.
#[utoipa::path(get, path = "/v1/ops/audit", tag = "ops",
    params(
        ("limit" = Option<i64>, Query, description = "1-1000 (default 100)", minimum = 1, maximum = 1000),
        ("before" = Option<i64>, Query, description = "Entries older than this entry id", minimum = 1),
    ),
    responses((status = 200, description = "The entries", body = AuditDoc)))]
pub(crate) async fn audit(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorise(&state, &req)?;
    let (limit, before) = super::input::paging(&req, "audit")?;
    let entries = state
        .store
        .audit_entries(limit, before)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    Ok(HttpResponse::Ok().json(AuditDoc { entries }))
}
