//! The generated OpenAPI document and Swagger UI, against a real switch
//! (auth on): `/openapi.json` answers without credentials and documents
//! every route the switch serves with its security and its problem answers;
//! `/docs` serves the embedded Swagger UI (gzipped, or plain to a client
//! that does not take gzip) and loads nothing from elsewhere.
//! Schemathesis runs against the same document in CI (`.ci/schemathesis/`).

mod common;

use common::{SwitchProc, TestDb};
use serde_json::Value;

const TOKEN: &str = "openapi-test-operator-token";

async fn switch() -> (TestDb, SwitchProc) {
    let db = TestDb::new("switch");
    let switch = SwitchProc::start(&db.url, &["--admin-token", TOKEN]);
    (db, switch)
}

#[tokio::test]
async fn openapi_json_documents_every_route_with_its_security_and_problems() {
    let (_db, switch) = switch().await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/openapi.json", switch.url))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(resp.status(), 200, "no credentials needed");
    let doc: Value = resp.json().await.expect("JSON");
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "OpenAPI 3: {}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        ("post", "/v1/transactions"),
        ("get", "/v1/transactions/{txn_id}"),
        ("get", "/v1/transactions/{id}/events"),
        ("post", "/v1/vpa/validate"),
        ("post", "/v1/collects"),
        ("get", "/v1/collects/{id}"),
        ("post", "/v1/collects/{id}/approve"),
        ("post", "/v1/collects/{id}/decline"),
        ("put", "/v1/admin/banks/{code}"),
        ("put", "/v1/admin/vpas/{vpa}"),
        ("put", "/v1/admin/clients/{client_id}"),
        ("put", "/v1/admin/banks/{code}/circuit"),
        ("post", "/v1/admin/banks/{code}/adapters/restart"),
        ("get", "/v1/ops/banks"),
        ("get", "/v1/ops/outbox"),
        ("get", "/v1/ops/nodes"),
        ("get", "/v1/ops/audit"),
        ("post", "/payments"),
        ("get", "/payments-summary"),
        ("post", "/purge-payments"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ];
    for (method, path) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let op = |method: &str, path: &str| paths[path][method].clone();
    // A signed client call: all five signature headers at once.
    let create = op("post", "/v1/transactions");
    let security = create["security"][0].as_object().expect("security");
    for scheme in ["client_id", "key_id", "timestamp", "nonce", "signature"] {
        assert!(security.contains_key(scheme), "client scheme {scheme}");
    }
    for status in [
        "202", "400", "401", "403", "408", "413", "415", "422", "429", "503",
    ] {
        assert!(
            create["responses"].get(status).is_some(),
            "POST /v1/transactions documents {status}"
        );
    }
    assert_eq!(
        create["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/ProblemDoc"
    );
    // An operator call: the bearer token.
    let banks = op("get", "/v1/ops/banks");
    assert!(banks["security"][0].get("operator").is_some());
    assert_eq!(
        doc["components"]["securitySchemes"]["operator"]["scheme"],
        "bearer"
    );
    // Open to anyone.
    assert!(op("get", "/healthz").get("security").is_none());
    // The request bodies are the handlers' own types.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "PaymentRequest",
        "TxnDoc",
        "AcceptedDoc",
        "CollectRequest",
        "CollectDoc",
        "BankRequest",
        "BankRecord",
        "ClientRequest",
        "BankView",
        "ProblemDoc",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
}

#[tokio::test]
async fn docs_serve_the_embedded_swagger_ui_and_nothing_from_elsewhere() {
    let (_db, switch) = switch().await;
    // reqwest here decompresses nothing: the bytes are as sent.
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/docs", switch.url))
        .send()
        .await
        .expect("GET /docs");
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(csp.contains("script-src 'self'"), "CSP: {csp}");
    let html = page.text().await.expect("page");
    assert!(html.contains("/docs/swagger-ui-bundle.js"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no other origin: {html}"
    );

    let gz = http
        .get(format!("{}/docs/swagger-ui-bundle.js", switch.url))
        .header("accept-encoding", "gzip, deflate")
        .send()
        .await
        .expect("bundle");
    assert_eq!(gz.status(), 200);
    assert_eq!(
        gz.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let gz_len = gz.bytes().await.expect("body").len();

    let plain = http
        .get(format!("{}/docs/swagger-ui-bundle.js", switch.url))
        .header("accept-encoding", "identity")
        .send()
        .await
        .expect("bundle");
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    let js = plain.text().await.expect("js");
    assert!(js.contains("SwaggerUIBundle"), "the real bundle");
    assert!(
        js.len() > 3 * gz_len,
        "{} plain vs {gz_len} gzipped",
        js.len()
    );

    let init = http
        .get(format!("{}/docs/init.js", switch.url))
        .send()
        .await
        .expect("init");
    assert!(
        init.text()
            .await
            .expect("init.js")
            .contains("\"/openapi.json\"")
    );
}
