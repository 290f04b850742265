//! Taking CPU samples of the rig's processes: a snapshot of the long-lived
//! ones (every switch node, the balancer if any, banks, RabbitMQ, Redis, this
//! process, the whole box) at the
//! ends of a window, and a background sampler of Postgres processes, which
//! asks `pg_stat_activity` every [`EVERY`] which backend serves which
//! database, so that backends that come and go inside the window are counted
//! ([`Tracker`]). The sums per saga are [`super::measure`]'s.

use super::measure::{Component, Tracker, backend_component};
use super::procfs::{self, BoxCpu};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// How often the Postgres processes are sampled.
pub const EVERY: Duration = Duration::from_millis(100);
/// Longest wait for one `pg_stat_activity` read.
const QUERY_LIMIT: Duration = Duration::from_secs(5);

/// The rig's long-lived processes.
#[derive(Debug, Clone)]
pub struct Pids {
    /// Every switch node (one, or several behind the balancer).
    pub switch: Vec<u32>,
    pub banks: Vec<u32>,
    /// HAProxy in front of several nodes.
    pub haproxy: Option<u32>,
}

/// CPU ticks of the long-lived processes at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub ticks: BTreeMap<Component, u64>,
    pub box_cpu: BoxCpu,
    /// The switch's voluntary and involuntary context switches, all threads
    /// of every node.
    pub switch_ctxt: (u64, u64),
}

impl Snapshot {
    pub fn take(pids: &Pids) -> Snapshot {
        let ticks_of = |pids: &[u32]| -> u64 {
            pids.iter()
                .filter_map(|p| procfs::stat(*p))
                .map(|s| s.cpu_ticks)
                .sum()
        };
        let mut ticks = BTreeMap::new();
        ticks.insert(Component::Switch, ticks_of(&pids.switch));
        if let Some(pid) = pids.haproxy {
            ticks.insert(Component::Haproxy, ticks_of(&[pid]));
        }
        ticks.insert(Component::Banks, ticks_of(&pids.banks));
        ticks.insert(
            Component::Rabbitmq,
            ticks_of(&procfs::pids_by_comm("beam.smp")),
        );
        ticks.insert(
            Component::Redis,
            ticks_of(&procfs::pids_by_comm("redis-server")),
        );
        ticks.insert(
            Component::Bench,
            procfs::self_stat().map_or(0, |s| s.cpu_ticks),
        );
        Snapshot {
            ticks,
            box_cpu: procfs::box_cpu().unwrap_or_default(),
            switch_ctxt: pids
                .switch
                .iter()
                .map(|p| procfs::ctxt_all_threads(*p))
                .fold((0, 0), |(v, i), (dv, di)| (v + dv, i + di)),
        }
    }

    /// Ticks per component from `self` to `later`.
    pub fn delta(&self, later: &Snapshot) -> BTreeMap<Component, u64> {
        later
            .ticks
            .iter()
            .map(|(c, t)| {
                (
                    *c,
                    t.saturating_sub(self.ticks.get(c).copied().unwrap_or(0)),
                )
            })
            .collect()
    }
}

/// Samples Postgres processes in the background until stopped.
pub struct PgSampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Tracker>,
}

impl PgSampler {
    /// Connects to `admin_url` (a database that is not the rig's, so this
    /// connection's backend counts for nobody), takes a first sample, and
    /// goes on sampling in the background.
    pub async fn start(
        admin_url: &str,
        switch_db: &str,
        bank_db: &str,
        window_start_ticks: u64,
    ) -> Result<PgSampler, String> {
        let db = crate::adapters::pg::DbUrl::parse(admin_url).map_err(|e| e.to_string())?;
        let client = db.connect().await.map_err(|e| e.to_string())?;
        let (switch_db, bank_db) = (switch_db.to_string(), bank_db.to_string());
        let mut tracker = Tracker::new(window_start_ticks);
        sample(&client, &switch_db, &bank_db, &mut tracker).await?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = stopped.changed() => {}
                }
                // A failed read loses one sample, not the window.
                let _ = sample(&client, &switch_db, &bank_db, &mut tracker).await;
                if *stopped.borrow() {
                    return tracker;
                }
            }
        });
        Ok(PgSampler { stop, task })
    }

    /// Takes a last sample and returns what was seen.
    pub async fn finish(self) -> Tracker {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// One round: every backend of `pg_stat_activity` (and the postmaster, their parent).
async fn sample(
    client: &tokio_postgres::Client,
    switch_db: &str,
    bank_db: &str,
    tracker: &mut Tracker,
) -> Result<(), String> {
    let rows = tokio::time::timeout(
        QUERY_LIMIT,
        client.query("SELECT pid, datname FROM pg_stat_activity", &[]),
    )
    .await
    .map_err(|_| "pg_stat_activity did not answer in time".to_string())?
    .map_err(|e| crate::adapters::pg::pg_message(&e))?;
    let mut postmaster = None;
    for row in rows {
        let pid: Option<i32> = row.get(0);
        let datname: Option<String> = row.get(1);
        let Some(pid) = pid.and_then(|p| u32::try_from(p).ok()) else {
            continue;
        };
        let Some(stat) = procfs::stat(pid) else {
            continue;
        };
        postmaster = postmaster.or(Some(stat.ppid));
        if let Some(component) = backend_component(datname.as_deref(), switch_db, bank_db) {
            tracker.observe(pid, component, stat.cpu_ticks, stat.start_ticks);
        }
    }
    if let Some(pid) = postmaster
        && let Some(stat) = procfs::stat(pid)
    {
        tracker.observe(pid, Component::PgShared, stat.cpu_ticks, stat.start_ticks);
    }
    Ok(())
}
