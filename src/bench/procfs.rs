//! Reading `/proc`: the parsers are pure functions of the file's text (tested
//! on samples); the readers around them only open files. Nothing here keeps
//! state or computes per-saga figures (that is [`super::measure`]).

use std::path::Path;

/// What the bench needs of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub ppid: u32,
    /// User + system CPU of all its threads, in clock ticks.
    pub cpu_ticks: u64,
    /// When it started, in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest: state(3) ppid(4) … utime(14) stime(15) … starttime(22); index = field − 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        ppid: u32::try_from(num(4)?).ok()?,
        cpu_ticks: num(14)? + num(15)?,
        start_ticks: num(22)?,
    })
}

/// `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of a `status` file.
pub fn parse_ctxt(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

/// `VmRSS` of a `status` file, in bytes.
pub fn parse_rss_bytes(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The whole machine's CPU from `/proc/stat`'s first line, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BoxCpu {
    /// Everything but idle and iowait.
    pub busy: u64,
    pub total: u64,
}

pub fn parse_box(text: &str) -> Option<BoxCpu> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let total: u64 = v.iter().take(8).sum();
    Some(BoxCpu {
        busy: total - v[3] - v[4],
        total,
    })
}

/// Seconds since boot from `/proc/uptime`, as clock ticks.
pub fn parse_uptime_ticks(text: &str, clk_tck: u64) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((secs * clk_tck as f64) as u64)
}

// ---------------------------------------------------------------------------
// Readers
// ---------------------------------------------------------------------------

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as u64 } else { 100 }
}

pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn self_stat() -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Context switches of every thread of `pid` (`/proc/PID/status` alone counts the main thread).
pub fn ctxt_all_threads(pid: u32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|s| parse_ctxt(&s))
        .fold((0, 0), |(v, n), (tv, tn)| (v + tv, n + tn))
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    parse_rss_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

pub fn box_cpu() -> Option<BoxCpu> {
    parse_box(&std::fs::read_to_string("/proc/stat").ok()?)
}

pub fn uptime_ticks(clk_tck: u64) -> Option<u64> {
    parse_uptime_ticks(&std::fs::read_to_string("/proc/uptime").ok()?, clk_tck)
}

/// Pids whose `comm` is `name` (e.g. `beam.smp`, `redis-server`).
pub fn pids_by_comm(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
                .is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let text = "1234 (tokio (rt) w) S 77 1234 1234 0 -1 4194560 5000 0 0 0 \
                    250 120 0 0 20 0 9 0 987654 123456789 4000 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.ppid, 77);
        assert_eq!(s.cpu_ticks, 370);
        assert_eq!(s.start_ticks, 987654);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_context_switches_and_rss() {
        let text = "Name:\tupi-switch\nVmRSS:\t  163840 kB\nvoluntary_ctxt_switches:\t120\n\
                    nonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_ctxt(text), (120, 7));
        assert_eq!(parse_rss_bytes(text), Some(163840 * 1024));
        assert_eq!(parse_ctxt("Name: x\n"), (0, 0));
    }

    #[test]
    fn the_box_is_busy_when_not_idle_nor_waiting() {
        let text = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(
            parse_box(text),
            Some(BoxCpu {
                busy: 160,
                total: 1180
            })
        );
        assert_eq!(parse_uptime_ticks("12.34 20.00\n", 100), Some(1234));
    }
}
