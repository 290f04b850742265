//! The switch's HTTP API (actix-web), per `docs/api.md`.
//! Handlers parse and validate, call actors and the store, and map errors to
//! problem+json. Each route module exposes `config`, composed by `app_config`
//! — the same function the server and the tests use.

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod body_deadline;
pub mod clients;
pub mod collects;
pub mod console;
pub mod events;
pub mod input;
pub mod openapi;
pub mod ops;
pub mod ops_txns;
pub mod payments;
pub mod problem;
pub mod settlement;
pub mod transactions;

use crate::actors::bank_router::BankRouter;
use crate::actors::bank_supervisor::HealthBoard;
use crate::actors::checkpoint_writer::CheckpointWriter;
use crate::actors::outbox_relay::RelayStatus;
use crate::actors::registry::{Admission, Stats, TxnRegistry};
use crate::adapters::cache::Cache;
use crate::adapters::store::Store;
use crate::domain::Paise;
use crate::metrics::Metrics;
use actix::Addr;
use actix_web::{HttpResponse, web};
use problem::Problem;
use std::time::Duration;

/// Limits applied to payments at acceptance (`Paise(0)` / `0`: off).
#[derive(Clone, Debug)]
pub struct Limits {
    /// One P2P or COLLECT payment.
    pub txn_limit: Paise,
    /// One P2M payment, unless its MCC has a limit of its own.
    pub p2m_txn_limit: Paise,
    pub mcc_limits: std::sync::Arc<std::collections::HashMap<String, Paise>>,
    /// Paid by one payer VPA in an IST day (P2P, P2M, COLLECT).
    pub daily_amount: Paise,
    /// Payments by one payer VPA in an IST day.
    pub daily_count: i64,
}

impl Limits {
    /// The limit of one P2M payment to a merchant of this MCC.
    pub fn p2m_limit(&self, mcc: &str) -> Paise {
        self.mcc_limits
            .get(mcc)
            .copied()
            .unwrap_or(self.p2m_txn_limit)
    }

    /// The largest amount a payment of `kind` could be allowed before its
    /// payee is known (`0`: none): amounts above it are refused while parsing.
    pub fn parse_ceiling(&self, kind: crate::saga::PaymentType) -> Paise {
        use crate::saga::PaymentType;
        match kind {
            PaymentType::P2P | PaymentType::Collect => self.txn_limit,
            PaymentType::Refund => Paise(0),
            PaymentType::P2M => {
                let limits =
                    std::iter::once(self.p2m_txn_limit).chain(self.mcc_limits.values().copied());
                let mut ceiling = Paise(0);
                for l in limits {
                    if l.0 == 0 {
                        return Paise(0);
                    }
                    ceiling = ceiling.max(l);
                }
                ceiling
            }
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Group commit of new transactions (and of every saga checkpoint).
    pub writer: CheckpointWriter,
    pub registry: Addr<TxnRegistry>,
    /// Whether a new transaction may be accepted now (read without a message).
    pub admission: Admission,
    pub banks: Addr<BankRouter>,
    /// Which banks are DOWN, as their supervisors last published.
    pub health: HealthBoard,
    pub metrics: Metrics,
    pub limits: Limits,
    pub admin_token: Option<String>,
    /// Client signing and operator tokens are enforced (off only with
    /// `--insecure-no-auth`).
    pub auth_on: bool,
    /// The registered clients (this node's view).
    pub clients: crate::auth::ClientDirectory,
    /// Where bank endpoints may point (`--bank-url-allow`).
    pub bank_url_allow: std::sync::Arc<crate::domain::url_allow::UrlAllowList>,
    /// Live transaction events (SSE) and their bounds.
    pub events: events::EventStreams,
    /// The outbox relay's status (for `/readyz` and `/v1/ops/outbox`).
    pub outbox: std::sync::Arc<RelayStatus>,
    /// Redis: VPA cache, idempotency fast path, rate limits. Never the authority.
    pub cache: Cache,
    /// This process as a node of the cluster: its id, lease and drain state.
    pub node: crate::cluster::Node,
    /// Settlement windows: the operator's close, reconciliation's wake-up.
    pub settlement: crate::settlement::ticker::Settlement,
    /// The analytics tables (`/v1/analytics/*`).
    pub analytics: crate::analytics::AnalyticsStore,
}

/// `415 UNSUPPORTED_MEDIA_TYPE` for a body on the switch's JSON API
/// (`/v1/*`) that does not say it is JSON (`application/json`, or a
/// `+json` type). The contest's endpoints (`/payments`, …) are left as the
/// contest calls them.
pub fn non_json_body(
    method: &actix_web::http::Method,
    path: &str,
    headers: &actix_web::http::header::HeaderMap,
) -> Option<Problem> {
    use actix_web::http::{Method, header};
    if !path.starts_with("/v1/") || !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return None;
    }
    if !body_deadline::has_body(headers) {
        return None;
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    (!json).then(|| {
        Problem::new(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            format!(
                "the body must be JSON with Content-Type: application/json (got {:?})",
                if mime.is_empty() {
                    "none"
                } else {
                    mime.as_str()
                }
            ),
        )
    })
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn app_config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .configure(payments::config)
        .configure(transactions::config)
        .configure(collects::config)
        .configure(events::config)
        .configure(admin::config)
        .configure(ops::config)
        .configure(ops_txns::config)
        .configure(settlement::config)
        .configure(analytics::config)
        .configure(crate::merchant::http::config)
        .configure(openapi::config)
        .configure(console::config)
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "Alive", body = HealthDoc)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthDoc { status: "ok" })
}

/// Whether this node takes new payments: Postgres reachable, the registry
/// answering, not draining. RabbitMQ and Redis only degrade it.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = ReadyDoc),
        (status = 503, description = "Not ready, or draining", body = ReadyDoc),
    ))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let postgres = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await,
        Ok(Ok(()))
    );
    let registry = tokio::time::timeout(Duration::from_secs(2), state.registry.send(Stats))
        .await
        .ok()
        .and_then(Result::ok);
    // RabbitMQ carries events, not payments: while it is away events wait in
    // the outbox and payments go on, so it degrades readiness, never denies it.
    let relay = state.outbox.snapshot();
    let rabbitmq = if relay.connected && state.events.feed.connected() {
        "ok"
    } else {
        "degraded"
    };
    // A draining node finishes what it runs but takes nothing new: the load
    // balancer must stop sending it requests.
    let draining = state.node.is_draining();
    let ready = postgres && registry.is_some() && !draining;
    // Payments work without Redis (slower, without rate limits when allowed):
    // a Redis that is down is reported, it does not make the switch not ready.
    let body = ReadyDoc {
        status: if draining {
            "draining"
        } else if ready {
            "ready"
        } else {
            "not_ready"
        },
        auth: if state.auth_on { "on" } else { "off" },
        node: NodeDoc {
            id: state.node.id(),
            name: state.node.name().to_string(),
            lease: if state.node.holds_lease() {
                "held"
            } else {
                "lost"
            },
        },
        checks: ChecksDoc {
            postgres: if postgres { "ok" } else { "unreachable" },
            sagas: registry,
            rabbitmq,
            outbox: relay,
            redis: if state.cache.is_up() {
                "ok"
            } else {
                "degraded"
            },
        },
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// `GET /healthz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthDoc {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `GET /readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ReadyDoc {
    /// `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    /// `on`, or `off` under `--insecure-no-auth`.
    pub auth: &'static str,
    pub node: NodeDoc,
    pub checks: ChecksDoc,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NodeDoc {
    pub id: uuid::Uuid,
    pub name: String,
    /// `held` or `lost`.
    pub lease: &'static str,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ChecksDoc {
    /// `ok` or `unreachable`.
    pub postgres: &'static str,
    /// The registry's counts; absent when it did not answer.
    pub sagas: Option<crate::actors::registry::RegistryStats>,
    /// `ok` or `degraded`.
    pub rabbitmq: &'static str,
    pub outbox: crate::actors::outbox_relay::RelaySnapshot,
    /// `ok` or `degraded`.
    pub redis: &'static str,
}

/// JSON `404` for every path that is not a route.
pub async fn not_found() -> Result<HttpResponse, Problem> {
    Err(Problem::not_found("NOT_FOUND", "no such endpoint"))
}
