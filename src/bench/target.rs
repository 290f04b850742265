//! What a bench runs against: the rig it started, or a running deployment
//! recorded in a state directory (`rig up --dir`, `chaos/up.sh`): the
//! switch's URL (the balancer's, with several nodes) and each node's, the
//! databases, the pids of the switch nodes, the balancer and the banks, every
//! bank endpoint, and the ordinary VPAs to pay between.

use super::BenchError;
use super::sampler::Pids;
use crate::rig::Rig;
use crate::rig::layout::{self, BANKS};
use crate::rig::state::StateDir;
use std::path::PathBuf;

/// What the bench runs against.
pub struct Target {
    /// Where the load goes: the one node, or the balancer.
    pub switch_url: String,
    /// Each node's own URL (idleness and saga counts are per node).
    pub node_urls: Vec<String>,
    pub switch_db: String,
    pub switch_db_name: String,
    pub bank_db_name: String,
    /// `postgres://…/postgres`: the sampler's connection.
    pub admin_db: String,
    pub pids: Pids,
    pub bank_endpoints: Vec<String>,
    pub vpas_file: PathBuf,
    /// The merchants' VPAs as a `--merchants` file (empty when the deployment has none).
    pub merchants_file: PathBuf,
    pub bin: String,
    /// The deployment's client key (`client.json`): loadgen signs with it.
    pub key_file: Option<PathBuf>,
}

pub fn from_rig(rig: &Rig, dir: &std::path::Path) -> Result<Target, BenchError> {
    let pid = |name: &str| {
        rig.pid(name)
            .ok_or_else(|| BenchError::Run(format!("the rig has no {name}")))
    };
    let tsv = std::fs::read_to_string(dir.join("vpas.tsv"))
        .map_err(|e| BenchError::Run(format!("vpas.tsv: {e}")))?;
    let switch = rig.switch_pids();
    if switch.len() != rig.node_urls.len() {
        return Err(BenchError::Run("the rig has no switch".into()));
    }
    let haproxy = match &rig.haproxy {
        Some(_) => Some(pid(crate::rig::balancer::SERVICE)?),
        None => None,
    };
    Ok(Target {
        switch_url: rig.switch_url.clone(),
        node_urls: rig.node_urls.clone(),
        switch_db: rig.switch_db.clone(),
        switch_db_name: rig.switch_db_name.clone(),
        bank_db_name: rig.bank_db_name.clone(),
        admin_db: format!("{}/postgres", rig.pg),
        pids: Pids {
            switch,
            banks: vec![pid("bank-hdfc")?, pid("bank-icici")?],
            haproxy,
        },
        bank_endpoints: rig.banks.iter().flat_map(|b| b.urls.clone()).collect(),
        vpas_file: ordinary_vpas_file(&tsv, dir)?,
        merchants_file: merchants_file(&tsv, dir)?,
        bin: rig.cfg.bin.display().to_string(),
        key_file: rig
            .client_key
            .as_ref()
            .map(|_| rig.cfg.dir.join("client.json")),
    })
}

/// A running deployment recorded by `rig up --dir` (chaos/up.sh).
pub fn from_state(state: &std::path::Path, dir: &std::path::Path) -> Result<Target, BenchError> {
    let st = StateDir::new(state);
    let env = st.read_env().map_err(|e| {
        BenchError::Usage(format!(
            "--target {}: no deployment.env ({e})",
            st.dir.display()
        ))
    })?;
    let var = |k: &str| {
        env.get(k)
            .cloned()
            .ok_or_else(|| BenchError::Usage(format!("{} has no {k}", st.env_file().display())))
    };
    let pid = |name: &str| {
        st.pid(name)
            .filter(|p| crate::rig::process::alive(*p))
            .ok_or_else(|| {
                BenchError::Usage(format!("{name} of {} is not running", st.dir.display()))
            })
    };
    let mut banks = Vec::new();
    let mut endpoints = Vec::new();
    for bank in BANKS {
        banks.push(pid(&format!("bank-{}", bank.psp))?);
        endpoints.extend(
            var(&format!("BANK_{}_URLS", bank.code))?
                .split_whitespace()
                .map(str::to_string),
        );
    }
    // A deployment of an earlier build names no nodes: its one switch.
    let switch_url = var("SWITCH_URL")?;
    let names = env
        .get("SWITCH_NODE_NAMES")
        .cloned()
        .unwrap_or_else(|| "switch".into());
    let node_urls: Vec<String> = match env.get("SWITCH_NODE_URLS") {
        Some(urls) => urls.split_whitespace().map(str::to_string).collect(),
        None => vec![switch_url.clone()],
    };
    let switch = names
        .split_whitespace()
        .map(pid)
        .collect::<Result<Vec<u32>, _>>()?;
    if switch.is_empty() || switch.len() != node_urls.len() {
        return Err(BenchError::Usage(format!(
            "{} names {} switch nodes and {} node URLs",
            st.env_file().display(),
            switch.len(),
            node_urls.len()
        )));
    }
    let haproxy = match env.get("BALANCER").filter(|b| !b.is_empty()) {
        Some(name) => Some(pid(name)?),
        None => None,
    };
    let tsv = std::fs::read_to_string(st.dir.join("vpas.tsv"))
        .map_err(|e| BenchError::Usage(format!("{}/vpas.tsv: {e}", st.dir.display())))?;
    Ok(Target {
        switch_url,
        node_urls,
        switch_db: var("SWITCH_DB")?,
        switch_db_name: var("SWITCH_DB_NAME")?,
        bank_db_name: var("BANK_DB_NAME")?,
        admin_db: format!("{}/postgres", var("PG")?),
        pids: Pids {
            switch,
            banks,
            haproxy,
        },
        bank_endpoints: endpoints,
        vpas_file: ordinary_vpas_file(&tsv, dir)?,
        merchants_file: merchants_file(&tsv, dir)?,
        bin: var("BIN")?,
        key_file: env
            .get("CLIENT_KEY_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from),
    })
}

/// The merchants' VPAs of a `vpas.tsv` as a `--merchants` file.
fn merchants_file(tsv: &str, dir: &std::path::Path) -> Result<PathBuf, BenchError> {
    let merchants: String = tsv
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.len() == 5 && cols[4] == "merchant").then(|| format!("{}\n", cols[0]))
        })
        .collect();
    let path = dir.join("bench-merchants.txt");
    std::fs::write(&path, merchants)
        .map_err(|e| BenchError::Run(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// The ordinary VPAs (no frozen or poor account: every saga moves money) as a `--vpas` file.
fn ordinary_vpas_file(tsv: &str, dir: &std::path::Path) -> Result<PathBuf, BenchError> {
    let vpas = layout::ordinary_vpas(tsv);
    if vpas.len() < 2 {
        return Err(BenchError::Usage(
            "the deployment has fewer than two ordinary VPAs".into(),
        ));
    }
    let path = dir.join("bench-vpas.txt");
    std::fs::write(&path, vpas.join("\n") + "\n")
        .map_err(|e| BenchError::Run(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}
