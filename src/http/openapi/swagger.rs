//! Swagger UI at `GET /docs`, reading `/openapi.json`. Its assets are the npm
//! package `swagger-ui-dist` (`assets/swagger-ui/`, version and check in
//! `update.sh`), embedded gzipped in the binary: nothing is fetched from a
//! CDN. The page is fixed text (nothing from the request is echoed into it)
//! and its script is a file of its own, so a strict Content-Security-Policy
//! allows only this origin.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use std::io::Read;
use std::sync::OnceLock;

const BUNDLE_GZ: &[u8] = include_bytes!("../../../assets/swagger-ui/swagger-ui-bundle.js.gz");
const CSS_GZ: &[u8] = include_bytes!("../../../assets/swagger-ui/swagger-ui.css.gz");
const FAVICON: &[u8] = include_bytes!("../../../assets/swagger-ui/favicon-32x32.png");

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>upi-switch API</title>
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"#;

const INIT: &str = r##"window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"##;

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/docs", web::get().to(page))
        .route("/docs/", web::get().to(page))
        .route("/docs/init.js", web::get().to(init))
        .route("/docs/swagger-ui-bundle.js", web::get().to(bundle))
        .route("/docs/swagger-ui.css", web::get().to(css))
        .route("/docs/favicon-32x32.png", web::get().to(favicon));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(PAGE)
}

async fn init() -> HttpResponse {
    asset("text/javascript; charset=utf-8").body(INIT)
}

async fn bundle(req: HttpRequest) -> HttpResponse {
    static PLAIN: OnceLock<Vec<u8>> = OnceLock::new();
    gzipped(&req, "text/javascript; charset=utf-8", BUNDLE_GZ, &PLAIN)
}

async fn css(req: HttpRequest) -> HttpResponse {
    static PLAIN: OnceLock<Vec<u8>> = OnceLock::new();
    gzipped(&req, "text/css; charset=utf-8", CSS_GZ, &PLAIN)
}

async fn favicon() -> HttpResponse {
    asset("image/png").body(FAVICON)
}

fn asset(content_type: &str) -> actix_web::HttpResponseBuilder {
    let mut resp = HttpResponse::Ok();
    resp.content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    resp
}

/// The stored gzip as is when the client accepts gzip; else decompressed
/// (once per process).
fn gzipped(
    req: &HttpRequest,
    content_type: &str,
    gz: &'static [u8],
    plain: &'static OnceLock<Vec<u8>>,
) -> HttpResponse {
    let accepts_gzip = req
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        });
    let mut resp = asset(content_type);
    resp.insert_header((header::VARY, "Accept-Encoding"));
    if accepts_gzip {
        return resp
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(gz);
    }
    let body = plain.get_or_init(|| {
        let mut out = Vec::new();
        // The asset is ours, checked in and checked by CI: it decodes.
        if flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .is_err()
        {
            out.clear();
        }
        out
    });
    resp.body(body.as_slice())
}
