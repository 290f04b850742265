//! The rig: one local deployment of the switch and two simulated banks, the
//! one way `demo`, `bench` and the chaos scripts (through `rig up`/`rig down`)
//! start them. It owns: the two databases (fresh ones with random names, or
//! given ones), their migrations (run once, by the services' binary), the bank
//! simulators HDFC (one or two endpoints on one ledger) and ICICI and the
//! switch as child processes of a given binary, registration of the banks and
//! VPAs through the switch's admin API, the wait until both banks are UP, and
//! teardown (stop the services, drop fresh databases). With `nodes` above one
//! it starts that many switch nodes (`switch`, `switch-2`, …) on the one
//! database and Redis prefix, and HAProxy in front of them on the switch's
//! port ([`balancer`]); `switch_url` is then the balancer's.
//!
//! A rig is torn down when it is dropped, however its owner ends (error,
//! signal turned into an error, panic); attached services also die with the
//! rig's process if it is killed. A detached rig (`rig up`) records itself in a
//! state directory ([`state`]) and is released instead: its services live on
//! until `rig down` ([`cmd`]). The rig never reads the switch's internals: it
//! talks to it over its public HTTP API, like any operator.

pub mod balancer;
pub mod cmd;
pub mod layout;
pub mod process;
pub mod start;
pub mod state;

use crate::cli::RigLayoutArgs;
use layout::{Account, BANKS};
use process::Mode;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// How long a service may take to answer its health check.
pub const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a stopping service gets between SIGTERM and SIGKILL.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Most registrations in flight at once.
pub(crate) const REGISTER_CONCURRENCY: usize = 8;
/// Most switch nodes of one rig.
pub const MAX_NODES: usize = 16;

/// The service name of switch node `k` (from 1): `switch`, `switch-2`, …
/// (also its `--node-name` when there are several).
pub fn node_name(k: usize) -> String {
    if k <= 1 {
        "switch".into()
    } else {
        format!("switch-{k}")
    }
}

/// Is `service` one of a rig's switch nodes?
pub fn is_node(service: &str) -> bool {
    service == "switch"
        || service
            .strip_prefix("switch-")
            .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
}

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

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RigError {
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
    /// The switch's address (the balancer's, with several nodes); port 0 picks a free one.
    pub switch_listen: SocketAddr,
    /// Switch nodes (1 to [`MAX_NODES`]); more than one get HAProxy in front.
    pub nodes: usize,
    /// Latency (and as much jitter) every bank request gets, in ms.
    pub bank_latency_ms: u64,
    /// Also start the two payment processors of merchant forwarding (the
    /// bench's merchant run), and point the switch at them.
    pub processors: bool,
    /// Register the bank endpoints as speaking HTTP/2 (cleartext, prior
    /// knowledge; the bank simulator does), so the switch multiplexes its
    /// calls over one connection per endpoint.
    pub bank_http2: bool,
    pub db_pool_size: Option<usize>,
    pub admin_token: Option<String>,
    /// More flags of `serve`.
    pub serve_args: Vec<String>,
    /// `RUST_LOG` of the services.
    pub rust_log: String,
    /// Say each step on stderr.
    pub verbose: bool,
}

impl RigConfig {
    /// The chaos and bench layout: fresh databases, numbered accounts
    /// (`defaults` = accounts, frozen, poor unless flags say otherwise), HDFC
    /// with two endpoints, free ports, the switch on 127.0.0.1.
    pub fn from_layout(
        l: &RigLayoutArgs,
        defaults: (usize, usize, usize),
        dir: &Path,
        prog: &str,
        mode: Mode,
    ) -> Result<RigConfig, RigError> {
        let (n, frozen, poor) = l.accounts(defaults);
        Ok(RigConfig {
            bin: absolute_bin(l.bin.as_deref())?,
            dir: dir.to_path_buf(),
            prog: prog.to_string(),
            mode,
            databases: Databases::Fresh {
                pg: l.pg.clone(),
                prefix: l.db_prefix.clone(),
            },
            accounts: layout::numbered(n, frozen, poor, l.merchants).map_err(RigError::Usage)?,
            hdfc_endpoints: 2,
            bank_port: 0,
            switch_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            nodes: l.nodes,
            bank_latency_ms: l.bank_latency,
            bank_http2: l.bank_http2,
            processors: false,
            db_pool_size: Some(l.db_pool_size),
            admin_token: None,
            serve_args: l.serve_args.clone(),
            rust_log: l.rust_log.clone(),
            verbose: mode == Mode::Detached,
        })
    }
}

/// The processors a rig may start: (service name, fee, the switch's flag).
/// Fees of the contest's final round: default 7%, fallback 10%.
pub const PROCESSORS: [(&str, &str, &str); 2] = [
    ("processor-default", "0.07", "--processor-default-url"),
    ("processor-fallback", "0.10", "--processor-fallback-url"),
];
/// The processors' admin token (`X-Rinha-Token`).
pub const PROCESSOR_TOKEN: &str = "123";

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
    /// Where clients go: the one node, or the balancer in front of several.
    pub switch_url: String,
    pub switch_port: u16,
    /// Each node's own URL, in node order (`switch`, `switch-2`, …).
    pub node_urls: Vec<String>,
    /// Each node's port (with one node, `switch_port`).
    pub node_ports: Vec<u16>,
    /// The `haproxy` binary, when there are several nodes.
    pub haproxy: Option<PathBuf>,
    pub banks: Vec<RunningBank>,
    pub switch_db: String,
    pub bank_db: String,
    pub switch_db_name: String,
    pub bank_db_name: String,
    /// PostgreSQL server URL without a database.
    pub pg: String,
    pub expected_total_paise: i64,
    /// The payment processors' URLs (default, fallback) when asked for
    /// (ports chosen before anything starts, so `deployment.env` names them).
    pub processors: Vec<String>,
    /// The rig's own client (`<dir>/client.json`), registered with every
    /// handle of its VPAs; `None` when the switch runs `--insecure-no-auth`
    /// (or is an earlier build without authentication).
    pub client_key: Option<crate::auth::signer::ClientKey>,
    /// The flags the switch binary's `serve` takes (asked once).
    serve_flags: std::collections::BTreeSet<String>,
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
        if !(1..=MAX_NODES).contains(&cfg.nodes) {
            return Err(RigError::Usage(format!(
                "--nodes must be 1-{MAX_NODES} (got {})",
                cfg.nodes
            )));
        }
        // Before anything is created: several nodes need the balancer.
        let haproxy = match cfg.nodes {
            1 => None,
            n => Some(
                balancer::find_haproxy()
                    .ok_or_else(|| RigError::Start(balancer::missing_message(n)))?,
            ),
        };
        let st = state::StateDir::new(&cfg.dir);
        for d in [st.logs(), st.run()] {
            std::fs::create_dir_all(&d).map_err(io(format!("cannot create {}", d.display())))?;
        }
        let mut rig = Rig::plan(cfg)?;
        rig.haproxy = haproxy;
        rig.serve_flags = process::serve_flags(&rig.cfg.bin);
        rig.plan_auth(&st)?;
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
        if rig.cfg.processors {
            rig.start_processors(&st, &http).await?;
        }
        rig.start_switch(&st, &http).await?;
        if rig.haproxy.is_some() {
            rig.start_balancer(&st, &http).await?;
        }
        rig.register(&http).await?;
        rig.register_client(&http).await?;
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
        // Several nodes: each on a free port of its own, the balancer on `switch_port`.
        let node_ports: Vec<u16> = if cfg.nodes <= 1 {
            vec![switch_port]
        } else {
            free_ports(cfg.switch_listen.ip(), cfg.nodes + 1)?
                .into_iter()
                .filter(|p| *p != switch_port)
                .take(cfg.nodes)
                .collect()
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
        let processors = if cfg.processors {
            free_ports(IpAddr::V4(Ipv4Addr::LOCALHOST), PROCESSORS.len())?
                .into_iter()
                .map(url)
                .collect()
        } else {
            Vec::new()
        };
        let switch_addr = reachable(SocketAddr::new(cfg.switch_listen.ip(), switch_port));
        let node_urls = node_ports
            .iter()
            .map(|p| {
                let addr = reachable(SocketAddr::new(cfg.switch_listen.ip(), *p));
                format!("http://{addr}")
            })
            .collect();
        Ok(Rig {
            switch_url: format!("http://{switch_addr}"),
            switch_port,
            node_urls,
            node_ports,
            haproxy: None,
            banks,
            switch_db,
            bank_db,
            switch_db_name,
            bank_db_name,
            pg,
            expected_total_paise: layout::total_paise(&cfg.accounts),
            processors,
            children: Vec::new(),
            fresh,
            released: false,
            client_key: None,
            serve_flags: Default::default(),
            cfg,
        })
    }

    fn say(&self, what: &str) {
        if self.cfg.verbose {
            eprintln!("{}: {what}", self.cfg.prog);
        }
    }

    /// The pid of a running service (`switch`, `switch-2`, `haproxy`,
    /// `bank-hdfc`, `bank-icici`).
    pub fn pid(&self, service: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, c)| c.id())
    }

    /// The service names of the switch nodes, in order: `switch`, `switch-2`, …
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.node_urls.len()).map(node_name).collect()
    }

    /// The pids of every switch node started.
    pub fn switch_pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .filter(|(name, _)| is_node(name))
            .map(|(_, c)| c.id())
            .collect()
    }

    /// The first service found to have exited, if one has.
    pub fn exited(&mut self) -> Option<String> {
        self.children
            .iter_mut()
            .find_map(|(name, c)| matches!(c.try_wait(), Ok(Some(_))).then(|| name.clone()))
    }

    /// Leaves the services running (a detached rig after `rig up`).
    pub fn release(mut self) {
        self.released = true;
    }

    /// Stops every service (SIGTERM to each group, SIGKILL to what is left
    /// after [`STOP_LIMIT`]) and drops fresh databases. Blocking:
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
            delete_exchange(self.events_exchange());
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

/// The event exchange a rig's switch publishes to: one per switch database
/// (deployments share one RabbitMQ; an analytics ingest counts every event
/// of its exchange).
pub fn events_exchange_of(switch_db_name: &str) -> String {
    format!("upi.events.{switch_db_name}")
}

/// Deletes a dropped deployment's event exchange and its queues, on a thread
/// and runtime of its own (this runs from `Drop` too); best effort.
pub fn delete_exchange(exchange: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(crate::adapters::amqp::delete_exchange(&exchange));
        }
    })
    .join();
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
