//! The rig: one local deployment of the switch and two simulated banks, the
//! one way `demo`, `bench` and the chaos scripts (through `rig up`/`rig down`)
//! start them. It owns: the two databases (fresh ones with random names, or
//! given ones), their migrations (run once, by the services' binary), the bank
//! simulators HDFC (one or two endpoints on one ledger) and ICICI and the
//! switch as child processes of a given binary, registration of the banks and
//! VPAs through the switch's admin API, the wait until both banks are UP, and
//! teardown (stop the services, drop fresh databases).
//!
//! A rig is torn down when it is dropped, however its owner ends (error,
//! signal turned into an error, panic); attached services also die with the
//! rig's process if it is killed. A detached rig (`rig up`) records itself in a
//! state directory ([`state`]) and is released instead: its services live on
//! until `rig down` ([`cmd`]). The rig never reads the switch's internals: it
//! talks to it over its public HTTP API, like any operator.

pub mod cmd;
pub mod layout;
pub mod process;
pub mod state;

use crate::traffic::transport_text;
use layout::{Account, BANKS};
use process::{Mode, Service};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// How long a service may take to answer its health check.
pub const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a stopping service gets between SIGTERM and SIGKILL.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Most registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 8;

/// Why a rig could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {why}")]
    Migrate { what: String, why: String },
    #[error("{0}")]
    Start(String),
    #[error("{0}")]
    Register(String),
    #[error("{0}")]
    Database(String),
    #[error("cannot build an HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RigError {
    let what = what.into();
    move |source| RigError::Io { what, source }
}

/// Which databases the rig uses.
#[derive(Debug, Clone)]
pub enum Databases {
    /// `<prefix>_<random>_switch` and `…_banks` on the server `pg`, created
    /// here and dropped at teardown.
    Fresh { pg: String, prefix: String },
    /// These URLs (created if missing), kept at teardown.
    Given { switch: String, banks: String },
}

/// Everything a rig is started from.
#[derive(Debug, Clone)]
pub struct RigConfig {
    /// The binary whose `serve`, `bank-sim` and `migrate` the services run.
    pub bin: PathBuf,
    /// Logs (`logs/`), the recorded services (`run/`) and the account files.
    pub dir: PathBuf,
    /// Who starts the services (log headers, messages).
    pub prog: String,
    pub mode: Mode,
    pub databases: Databases,
    pub accounts: Vec<Account>,
    /// Endpoints of HDFC (1 or 2: a primary and a secondary on one ledger).
    pub hdfc_endpoints: usize,
    /// First bank port (the next endpoints count up from it); 0 picks free ports.
    pub bank_port: u16,
    /// The switch's address; port 0 picks a free one.
    pub switch_listen: SocketAddr,
    /// Latency (and as much jitter) every bank request gets, in ms.
    pub bank_latency_ms: u64,
    pub db_pool_size: Option<usize>,
    pub admin_token: Option<String>,
    /// More flags of `serve`.
    pub serve_args: Vec<String>,
    /// `RUST_LOG` of the services.
    pub rust_log: String,
    /// Say each step on stderr.
    pub verbose: bool,
}

/// A bank of a running rig and its endpoints (primary first).
#[derive(Debug, Clone)]
pub struct RunningBank {
    pub code: &'static str,
    pub service: String,
    pub urls: Vec<String>,
}

/// A running (or half-started) rig. Dropping it tears it down unless it was released.
pub struct Rig {
    pub cfg: RigConfig,
    pub switch_url: String,
    pub switch_port: u16,
    pub banks: Vec<RunningBank>,
    pub switch_db: String,
    pub bank_db: String,
    pub switch_db_name: String,
    pub bank_db_name: String,
    /// PostgreSQL server URL without a database.
    pub pg: String,
    pub expected_total_paise: i64,
    /// (service name, child), in start order.
    children: Vec<(String, Child)>,
    /// Databases created here, dropped at teardown.
    fresh: bool,
    released: bool,
}

impl Rig {
    /// Starts everything; on any failure what was started is stopped again
    /// (and fresh databases dropped) before the error returns. Cancelling the
    /// returned future does the same.
    pub async fn start(cfg: RigConfig) -> Result<Rig, RigError> {
        if !(1..=2).contains(&cfg.hdfc_endpoints) {
            return Err(RigError::Usage("HDFC has one or two endpoints".into()));
        }
        let st = state::StateDir::new(&cfg.dir);
        for d in [st.logs(), st.run()] {
            std::fs::create_dir_all(&d).map_err(io(format!("cannot create {}", d.display())))?;
        }
        let mut rig = Rig::plan(cfg)?;
        let seeds = layout::write_files(&st.dir, &rig.cfg.accounts).map_err(io(format!(
            "cannot write the account files in {}",
            st.dir.display()
        )))?;
        if rig.cfg.mode == Mode::Detached {
            rig.write_deployment_env(&st)?;
        }
        rig.say(&format!(
            "state in {}; databases {}, {}",
            st.dir.display(),
            rig.switch_db_name,
            rig.bank_db_name
        ));
        rig.migrate(&st).await?;
        let http = crate::traffic::http_client(Duration::from_secs(10), REGISTER_CONCURRENCY)?;
        rig.start_banks(&st, &seeds, &http).await?;
        rig.start_switch(&st, &http).await?;
        rig.register(&http).await?;
        rig.wait_banks_up(&http).await?;
        rig.say(&format!(
            "registered {} banks and {} VPAs; both banks UP",
            BANKS.len(),
            rig.cfg.accounts.len()
        ));
        Ok(rig)
    }

    /// Names, ports and URLs; nothing started yet.
    fn plan(cfg: RigConfig) -> Result<Rig, RigError> {
        let (pg, switch_db_name, bank_db_name, fresh) = match &cfg.databases {
            Databases::Fresh { pg, prefix } => {
                let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
                let pg = pg.trim_end_matches('/').to_string();
                (
                    pg,
                    format!("{prefix}_{tag}_switch"),
                    format!("{prefix}_{tag}_banks"),
                    true,
                )
            }
            Databases::Given { switch, banks } => {
                let name = |url: &str| url.rsplit('/').next().unwrap_or_default().to_string();
                let pg = switch
                    .rsplit_once('/')
                    .map_or("", |(base, _)| base)
                    .to_string();
                (pg, name(switch), name(banks), false)
            }
        };
        let (switch_db, bank_db) = match &cfg.databases {
            Databases::Fresh { .. } => (
                format!("{pg}/{switch_db_name}"),
                format!("{pg}/{bank_db_name}"),
            ),
            Databases::Given { switch, banks } => (switch.clone(), banks.clone()),
        };
        let endpoints = cfg.hdfc_endpoints + 1;
        let bank_ports: Vec<u16> = if cfg.bank_port == 0 {
            free_ports(IpAddr::V4(Ipv4Addr::LOCALHOST), endpoints)?
        } else {
            (0..endpoints)
                .map(|i| cfg.bank_port.checked_add(i as u16))
                .collect::<Option<_>>()
                .ok_or_else(|| RigError::Usage("the bank ports run past 65535".into()))?
        };
        let switch_port = match cfg.switch_listen.port() {
            0 => free_ports(cfg.switch_listen.ip(), 1)?[0],
            p => p,
        };
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let banks = vec![
            RunningBank {
                code: BANKS[0].code,
                service: "bank-hdfc".into(),
                urls: bank_ports[..cfg.hdfc_endpoints]
                    .iter()
                    .map(|p| url(*p))
                    .collect(),
            },
            RunningBank {
                code: BANKS[1].code,
                service: "bank-icici".into(),
                urls: vec![url(bank_ports[cfg.hdfc_endpoints])],
            },
        ];
        let switch_addr = reachable(SocketAddr::new(cfg.switch_listen.ip(), switch_port));
        Ok(Rig {
            switch_url: format!("http://{switch_addr}"),
            switch_port,
            banks,
            switch_db,
            bank_db,
            switch_db_name,
            bank_db_name,
            pg,
            expected_total_paise: layout::total_paise(&cfg.accounts),
            children: Vec::new(),
            fresh,
            released: false,
            cfg,
        })
    }

    fn say(&self, what: &str) {
        if self.cfg.verbose {
            eprintln!("{}: {what}", self.cfg.prog);
        }
    }

    /// The pid of a running service (`switch`, `bank-hdfc`, `bank-icici`).
    pub fn pid(&self, service: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, c)| c.id())
    }

    /// The first service found to have exited, if one has.
    pub fn exited(&mut self) -> Option<String> {
        self.children
            .iter_mut()
            .find_map(|(name, c)| matches!(c.try_wait(), Ok(Some(_))).then(|| name.clone()))
    }

    /// The names of the services, in start order.
    pub fn services(&self) -> Vec<String> {
        self.children.iter().map(|(n, _)| n.clone()).collect()
    }

    fn write_deployment_env(&self, st: &state::StateDir) -> Result<(), RigError> {
        if st.env_file().exists() {
            return Err(RigError::Usage(format!(
                "a deployment is already recorded in {}: stop it with `upi-switch rig down --dir {0}` \
                 (chaos/down.sh) first, or use another directory",
                st.dir.display()
            )));
        }
        let port = |u: &str| u.rsplit(':').next().unwrap_or_default().to_string();
        let hdfc = &self.banks[0].urls;
        let vars = [
            ("BIN", self.cfg.bin.display().to_string()),
            ("PG", self.pg.clone()),
            ("SWITCH_DB_NAME", self.switch_db_name.clone()),
            ("BANK_DB_NAME", self.bank_db_name.clone()),
            ("SWITCH_PORT", self.switch_port.to_string()),
            ("SWITCH_URL", self.switch_url.clone()),
            ("HDFC_PORT", port(&hdfc[0])),
            (
                "HDFC_PORT2",
                hdfc.get(1).map(|u| port(u)).unwrap_or_default(),
            ),
            ("ICICI_PORT", port(&self.banks[1].urls[0])),
            ("BANK_HDFC_URLS", hdfc.join(" ")),
            ("BANK_ICICI_URLS", self.banks[1].urls.join(" ")),
            (
                "EXPECTED_TOTAL_PAISE",
                self.expected_total_paise.to_string(),
            ),
            ("SWITCH_DB", self.switch_db.clone()),
            ("BANK_DB", self.bank_db.clone()),
            ("BANKS", "HDFC ICICI".into()),
            ("SERVICES", "switch bank-hdfc bank-icici".into()),
            ("VPAS_FILE", st.dir.join("vpas.txt").display().to_string()),
        ];
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        let text = state::render_env(
            &format!("A rig deployment, written by {} at {now}", self.cfg.prog),
            &vars,
        );
        std::fs::write(st.env_file(), text)
            .map_err(io(format!("cannot write {}", st.env_file().display())))
    }

    /// `migrate --bank` and `migrate` of the services' binary, once, before any
    /// service starts (so the two simulators do not race to create the schema).
    async fn migrate(&self, st: &state::StateDir) -> Result<(), RigError> {
        let log = st.log_file("migrate");
        for (db, bank) in [(&self.bank_db, true), (&self.switch_db, false)] {
            let mut cmd = tokio::process::Command::new(&self.cfg.bin);
            cmd.arg("migrate");
            if bank {
                cmd.arg("--bank");
            }
            cmd.args(["--database-url", db.as_str()])
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            let what = format!("creating and migrating {db}");
            let out = tokio::time::timeout(START_LIMIT, cmd.output())
                .await
                .map_err(|_| RigError::Migrate {
                    what: what.clone(),
                    why: format!("not done within {} s", START_LIMIT.as_secs()),
                })?
                .map_err(io(format!("cannot run {} migrate", self.cfg.bin.display())))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if let Ok(mut f) = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&log)
            {
                use std::io::Write;
                let _ = f.write_all(text.as_bytes());
            }
            if !out.status.success() {
                let why = process::last_error(&text).unwrap_or_else(|| out.status.to_string());
                return Err(RigError::Migrate { what, why });
            }
        }
        Ok(())
    }

    fn service_env(&self) -> Vec<String> {
        let mut env = vec![
            "NO_COLOR=1".to_string(),
            "RUST_BACKTRACE=1".into(),
            format!("RUST_LOG={}", self.cfg.rust_log),
        ];
        if self.cfg.mode == Mode::Detached {
            env.insert(
                0,
                format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
            );
        }
        env
    }

    /// Starts `service`, records it when detached, and remembers its child.
    fn spawn(&mut self, st: &state::StateDir, service: Service) -> Result<(), RigError> {
        if self.cfg.mode == Mode::Detached {
            let write = |path: PathBuf, words: &[String]| {
                std::fs::write(&path, state::nul_joined(words))
                    .map_err(io(format!("cannot write {}", path.display())))
            };
            write(st.cmd_file(&service.name), &service.argv)?;
            write(st.run().join(format!("{}.env", service.name)), &service.env)?;
        }
        let child = service
            .spawn(self.cfg.mode, &st.log_file(&service.name), &self.cfg.prog)
            .map_err(io(format!(
                "cannot start {} ({})",
                service.name,
                self.cfg.bin.display()
            )))?;
        if self.cfg.mode == Mode::Detached {
            let path = st.pid_file(&service.name);
            std::fs::write(&path, format!("{}\n", child.id()))
                .map_err(io(format!("cannot write {}", path.display())))?;
        }
        self.children.push((service.name, child));
        Ok(())
    }

    async fn start_banks(
        &mut self,
        st: &state::StateDir,
        seeds: &[PathBuf],
        http: &reqwest::Client,
    ) -> Result<(), RigError> {
        let bin = self.cfg.bin.display().to_string();
        for (b, seed) in seeds.iter().enumerate() {
            let bank = self.banks[b].clone();
            let port = |u: &String| u.rsplit(':').next().unwrap_or_default().to_string();
            let mut argv = vec![
                bin.clone(),
                "bank-sim".into(),
                "--code".into(),
                bank.code.into(),
            ];
            argv.extend(["--port".into(), port(&bank.urls[0])]);
            for extra in &bank.urls[1..] {
                argv.extend(["--extra-port".into(), port(extra)]);
            }
            argv.extend([
                "--database-url".into(),
                self.bank_db.clone(),
                "--accounts".into(),
                seed.display().to_string(),
            ]);
            if self.cfg.bank_latency_ms > 0 {
                let ms = self.cfg.bank_latency_ms.to_string();
                argv.extend(["--latency-ms".into(), ms.clone(), "--jitter-ms".into(), ms]);
            }
            let env = self.service_env();
            self.spawn(
                st,
                Service {
                    name: bank.service.clone(),
                    argv,
                    env,
                },
            )?;
        }
        for bank in self.banks.clone() {
            for url in &bank.urls {
                self.wait_http(st, &bank.service, &format!("{url}/v1/health"), http)
                    .await?;
            }
        }
        self.say(&format!(
            "banks up: HDFC {}, ICICI {}",
            self.banks[0].urls.join(" "),
            self.banks[1].urls.join(" ")
        ));
        Ok(())
    }

    async fn start_switch(
        &mut self,
        st: &state::StateDir,
        http: &reqwest::Client,
    ) -> Result<(), RigError> {
        let listen = SocketAddr::new(self.cfg.switch_listen.ip(), self.switch_port);
        let mut argv = vec![
            self.cfg.bin.display().to_string(),
            "serve".into(),
            "--listen".into(),
            listen.to_string(),
            "--database-url".into(),
            self.switch_db.clone(),
        ];
        if let Some(n) = self.cfg.db_pool_size {
            argv.extend(["--db-pool-size".into(), n.to_string()]);
        }
        if let Some(token) = &self.cfg.admin_token {
            argv.extend(["--admin-token".into(), token.clone()]);
        }
        // Fresh databases get their own Redis keys: deployments share one Redis.
        if self.fresh
            && !self
                .cfg
                .serve_args
                .iter()
                .any(|a| a.starts_with("--redis-prefix"))
        {
            argv.extend(["--redis-prefix".into(), self.switch_db_name.clone()]);
        }
        argv.extend(self.cfg.serve_args.iter().cloned());
        let env = self.service_env();
        self.spawn(
            st,
            Service {
                name: "switch".into(),
                argv,
                env,
            },
        )?;
        let url = format!("{}/readyz", self.switch_url);
        self.wait_http(st, "switch", &url, http).await?;
        self.say(&format!("switch ready: {}", self.switch_url));
        Ok(())
    }

    /// Waits (at most [`START_LIMIT`]) until `url` answers 2xx, failing early
    /// if the service's process exits; the error quotes its log.
    async fn wait_http(
        &mut self,
        st: &state::StateDir,
        service: &str,
        url: &str,
        http: &reqwest::Client,
    ) -> Result<(), RigError> {
        let deadline = Instant::now() + START_LIMIT;
        let log = st.log_file(service);
        let why_from_log = |fallback: String| {
            std::fs::read_to_string(&log)
                .ok()
                .and_then(|t| process::last_error(&t))
                .unwrap_or(fallback)
        };
        loop {
            let answered = http
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answered {
                return Ok(());
            }
            let exited = self
                .children
                .iter_mut()
                .find(|(n, _)| n == service)
                .and_then(|(_, c)| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let why = why_from_log(format!("it exited ({status})"));
                return Err(RigError::Start(format!(
                    "{service} did not start: {why} (log: {})",
                    log.display()
                )));
            }
            if Instant::now() >= deadline {
                let why = why_from_log("no log".into());
                return Err(RigError::Start(format!(
                    "{url} did not answer 2xx within {} s; the end of {service}'s log: {why} (log: {})",
                    START_LIMIT.as_secs(),
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn put_admin(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &Value,
    ) -> Result<(), String> {
        let mut req = http.put(format!("{}{path}", self.switch_url)).json(body);
        if let Some(token) = &self.cfg.admin_token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("PUT {path}: {}", transport_text(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(format!("PUT {path} answered {status}: {body}"))
    }

    /// Both banks (endpoints by priority) and every account's VPA.
    async fn register(&self, http: &reqwest::Client) -> Result<(), RigError> {
        use futures::StreamExt;
        for (bank, running) in BANKS.iter().zip(&self.banks) {
            let endpoints: Vec<Value> = running
                .urls
                .iter()
                .enumerate()
                .map(|(i, url)| json!({"url": url, "priority": i}))
                .collect();
            let body = json!({"name": bank.name, "endpoints": endpoints});
            self.put_admin(http, &format!("/v1/admin/banks/{}", bank.code), &body)
                .await
                .map_err(|e| RigError::Register(format!("registering bank {}: {e}", bank.code)))?;
        }
        let results: Vec<Result<(), String>> = futures::stream::iter(&self.cfg.accounts)
            .map(|a| async move {
                let body =
                    json!({"bank_code": a.bank().code, "account": a.account, "name": a.name});
                self.put_admin(http, &format!("/v1/admin/vpas/{}", a.vpa), &body)
                    .await
            })
            .buffer_unordered(REGISTER_CONCURRENCY)
            .collect()
            .await;
        results
            .into_iter()
            .collect::<Result<(), String>>()
            .map_err(|e| RigError::Register(format!("registering VPAs: {e}")))
    }

    /// The supervisors probe each endpoint: waits until both banks are UP.
    async fn wait_banks_up(&self, http: &reqwest::Client) -> Result<(), RigError> {
        let deadline = Instant::now() + START_LIMIT;
        let mut last = Value::Null;
        loop {
            let mut req = http.get(format!("{}/v1/ops/banks", self.switch_url));
            if let Some(token) = &self.cfg.admin_token {
                req = req.bearer_auth(token);
            }
            if let Ok(resp) = req.send().await {
                last = resp.json().await.unwrap_or(Value::Null);
                let up = |code: &str| {
                    last["banks"].as_array().into_iter().flatten().any(|b| {
                        b["code"].as_str() == Some(code) && b["health"].as_str() == Some("UP")
                    })
                };
                if BANKS.iter().all(|b| up(b.code)) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(RigError::Start(format!(
                    "the switch does not see both banks UP after {} s: {last}",
                    START_LIMIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Leaves the services running (a detached rig after `rig up`).
    pub fn release(mut self) {
        self.released = true;
    }

    /// Stops the services (switch first) and drops fresh databases. Blocking:
    /// waits up to [`STOP_LIMIT`] per stop step. Also what dropping does.
    pub fn teardown(&mut self) -> Result<(), RigError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let mut children = std::mem::take(&mut self.children);
        children.reverse();
        let pids: Vec<u32> = children.iter().map(|(_, c)| c.id()).collect();
        let left = process::stop(&pids, STOP_LIMIT, || {
            for (_, c) in children.iter_mut() {
                let _ = c.try_wait();
            }
        });
        for (_, c) in children.iter_mut() {
            let _ = c.try_wait();
        }
        let mut wrong = Vec::new();
        if !left.is_empty() {
            wrong.push(format!("pids {left:?} survived SIGKILL"));
        }
        if self.fresh {
            for name in [&self.switch_db_name, &self.bank_db_name] {
                if let Err(e) = drop_database(&self.pg, name) {
                    wrong.push(e);
                }
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(RigError::Database(wrong.join("; ")))
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("{}: tearing the rig down: {e}", self.cfg.prog);
        }
    }
}

/// `DROP DATABASE … WITH (FORCE)` on server `pg`, on a thread and runtime of
/// its own (this runs from `Drop`, maybe inside a runtime, which cannot block).
pub fn drop_database(pg: &str, name: &str) -> Result<(), String> {
    let url = format!("{}/postgres", pg.trim_end_matches('/'));
    let name = name.to_string();
    let job = move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("dropping database {name}: {e}"))?;
        rt.block_on(async {
            let db = crate::adapters::pg::DbUrl::parse(&url).map_err(|e| e.to_string())?;
            let client = tokio::time::timeout(Duration::from_secs(10), db.connect())
                .await
                .map_err(|_| format!("dropping database {name}: no connection within 10 s"))?
                .map_err(|e| format!("dropping database {name}: {e}"))?;
            let quoted = name.replace('"', "\"\"");
            tokio::time::timeout(
                Duration::from_secs(30),
                client.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{quoted}\" WITH (FORCE)"
                )),
            )
            .await
            .map_err(|_| format!("dropping database {name}: not done within 30 s"))?
            .map_err(|e| {
                format!(
                    "dropping database {name}: {}",
                    crate::adapters::pg::pg_message(&e)
                )
            })
        })
    };
    std::thread::spawn(job)
        .join()
        .unwrap_or_else(|_| Err("dropping a database panicked".into()))
}

/// `n` distinct free TCP ports on `ip` (all bound at once, then released).
pub fn free_ports(ip: IpAddr, n: usize) -> Result<Vec<u16>, RigError> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind(SocketAddr::new(ip, 0)))
        .collect::<Result<_, _>>()
        .map_err(io(format!("cannot find a free port on {ip}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(io("cannot read a bound port"))
}

/// An address a client can connect to (`0.0.0.0` → `127.0.0.1`).
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        return SocketAddr::new(ip, addr.port());
    }
    addr
}

/// This executable, for a default `--bin`.
pub fn current_bin() -> Result<PathBuf, RigError> {
    std::env::current_exe().map_err(io("cannot find this executable"))
}

/// `--bin PATH` made absolute (the recorded command lines must work from anywhere).
pub fn absolute_bin(bin: Option<&Path>) -> Result<PathBuf, RigError> {
    match bin {
        None => current_bin(),
        Some(p) => {
            let p = std::fs::canonicalize(p).map_err(io(format!("--bin {}", p.display())))?;
            Ok(p)
        }
    }
}
