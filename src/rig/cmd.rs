//! `upi-switch rig up` and `rig down`: a detached rig recorded in a state
//! directory, which is what `chaos/up.sh` and `chaos/down.sh` wrap. `up`
//! starts everything ([`super::Rig`]) and releases it; `down` needs nothing but
//! the directory: it stops every recorded service (and any stray copy of its
//! exact command line) and drops the databases named in `deployment.env`.

use super::process::{self, Mode};
use super::state::StateDir;
use super::{Rig, RigConfig, RigError};
use crate::cli::{RigDownArgs, RigUpArgs};
use crate::traffic::shutdown_signal;
use std::time::Duration;

/// Longest `--bank-latency`.
const MAX_BANK_LATENCY_MS: u64 = 10_000;

/// `rig up`: starts a detached rig in `--dir` and prints where everything is.
pub async fn up(args: RigUpArgs) -> Result<(), RigError> {
    let l = &args.layout;
    if l.db_pool_size == 0 {
        return Err(RigError::Usage("--db-pool-size must be at least 1".into()));
    }
    if l.bank_latency > MAX_BANK_LATENCY_MS {
        return Err(RigError::Usage(format!(
            "--bank-latency must be at most {MAX_BANK_LATENCY_MS} ms"
        )));
    }
    if l.nodes > 1 && super::balancer::find_haproxy().is_none() {
        return Err(RigError::Start(super::balancer::missing_message(l.nodes)));
    }
    let st = StateDir::new(&args.dir);
    if st.env_file().exists() {
        return Err(RigError::Usage(format!(
            "a deployment is already recorded in {}: stop it with `upi-switch rig down --dir {0}` first \
             (or use another directory)",
            st.dir.display()
        )));
    }
    for old in ["run", "logs", "events.log", "reports"] {
        let path = st.dir.join(old);
        let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
    }
    let mut cfg = RigConfig::from_layout(l, (20, 2, 2), &st.dir, &args.prog, Mode::Detached)?;
    cfg.processors = args.processors;
    let started = tokio::select! {
        rig = Rig::start(cfg) => rig,
        signal = shutdown_signal() => Err(RigError::Start(format!("interrupted by {signal}"))),
    };
    let rig = match started {
        Ok(rig) => rig,
        Err(e) => {
            eprintln!(
                "{}: start-up failed; stopped what was started and dropped the databases",
                args.prog
            );
            let _ = std::fs::remove_dir_all(st.run());
            let _ = std::fs::remove_file(st.env_file());
            return Err(e);
        }
    };
    let pid = |name: &str| rig.pid(name).map_or("?".into(), |p| p.to_string());
    let logs = st.logs();
    if rig.haproxy.is_some() {
        println!(
            "switch      {}   (haproxy, pid {}, round robin over {} nodes; config {}, log {}/haproxy.log)",
            rig.switch_url,
            pid(super::balancer::SERVICE),
            rig.node_urls.len(),
            st.dir.join("haproxy.cfg").display(),
            logs.display()
        );
        for (name, url) in rig.node_names().iter().zip(&rig.node_urls) {
            println!(
                "  node {name:<9} {url}   (pid {}, log {}/{name}.log)",
                pid(name),
                logs.display()
            );
        }
    } else {
        println!(
            "switch      {}   (pid {}, log {}/switch.log)",
            rig.switch_url,
            pid("switch"),
            logs.display()
        );
    }
    println!(
        "bank HDFC   {}   (pid {}, primary first)",
        rig.banks[0].urls.join(" "),
        pid("bank-hdfc")
    );
    println!(
        "bank ICICI  {}   (pid {})",
        rig.banks[1].urls.join(" "),
        pid("bank-icici")
    );
    if let [default, fallback] = rig.processors.as_slice() {
        println!(
            "processors  default {default}  fallback {fallback}   (pids {}, {})",
            pid(super::PROCESSORS[0].0),
            pid(super::PROCESSORS[1].0)
        );
    }
    println!("databases   {}  {}", rig.switch_db, rig.bank_db);
    let merchants = rig
        .cfg
        .accounts
        .iter()
        .filter(|a| a.kind == super::layout::Kind::Merchant)
        .count();
    println!(
        "VPAs        {} in {}, {merchants} merchants in {}",
        rig.cfg.accounts.len() - merchants,
        st.dir.join("vpas.txt").display(),
        st.dir.join("merchants.txt").display()
    );
    println!(
        "seeded      {} paise ({}) across both banks",
        rig.expected_total_paise,
        crate::domain::Paise(rig.expected_total_paise).to_inr()
    );
    println!(
        "state       {}   (stop with: upi-switch rig down --dir {0}, or CHAOS_DIR={0} chaos/down.sh)",
        st.dir.display()
    );
    rig.release();
    Ok(())
}

/// `rig down`: stops what the directory records and drops its databases.
/// Safe to run twice.
pub fn down(args: RigDownArgs) -> Result<(), RigError> {
    let st = StateDir::new(&args.dir);
    let say = |what: &str| eprintln!("{}: {what}", args.prog);
    let mut wrong = Vec::new();
    if st.env_file().exists() {
        let env = st.read_env().map_err(|e| {
            RigError::Usage(format!("cannot read {}: {e}", st.env_file().display()))
        })?;
        let services: Vec<String> = std::iter::once("loadgen")
            .chain(
                env.get("SERVICES")
                    .map_or("", String::as_str)
                    .split_whitespace(),
            )
            .map(str::to_string)
            .collect();
        let timeout = Duration::from_secs(args.stop_timeout);
        let recorded = |name: &str| std::fs::read(st.cmd_file(name)).ok();
        // The load first, then the balancer, then every switch node at once
        // (each drains for a few seconds at most), then the rest together.
        let stage = |name: &str| match name {
            "loadgen" => 0,
            super::balancer::SERVICE => 1,
            n if super::is_node(n) => 2,
            _ => 3,
        };
        for current in 0..=3 {
            let running: Vec<(&String, Vec<u32>)> = services
                .iter()
                .filter(|name| stage(name) == current)
                .filter_map(|name| {
                    let pids = process::pids_with_cmdline(&recorded(name)?);
                    (!pids.is_empty()).then_some((name, pids))
                })
                .collect();
            if running.is_empty() {
                continue;
            }
            let all: Vec<u32> = running.iter().flat_map(|(_, p)| p.clone()).collect();
            let left = process::stop(&all, timeout, || {});
            for (name, pids) in running {
                let still: Vec<u32> = pids.into_iter().filter(|p| left.contains(p)).collect();
                if still.is_empty() {
                    say(&format!("stopped {name}"));
                    let _ = std::fs::remove_file(st.pid_file(name));
                } else {
                    wrong.push(format!("{name} is still running: {still:?}"));
                }
            }
        }
        // A stray copy of any other recorded command line, too.
        for entry in std::fs::read_dir(st.run()).into_iter().flatten().flatten() {
            let path = entry.path();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().is_none_or(|e| e != "cmd") || services.iter().any(|s| s == name) {
                continue;
            }
            let pids = std::fs::read(&path)
                .map(|c| process::pids_with_cmdline(&c))
                .unwrap_or_default();
            if !pids.is_empty() && process::stop(&pids, timeout, || {}).is_empty() {
                say(&format!("stopped a stray {name}"));
            }
        }
        let pg = env.get("PG").cloned().unwrap_or_default();
        for key in ["SWITCH_DB_NAME", "BANK_DB_NAME"] {
            let Some(name) = env.get(key).filter(|n| !n.is_empty()) else {
                continue;
            };
            match super::drop_database(&pg, name) {
                Ok(()) => say(&format!("dropped database {name}")),
                Err(e) => wrong.push(e),
            }
            if key == "SWITCH_DB_NAME" {
                super::delete_exchange(super::events_exchange_of(name));
            }
        }
        if wrong.is_empty() {
            let _ = std::fs::remove_dir_all(st.run());
            let _ = std::fs::remove_file(st.env_file());
        }
    } else {
        say(&format!(
            "no deployment recorded in {}; nothing to stop",
            st.dir.display()
        ));
    }
    if !wrong.is_empty() {
        return Err(RigError::Start(wrong.join("; ")));
    }
    if args.purge {
        if st.dir.exists() {
            std::fs::remove_dir_all(&st.dir).map_err(|source| RigError::Io {
                what: format!("cannot remove {}", st.dir.display()),
                source,
            })?;
        }
        say(&format!("removed {}", st.dir.display()));
    } else if st.logs().is_dir() {
        say(&format!("logs kept in {}", st.logs().display()));
    }
    Ok(())
}
