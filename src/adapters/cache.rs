//! Redis, where it helps and never where it decides. This module owns the
//! switch's connection to Redis and everything the switch keeps there (and,
//! in front of the VPA cache, the process's own `VpaMemo` of VPAs resolved
//! in the last second):
//! - the **VPA resolution cache** (`<prefix>:vpa:{<vpa>}`, JSON of a
//!   `VpaRecord`, with a TTL), read through before Postgres and invalidated by
//!   the operator's `PUT /v1/admin/vpas/{vpa}`;
//! - the **per-client token buckets** of the rate limiter
//!   (`<prefix>:rl:<client>`), refilled and taken atomically by a Lua script
//!   on Redis's own clock.
//!
//! Postgres stays the authority. Every Redis call is bounded by
//! `op_timeout`; a failed call (or a Redis that is down) means "not cached",
//! never a failed payment. Start-up never waits for Redis: a background task
//! connects, pings, and reconnects with a bounded backoff, and `is_up` is what
//! `/readyz` reports. While Redis is known to be down no call is attempted,
//! so a dead Redis costs nothing per request.
//!
//! Why the VPA cache cannot keep a stale mapping after an operator's change:
//! an invalidation first bumps the VPA's generation key, then deletes the
//! entry; a fill is a script that writes only if the generation is still the
//! one seen *before* Postgres was read. A reader that read the old row before
//! the change either fills before the delete (and is deleted) or after the
//! bump (and is refused). Only an invalidation that cannot reach Redis at all
//! leaves an old entry, for at most the TTL. Bank re-registration changes a
//! bank's endpoints, which are not cached here, so it invalidates nothing.

use crate::adapters::store::VpaRecord;
use crate::adapters::vpa_memo::VpaMemo;
use crate::domain::Vpa;
use crate::metrics::CacheMetrics;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, RedisError, Script};
use std::future::Future;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a connected Redis is pinged (also after any failed call).
const PING_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed connection attempt: doubles from `MIN` up to `MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a VPA's generation key outlives its last invalidation. It must
/// outlast any read-then-fill window (milliseconds), not the entries.
const VPA_GENERATION_TTL_MS: u64 = 24 * 3600 * 1000;
/// Most VPAs kept in this process's memo.
const VPA_MEMO_MAX: usize = 100_000;
/// Smallest refill rate accepted (one token per 1000 s).
const MIN_RATE_PER_SEC: f64 = 0.001;

/// Token bucket per client. Redis's own clock (`TIME`), so every switch
/// instance agrees; fractional tokens are kept. Returns `{1, 0}` when a token
/// was taken, `{0, µs until one is there}` when not.
const TOKEN_BUCKET_LUA: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1])
local at = tonumber(saved[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000000)
  at = now
end
local taken = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = math.ceil((1 - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.0f', at))
local ttl = math.min(math.max(math.ceil(burst * 1000 / rate) + 1000, 1000), 604800000)
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return {taken, wait}
";

/// Fills a VPA entry unless it was invalidated since the reader looked:
/// KEYS entry, generation; ARGV generation seen ('' = none), value, TTL ms.
const VPA_FILL_LUA: &str = r"
if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Invalidates a VPA entry: KEYS entry, generation; ARGV generation TTL ms.
const VPA_FORGET_LUA: &str = r"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid Redis URL: {0}")]
    Url(RedisError),
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    #[error("Redis is not connected")]
    Down,
    #[error("Redis call timed out after {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] RedisError),
}

/// What the switch keeps in Redis and how long it waits for it.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub url: String,
    /// Namespace of every key; one per switch database.
    pub prefix: String,
    /// Longest wait for one Redis call.
    pub op_timeout: Duration,
    /// TTL of a cached VPA; zero turns the VPA cache off.
    pub vpa_ttl: Duration,
    /// How long this process keeps a VPA it resolved, in memory in front of
    /// Redis (`VpaMemo`); zero turns that off.
    pub vpa_local_ttl: Duration,
    /// `None`: no rate limit.
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Bucket size: the burst a client may send at once.
    pub burst: u32,
    /// Refuse (503) rather than admit requests when Redis cannot be asked.
    pub deny_when_down: bool,
}

impl RateLimit {
    /// The limit for `per_sec` (0 = none) and `burst` (0 = one second's worth).
    pub fn new(
        per_sec: f64,
        burst: u32,
        deny_when_down: bool,
    ) -> Result<Option<RateLimit>, CacheError> {
        if !per_sec.is_finite() || per_sec < 0.0 {
            return Err(CacheError::Config(
                "the rate limit must be a number of requests per second, 0 or more".into(),
            ));
        }
        if per_sec == 0.0 {
            return Ok(None);
        }
        if per_sec < MIN_RATE_PER_SEC {
            return Err(CacheError::Config(format!(
                "a rate limit below {MIN_RATE_PER_SEC} per second is not supported (0 turns it off)"
            )));
        }
        let burst = if burst == 0 {
            per_sec.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
        } else {
            burst
        };
        Ok(Some(RateLimit {
            per_sec,
            burst,
            deny_when_down,
        }))
    }
}

/// The rate limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Over budget; a token is there again in this many seconds (≥ 1).
    Limited {
        retry_after_s: u64,
    },
    /// Redis could not be asked and the policy is to deny.
    Unavailable,
}

/// The switch's Redis: cheap to clone, shared by every HTTP worker.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CacheConfig,
    /// The live connection and its number (so a late error of an old
    /// connection cannot throw away a new one). `None` while Redis is down.
    conn: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// Nudges the supervisor to check the connection now.
    wake: Notify,
    metrics: CacheMetrics,
    bucket: Script,
    vpa_fill: Script,
    vpa_forget: Script,
    /// VPAs this process resolved a moment ago, in front of Redis.
    memo: VpaMemo,
}

impl Cache {
    /// Starts the connection supervisor and returns at once: Redis need not be
    /// up. Must be called inside a tokio runtime.
    pub fn start(cfg: CacheConfig, metrics: CacheMetrics) -> Result<Cache, CacheError> {
        if cfg.prefix.is_empty()
            || cfg
                .prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(CacheError::Config(
                "the Redis key prefix must be non-empty, without spaces".into(),
            ));
        }
        if cfg.op_timeout.is_zero() {
            return Err(CacheError::Config(
                "the Redis timeout must be at least 1 ms".into(),
            ));
        }
        let client = Client::open(cfg.url.as_str()).map_err(CacheError::Url)?;
        let vpa_local_ttl = cfg.vpa_local_ttl;
        let inner = Arc::new(Inner {
            cfg,
            conn: RwLock::new(None),
            wake: Notify::new(),
            metrics,
            bucket: Script::new(TOKEN_BUCKET_LUA),
            vpa_fill: Script::new(VPA_FILL_LUA),
            vpa_forget: Script::new(VPA_FORGET_LUA),
            memo: VpaMemo::new(vpa_local_ttl, VPA_MEMO_MAX),
        });
        tokio::spawn(supervise(Arc::downgrade(&inner), client));
        Ok(Cache { inner })
    }

    /// Whether the switch has a working connection to Redis now.
    pub fn is_up(&self) -> bool {
        self.inner.current().is_some()
    }

    fn count(&self, cache: &str, result: &str) {
        self.inner
            .metrics
            .cache_requests
            .with_label_values(&[cache, result])
            .inc();
    }

    fn vpa_keys(&self, vpa: &Vpa) -> (String, String) {
        let p = &self.inner.cfg.prefix;
        // The hash tag keeps both keys in one slot (a script may touch both).
        (
            format!("{p}:vpa:{{{}}}", vpa.as_str()),
            format!("{p}:vpa-gen:{{{}}}", vpa.as_str()),
        )
    }

    /// The VPA's registration: from Redis if cached, else from `load`
    /// (Postgres), which then fills the cache. Absent VPAs are not cached.
    pub async fn vpa_through<E, F, Fut>(&self, vpa: &Vpa, load: F) -> Result<Option<VpaRecord>, E>
    where
        F: Fn(Vpa) -> Fut,
        Fut: Future<Output = Result<Option<VpaRecord>, E>>,
    {
        let [found] = self.vpas_through([vpa], load).await?;
        Ok(found)
    }

    /// The registrations of several VPAs (a payment's payer and payee): one
    /// Redis round trip for all of them (a pipeline of one `MGET` per VPA,
    /// each in its own hash slot), then `load` (Postgres) for each miss,
    /// which fills the cache unless an invalidation came in between.
    pub async fn vpas_through<const N: usize, E, F, Fut>(
        &self,
        vpas: [&Vpa; N],
        load: F,
    ) -> Result<[Option<VpaRecord>; N], E>
    where
        F: Fn(Vpa) -> Fut,
        Fut: Future<Output = Result<Option<VpaRecord>, E>>,
    {
        let memo = &self.inner.memo;
        let now = std::time::Instant::now();
        // Read before anything is looked up further down, for the fills.
        let memo_seen = memo.generation();
        let mut found: [Option<VpaRecord>; N] = std::array::from_fn(|_| None);
        let mut missing = Vec::with_capacity(N);
        for (i, vpa) in vpas.iter().enumerate() {
            match memo.get(vpa, now) {
                Some(record) => {
                    self.count("vpa_local", "hit");
                    found[i] = Some(record);
                }
                None => missing.push(i),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        if memo.enabled() {
            for _ in &missing {
                self.count("vpa_local", "miss");
            }
        }
        let wanted: Vec<&Vpa> = missing.iter().map(|&i| vpas[i]).collect();
        let shared = self.shared_vpas(&wanted, load).await?;
        for (i, record) in missing.iter().zip(shared) {
            if let Some(record) = &record {
                memo.fill(vpas[*i], record, memo_seen, now);
            }
            found[*i] = record;
        }
        Ok(found)
    }

    /// The registrations of these VPAs from Redis (one round trip: a
    /// pipeline of one `MGET` per VPA, each in its own hash slot), and from
    /// `load` (Postgres) for each miss, which fills Redis unless an
    /// invalidation came in between.
    async fn shared_vpas<E, F, Fut>(
        &self,
        vpas: &[&Vpa],
        load: F,
    ) -> Result<Vec<Option<VpaRecord>>, E>
    where
        F: Fn(Vpa) -> Fut,
        Fut: Future<Output = Result<Option<VpaRecord>, E>>,
    {
        let mut found = Vec::with_capacity(vpas.len());
        if self.inner.cfg.vpa_ttl.is_zero() {
            for vpa in vpas {
                found.push(load((*vpa).clone()).await?);
            }
            return Ok(found);
        }
        let keys: Vec<(String, String)> = vpas.iter().map(|v| self.vpa_keys(v)).collect();
        let looked = self
            .inner
            .call("vpa_get", |mut c| {
                let mut pipe = redis::pipe();
                for (entry, generation) in &keys {
                    pipe.cmd("MGET").arg(entry).arg(generation);
                }
                async move {
                    pipe.query_async::<Vec<(Option<String>, Option<String>)>>(&mut c)
                        .await
                }
            })
            .await;
        let looked: Vec<Option<(Option<String>, Option<String>)>> = match looked {
            Ok(answers) if answers.len() == vpas.len() => answers.into_iter().map(Some).collect(),
            _ => vec![None; vpas.len()],
        };
        for (i, vpa) in vpas.iter().enumerate() {
            // The generation seen before Postgres is read; `None`: do not fill.
            let seen = match &looked[i] {
                Some((Some(text), seen)) => match serde_json::from_str::<VpaRecord>(text) {
                    Ok(record) if record.vpa == vpa.as_str() => {
                        self.count("vpa", "hit");
                        found.push(Some(record));
                        continue;
                    }
                    _ => {
                        tracing::warn!(vpa = %vpa, "unreadable VPA cache entry; it is replaced");
                        self.count("vpa", "error");
                        Some(seen.clone().unwrap_or_default())
                    }
                },
                Some((None, seen)) => {
                    self.count("vpa", "miss");
                    Some(seen.clone().unwrap_or_default())
                }
                None => {
                    self.count("vpa", "error");
                    None
                }
            };
            let record = load((*vpa).clone()).await?;
            if let (Some(record), Some(seen)) = (&record, seen) {
                self.fill_vpa(&keys[i], &seen, record).await;
            }
            found.push(record);
        }
        Ok(found)
    }

    /// Writes a VPA entry unless its generation moved since `seen`.
    async fn fill_vpa(
        &self,
        (entry, generation): &(String, String),
        seen: &str,
        record: &VpaRecord,
    ) {
        let Ok(value) = serde_json::to_string(record) else {
            return;
        };
        let ttl_ms = duration_ms(self.inner.cfg.vpa_ttl).to_string();
        let _ = self
            .inner
            .eval::<i64>(
                "vpa_fill",
                &self.inner.vpa_fill,
                &[entry, generation],
                &[seen, &value, &ttl_ms],
            )
            .await;
    }

    /// Drops the VPA's cached registration after an operator changed it.
    /// When Redis cannot be reached an old entry may live out its TTL.
    pub async fn forget_vpa(&self, vpa: &Vpa) {
        self.inner.memo.forget(vpa);
        let (entry, generation) = self.vpa_keys(vpa);
        let forgot = self
            .inner
            .eval::<i64>(
                "vpa_forget",
                &self.inner.vpa_forget,
                &[&entry, &generation],
                &[&VPA_GENERATION_TTL_MS.to_string()],
            )
            .await;
        if let Err(e) = forgot {
            tracing::warn!(
                vpa = %vpa,
                error = %e,
                ttl_ms = duration_ms(self.inner.cfg.vpa_ttl),
                "could not invalidate the VPA cache; an old entry may be served until its TTL ends"
            );
        }
    }

    /// Drops this process's memo of a VPA that another node changed (that
    /// node already invalidated Redis).
    pub fn forget_local_vpa(&self, vpa: &Vpa) {
        self.inner.memo.forget(vpa);
    }

    /// Drops this process's whole VPA memo.
    pub fn forget_local_vpas(&self) {
        self.inner.memo.clear();
    }

    /// Whether requests are rate limited at all.
    pub fn limits_rate(&self) -> bool {
        self.inner.cfg.rate_limit.is_some()
    }

    /// Takes a token from `client`'s bucket.
    pub async fn admit(&self, client: &str) -> Admission {
        let Some(limit) = self.inner.cfg.rate_limit else {
            return Admission::Allowed;
        };
        let key = format!("{}:rl:{client}", self.inner.cfg.prefix);
        let taken = self
            .inner
            .eval::<(i64, i64)>(
                "rate_limit",
                &self.inner.bucket,
                &[&key],
                &[&limit.per_sec.to_string(), &limit.burst.to_string()],
            )
            .await;
        match taken {
            Ok((1, _)) => Admission::Allowed,
            Ok((_, wait_us)) => {
                self.inner.metrics.rate_limited.inc();
                let wait_us = u64::try_from(wait_us).unwrap_or(0);
                Admission::Limited {
                    retry_after_s: wait_us.div_ceil(1_000_000).max(1),
                }
            }
            Err(_) if limit.deny_when_down => Admission::Unavailable,
            Err(_) => Admission::Allowed,
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Inner {
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, conn: Option<(u64, MultiplexedConnection)>) {
        *self
            .conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
    }

    /// Forgets connection `id`, unless a newer one replaced it already.
    fn drop_conn(&self, id: u64) {
        let mut conn = self
            .conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if conn.as_ref().is_some_and(|(current, _)| *current == id) {
            *conn = None;
        }
    }

    /// A liveness check is allowed longer than a call, so that a busy Redis
    /// is not mistaken for a dead one.
    fn ping_timeout(&self) -> Duration {
        (self.cfg.op_timeout * 4).max(Duration::from_millis(250))
    }

    async fn ping(&self, conn: &mut MultiplexedConnection) -> bool {
        let pong = tokio::time::timeout(
            self.ping_timeout(),
            redis::cmd("PING").query_async::<String>(conn),
        )
        .await;
        let ok = matches!(pong, Ok(Ok(_)));
        if !ok {
            self.metrics.redis_errors.with_label_values(&["ping"]).inc();
        }
        ok
    }

    /// Runs a script (EVALSHA, loading it first on a Redis that lacks it).
    async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, CacheError> {
        self.call(op, |mut c| async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(*key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            invocation.invoke_async::<T>(&mut c).await
        })
        .await
    }

    /// Runs one Redis call on the live connection, bounded by `op_timeout`.
    /// Fails at once, without a call, while Redis is down.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let Some((id, conn)) = self.current() else {
            return Err(CacheError::Down);
        };
        let error = match tokio::time::timeout(self.cfg.op_timeout, f(conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.drop_conn(id);
                }
                CacheError::Redis(e)
            }
            Err(_) => CacheError::Timeout(self.cfg.op_timeout),
        };
        self.metrics.redis_errors.with_label_values(&[op]).inc();
        tracing::debug!(op, error = %error, "Redis call failed; going on without it");
        self.wake.notify_one();
        Err(error)
    }
}

/// Keeps a connection to Redis while the cache lives: connects (bounded,
/// with backoff), pings every `PING_EVERY` or when a call failed, and drops
/// a connection that does not answer. Logs only changes of state.
async fn supervise(cache: Weak<Inner>, client: Client) {
    let mut backoff = BACKOFF_MIN;
    let mut next_id = 0u64;
    let mut said_down = false;
    loop {
        let Some(inner) = cache.upgrade() else {
            return;
        };
        if let Some((id, mut conn)) = inner.current() {
            tokio::select! {
                () = inner.wake.notified() => {}
                () = tokio::time::sleep(PING_EVERY) => {}
            }
            if !inner.ping(&mut conn).await {
                inner.drop_conn(id);
            }
            if inner.current().is_none() && !said_down {
                tracing::warn!(
                    "Redis is unreachable; the switch goes on without its cache and rate limits"
                );
                said_down = true;
            }
            continue;
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(inner.ping_timeout()));
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        let connected = match attempt {
            Ok(Ok(mut conn)) => {
                if inner.ping(&mut conn).await {
                    Ok(conn)
                } else {
                    Err("no answer to PING".to_string())
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
        };
        match connected {
            Ok(conn) => {
                next_id += 1;
                inner.set(Some((next_id, conn)));
                backoff = BACKOFF_MIN;
                said_down = false;
                tracing::info!("connected to Redis");
            }
            Err(error) => {
                inner
                    .metrics
                    .redis_errors
                    .with_label_values(&["connect"])
                    .inc();
                if !said_down {
                    tracing::warn!(%error, "cannot reach Redis; the switch goes on without its cache and rate limits, and keeps trying");
                    said_down = true;
                }
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_flags() {
        assert!(RateLimit::new(0.0, 5, false).expect("off").is_none());
        assert!(RateLimit::new(-1.0, 5, false).is_err());
        assert!(RateLimit::new(f64::NAN, 5, false).is_err());
        assert!(RateLimit::new(0.0001, 5, false).is_err());
        let l = RateLimit::new(2.5, 0, true).expect("ok").expect("on");
        assert_eq!(l.burst, 3, "burst 0 means one second's worth");
        assert!(l.deny_when_down);
        let l = RateLimit::new(0.01, 0, false).expect("ok").expect("on");
        assert_eq!(l.burst, 1);
    }
}
