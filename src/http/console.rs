//! The operators' console at `/console`: one page, its script and its
//! style, embedded in the binary (`assets/console/`, plain files, no build
//! step, no CDN). The page talks to the operator API with the token the
//! operator typed, kept in the tab's sessionStorage and sent as a bearer
//! header — no cookie, so no CSRF; a switch under `--insecure-no-auth`
//! opens it without sign-in (`/readyz` says `"auth":"off"`). The page is
//! fixed text and the script writes every value with `textContent`, under a
//! Content-Security-Policy that allows only this origin.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const PAGE: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLE: &str = include_str!("../../assets/console/console.css");

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; form-action 'self'";

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(page))
        .route("/console/", web::get().to(page))
        .route("/console/console.js", web::get().to(script))
        .route("/console/console.css", web::get().to(style));
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}
