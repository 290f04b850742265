//! Services as child processes: start one from its exact argv and environment,
//! each in a process group of its own (pid = group id, so `kill -- -PID`
//! reaches it and anything it started); find live copies of a command line in
//! `/proc`; stop a group with SIGTERM, then SIGKILL, with a bound on the wait.
//!
//! Attached services also get `PR_SET_PDEATHSIG`: if the rig's process dies
//! without tearing down (even `kill -9`), the kernel kills them. Detached
//! services get a session of their own (`setsid`) and outlive the rig.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The flags `bin serve` takes (`--daily-count-limit`, …): a rig may run an
/// earlier build (`--bin`) that lacks some. Asks `bin serve --help` once;
/// none when it cannot be asked.
pub fn serve_flags(bin: &Path) -> std::collections::BTreeSet<String> {
    Command::new(bin)
        .args(["serve", "--help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .filter(|word| word.starts_with("--"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// How a service's life is tied to the rig that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Dies with the rig, however the rig ends.
    Attached,
    /// Outlives the rig; stopped by `rig down` (or a fault script).
    Detached,
}

/// A service's command line and environment, exactly as started.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// `argv[0]` is the binary's path.
    pub argv: Vec<String>,
    /// `KEY=value`; the only environment a detached service gets. An attached
    /// one inherits the rig's environment with these added.
    pub env: Vec<String>,
}

impl Service {
    /// Starts it, stdout and stderr appended to `log` after a header line.
    pub fn spawn(&self, mode: Mode, log: &Path, prog: &str) -> std::io::Result<Child> {
        let mut file = File::options().create(true).append(true).open(log)?;
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        writeln!(file, "=== {now} started by {prog}")?;
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty command line"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file));
        if mode == Mode::Detached {
            cmd.env_clear();
        }
        for kv in &self.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        match mode {
            // SAFETY: setsid is async-signal-safe, as pre_exec requires.
            Mode::Detached => unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            },
            Mode::Attached => {
                cmd.process_group(0);
                die_with_parent(&mut cmd);
            }
        }
        cmd.spawn()
    }
}

/// The child gets SIGKILL when this process dies, even by `kill -9`
/// (`PR_SET_PDEATHSIG`; tied to the spawning thread, so spawn from a thread
/// that lives as long as the process: the main thread or the runtime's).
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// True when `pid` is a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Live processes whose `/proc/PID/cmdline` is exactly `cmdline` (NUL-separated).
pub fn pids_with_cmdline(cmdline: &[u8]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == cmdline) && alive(*pid)
        })
        .collect()
}

/// Sends `signal` to the process group led by `pid`, else to `pid` alone.
pub fn signal(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a positive pid and its negation; no memory is involved.
    unsafe {
        if libc::kill(-pid, signal) != 0 {
            libc::kill(pid, signal);
        }
    }
}

/// SIGTERM to each group, then SIGKILL to what is left after `timeout`; waits
/// (at most `timeout` again) until they are gone. `reap` is called while
/// waiting so that children of this process do not linger as zombies.
/// Returns the pids still alive at the end.
pub fn stop(pids: &[u32], timeout: Duration, mut reap: impl FnMut()) -> Vec<u32> {
    let wait_gone = |deadline: Instant, reap: &mut dyn FnMut()| loop {
        reap();
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for pid in pids {
        signal(*pid, libc::SIGTERM);
    }
    let left = wait_gone(Instant::now() + timeout, &mut reap);
    if left.is_empty() {
        return left;
    }
    for pid in &left {
        signal(*pid, libc::SIGKILL);
    }
    wait_gone(
        Instant::now() + timeout.max(Duration::from_secs(5)),
        &mut reap,
    )
}

/// The most telling line of a log: its last `error:` line, else its last line.
pub fn last_error(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("=== "))
        .collect();
    lines
        .iter()
        .rev()
        .find_map(|l| l.split_once("error: ").map(|(_, rest)| rest.to_string()))
        .or_else(|| lines.last().map(|l| l.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_line_is_preferred_over_the_last() {
        let log = "=== 2026 started by x\nstarting\nupi-switch: error: cannot listen on 1\nbye\n";
        assert_eq!(last_error(log).as_deref(), Some("cannot listen on 1"));
        assert_eq!(last_error("a\nb\n").as_deref(), Some("b"));
        assert_eq!(last_error("=== header only\n"), None);
    }

    #[test]
    fn a_started_group_is_found_by_its_command_line_and_stopped() {
        let dir = std::env::temp_dir().join(format!("rig-proc-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // `sleep` adds up its arguments: a random fraction makes this command
        // line ours alone, and sleep does not fork (a shell would, briefly
        // showing its own command line twice).
        let token = format!("0.{}", uuid::Uuid::new_v4().as_u128() % 1_000_000_000);
        let service = Service {
            name: "sleeper".into(),
            argv: vec!["/bin/sleep".into(), "30".into(), token],
            env: vec!["PATH=/usr/bin:/bin".into()],
        };
        let log = dir.join("sleeper.log");
        let mut child = service.spawn(Mode::Detached, &log, "test").unwrap();
        let pid = child.id();
        let cmdline = crate::rig::state::nul_joined(&service.argv);
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids_with_cmdline(&cmdline).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pids_with_cmdline(&cmdline), [pid]);
        let left = stop(&[pid], Duration::from_secs(5), || {
            let _ = child.try_wait();
        });
        assert!(left.is_empty());
        assert!(!alive(pid));
        assert!(std::fs::read_to_string(&log).unwrap().starts_with("=== "));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
