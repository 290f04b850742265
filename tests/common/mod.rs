//! Shared test harness: a fresh Postgres database per test (random name,
//! dropped at the end), bank simulators as child processes on port 0, and small
//! HTTP helpers. Tests talk to the real services; nothing here is a fake.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_upi-switch");
pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";

/// A database that exists for one test and is dropped when the value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new(prefix: &str) -> TestDb {
        let name = format!("t_{prefix}_{}", uuid::Uuid::new_v4().simple());
        TestDb {
            url: format!("{PG_BASE}/{name}"),
            name,
        }
    }

    /// A plain connection (creating the database first if needed).
    pub async fn client(&self) -> tokio_postgres::Client {
        let db = upi_switch::adapters::pg::DbUrl::parse(&self.url).expect("url");
        upi_switch::adapters::pg::ensure_database(&db)
            .await
            .expect("create db");
        db.connect().await.expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_own_thread(async move {
            let url = format!("{PG_BASE}/postgres");
            if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            }
        });
    }
}

/// A file that is removed when dropped.
pub struct TempFile(pub std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The databases whose names start with `prefix`.
pub async fn databases_named(prefix: &str) -> Vec<String> {
    let (client, conn) =
        tokio_postgres::connect(&format!("{PG_BASE}/postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(conn);
    client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            &[&format!("{prefix}%")],
        )
        .await
        .expect("pg_database")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Runs a clean-up future to its end on a thread and runtime of its own
/// (a `Drop` may run inside an async runtime, which cannot block).
pub fn block_on_own_thread(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(fut);
        }
    })
    .join();
}

fn log_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("upi-switch-test-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Spawns `upi-switch <args>` and waits for its `LISTENING <addr>` line.
pub fn spawn_listening(args: &[String], log_name: &str) -> (Child, String, std::path::PathBuf) {
    let log_path = log_dir().join(format!("{log_name}-{}.log", uuid::Uuid::new_v4().simple()));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn upi-switch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && let Some(addr) = line.strip_prefix("LISTENING ") {
                let _ = tx.send(addr.trim().to_string());
                sent = true;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => (child, addr, log_path),
        Err(_) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_file(&log_path); // its text is in the message
            panic!("upi-switch {args:?} did not start listening; log:\n{log}");
        }
    }
}

/// A `upi-switch` server mode running as a child process on a port it chose
/// (first start) and keeps (restarts), with its stderr in a log file (one per
/// start) under `$TMPDIR/upi-switch-test-logs/`. The logs are removed when
/// the server is dropped, unless the test is failing (panicking): then they
/// stay for reading, and the failure message names them.
pub struct ChildServer {
    name: String,
    /// The full argument list for a given port.
    args: Box<dyn Fn(u16) -> Vec<String> + Send + Sync>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    child: Option<Child>,
    pub log_path: std::path::PathBuf,
    /// Every log file of this server (one per start).
    logs: Vec<std::path::PathBuf>,
}

impl ChildServer {
    pub fn start(
        name: &str,
        args: impl Fn(u16) -> Vec<String> + Send + Sync + 'static,
    ) -> ChildServer {
        let mut server = ChildServer {
            name: name.to_string(),
            args: Box::new(args),
            url: String::new(),
            port: 0,
            child: None,
            log_path: Default::default(),
            logs: Vec::new(),
        };
        server.launch(0);
        server
    }

    fn launch(&mut self, port: u16) {
        let (child, addr, log_path) = spawn_listening(&(self.args)(port), &self.name);
        self.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.url = format!("http://{addr}");
        self.child = Some(child);
        self.logs.push(log_path.clone());
        self.log_path = log_path;
    }

    /// `kill -9` the process and wait for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (the process goes on until it exits by itself).
    pub fn sigterm(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Waits up to `limit` for the process to exit: its exit code (None if
    /// it had to be killed, or was not running).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port (after `kill9`).
    pub fn restart(&mut self) {
        self.kill9();
        let port = self.port;
        // The old process's locks and port are released a moment after it dies.
        for attempt in 0..50 {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.launch(port)));
            if result.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100 * (attempt + 1).min(5)));
        }
        panic!("{} did not restart", self.name);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("{} logs kept: {:?}", self.name, self.logs);
        } else {
            for log in &self.logs {
                let _ = std::fs::remove_file(log);
            }
        }
    }
}

/// A bank simulator running as a child process.
pub struct BankProc {
    pub code: String,
    pub db_url: String,
    pub server: ChildServer,
}

impl BankProc {
    /// Starts `bank-sim --code CODE --port 0 --database-url DB` plus `extra` flags.
    pub fn start(code: &str, db_url: &str, extra: &[&str]) -> BankProc {
        let (c, d) = (code.to_string(), db_url.to_string());
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let server = ChildServer::start(&format!("bank-{code}"), move |port| {
            let mut args: Vec<String> = vec![
                "bank-sim".into(),
                "--code".into(),
                c.clone(),
                "--port".into(),
            ];
            args.extend([port.to_string(), "--database-url".into(), d.clone()]);
            args.extend(extra.iter().cloned());
            args
        });
        BankProc {
            code: code.to_string(),
            db_url: db_url.to_string(),
            server,
        }
    }
}

impl std::ops::Deref for BankProc {
    type Target = ChildServer;
    fn deref(&self) -> &ChildServer {
        &self.server
    }
}

impl std::ops::DerefMut for BankProc {
    fn deref_mut(&mut self) -> &mut ChildServer {
        &mut self.server
    }
}

/// An HTTP client for tests.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// POSTs JSON, returns (status, body as JSON or Null).
/// Fires `n` POSTs of `body` at once, round robin over `nodes` (base URLs),
/// to `path`, each with a fresh Idempotency-Key: (status, body) of each, in
/// order.
pub async fn post_burst(
    http: &reqwest::Client,
    nodes: &[&str],
    n: usize,
    path: &str,
    body: &serde_json::Value,
) -> Vec<(u16, serde_json::Value)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let request = http
            .post(format!("{}{path}", nodes[i % nodes.len()]))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(body);
        tasks.push(tokio::spawn(async move {
            let resp = request.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(serde_json::Value::Null))
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    answers
}

/// POSTs JSON with a fresh `Idempotency-Key`; returns (status, body as JSON or Null).
pub async fn post_keyed(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = client
        .post(url)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// An HTTP client that sends the operator's bearer token with every call.
pub fn operator_http(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = client.post(url).json(body).send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// POSTs raw bytes as JSON, returns (status, body as JSON or Null).
pub async fn post_raw(client: &reqwest::Client, url: &str, body: &str) -> (u16, serde_json::Value) {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let resp = client.get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

pub async fn put_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = client.put(url).json(body).send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Balances of a simulated bank: (account → paise, total).
pub async fn balances(
    client: &reqwest::Client,
    bank_url: &str,
) -> (std::collections::BTreeMap<String, i64>, i64) {
    let (status, body) = get_json(client, &format!("{bank_url}/admin/balances")).await;
    assert_eq!(status, 200, "balances: {body}");
    let map = body["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap_or_default().to_string(),
                a["balance_paise"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    (map, body["total_paise"].as_i64().unwrap_or(0))
}

/// Every entry of a bank's change feed, paging through `GET /v1/ops`.
pub async fn feed(client: &reqwest::Client, bank_url: &str) -> Vec<serde_json::Value> {
    let mut after = 0i64;
    let mut all = Vec::new();
    loop {
        let (status, page) = get_json(
            client,
            &format!("{bank_url}/v1/ops?after_seq={after}&limit=1000"),
        )
        .await;
        assert_eq!(status, 200, "feed: {page}");
        let ops = page["ops"].as_array().cloned().unwrap_or_default();
        if ops.is_empty() {
            return all;
        }
        after = page["next_after_seq"].as_i64().expect("next_after_seq");
        all.extend(ops);
    }
}

/// The switch (`upi-switch serve`) running as a child process on port 0.
pub struct SwitchProc {
    pub db_url: String,
    /// Its Redis key prefix: random per switch (kept across restarts) unless
    /// `extra` sets `--redis-prefix`, so tests sharing one Redis never collide.
    pub redis_prefix: String,
    pub server: ChildServer,
}

impl SwitchProc {
    /// Starts `serve --listen 127.0.0.1:0 --database-url DB --redis-prefix <random>`
    /// plus `extra` flags (`--redis-url`, `--rate-limit-per-sec`, … go there).
    pub fn start(db_url: &str, extra: &[&str]) -> SwitchProc {
        let d = db_url.to_string();
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let redis_prefix = match extra.iter().position(|a| a == "--redis-prefix") {
            Some(i) => extra
                .get(i + 1)
                .cloned()
                .expect("--redis-prefix needs a value"),
            None => {
                let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
                extra.extend(["--redis-prefix".into(), prefix.clone()]);
                prefix
            }
        };
        let server = ChildServer::start("switch", move |port| {
            let mut args: Vec<String> = vec![
                "serve".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
            ];
            args.extend(["--database-url".into(), d.clone()]);
            // Several switches run at once in one Postgres (max_connections
            // 100 by default): keep each one's pool modest unless told.
            if !extra.iter().any(|a| a == "--db-pool-size") {
                args.extend(["--db-pool-size".into(), "12".into()]);
            }
            // Authentication is off unless a test gives an operator token
            // (tests/auth.rs signs its calls).
            if !extra
                .iter()
                .any(|a| a == "--admin-token" || a == "--insecure-no-auth")
            {
                args.push("--insecure-no-auth".into());
            }
            // Tests pay many times from a few VPAs: the daily limits are off
            // unless a test sets them (tests/payment_types.rs does).
            for (flag, off) in [("--daily-count-limit", "0"), ("--daily-amount-limit", "0")] {
                if !extra.iter().any(|a| a == flag) {
                    args.extend([flag.into(), off.into()]);
                }
            }
            args.extend(extra.iter().cloned());
            args
        });
        SwitchProc {
            db_url: db_url.to_string(),
            redis_prefix,
            server,
        }
    }
}

impl std::ops::Deref for SwitchProc {
    type Target = ChildServer;
    fn deref(&self) -> &ChildServer {
        &self.server
    }
}

impl std::ops::DerefMut for SwitchProc {
    fn deref_mut(&mut self) -> &mut ChildServer {
        &mut self.server
    }
}

/// Two simulated banks (HDFC, ICICI) and a switch with them and a few VPAs
/// registered: alice@hdfc (HDFC ACC001), bob@icici (ICICI ACC001),
/// carol@icici (ICICI ACC002, frozen), dave@hdfc (HDFC ACC002, balance 0),
/// ghost@icici (ICICI NOPE, no such account). Each bank account starts with
/// ₹1,000.00 (100000 paise) unless said otherwise.
pub struct World {
    pub bank_db: TestDb,
    pub switch_db: TestDb,
    pub hdfc: BankProc,
    pub icici: BankProc,
    pub switch: SwitchProc,
    pub http: reqwest::Client,
    /// The banks' account files, removed with the world.
    _files: Vec<TempFile>,
}

pub const START_BALANCE: i64 = 100_000;

/// Short deadlines so that the unhappy paths finish quickly.
pub const FAST: &[&str] = &[
    "--bank-timeout-ms",
    "500",
    "--debit-deadline-ms",
    "2000",
    "--credit-deadline-ms",
    "2000",
    "--retry-max-ms",
    "300",
];

impl World {
    /// Starts everything; `switch_flags` go to `serve`, `hdfc_flags`/`icici_flags` to the banks.
    pub async fn start(switch_flags: &[&str], hdfc_flags: &[&str], icici_flags: &[&str]) -> World {
        let bank_db = TestDb::new("bank");
        let switch_db = TestDb::new("switch");
        let accounts = |frozen: &str, poor: &str| {
            let list: Vec<serde_json::Value> = ["ACC001", "ACC002", "ACC003"]
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "account": a,
                        "name": format!("Holder {a}"),
                        "balance_paise": if *a == poor { 0 } else { START_BALANCE },
                        "status": if *a == frozen { "FROZEN" } else { "ACTIVE" },
                    })
                })
                .collect();
            let path = std::env::temp_dir()
                .join(format!("accounts-{}.json", uuid::Uuid::new_v4().simple()));
            std::fs::write(&path, serde_json::to_string(&list).expect("json"))
                .expect("write accounts");
            TempFile(path)
        };
        let hdfc_accounts = accounts("none", "ACC002");
        let icici_accounts = accounts("ACC002", "none");
        let (hdfc_path, icici_path) = (
            hdfc_accounts.0.display().to_string(),
            icici_accounts.0.display().to_string(),
        );
        let mut hf = vec!["--accounts", hdfc_path.as_str()];
        hf.extend_from_slice(hdfc_flags);
        let mut icf = vec!["--accounts", icici_path.as_str()];
        icf.extend_from_slice(icici_flags);
        // Create the shared bank database once, so two simulators do not race to.
        bank_db.client().await;
        let hdfc = BankProc::start("HDFC", &bank_db.url, &hf);
        let icici = BankProc::start("ICICI", &bank_db.url, &icf);
        let switch = SwitchProc::start(&switch_db.url, switch_flags);
        let world = World {
            bank_db,
            switch_db,
            hdfc,
            icici,
            switch,
            http: match switch_flags.iter().position(|f| *f == "--admin-token") {
                Some(i) => operator_http(switch_flags.get(i + 1).copied().unwrap_or_default()),
                None => http(),
            },
            _files: vec![hdfc_accounts, icici_accounts],
        };
        world.register_bank("HDFC", &world.hdfc.url).await;
        world.register_bank("ICICI", &world.icici.url).await;
        for (vpa, bank, account) in [
            ("alice@hdfc", "HDFC", "ACC001"),
            ("dave@hdfc", "HDFC", "ACC002"),
            ("erin@hdfc", "HDFC", "ACC003"),
            ("bob@icici", "ICICI", "ACC001"),
            ("carol@icici", "ICICI", "ACC002"),
            ("frank@icici", "ICICI", "ACC003"),
            ("ghost@icici", "ICICI", "NOPE"),
        ] {
            let status = world.put_vpa(vpa, bank, account).await;
            assert!(status == 201 || status == 200, "register {vpa}: {status}");
        }
        world
    }

    /// `PUT /v1/admin/vpas/{vpa}` to this bank and account; returns the status.
    pub async fn put_vpa(&self, vpa: &str, bank: &str, account: &str) -> u16 {
        let (status, body) = put_json(
            &self.http,
            &format!("{}/v1/admin/vpas/{vpa}", self.switch.url),
            &serde_json::json!({"bank_code": bank, "account": account, "name": format!("Person {vpa}")}),
        )
        .await;
        assert!(status < 300, "register {vpa}: {status} {body}");
        status
    }

    pub async fn register_bank(&self, code: &str, url: &str) {
        let (status, body) = put_json(
            &self.http,
            &format!("{}/v1/admin/banks/{code}", self.switch.url),
            &serde_json::json!({"name": format!("{code} Bank"), "endpoints": [{"url": url, "priority": 0}]}),
        )
        .await;
        assert!(
            status == 201 || status == 200,
            "register {code}: {status} {body}"
        );
    }

    /// POST /v1/transactions with a fresh idempotency key; returns (status, body).
    pub async fn pay(
        &self,
        payer: &str,
        payee: &str,
        amount: &str,
        wait_ms: Option<u64>,
    ) -> (u16, serde_json::Value) {
        let key = uuid::Uuid::new_v4().to_string();
        self.pay_with_key(&key, payer, payee, amount, wait_ms).await
    }

    pub async fn pay_with_key(
        &self,
        key: &str,
        payer: &str,
        payee: &str,
        amount: &str,
        wait_ms: Option<u64>,
    ) -> (u16, serde_json::Value) {
        let url = match wait_ms {
            Some(ms) => format!("{}/v1/transactions?wait={ms}", self.switch.url),
            None => format!("{}/v1/transactions", self.switch.url),
        };
        let resp = self
            .http
            .post(url)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"type": "P2P", "payer_vpa": payer, "payee_vpa": payee, "amount": amount}))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Polls `GET /v1/transactions/{id}?wait=` until terminal or `limit` passes.
    pub async fn wait_terminal(&self, txn_id: &str, limit: Duration) -> serde_json::Value {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let (status, body) = get_json(
                &self.http,
                &format!("{}/v1/transactions/{txn_id}?wait=2000", self.switch.url),
            )
            .await;
            if status == 200 && body["status"] != "PENDING" {
                return body;
            }
            if std::time::Instant::now() >= deadline {
                panic!("transaction {txn_id} not terminal after {limit:?}: {status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The switch's `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        let url = format!("{}/metrics", self.switch.url);
        let resp = self.http.get(url).send().await.expect("metrics request");
        resp.text().await.expect("metrics text")
    }

    /// Rows in the switch's transactions table.
    pub async fn txn_count(&self) -> i64 {
        let client = self.switch_db.client().await;
        client
            .query_one("SELECT count(*) FROM transactions", &[])
            .await
            .expect("count")
            .get(0)
    }
}

/// A payment processor simulator (`upi-switch processor-sim`) as a child
/// process on port 0, and its admin calls (header `X-Rinha-Token`).
pub struct ProcessorProc {
    pub token: String,
    pub server: ChildServer,
}

impl ProcessorProc {
    /// Starts `processor-sim --port 0 --fee FEE --token 123` plus `extra` flags.
    pub fn start(name: &str, fee: &str, extra: &[&str]) -> ProcessorProc {
        let fee = fee.to_string();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let server = ChildServer::start(name, move |port| {
            let mut args: Vec<String> = vec!["processor-sim".into(), "--port".into()];
            args.extend([port.to_string(), "--fee".into(), fee.clone()]);
            args.extend(["--token".into(), "123".into()]);
            args.extend(extra.iter().cloned());
            args
        });
        ProcessorProc {
            token: "123".into(),
            server,
        }
    }

    /// `GET /admin/payments-summary` with optional bounds; panics unless 200.
    pub async fn summary(
        &self,
        client: &reqwest::Client,
        from: Option<&str>,
        to: Option<&str>,
    ) -> serde_json::Value {
        let resp = client
            .get(format!(
                "{}/admin/payments-summary{}",
                self.url,
                window_query(from, to)
            ))
            .header("X-Rinha-Token", &self.token)
            .send()
            .await
            .expect("summary request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        assert_eq!(status, 200, "processor summary: {body}");
        body
    }

    async fn admin(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) {
        let mut req = client
            .request(method, format!("{}{path}", self.url))
            .header("X-Rinha-Token", &self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }

    pub async fn set_delay(&self, client: &reqwest::Client, ms: u64) {
        let body = serde_json::json!({ "delay": ms });
        self.admin(
            client,
            reqwest::Method::PUT,
            "/admin/configurations/delay",
            Some(body),
        )
        .await;
    }

    pub async fn set_failure(&self, client: &reqwest::Client, failure: bool) {
        let body = serde_json::json!({ "failure": failure });
        self.admin(
            client,
            reqwest::Method::PUT,
            "/admin/configurations/failure",
            Some(body),
        )
        .await;
    }

    pub async fn purge(&self, client: &reqwest::Client) {
        self.admin(client, reqwest::Method::POST, "/admin/purge-payments", None)
            .await;
    }
}

impl std::ops::Deref for ProcessorProc {
    type Target = ChildServer;
    fn deref(&self) -> &ChildServer {
        &self.server
    }
}

impl std::ops::DerefMut for ProcessorProc {
    fn deref_mut(&mut self) -> &mut ChildServer {
        &mut self.server
    }
}

/// `?from=..&to=..` for ISO timestamps (UTC, `Z`: nothing to escape).
pub fn window_query(from: Option<&str>, to: Option<&str>) -> String {
    let parts: Vec<String> = [("from", from), ("to", to)]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Current status of every op at a bank, by op_id, from its change feed.
pub async fn op_statuses(
    client: &reqwest::Client,
    bank_url: &str,
) -> std::collections::HashMap<String, String> {
    feed(client, bank_url)
        .await
        .into_iter()
        .map(|op| {
            (
                op["op_id"].as_str().unwrap_or_default().to_string(),
                op["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

impl World {
    /// Checks every (terminal) transaction's status against both banks' own
    /// feeds: SUCCESS ⇔ debit and credit applied; REVERSED ⇔ debit reversed,
    /// no credit left applied; FAILED ⇔ no money moved.
    pub async fn assert_banks_agree(&self, txns: &[serde_json::Value]) {
        let mut ops = op_statuses(&self.http, &self.hdfc.url).await;
        ops.extend(op_statuses(&self.http, &self.icici.url).await);
        for txn in txns {
            let id = txn["txn_id"].as_str().expect("txn_id");
            let status = txn["status"].as_str().expect("status");
            let debit = ops.get(&format!("{id}:debit")).map(String::as_str);
            let credit = ops.get(&format!("{id}:credit")).map(String::as_str);
            let ok = match status {
                "SUCCESS" => debit == Some("APPLIED") && credit == Some("APPLIED"),
                "REVERSED" => debit == Some("REVERSED") && credit != Some("APPLIED"),
                "FAILED" => {
                    !matches!(debit, Some("APPLIED" | "REVERSED")) && credit != Some("APPLIED")
                }
                other => panic!("{id} is not terminal: {other}"),
            };
            assert!(
                ok,
                "{id} is {status} but the banks say debit={debit:?} credit={credit:?}: {txn}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// RabbitMQ helpers: an exchange of one's own, a consumer that records every
// event, and a TCP proxy whose connections a test can cut.

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A uniquely named event exchange for one test; deleted (with its
/// dead-letter exchange and queue, and the analytics ingest's queue) when dropped.
pub struct TestExchange {
    pub name: String,
}

impl TestExchange {
    pub fn new() -> TestExchange {
        TestExchange {
            name: format!("test.events.{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Drop for TestExchange {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_own_thread(async move {
            use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
            let props = lapin::ConnectionProperties::default();
            let Ok(conn) = lapin::Connection::connect(AMQP_URL, props).await else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            // Its dead letters and the analytics ingest's queue.
            for queue in [format!("{name}.dead"), format!("{name}.analytics")] {
                let _ = ch
                    .queue_delete(queue.into(), QueueDeleteOptions::default())
                    .await;
            }
            for x in [name.clone(), format!("{name}.dlx")] {
                let _ = ch
                    .exchange_delete(x.into(), ExchangeDeleteOptions::default())
                    .await;
            }
            let _ = conn.close(200, "bye".into()).await;
        });
    }
}

/// Every message delivered to a queue bound to `txn.#` on an exchange, in
/// arrival order: (message_id, event JSON).
pub struct EventCollector {
    pub received: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
    _conn: lapin::Connection,
}

impl EventCollector {
    /// Declares the exchange like the switch does, and a queue of our own
    /// bound to every transaction event, before any traffic.
    pub async fn start(exchange: &str) -> EventCollector {
        EventCollector::bound(exchange, "txn.#").await
    }

    /// The same, bound to `pattern` (e.g. `settlement.#`).
    pub async fn bound(exchange: &str, pattern: &str) -> EventCollector {
        use futures::StreamExt;
        use lapin::options::*;
        use lapin::types::FieldTable;
        let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let ch = conn.create_channel().await.expect("channel");
        ch.exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare exchange");
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        ch.queue_bind(
            q.name().clone(),
            exchange.into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        let mut consumer = ch
            .basic_consume(
                q.name().clone(),
                "test-collector".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let id = d
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let body: serde_json::Value =
                    serde_json::from_slice(&d.data).unwrap_or(serde_json::Value::Null);
                sink.lock().unwrap().push((id, body));
            }
        });
        EventCollector {
            received,
            _conn: conn,
        }
    }

    pub fn snapshot(&self) -> Vec<(String, serde_json::Value)> {
        self.received.lock().unwrap().clone()
    }
}

/// A TCP proxy on 127.0.0.1:0 in front of `target`. `cut` drops every open
/// connection; while `refuse` is set, new connections are closed at once.
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: &str) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, r, target) = (conns.clone(), refuse.clone(), target.to_string());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if r.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        TcpProxy {
            addr,
            conns,
            refuse,
            accept,
        }
    }

    /// Drops every connection through the proxy (both ends see a reset/EOF).
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn refuse(&self, on: bool) {
        self.refuse.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
