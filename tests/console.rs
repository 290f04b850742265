//! The operators' console in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`; `.ci/run` installs
//! them) against a real switch with auth on and two bank simulators.
//! The operator signs in with the token, sees both banks, sees a signed
//! client's payment appear, forces HDFC's circuits open through the
//! console's confirmation dialog, and the API (and the audit log) confirm
//! it. The screenshot it takes is the README's (`UPI_CONSOLE_SCREENSHOT`
//! names where to write it; always also under the target's tmp dir).

mod common;

use common::World;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};
use upi_switch::auth::signer::ClientKey;

const TOKEN: &str = "console-operator-token";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver child and one browser session on it.
struct Browser {
    driver: std::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    async fn start() -> Browser {
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&bin).exists() && std::path::Path::new(&chromium).exists(),
            "the console test needs {bin} and {chromium} (apt-get install chromium chromium-driver)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Its own process group: dropping the browser kills chromedriver
        // and every Chromium process it started, even when a test fails.
        let driver = std::process::Command::new(&bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1440,1500"]
            }
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session JSON");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = self.http.request(method, url);
        let req = if body.is_null() { req } else { req.json(&body) };
        let resp: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver JSON");
        resp["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// The element matching `css`, waiting up to 15 s for it.
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element {css}: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{id}/click"),
                json!({}),
            )
            .await;
        assert!(v.is_null(), "click {css}: {v}");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{id}/text"),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until the text of `css` contains `want`.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let t = self.text(css).await;
            if t.contains(want) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never said {want:?}: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("PNG")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group this test started.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A signed P2P payment by a client serving `hdfc`; its txn id.
async fn pay(w: &World, key: &ClientKey, amount: &str) -> String {
    let body = json!({"type": "P2P", "payer_vpa": "alice@hdfc", "payee_vpa": "bob@icici", "amount": amount})
        .to_string();
    let url = format!("{}/v1/transactions", w.switch.url);
    let req = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .body(body.clone());
    let resp = key
        .sign_request(req, "POST", "/v1/transactions", body.as_bytes())
        .send()
        .await
        .expect("pay");
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.expect("JSON");
    v["txn_id"].as_str().expect("txn_id").to_string()
}

#[tokio::test]
async fn an_operator_signs_in_sees_the_banks_and_a_payment_and_forces_a_circuit_open() {
    let w = World::start(&["--admin-token", TOKEN], &[], &[]).await;
    let key = ClientKey::generate("console-psp", "k1");
    let (status, _) = common::put_json(
        &w.http,
        &format!("{}/v1/admin/clients/console-psp", w.switch.url),
        &json!({"name": "Console PSP", "handles": ["hdfc"],
                "keys": [{"key_id": "k1", "public_key": key.public_key()}]}),
    )
    .await;
    assert_eq!(status, 201);

    let b = Browser::start().await;
    b.goto(&format!("{}/console", w.switch.url)).await;
    // Signed out: a wrong token is refused, the right one lets in.
    b.type_into("#token", "not-the-token").await;
    b.click("#signin-button").await;
    b.wait_text("#signin-error", "not the operator token").await;
    b.type_into("#token", TOKEN).await;
    b.click("#signin-button").await;
    b.find(".bank[data-code=\"HDFC\"]").await;
    b.find(".bank[data-code=\"ICICI\"]").await;
    b.wait_text(".bank[data-code=\"HDFC\"] h3", "UP").await;

    // A payment appears among the recent transactions.
    let txn = pay(&w, &key, "12.34").await;
    b.find(&format!("#transactions tr[data-txn=\"{txn}\"]"))
        .await;
    b.wait_text(&format!("#transactions tr[data-txn=\"{txn}\"]"), "12.34")
        .await;

    // Force HDFC open: a confirmation first, then the answer on the page.
    b.click("button[data-bank=\"HDFC\"][data-action=\"open\"]")
        .await;
    b.wait_text("#confirm-text", "HDFC").await;
    b.click("#confirm-yes").await;
    b.wait_text("#result", "HDFC: circuits OPEN").await;

    // The API says so, and the audit log has it.
    let (status, banks) =
        common::get_json(&w.http, &format!("{}/v1/ops/banks", w.switch.url)).await;
    assert_eq!(status, 200);
    let hdfc = banks["banks"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["code"] == "HDFC"))
        .expect("HDFC")
        .clone();
    assert_eq!(hdfc["health"], "DOWN", "{hdfc}");
    for e in hdfc["endpoints"].as_array().expect("endpoints") {
        assert_eq!(e["circuit"], "OPEN", "{e}");
        assert_eq!(e["mode"], "open", "{e}");
    }
    let (_, audit) = common::get_json(&w.http, &format!("{}/v1/ops/audit", w.switch.url)).await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["target"].as_str().unwrap_or("").contains("HDFC")
                && e["action"].as_str().unwrap_or("").contains("circuit")),
        "{audit}"
    );
    b.wait_text(".bank[data-code=\"HDFC\"] h3", "DOWN").await;
    b.wait_text("#audit", "circuit").await;

    // Close the settlement window holding the payment: the page shows the
    // closed window's positions, the API has it closed.
    b.click("#close-window").await;
    b.wait_text("#confirm-text", "settlement window").await;
    b.click("#confirm-yes").await;
    b.wait_text("#result", "Window 1 closed; window 2 is open")
        .await;
    let (_, windows) =
        common::get_json(&w.http, &format!("{}/v1/settlement/windows", w.switch.url)).await;
    let closed = windows["windows"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["window_id"] == "1"))
        .expect("window 1")
        .clone();
    assert_eq!(closed["status"], "CLOSED", "{windows}");
    b.wait_text("#settlement", "window 1 · 1 payment ·").await;
    b.wait_text("#settlement", "reconciliation").await;

    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&tmp, &png).expect("write screenshot");
    if let Ok(path) = std::env::var("UPI_CONSOLE_SCREENSHOT") {
        std::fs::write(path, &png).expect("write screenshot");
    }
}

#[tokio::test]
async fn a_switch_without_auth_opens_the_console_without_sign_in() {
    let w = World::start(&[], &[], &[]).await;
    let b = Browser::start().await;
    b.goto(&format!("{}/console", w.switch.url)).await;
    b.find(".bank[data-code=\"ICICI\"]").await;
    b.wait_text("#node", "auth off").await;
    // No sign-in form, no sign-out button: there is no token to hold.
    let hidden = b
        .call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": "return [document.querySelector('#signin').hidden, document.querySelector('#signout').hidden]", "args": []}),
        )
        .await;
    assert_eq!(hidden, json!([true, true]));
}
