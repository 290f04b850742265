//! Starting a rig, step by step: the state files of a detached rig, the
//! migrations, each service (spawned, recorded, waited for until it answers
//! its health check), the registrations through the switch's admin API, and
//! the wait until the switch sees both banks UP (every node, when there are
//! several, and the balancer in front of them). Every wait is bounded by
//! [`START_LIMIT`]; an error names the service and quotes its log.

use super::layout::{BANKS, Kind};
use super::process::{self, Mode, Service};
use super::{
    PROCESSOR_TOKEN, PROCESSORS, REGISTER_CONCURRENCY, Rig, RigError, START_LIMIT, balancer, io,
    node_name, state,
};
use crate::loadgen::mix::MERCHANT_MCC;
use crate::traffic::transport_text;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The client id of the rig's own tools.
pub const RIG_CLIENT: &str = "rig";

impl Rig {
    pub(super) fn write_deployment_env(&self, st: &state::StateDir) -> Result<(), RigError> {
        if st.env_file().exists() {
            return Err(RigError::Usage(format!(
                "a deployment is already recorded in {}: stop it with `upi-switch rig down --dir {0}` \
                 (chaos/down.sh) first, or use another directory",
                st.dir.display()
            )));
        }
        let port = |u: &str| u.rsplit(':').next().unwrap_or_default().to_string();
        let hdfc = &self.banks[0].urls;
        let nodes = self.node_names();
        let mut services: Vec<&str> = nodes.iter().map(String::as_str).collect();
        services.extend(["bank-hdfc", "bank-icici"]);
        if !self.processors.is_empty() {
            services.extend(PROCESSORS.iter().map(|(name, _, _)| *name));
        }
        if self.haproxy.is_some() {
            services.push(balancer::SERVICE);
        }
        let vars = [
            ("BIN", self.cfg.bin.display().to_string()),
            ("PG", self.pg.clone()),
            ("SWITCH_DB_NAME", self.switch_db_name.clone()),
            ("BANK_DB_NAME", self.bank_db_name.clone()),
            ("SWITCH_PORT", self.switch_port.to_string()),
            ("SWITCH_URL", self.switch_url.clone()),
            ("SWITCH_NODES", self.node_urls.len().to_string()),
            ("SWITCH_NODE_NAMES", nodes.join(" ")),
            ("SWITCH_NODE_URLS", self.node_urls.join(" ")),
            (
                "BALANCER",
                if self.haproxy.is_some() {
                    balancer::SERVICE.to_string()
                } else {
                    String::new()
                },
            ),
            ("HDFC_PORT", port(&hdfc[0])),
            (
                "HDFC_PORT2",
                hdfc.get(1).map(|u| port(u)).unwrap_or_default(),
            ),
            ("ICICI_PORT", port(&self.banks[1].urls[0])),
            ("BANK_HDFC_URLS", hdfc.join(" ")),
            ("BANK_ICICI_URLS", self.banks[1].urls.join(" ")),
            ("BANK_HDFC_URL", hdfc[0].clone()),
            ("BANK_ICICI_URL", self.banks[1].urls[0].clone()),
            (
                "EXPECTED_TOTAL_PAISE",
                self.expected_total_paise.to_string(),
            ),
            ("SWITCH_DB", self.switch_db.clone()),
            ("BANK_DB", self.bank_db.clone()),
            ("BANKS", "HDFC ICICI".into()),
            ("SERVICES", services.join(" ")),
            ("VPAS_FILE", st.dir.join("vpas.txt").display().to_string()),
            (
                "MERCHANTS_FILE",
                st.dir.join("merchants.txt").display().to_string(),
            ),
            (
                "PROCESSOR_DEFAULT_URL",
                self.processors.first().cloned().unwrap_or_default(),
            ),
            (
                "PROCESSOR_FALLBACK_URL",
                self.processors.get(1).cloned().unwrap_or_default(),
            ),
            ("PROCESSOR_TOKEN", PROCESSOR_TOKEN.into()),
            (
                "ADMIN_TOKEN",
                self.cfg.admin_token.clone().unwrap_or_default(),
            ),
            (
                "CLIENT_KEY_FILE",
                if self.client_key.is_some() {
                    st.dir.join("client.json").display().to_string()
                } else {
                    String::new()
                },
            ),
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
    pub(super) async fn migrate(&self, st: &state::StateDir) -> Result<(), RigError> {
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

    /// The event exchange of this deployment's switch database.
    pub(super) fn events_exchange(&self) -> String {
        super::events_exchange_of(&self.switch_db_name)
    }

    pub(super) fn service_env(&self) -> Vec<String> {
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
    pub(super) fn spawn(&mut self, st: &state::StateDir, service: Service) -> Result<(), RigError> {
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

    pub(super) async fn start_banks(
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

    /// The two payment processors of merchant forwarding (simulators with
    /// the contest's final-round fees), before the switch, which is pointed
    /// at them.
    pub(super) async fn start_processors(
        &mut self,
        st: &state::StateDir,
        http: &reqwest::Client,
    ) -> Result<(), RigError> {
        let urls = self.processors.clone();
        for ((name, fee, flag), url) in PROCESSORS.iter().zip(&urls) {
            let port = url.rsplit(':').next().unwrap_or_default().to_string();
            let argv = vec![
                self.cfg.bin.display().to_string(),
                "processor-sim".into(),
                "--port".into(),
                port,
                "--fee".into(),
                fee.to_string(),
                "--token".into(),
                PROCESSOR_TOKEN.into(),
            ];
            let env = self.service_env();
            self.spawn(
                st,
                Service {
                    name: name.to_string(),
                    argv,
                    env,
                },
            )?;
            let summary = format!("{url}/admin/payments-summary");
            self.wait_http_with(
                st,
                name,
                &summary,
                &[("X-Rinha-Token", PROCESSOR_TOKEN)],
                http,
            )
            .await?;
            self.cfg.serve_args.extend([flag.to_string(), url.clone()]);
        }
        self.say(&format!("processors up: {}", urls.join(" ")));
        Ok(())
    }

    /// The switch nodes: all started at once (the schema is migrated
    /// already), then each waited for until its `/readyz` answers 200. One
    /// node runs exactly as a rig always ran it; several get `--node-name`
    /// (their service name) and one Redis prefix between them.
    pub(super) async fn start_switch(
        &mut self,
        st: &state::StateDir,
        http: &reqwest::Client,
    ) -> Result<(), RigError> {
        let several = self.node_ports.len() > 1;
        let given = |flag: &str| {
            self.cfg
                .serve_args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let (name_given, prefix_given) = (given("--node-name"), given("--redis-prefix"));
        // Each switch database gets its own event exchange: deployments
        // share one RabbitMQ, and an analytics ingest counts every event of
        // its exchange into its database.
        let own_exchange = (!given("--events-exchange")
            && self.serve_flags.contains("--events-exchange"))
        .then(|| self.events_exchange());
        // A rig's load (demo, bench, chaos) pays thousands of times from a few
        // dozen VPAs: the per-payer daily limits are off unless SERVE_ARGS set
        // them (and unless the binary predates them).
        let limits_off: Vec<String> = ["--daily-count-limit", "--daily-amount-limit"]
            .into_iter()
            .filter(|flag| !given(flag) && self.serve_flags.contains(*flag))
            .flat_map(|flag| [flag.to_string(), "0".to_string()])
            .collect();
        for (i, port) in self.node_ports.clone().into_iter().enumerate() {
            let name = node_name(i + 1);
            let listen = SocketAddr::new(self.cfg.switch_listen.ip(), port);
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
            if several && !name_given {
                argv.extend(["--node-name".into(), name.clone()]);
            }
            // Fresh databases get their own Redis keys: deployments share one
            // Redis. The nodes of one deployment share theirs.
            if self.fresh && !prefix_given {
                argv.extend(["--redis-prefix".into(), self.switch_db_name.clone()]);
            }
            if let Some(x) = &own_exchange {
                argv.extend(["--events-exchange".into(), x.clone()]);
            }
            argv.extend(limits_off.iter().cloned());
            argv.extend(self.cfg.serve_args.iter().cloned());
            let env = self.service_env();
            self.spawn(st, Service { name, argv, env })?;
        }
        for (i, url) in self.node_urls.clone().iter().enumerate() {
            let name = node_name(i + 1);
            self.wait_http(st, &name, &format!("{url}/readyz"), http)
                .await?;
        }
        if several {
            self.say(&format!(
                "{} switch nodes ready: {}",
                self.node_urls.len(),
                self.node_urls.join(" ")
            ));
        } else {
            self.say(&format!("switch ready: {}", self.switch_url));
        }
        Ok(())
    }

    /// HAProxy in front of the nodes, on the switch's port; ready when a
    /// request through it reaches a ready node.
    pub(super) async fn start_balancer(
        &mut self,
        st: &state::StateDir,
        http: &reqwest::Client,
    ) -> Result<(), RigError> {
        let Some(bin) = self.haproxy.clone() else {
            return Ok(());
        };
        let ip = self.cfg.switch_listen.ip();
        let nodes: Vec<(String, SocketAddr)> = self
            .node_ports
            .iter()
            .enumerate()
            .map(|(i, p)| (node_name(i + 1), super::reachable(SocketAddr::new(ip, *p))))
            .collect();
        let text = balancer::config(
            SocketAddr::new(ip, self.switch_port),
            &nodes,
            balancer::max_conn(),
            &self.cfg.prog,
        );
        let path = st.dir.join("haproxy.cfg");
        std::fs::write(&path, text).map_err(io(format!("cannot write {}", path.display())))?;
        let env = self.service_env();
        self.spawn(
            st,
            Service {
                name: balancer::SERVICE.into(),
                argv: balancer::argv(&bin, &path),
                env,
            },
        )?;
        let url = format!("{}/readyz", self.switch_url);
        self.wait_http(st, balancer::SERVICE, &url, http).await?;
        self.say(&format!(
            "haproxy ({}) ready: {} -> {} nodes, config {}",
            bin.display(),
            self.switch_url,
            nodes.len(),
            path.display()
        ));
        Ok(())
    }

    /// Waits (at most [`START_LIMIT`]) until `url` answers 2xx, failing early
    /// if the service's process exits; the error quotes its log.
    pub(super) async fn wait_http(
        &mut self,
        st: &state::StateDir,
        service: &str,
        url: &str,
        http: &reqwest::Client,
    ) -> Result<(), RigError> {
        self.wait_http_with(st, service, url, &[], http).await
    }

    /// [`Self::wait_http`] with request headers (an admin token, say).
    pub(super) async fn wait_http_with(
        &mut self,
        st: &state::StateDir,
        service: &str,
        url: &str,
        headers: &[(&str, &str)],
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
            let mut request = http.get(url).timeout(Duration::from_secs(2));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let answered = request.send().await.is_ok_and(|r| r.status().is_success());
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

    pub(super) async fn put_admin(
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

    /// Authentication of the switch it starts: unless its serve args say
    /// `--insecure-no-auth` (or the binary predates authentication), an
    /// operator token (the given one, else a fresh random one) and the rig's
    /// own client key, kept in `<dir>/client.json` (mode 0600), which its
    /// tools sign with.
    pub(super) fn plan_auth(&mut self, st: &state::StateDir) -> Result<(), RigError> {
        let insecure = self
            .cfg
            .serve_args
            .iter()
            .any(|a| a == "--insecure-no-auth");
        if insecure || !self.serve_flags.contains("--insecure-no-auth") {
            return Ok(());
        }
        if self.cfg.admin_token.is_none() {
            let mut raw = [0u8; 16];
            rand::fill(&mut raw);
            self.cfg.admin_token = Some(raw.iter().map(|b| format!("{b:02x}")).collect());
        }
        let key = crate::auth::signer::ClientKey::generate(RIG_CLIENT, "k1");
        key.save(&st.dir.join("client.json"))
            .map_err(|e| RigError::Start(e.to_string()))?;
        self.client_key = Some(key);
        Ok(())
    }

    /// Registers the rig's client with every handle its VPAs use.
    pub(super) async fn register_client(&self, http: &reqwest::Client) -> Result<(), RigError> {
        let Some(key) = &self.client_key else {
            return Ok(());
        };
        let handles: std::collections::BTreeSet<&str> = self
            .cfg
            .accounts
            .iter()
            .map(|a| crate::domain::psp_of(&a.vpa))
            .collect();
        let body = json!({
            "name": "the rig's tools",
            "handles": handles,
            "keys": [{"key_id": key.key_id, "public_key": key.public_key()}],
        });
        self.put_admin(http, &format!("/v1/admin/clients/{RIG_CLIENT}"), &body)
            .await
            .map_err(|e| RigError::Register(format!("registering the rig's client: {e}")))
    }

    /// Both banks (endpoints by priority) and every account's VPA.
    pub(super) async fn register(&self, http: &reqwest::Client) -> Result<(), RigError> {
        use futures::StreamExt;
        for (bank, running) in BANKS.iter().zip(&self.banks) {
            let endpoints: Vec<Value> = running
                .urls
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    // Only when on: a switch of an earlier build (`--bin`) knows no such field.
                    if self.cfg.bank_http2 {
                        json!({"url": url, "priority": i, "http2": true})
                    } else {
                        json!({"url": url, "priority": i})
                    }
                })
                .collect();
            let body = json!({"name": bank.name, "endpoints": endpoints});
            self.put_admin(http, &format!("/v1/admin/banks/{}", bank.code), &body)
                .await
                .map_err(|e| RigError::Register(format!("registering bank {}: {e}", bank.code)))?;
        }
        let results: Vec<Result<(), String>> = futures::stream::iter(&self.cfg.accounts)
            .map(|a| async move {
                let mut body =
                    json!({"bank_code": a.bank().code, "account": a.account, "name": a.name});
                // Only for merchants: a switch of an earlier build (`--bin`) may know no such field.
                if a.kind == Kind::Merchant {
                    body["merchant"] = json!(true);
                    body["mcc"] = json!(MERCHANT_MCC);
                }
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

    /// The supervisors probe each endpoint: waits until both banks are UP,
    /// through `switch_url`, and with several nodes also on each node (the
    /// balancer's answer is one node's view; each node learns the
    /// registrations from the shared configuration by itself).
    pub(super) async fn wait_banks_up(&self, http: &reqwest::Client) -> Result<(), RigError> {
        let mut urls = vec![self.switch_url.clone()];
        if self.node_urls.len() > 1 {
            urls.extend(self.node_urls.iter().cloned());
        }
        for url in &urls {
            self.wait_banks_up_at(http, url).await?;
        }
        Ok(())
    }

    async fn wait_banks_up_at(&self, http: &reqwest::Client, url: &str) -> Result<(), RigError> {
        let deadline = Instant::now() + START_LIMIT;
        let mut last = Value::Null;
        loop {
            let mut req = http.get(format!("{url}/v1/ops/banks"));
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
                    "the switch at {url} does not see both banks UP after {} s: {last}",
                    START_LIMIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
