//! The client side of Switch API v1, shared by the tools that send payments
//! (`demo`, `loadgen`): an HTTP client for local services, posting one P2P
//! payment, following a transaction to a terminal status with `?wait=`
//! long-polls, naming failures by kind, choosing who pays whom (never
//! oneself), latency histograms (HDR) and progress counters. It speaks only
//! the public API (`docs/api.md`); no switch internals.

use crate::auth::signer::{ClientKey, path_and_query};
use crate::domain::Paise;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest `?wait=` the switch accepts (`MAX_WAIT_MS` of the API).
pub const MAX_POLL_WAIT: Duration = Duration::from_millis(crate::http::transactions::MAX_WAIT_MS);

// ---------------------------------------------------------------------------
// Statuses and the HTTP client
// ---------------------------------------------------------------------------

/// A transaction's status as the API names it (the saga's client-facing status).
pub use crate::saga::Status;

/// Every status, terminal ones first: the order reports list them in.
pub const STATUSES: [Status; 4] = [
    Status::Success,
    Status::Failed,
    Status::Reversed,
    Status::Pending,
];

/// An HTTP client for the switch: `timeout` per request unless a request sets
/// its own, at most `pool` idle connections kept, proxies from the
/// environment ignored (the switch is local; a proxy must not get in the way).
pub fn http_client(timeout: Duration, pool: usize) -> Result<reqwest::Client, reqwest::Error> {
    operator_client(timeout, pool, None)
}

/// The same, sending the operator's bearer token (when given) with every
/// request: for tools that read `/v1/ops/*` of a switch with authentication.
pub fn operator_client(
    timeout: Duration,
    pool: usize,
    token: Option<&str>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) =
        token.and_then(|t| reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(pool)
        // Below the servers' keep-alive (actix: 5 s): a connection the
        // server is closing is never picked for a request (a GET of
        // balances once failed with "error sending request" that way).
        .pool_idle_timeout(Duration::from_secs(3))
        .default_headers(headers)
        .no_proxy()
        .build()
}

/// One line for a transport error, with its causes (`connection refused`, …).
pub fn transport_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A short stable name for a transport error: `timeout`, `connection refused`, …
pub fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        return "timeout";
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused",
                std::io::ErrorKind::ConnectionReset => return "connection reset",
                _ => {}
            }
        }
        source = s.source();
    }
    if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else if e.is_request() {
        "request"
    } else {
        "transport"
    }
}

/// The `code` of a problem+json answer, `-` when there is none.
pub fn problem_code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("-")
}

// ---------------------------------------------------------------------------
// Sending a payment and following it
// ---------------------------------------------------------------------------

/// The body of `POST /v1/transactions` for a P2P payment (serialised by
/// whoever sends it: no JSON tree is built on the way).
#[derive(Debug, Clone, Serialize)]
pub struct PaymentBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    payer_vpa: &'a str,
    payee_vpa: &'a str,
    /// Rupees as exact decimal text (`"150.75"`).
    amount: String,
    note: &'a str,
}

/// The body of a P2P payment of `amount` from `payer` to `payee`.
pub fn payment_body<'a>(
    payer: &'a str,
    payee: &'a str,
    amount: Paise,
    note: &'a str,
) -> PaymentBody<'a> {
    PaymentBody {
        kind: "P2P",
        payer_vpa: payer,
        payee_vpa: payee,
        amount: amount.to_rupees(),
        note,
    }
}

/// The switch took the payment (`200`/`202` with a `txn_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub txn_id: String,
    /// Its status in that answer (`PENDING` unless it was decided at once).
    pub status: Status,
}

/// Why a payment was not accepted; its `Display` is the error's kind
/// (`POST 503 SWITCH_BUSY`, `POST timeout`), the key the tools count by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("POST {status} {code}")]
    Refused { status: u16, code: String },
    #[error("POST {0} without txn_id")]
    NoTxnId(u16),
    #[error("POST {0}")]
    Transport(&'static str),
}

impl SendError {
    /// Worth sending again with the same key: the switch was busy or failing,
    /// or its answer was lost (the same key makes a second send safe), or a
    /// balancer re-sent our signed request after a node died holding it
    /// (`401 REPLAYED_NONCE`: the next send is signed afresh).
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Refused { status, code } => {
                *status == 429 || *status >= 500 || (*status == 401 && code == "REPLAYED_NONCE")
            }
            SendError::NoTxnId(_) | SendError::Transport(_) => true,
        }
    }
}

/// `POST /v1/transactions` once, with `key` as its Idempotency-Key; `timeout`
/// replaces the client's for this request.
pub async fn post_payment(
    http: &reqwest::Client,
    signer: Option<&ClientKey>,
    switch_url: &str,
    key: &str,
    body: &impl Serialize,
    timeout: Option<Duration>,
) -> Result<Accepted, SendError> {
    let url = format!("{switch_url}/v1/transactions");
    let (status, answer) = post_to(http, signer, &url, Some(key), body, timeout).await?;
    accepted(status, &answer)
}

/// `POST url` with a JSON body (and an Idempotency-Key when given): the
/// answer's status and JSON body (`Null` when a refusal has none).
pub async fn post_to(
    http: &reqwest::Client,
    signer: Option<&ClientKey>,
    url: &str,
    key: Option<&str>,
    body: &impl Serialize,
    timeout: Option<Duration>,
) -> Result<(u16, Value), SendError> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .body(bytes.clone());
    if let Some(signer) = signer {
        request = signer.sign_request(request, "POST", &path_and_query(url), &bytes);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(t) = timeout {
        request = request.timeout(t);
    }
    let resp = request
        .send()
        .await
        .map_err(|e| SendError::Transport(transport_kind(&e)))?;
    let status = resp.status().as_u16();
    match resp.json().await {
        Ok(v) => Ok((status, v)),
        // A 2xx whose body was lost is an unknown outcome, not a refusal.
        Err(e) if (200..300).contains(&status) => Err(SendError::Transport(transport_kind(&e))),
        Err(_) => Ok((status, Value::Null)),
    }
}

/// A payment accepted (`200`/`202` with a `txn_id`: a posted payment, an
/// approved collect), or why not.
pub fn accepted(status: u16, answer: &Value) -> Result<Accepted, SendError> {
    match (status, answer["txn_id"].as_str()) {
        (200 | 202, Some(id)) => Ok(Accepted {
            txn_id: id.to_string(),
            status: answer["status"]
                .as_str()
                .and_then(Status::parse)
                .unwrap_or(Status::Pending),
        }),
        (200 | 202, None) => Err(SendError::NoTxnId(status)),
        _ => Err(SendError::Refused {
            status,
            code: problem_code(answer).to_string(),
        }),
    }
}

/// How a transaction is followed.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    /// `?wait=` of each `GET` (capped at [`MAX_POLL_WAIT`]).
    pub wait: Duration,
    /// A `GET` gets `wait + slack` before it counts as timed out.
    pub slack: Duration,
    /// Pause after a failed `GET` before the next.
    pub pause: Duration,
}

/// Where a followed transaction stood when following ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// Terminal, or `Pending` when `deadline` came first.
    pub status: Status,
    /// `reason.code` of a terminal transaction, if it has one.
    pub reason: Option<String>,
}

/// Long-polls `GET /v1/transactions/{txn_id}?wait=` until the transaction is
/// terminal or `deadline` passes (no poll waits beyond it). Each failed poll
/// is reported to `on_error` by kind (`GET 404 TXN_NOT_FOUND`, `GET timeout`)
/// and followed by a pause; following goes on until the deadline.
pub async fn follow(
    http: &reqwest::Client,
    signer: Option<&ClientKey>,
    switch_url: &str,
    txn_id: &str,
    poll: &Poll,
    deadline: Instant,
    mut on_error: impl FnMut(String),
) -> Followed {
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wait = poll.wait.min(MAX_POLL_WAIT).min(remaining);
        let url = format!(
            "{switch_url}/v1/transactions/{txn_id}?wait={}",
            wait.as_millis()
        );
        let mut request = http.get(&url).timeout(wait + poll.slack);
        if let Some(signer) = signer {
            request = signer.sign_request(request, "GET", &path_and_query(&url), b"");
        }
        let failed = match request.send().await {
            Ok(resp) if matches!(resp.status().as_u16(), 200 | 202) => {
                let code = resp.status().as_u16();
                match resp.json::<Value>().await {
                    Ok(doc) => match doc["status"].as_str().and_then(Status::parse) {
                        Some(status) if status.is_terminal() => {
                            return Followed {
                                status,
                                reason: doc["reason"]["code"].as_str().map(str::to_string),
                            };
                        }
                        Some(_) => None,
                        None => Some(format!(
                            "GET {code} with status {}",
                            doc["status"].as_str().unwrap_or("missing")
                        )),
                    },
                    Err(e) => Some(format!("GET {}", transport_kind(&e))),
                }
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let answer: Value = resp.json().await.unwrap_or(Value::Null);
                Some(format!("GET {status} {}", problem_code(&answer)))
            }
            Err(e) => Some(format!("GET {}", transport_kind(&e))),
        };
        if let Some(kind) = failed {
            on_error(kind);
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(poll.pause.min(remaining)).await;
        }
        if Instant::now() >= deadline {
            return Followed {
                status: Status::Pending,
                reason: None,
            };
        }
    }
}

// ---------------------------------------------------------------------------
// Who pays whom
// ---------------------------------------------------------------------------

/// Ordered (payer, payee) pairs among `n ≥ 2` parties, never the same party twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairs {
    n: u64,
}

impl Pairs {
    /// `None` when there are fewer than two parties.
    pub fn new(n: usize) -> Option<Pairs> {
        (n >= 2).then_some(Pairs { n: n as u64 })
    }

    /// The `k`-th pair. For `k = 0, 1, 2, …` a round robin: every party pays
    /// in turn, to each of the others in turn, and all `n × (n − 1)` pairs come
    /// before any repeats. For a random `k` (see [`mix`]), a random pair.
    pub fn nth(&self, k: u64) -> (usize, usize) {
        let payer = k % self.n;
        let step = 1 + (k / self.n) % (self.n - 1);
        (payer as usize, ((payer + step) % self.n) as usize)
    }
}

/// A well-mixed 64-bit value for item `i` of a run seeded with `seed`
/// (SplitMix64): the same seed gives the same traffic.
pub fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------

/// Largest latency a histogram tells apart: one hour, in microseconds.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Latencies, recorded in microseconds from 1 µs to one hour with three
/// significant digits (HDR histogram; longer ones count as one hour).
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // Constant, valid bounds: 1 ≤ low, high ≥ 2 × low, 3 significant digits.
        Latency(
            Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.max(1));
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Percentiles in milliseconds (all zero when nothing was recorded).
    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean().round() / 1000.0,
        }
    }
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    /// `p50 1.2  p90 3.4  p99 5.6  p99.9 7.8  max 9.0  (n=100)`, or `n/a`.
    pub fn line(&self) -> String {
        if self.count == 0 {
            return "n/a".into();
        }
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p99_9_ms, self.max_ms, self.count
        )
    }
}

/// Progress of a traffic run, updated by every payment's task.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub terminal: AtomicU64,
    pub errors: AtomicU64,
}

/// One reading of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub accepted: u64,
    pub terminal: u64,
    pub errors: u64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            terminal: self.terminal.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Counts by kind (error kinds, reason codes), shared between tasks.
#[derive(Debug, Default)]
pub struct Kinds(Mutex<BTreeMap<String, u64>>);

impl Kinds {
    pub fn add(&self, kind: impl Into<String>) {
        if let Ok(mut map) = self.0.lock() {
            *map.entry(kind.into()).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Process
// ---------------------------------------------------------------------------

/// User + system CPU this process has used so far, all threads (`getrusage`).
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we own; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resolves on Ctrl-C or SIGTERM with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        // No signal handling here: never resolve rather than stop at once.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_never_pay_oneself_and_cover_every_pair() {
        assert_eq!(Pairs::new(0), None);
        assert_eq!(Pairs::new(1), None);
        for n in 2..=7usize {
            let pairs = Pairs::new(n).unwrap();
            let all = (n * (n - 1)) as u64;
            // Every k gives two different parties; the set of pairs seen.
            let seen = |ks: &mut dyn Iterator<Item = u64>| {
                let mut set = std::collections::BTreeSet::new();
                for k in ks {
                    let (a, b) = pairs.nth(k);
                    assert!(a != b && a < n && b < n, "n={n} k={k}: {a}->{b}");
                    set.insert((a, b));
                }
                set.len() as u64
            };
            assert_eq!(seen(&mut (0..all)), all, "round robin covers every pair");
            let draws = &mut (0..10_000).map(|i| mix(42, i));
            assert_eq!(seen(draws), all, "random draws reach every pair, n={n}");
        }
        // Extreme draws too.
        let pairs = Pairs::new(3).unwrap();
        for draw in [0, 1, u64::MAX, u64::MAX - 1, 1 << 63] {
            let (a, b) = pairs.nth(draw);
            assert_ne!(a, b);
        }
    }

    #[test]
    fn mix_is_seeded() {
        assert_eq!(mix(7, 3), mix(7, 3));
        assert_ne!(mix(7, 3), mix(8, 3));
        assert_ne!(mix(7, 3), mix(7, 4));
    }

    #[test]
    fn percentiles_from_the_histogram() {
        let mut h = Latency::new();
        assert_eq!(h.summary(), LatencySummary::default());
        assert_eq!(h.summary().line(), "n/a");
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        // Three significant digits: within 0.1% of the exact nearest rank.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(near(s.p50_ms, 500.0), "{s:?}");
        assert!(near(s.p90_ms, 900.0), "{s:?}");
        assert!(near(s.p99_ms, 990.0), "{s:?}");
        assert!(near(s.p99_9_ms, 999.0), "{s:?}");
        assert!(near(s.max_ms, 1000.0), "{s:?}");
        assert!(near(s.mean_ms, 500.5), "{s:?}");
        assert!(s.line().starts_with("p50 500."), "{}", s.line());
        // Sub-microsecond and over-an-hour values are kept, clamped to the range.
        let mut edge = Latency::new();
        edge.record(Duration::ZERO);
        edge.record(Duration::from_secs(10 * 3600));
        assert_eq!(edge.count(), 2);
        assert!(edge.summary().max_ms >= 3_600_000.0 * 0.999);
    }

    #[test]
    fn send_errors_name_their_kind_and_know_when_to_retry() {
        let busy = SendError::Refused {
            status: 503,
            code: "SWITCH_BUSY".into(),
        };
        assert_eq!(busy.to_string(), "POST 503 SWITCH_BUSY");
        assert!(busy.retryable());
        let bad = SendError::Refused {
            status: 422,
            code: "UNKNOWN_VPA".into(),
        };
        assert!(!bad.retryable());
        assert_eq!(SendError::Transport("timeout").to_string(), "POST timeout");
        assert!(SendError::NoTxnId(202).retryable());
    }

    #[test]
    fn payment_body_has_exact_rupees() {
        let body = serde_json::to_value(payment_body("a@x", "b@y", Paise(150), "n")).unwrap();
        assert_eq!(body["amount"], "1.50");
        assert_eq!(body["type"], "P2P");
        assert_eq!(body["payer_vpa"], "a@x");
        assert_eq!(body["note"], "n");
    }
}
