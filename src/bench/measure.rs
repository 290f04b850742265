//! The bench's arithmetic, pure: which process counts for which component,
//! CPU deltas between two samples (short-lived Postgres backends included),
//! figures per terminal saga, and the results table. No `/proc`, no clock:
//! samples come in as values.

use serde::Serialize;
use std::collections::BTreeMap;

/// What CPU is counted for. Each process belongs to at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// The switch processes (every node), all their threads.
    Switch,
    /// Postgres backends connected to the switch's database.
    SwitchBackends,
    /// RabbitMQ (`beam.smp`).
    Rabbitmq,
    /// Redis (`redis-server`).
    Redis,
    /// The bank simulators.
    Banks,
    /// Postgres backends connected to the banks' database.
    BankBackends,
    /// Postgres' own processes: postmaster, walwriter, checkpointer, bgwriter, launchers.
    PgShared,
    /// The load generator's process.
    Loadgen,
    /// The bench itself (samplers, bookkeeping).
    Bench,
    /// The load balancer in front of several switch nodes (HAProxy); a row
    /// of its own, only when there is one, and not in the switch-side sum.
    Haproxy,
}

impl Component {
    pub const ALL: [Component; 10] = [
        Component::Switch,
        Component::SwitchBackends,
        Component::Rabbitmq,
        Component::Redis,
        Component::Banks,
        Component::BankBackends,
        Component::PgShared,
        Component::Loadgen,
        Component::Bench,
        Component::Haproxy,
    ];
    /// What the 200 µs target covers.
    pub const SWITCH_SIDE: [Component; 4] = [
        Component::Switch,
        Component::SwitchBackends,
        Component::Rabbitmq,
        Component::Redis,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Component::Switch => "switch process",
            Component::SwitchBackends => "switch's pg backends",
            Component::Rabbitmq => "rabbitmq (beam.smp)",
            Component::Redis => "redis",
            Component::Banks => "bank simulators",
            Component::BankBackends => "banks' pg backends",
            Component::PgShared => "pg shared (wal, ckpt…)",
            Component::Loadgen => "loadgen",
            Component::Bench => "bench (sampling)",
            Component::Haproxy => "haproxy (balancer)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Component::Switch => "switch",
            Component::SwitchBackends => "switch_pg_backends",
            Component::Rabbitmq => "rabbitmq",
            Component::Redis => "redis",
            Component::Banks => "banks",
            Component::BankBackends => "banks_pg_backends",
            Component::PgShared => "pg_shared",
            Component::Loadgen => "loadgen",
            Component::Bench => "bench",
            Component::Haproxy => "haproxy",
        }
    }
}

/// Which component a `pg_stat_activity` row belongs to, by its database:
/// the switch's, the banks', none (Postgres' own background processes), or
/// another database (not ours: not counted).
pub fn backend_component(
    datname: Option<&str>,
    switch_db: &str,
    bank_db: &str,
) -> Option<Component> {
    match datname {
        Some(d) if d == switch_db => Some(Component::SwitchBackends),
        Some(d) if d == bank_db => Some(Component::BankBackends),
        Some(_) => None,
        None => Some(Component::PgShared),
    }
}

/// CPU of processes that come and go during a window (Postgres backends):
/// each pid's ticks from its first sample (or from zero, if it started
/// inside the window) to its last.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    /// When the window opened, in clock ticks after boot.
    window_start: u64,
    /// pid → (component, ticks at its baseline, ticks at its last sample).
    seen: BTreeMap<u32, (Component, u64, u64)>,
}

impl Tracker {
    pub fn new(window_start_ticks: u64) -> Tracker {
        Tracker {
            window_start: window_start_ticks,
            seen: BTreeMap::new(),
        }
    }

    /// One sample of a process: its component, CPU ticks and start time.
    pub fn observe(&mut self, pid: u32, component: Component, cpu_ticks: u64, start_ticks: u64) {
        let baseline = if start_ticks >= self.window_start {
            0
        } else {
            cpu_ticks
        };
        let entry = self
            .seen
            .entry(pid)
            .or_insert((component, baseline, cpu_ticks));
        // A reused pid (a new process) has a lower count: start it afresh.
        if cpu_ticks < entry.2 {
            *entry = (component, baseline, cpu_ticks);
        }
        entry.2 = cpu_ticks;
    }

    /// Ticks per component over the window.
    pub fn totals(&self) -> BTreeMap<Component, u64> {
        let mut out = BTreeMap::new();
        for (component, base, last) in self.seen.values() {
            *out.entry(*component).or_default() += last.saturating_sub(*base);
        }
        out
    }

    pub fn processes(&self) -> usize {
        self.seen.len()
    }
}

/// Microseconds of CPU per saga for `ticks` over `sagas`.
pub fn us_per_saga(ticks: u64, clk_tck: u64, sagas: u64) -> f64 {
    if sagas == 0 || clk_tck == 0 {
        return 0.0;
    }
    ticks as f64 * 1_000_000.0 / clk_tck as f64 / sagas as f64
}

/// RSS per in-flight saga: `(loaded − idle) / in_flight`, in bytes.
pub fn rss_per_saga(idle_bytes: u64, loaded_bytes: u64, in_flight: u64) -> Option<f64> {
    (in_flight > 0).then(|| (loaded_bytes as f64 - idle_bytes as f64) / in_flight as f64)
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// One measured rate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phase {
    pub rate_asked: f64,
    pub duration_s: f64,
    pub sends_asked: u64,
    pub sends_out: u64,
    /// Every send went out (none left waiting for a concurrency slot).
    pub every_send_out: bool,
    pub accepted: u64,
    pub send_errors: u64,
    /// Transactions of this phase terminal in the switch's database.
    pub terminal: u64,
    pub statuses: BTreeMap<String, u64>,
    /// The statuses of each payment type (`P2P`, `P2M`, `REFUND`, `COLLECT`).
    pub by_type: BTreeMap<String, BTreeMap<String, u64>>,
    /// terminal / (last updated_at − first created_at).
    pub terminal_rate: f64,
    /// From the intended send time (no coordinated omission), by the load generator.
    pub accept_ms: Percentiles,
    /// From the switch's database: `transactions.created_at` → `updated_at` of terminal rows.
    pub accept_to_terminal_ms: Percentiles,
    /// Seconds from the first send to the last saga's end (the CPU window).
    pub window_s: f64,
    pub cpu_us_per_saga: BTreeMap<&'static str, f64>,
    /// Switch + its backends + RabbitMQ + Redis.
    pub switch_side_us_per_saga: f64,
    /// Busy CPU of the whole machine (all processes, not only the rig's).
    pub box_us_per_saga: f64,
    /// Busy share of the machine over the window, in cores.
    pub box_cores_busy: f64,
    pub switch_voluntary_ctxt_per_saga: f64,
    pub switch_involuntary_ctxt_per_saga: f64,
    /// Postgres processes seen by the sampler in the window.
    pub pg_processes_seen: usize,
    /// Every saga of the phase ended before `--drain-timeout` (else the
    /// figures cover those that did, over the window until the limit).
    pub drained: bool,
}

/// The RSS phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RssPhase {
    pub rate: f64,
    pub bank_latency_ms: u64,
    pub idle_rss_bytes: u64,
    pub loaded_rss_bytes: u64,
    pub in_flight: u64,
    pub bytes_per_in_flight_saga: Option<f64>,
}

/// Targets of issue 10, shown beside the figures.
pub const SWITCH_SIDE_TARGET_US: f64 = 200.0;
pub const LOADGEN_TARGET_US: f64 = 50.0;
pub const RSS_TARGET_BYTES: f64 = 2048.0;

/// The results as a plain table: one column per rate.
pub fn render(phases: &[Phase], rss: Option<&RssPhase>) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&Phase) -> String| {
        rows.push((label.to_string(), phases.iter().map(f).collect()));
    };
    row("rate asked (tx/s)", &|p| format!("{}", p.rate_asked));
    row("sends out / asked", &|p| {
        let mark = if p.every_send_out { "" } else { " !" };
        format!("{}/{}{mark}", p.sends_out, p.sends_asked)
    });
    row("terminal sagas", &|p| {
        let mark = if p.drained { "" } else { " !" };
        format!("{}{mark}", p.terminal)
    });
    row("terminal tx/s", &|p| format!("{:.0}", p.terminal_rate));
    // Each type's statuses when a phase sent more than P2P.
    let mut kinds: Vec<&String> = phases.iter().flat_map(|p| p.by_type.keys()).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.iter().any(|k| *k != "P2P") {
        for kind in kinds {
            row(&format!("  {kind} ok/failed/rev/pend"), &|p| {
                let n = |s: &str| {
                    p.by_type
                        .get(kind.as_str())
                        .and_then(|m| m.get(s))
                        .copied()
                        .unwrap_or(0)
                };
                format!(
                    "{}/{}/{}/{}",
                    n("SUCCESS"),
                    n("FAILED"),
                    n("REVERSED"),
                    n("PENDING")
                )
            });
        }
    }
    row("accept p50/p90 ms", &|p| {
        format!("{:.1}/{:.1}", p.accept_ms.p50, p.accept_ms.p90)
    });
    row("accept p99/max ms", &|p| {
        format!("{:.1}/{:.1}", p.accept_ms.p99, p.accept_ms.max)
    });
    row("acc→term p50/p99 ms", &|p| {
        format!(
            "{:.1}/{:.1}",
            p.accept_to_terminal_ms.p50, p.accept_to_terminal_ms.p99
        )
    });
    row("CPU µs per saga", &|_| String::new());
    // The balancer's row only when a phase ran with one.
    let balanced = phases
        .iter()
        .any(|p| p.cpu_us_per_saga.contains_key(Component::Haproxy.key()));
    for c in Component::ALL {
        if c == Component::Haproxy && !balanced {
            continue;
        }
        row(&format!("  {}", c.label()), &|p| {
            format!(
                "{:.0}",
                p.cpu_us_per_saga.get(c.key()).copied().unwrap_or(0.0)
            )
        });
        if c == Component::Redis {
            row(
                &format!("  = switch-side (≤ {SWITCH_SIDE_TARGET_US:.0})"),
                &|p| format!("{:.0}", p.switch_side_us_per_saga),
            );
        }
    }
    row("  whole box (busy)", &|p| {
        format!("{:.0}", p.box_us_per_saga)
    });
    row("box busy (cores)", &|p| format!("{:.2}", p.box_cores_busy));
    row("switch ctx sw/saga vol/inv", &|p| {
        format!(
            "{:.2}/{:.2}",
            p.switch_voluntary_ctxt_per_saga, p.switch_involuntary_ctxt_per_saga
        )
    });
    let width = rows
        .iter()
        .flat_map(|(_, v)| v.iter().map(|s| s.chars().count()))
        .max()
        .unwrap_or(0)
        .max(8);
    let mut out: Vec<String> = rows
        .iter()
        .map(|(label, values)| {
            let cells: Vec<String> = values.iter().map(|v| format!("{v:>width$}")).collect();
            format!("{label:<30}{}", cells.join("  "))
        })
        .collect();
    if phases.iter().any(|p| !p.every_send_out || !p.drained) {
        out.push(
            "  ! = some sends never went out (no free slot) / some sagas had not ended at the drain limit"
                .into(),
        );
    }
    if let Some(r) = rss {
        out.push(match r.bytes_per_in_flight_saga {
            Some(b) => format!(
                "RSS per in-flight saga        {b:.0} bytes (target ≤ {RSS_TARGET_BYTES:.0}): {} in flight at {} tx/s \
                 with banks at +{} ms; RSS {:.1} MiB idle, {:.1} MiB loaded",
                r.in_flight,
                r.rate,
                r.bank_latency_ms,
                r.idle_rss_bytes as f64 / 1048576.0,
                r.loaded_rss_bytes as f64 / 1048576.0
            ),
            None => "RSS per in-flight saga        not measured (no saga was seen in flight)".into(),
        });
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_told_apart_by_database() {
        assert_eq!(
            backend_component(Some("sw"), "sw", "bk"),
            Some(Component::SwitchBackends)
        );
        assert_eq!(
            backend_component(Some("bk"), "sw", "bk"),
            Some(Component::BankBackends)
        );
        assert_eq!(
            backend_component(None, "sw", "bk"),
            Some(Component::PgShared)
        );
        assert_eq!(backend_component(Some("other"), "sw", "bk"), None);
    }

    #[test]
    fn a_backend_born_in_the_window_counts_from_zero() {
        let mut t = Tracker::new(1_000);
        // Old backend: 500 ticks before the window, 530 at the end → 30.
        t.observe(10, Component::SwitchBackends, 500, 10);
        t.observe(10, Component::SwitchBackends, 530, 10);
        // Born inside the window, first seen at 7 ticks, last at 12 → 12.
        t.observe(11, Component::SwitchBackends, 7, 1_050);
        t.observe(11, Component::SwitchBackends, 12, 1_050);
        // Born inside, seen once → all of it.
        t.observe(12, Component::BankBackends, 4, 1_100);
        // The pid reused by a newer process: its lower count starts afresh.
        t.observe(12, Component::BankBackends, 1, 1_200);
        let totals = t.totals();
        assert_eq!(totals[&Component::SwitchBackends], 42);
        assert_eq!(totals[&Component::BankBackends], 1);
        assert_eq!(t.processes(), 3);
    }

    #[test]
    fn per_saga_figures() {
        // 250 ticks at 100 Hz = 2.5 s of CPU over 10,000 sagas = 250 µs each.
        assert_eq!(us_per_saga(250, 100, 10_000), 250.0);
        assert_eq!(us_per_saga(250, 100, 0), 0.0);
        assert_eq!(
            rss_per_saga(100 << 20, (100 << 20) + 2_048_000, 1000),
            Some(2048.0)
        );
        assert_eq!(rss_per_saga(1, 2, 0), None);
    }

    #[test]
    fn the_table_has_a_column_per_rate_and_a_row_per_component() {
        let mut p = Phase {
            rate_asked: 300.0,
            sends_asked: 10,
            sends_out: 9,
            terminal: 7,
            ..Phase::default()
        };
        p.cpu_us_per_saga.insert("switch", 123.4);
        let text = render(&[p.clone(), p.clone()], None);
        assert!(text.contains("9/10 !"), "{text}");
        assert!(text.contains("7 !"), "not drained: {text}");
        for c in Component::ALL {
            // No balancer, no balancer row.
            let wanted = c != Component::Haproxy;
            assert_eq!(text.contains(c.label()), wanted, "{}: {text}", c.label());
        }
        let mut balanced = p.clone();
        balanced.cpu_us_per_saga.insert("haproxy", 31.0);
        let text2 = render(&[p.clone(), balanced], None);
        let row = text2.lines().find(|l| l.contains("haproxy")).unwrap();
        assert!(row.ends_with("31"), "{row}");
        let switch_row = text.lines().find(|l| l.contains("switch process")).unwrap();
        assert_eq!(switch_row.matches("123").count(), 2, "{switch_row}");
    }
}
