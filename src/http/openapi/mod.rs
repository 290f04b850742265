//! The switch's OpenAPI 3 document, generated from the code: every handler
//! carries its `#[utoipa::path]` (method, path, parameters, body, success
//! answers) and every body its `ToSchema`, derived from the very types the
//! handlers serialise. What is the same for many operations is added here
//! once, by rule, as `http::auth` applies it: the security of a path (a
//! signed client, or an operator's bearer token), and the problem+json
//! answers any request of its kind can meet. `GET /openapi.json` serves it
//! (no credentials); `GET /docs` is Swagger UI (`swagger`).

mod swagger;

use super::problem::ProblemDoc;
use actix_web::{HttpResponse, web};
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi as Document, RefOr, ResponseBuilder, SecurityRequirement,
};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "upi-switch",
        description = "A real-time payment switch in the style of UPI. The stable core is \
                       `switch-api-v1.md`; this document, generated from the code, is the full reference. \
                       Amounts are rupees as exact decimal strings; errors are application/problem+json \
                       with a stable `code`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        super::payments::create,
        super::transactions::get,
        super::transactions::validate_vpa,
        super::events::stream,
        super::collects::create,
        super::collects::get,
        super::collects::approve,
        super::collects::decline,
        super::admin::put_bank,
        super::admin::put_vpa,
        super::clients::put_client,
        super::ops::banks,
        super::ops::history,
        super::ops::outbox,
        super::ops::nodes,
        super::ops::audit,
        super::ops::set_circuit,
        super::ops::restart,
        super::ops_txns::sagas,
        super::ops_txns::search,
        super::settlement::balances,
        super::settlement::windows,
        super::settlement::window,
        super::settlement::report,
        super::settlement::close,
        super::settlement::reconciliation,
        super::settlement::run_reconciliation,
        super::analytics::daily,
        super::analytics::merchant,
        super::analytics::banks,
        super::analytics::status,
        crate::merchant::http::receive,
        crate::merchant::http::summary,
        crate::merchant::http::purge,
        crate::merchant::http::processors,
        super::healthz,
        super::readyz,
        super::metrics,
        openapi_json,
    ),
    components(schemas(ProblemDoc)),
    modifiers(&ByRule),
    tags(
        (name = "payments", description = "Signed client calls: payments, their status, VPA checks"),
        (name = "collects", description = "Signed client calls: collect requests"),
        (name = "admin", description = "Operators: banks, VPAs, clients (bearer token)"),
        (name = "ops", description = "Operators: supervisors, circuits, outbox, nodes, audit (bearer token)"),
        (name = "settlement", description = "Operators: the ledger, settlement windows, reconciliation (bearer token)"),
        (name = "analytics", description = "Operators: daily summaries from the event stream (bearer token)"),
        (name = "merchant", description = "The Rinha de Backend 2025 contract"),
        (name = "service", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The document, built once per process.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json))
        .configure(swagger::config);
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3 document of every endpoint", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json() -> HttpResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| document().to_json().unwrap_or_else(|_| "{}".into()));
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.as_str())
}

/// Who may call a path, by the rule `http::auth` applies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Signed by a registered client (`X-Client-Id` … `X-Signature`).
    Client,
    /// An operator's `Authorization: Bearer <token>`.
    Operator,
    Anyone,
}

fn caller_of(path: &str) -> Caller {
    const CLIENT: [&str; 3] = ["/v1/transactions", "/v1/collects", "/v1/vpa/"];
    const OPERATOR: [&str; 7] = [
        "/v1/admin/",
        "/v1/ops/",
        "/v1/settlement/",
        "/v1/reconciliation/",
        "/v1/ledger/",
        "/v1/analytics/",
        "/purge-payments",
    ];
    if CLIENT.iter().any(|p| path.starts_with(p)) {
        Caller::Client
    } else if OPERATOR.iter().any(|p| path.starts_with(p)) {
        Caller::Operator
    } else {
        Caller::Anyone
    }
}

/// The signature headers of a client call, each an API key of the scheme:
/// a call needs all of them at once.
const CLIENT_HEADERS: [(&str, &str); 5] = [
    ("client_id", "X-Client-Id"),
    ("key_id", "X-Key-Id"),
    ("timestamp", "X-Timestamp"),
    ("nonce", "X-Nonce"),
    ("signature", "X-Signature"),
];

/// Adds what follows from a path's kind: its security, and the problem
/// answers every request of that kind can get (bad query or headers, no or
/// bad credentials, a body too slow, too large or not JSON, the rate limit,
/// a dependency away). An operation's own annotation lists the rest (`403`,
/// `404`, `409`, `422` where they apply).
struct ByRule;

impl Modify for ByRule {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operator",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token (`serve --admin-token` / ADMIN_TOKEN).",
                    ))
                    .build(),
            ),
        );
        for (name, header) in CLIENT_HEADERS {
            components.add_security_scheme(
                name,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    header,
                    "Client request signing: X-Signature is the base64 Ed25519 signature of \
                     METHOD\\nPATH_AND_QUERY\\nX-Timestamp\\nX-Nonce\\nhex(SHA-256(body)) \
                     by the key X-Key-Id of client X-Client-Id.",
                ))),
            );
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let caller = caller_of(path);
            for op in operations(item) {
                let has_body = op.request_body.is_some();
                add_rules(op, path, caller, has_body);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn add_rules(op: &mut Operation, path: &str, caller: Caller, has_body: bool) {
    match caller {
        Caller::Client => {
            let names = CLIENT_HEADERS.iter().map(|(name, _)| *name);
            let requirement = names.fold(SecurityRequirement::default(), |r, n| {
                r.add::<&str, [&str; 0], &str>(n, [])
            });
            op.security = Some(vec![requirement]);
        }
        Caller::Operator => {
            op.security = Some(vec![SecurityRequirement::new::<&str, [&str; 0], &str>(
                "operator",
                [],
            )]);
        }
        Caller::Anyone => {}
    }
    let v1 = path.starts_with("/v1/");
    let mut common: Vec<(&str, &str)> = Vec::new();
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if v1 || has_body || has_params || caller != Caller::Anyone {
        common.push(("400", "Bad request: query, headers or body malformed"));
    }
    if caller != Caller::Anyone {
        common.push(("401", "Missing or bad credentials"));
    }
    if has_body {
        common.push(("408", "The request body did not arrive in time"));
        common.push(("413", "The request body is too large"));
        if v1 {
            common.push(("415", "The request body is not JSON"));
        }
    }
    if caller == Caller::Client {
        common.push(("429", "This client's rate limit is exceeded"));
    }
    if v1 || path.starts_with("/payments") || path == "/purge-payments" {
        common.push((
            "503",
            "A dependency is unavailable, or the switch is busy or draining; retry",
        ));
    }
    for (status, description) in common {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| problem(description));
    }
}

/// A problem+json answer.
pub fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ProblemDoc",
                    ))))
                    .build(),
            )
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_security() {
        let doc = document();
        let json = doc.to_json().expect("serialises");
        assert!(json.contains("\"/v1/transactions\""));
        let get = doc.paths.paths["/v1/transactions/{txn_id}"]
            .get
            .as_ref()
            .expect("GET documented");
        assert_eq!(get.security.as_ref().map(Vec::len), Some(1));
        assert!(get.responses.responses.contains_key("401"));
        let health = doc.paths.paths["/healthz"].get.as_ref().expect("healthz");
        assert!(health.security.is_none());
        // A range of days: both bounds required, in the query.
        let daily = doc.paths.paths["/v1/analytics/daily"]
            .get
            .as_ref()
            .expect("analytics daily");
        let params = daily.parameters.as_ref().expect("parameters");
        let names: Vec<(&str, bool)> = params
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    matches!(p.required, utoipa::openapi::Required::True),
                )
            })
            .collect();
        assert_eq!(names, [("from", true), ("to", true)]);
    }
}
