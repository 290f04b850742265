//! The load balancer of a rig with several switch nodes: HAProxy (Debian
//! package `haproxy`), run in the foreground (`-db`) as one more service of
//! the rig, from a configuration file written into the state directory. Pure
//! apart from looking for the binary: the configuration is a function of the
//! addresses.
//!
//! What the configuration promises (the same as `deploy/haproxy/haproxy.cfg`
//! of the compose deployment):
//! - round robin over the nodes; a node leaves the rotation after two failed
//!   `GET /readyz` checks 500 ms apart (a draining node answers 503, a killed
//!   one refuses connections) and comes back after one good check;
//! - retries (2, each on another node: `option redispatch 1`) only when the
//!   request could not be sent (`conn-failure`) or the connection closed
//!   before a single byte of an answer came back (`empty-response`: the node
//!   died holding the request). Never after a node answered anything. A
//!   replayed `POST /v1/transactions` is safe: it carries the same
//!   Idempotency-Key, so the switch either finds the payment the first send
//!   created or creates it once; admin `PUT`s are idempotent by nature. A
//!   signed call retried after `empty-response` may meet the nonce the dead
//!   node had already used up: `401 REPLAYED_NONCE`, and the client signs
//!   again (the project's tools do, once) with the same key.
//!   Answers such as 503 `SWITCH_DRAINING` go back to the client, which
//!   retries (Retry-After) like any 503;
//! - client and server timeouts of 40 s, above the longest `?wait=` (30 s)
//!   and the event stream's heartbeat (15 s).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The service's name in a rig (`run/haproxy.*`, `logs/haproxy.log`).
pub const SERVICE: &str = "haproxy";
/// Where HAProxy is looked for besides `PATH` (Debian installs it in /usr/sbin,
/// which is not on every user's `PATH`).
const SBIN: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// The `haproxy` binary on `PATH` or in an sbin directory.
pub fn find_haproxy() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join("haproxy"))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The message of a rig asked for several nodes on a machine without HAProxy.
pub fn missing_message(nodes: usize) -> String {
    format!(
        "--nodes {nodes} puts HAProxy in front of the switch nodes, and no `haproxy` binary was \
         found on PATH or in {}: install it (Debian/Ubuntu: apt-get install haproxy)",
        SBIN.join(", ")
    )
}

/// The command line of the balancer: foreground, one process, this config.
pub fn argv(bin: &Path, cfg: &Path) -> Vec<String> {
    vec![
        bin.display().to_string(),
        "-db".into(),
        "-f".into(),
        cfg.display().to_string(),
    ]
}

/// Most connections the balancer takes at once (clients and nodes together
/// need two descriptors each).
pub const MAX_CONN: u64 = 10_000;

/// [`MAX_CONN`], or less if this process's hard limit of open files (which
/// the balancer inherits, and may raise its soft limit up to) is too low for
/// it: HAProxy refuses to start when it cannot get a descriptor per connection end.
pub fn max_conn() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given; nothing else.
    let hard = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_max
    } else {
        1024
    };
    MAX_CONN.min(hard.saturating_sub(64) / 2).max(64)
}

/// HAProxy's configuration: `listen` in front of `nodes` (name, address),
/// at most `maxconn` connections at once.
pub fn config(
    listen: SocketAddr,
    nodes: &[(String, SocketAddr)],
    maxconn: u64,
    written_by: &str,
) -> String {
    let mut out = format!(
        "# HAProxy in front of the switch nodes of one rig deployment, written by {written_by}.
# Round robin; a node leaves the rotation after 2 failed GET /readyz checks
# 500 ms apart (draining: 503; killed: connection refused) and is back after 1.
# Retries (2, each on another node) only for requests that could not be sent
# or got no byte of an answer (the node died holding them): a replayed POST
# /v1/transactions carries the same Idempotency-Key, so it is safe.
global
    log stderr format raw local0
    # From the file descriptor limit: two per connection.
    maxconn {maxconn}

defaults
    mode http
    log global
    option httplog
    # Only errors, retries and redispatches are logged (not every request).
    option dontlog-normal
    timeout connect 2s
    # Above the longest ?wait= long poll (30 s) and the SSE heartbeat (15 s).
    timeout client 40s
    timeout server 40s
    timeout tunnel 1h
    timeout http-request 10s
    timeout http-keep-alive 30s
    timeout queue 10s
    # Connect 500 ms (min of connect and inter), then 3 s for the answer:
    # /readyz under load must not look like a dead node.
    timeout check 3s
    retries 2
    retry-on conn-failure empty-response
    # Every retry goes to another node.
    option redispatch 1

frontend switch
    bind {listen}
    default_backend switch_nodes

backend switch_nodes
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 1
"
    );
    for (name, addr) in nodes {
        out.push_str(&format!("    server {name} {addr}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_every_node_and_checks_readyz() {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let nodes = vec![
            ("switch".to_string(), addr(9001)),
            ("switch-2".to_string(), addr(9002)),
        ];
        let text = config(addr(8080), &nodes, 5000, "test");
        assert!(text.contains("    bind 127.0.0.1:8080\n"), "{text}");
        assert!(text.contains("    maxconn 5000\n"), "{text}");
        assert!((64..=MAX_CONN).contains(&max_conn()));
        assert!(
            text.contains("    server switch 127.0.0.1:9001\n"),
            "{text}"
        );
        assert!(
            text.contains("    server switch-2 127.0.0.1:9002\n"),
            "{text}"
        );
        for line in [
            "balance roundrobin",
            "option httpchk GET /readyz",
            "http-check expect status 200",
            "default-server check inter 500ms fall 2 rise 1",
            "retry-on conn-failure empty-response",
            "retries 2",
            "option redispatch 1",
            "timeout client 40s",
            "timeout server 40s",
        ] {
            assert!(text.contains(&format!("    {line}\n")), "{line}: {text}");
        }
        assert_eq!(
            argv(Path::new("/usr/sbin/haproxy"), Path::new("/s/haproxy.cfg")),
            ["/usr/sbin/haproxy", "-db", "-f", "/s/haproxy.cfg"]
        );
        assert!(missing_message(3).contains("apt-get install haproxy"));
    }
}
