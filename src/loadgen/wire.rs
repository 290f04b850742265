//! The load generator's own HTTP/1.1 client for `POST /v1/transactions`,
//! built to cost the machine as little as possible per payment, so that the
//! bench measures the switch and not the client: keep-alive connections from
//! a pool (one request at a time on each), each request formatted straight
//! into one buffer and written with one call, each answer read with as few
//! calls as it takes and parsed only for what the report needs (status,
//! `txn_id`, `status`, `code`). Plain HTTP only (the switch under load is
//! local). Everything else (status polls, the demo) uses `reqwest`.
//!
//! A request that finds a reused connection closed before any byte of an
//! answer is sent once more on a fresh connection: the server dropped an idle
//! connection, and the same Idempotency-Key makes the second send safe anyway.

use crate::traffic::{Accepted, SendError, Status};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head or body read before the answer counts as garbage.
const MAX_ANSWER: usize = 64 * 1024;

/// Where the switch is: `http://host:port[/prefix]`, resolved once.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `Host` header value.
    host: String,
    /// Path of `POST …/v1/transactions`.
    path: String,
    /// What comes before `/v1/…` (`""`, or the URL's path prefix).
    prefix: String,
    /// Signs every request when set.
    signer: Option<std::sync::Arc<crate::auth::signer::ClientKey>>,
}

impl Endpoint {
    /// Parses and resolves `url` (`http://` only).
    pub async fn resolve(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("loadgen speaks plain HTTP to a local switch; {url:?} is not an http:// URL")
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to no address"))?;
        Ok(Endpoint {
            addr,
            host: authority.to_string(),
            path: format!("{prefix}/v1/transactions"),
            prefix: prefix.to_string(),
            signer: None,
        })
    }

    /// The same endpoint, every request signed with `signer` (if any).
    pub fn signed_by(
        mut self,
        signer: Option<std::sync::Arc<crate::auth::signer::ClientKey>>,
    ) -> Endpoint {
        self.signer = signer;
        self
    }

    /// The path of `tail` (`/v1/collects`) on this switch.
    pub fn path(&self, tail: &str) -> String {
        format!("{}{tail}", self.prefix)
    }
}

/// The bytes of `POST /v1/transactions`: head and JSON body in one buffer.
pub fn request(endpoint: &Endpoint, key: &str, body: &str) -> Vec<u8> {
    request_to(endpoint, &endpoint.path, Some(key), body)
}

/// The bytes of a `POST` to `path` (with an Idempotency-Key when given).
pub fn request_to(endpoint: &Endpoint, path: &str, key: Option<&str>, body: &str) -> Vec<u8> {
    let key_len = key.map_or(0, str::len);
    let mut out = Vec::with_capacity(160 + path.len() + key_len + body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(endpoint.host.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json");
    if let Some(key) = key {
        out.extend_from_slice(b"\r\nidempotency-key: ");
        out.extend_from_slice(key.as_bytes());
    }
    if let Some(signer) = &endpoint.signer {
        for (name, value) in signer.headers("POST", path, body.as_bytes()) {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// What an answer's head says: status, body length, whether the connection stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: usize,
    pub keep_alive: bool,
    /// Bytes of the head, up to and including the blank line.
    pub len: usize,
}

/// Parses an answer's head from the start of `buf`; `Ok(None)` while incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, &'static str> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_ANSWER {
            Err("body")
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "body")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or("body")?;
    let mut head = Head {
        status,
        content_length: 0,
        keep_alive: version == "HTTP/1.1",
        len: end + 4,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().map_err(|_| "body")?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked answers never come from the switch's JSON handlers.
            return Err("body");
        } else if name.eq_ignore_ascii_case("connection") {
            head.keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    if head.content_length > MAX_ANSWER {
        return Err("body");
    }
    Ok(Some(head))
}

/// The fields of an answer this client reads.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    txn_id: Option<&'a str>,
    /// Text on a transaction, a number on a problem: read only when text.
    #[serde(borrow)]
    status: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    code: Option<&'a str>,
    #[serde(borrow)]
    collect_id: Option<&'a str>,
}

/// What `POST /v1/collects` answered: the new (or same) collect's id.
pub fn judge_collect(status: u16, body: &[u8]) -> Result<String, SendError> {
    let answer: Option<Answer> = serde_json::from_slice(body).ok();
    match (status, answer.as_ref().and_then(|a| a.collect_id)) {
        (200 | 201, Some(id)) => Ok(id.to_string()),
        (200 | 201, None) if answer.is_none() => Err(SendError::Transport("body")),
        (200 | 201, None) => Err(SendError::NoTxnId(status)),
        _ => Err(SendError::Refused {
            status,
            code: answer.and_then(|a| a.code).unwrap_or("-").to_string(),
        }),
    }
}

/// What `POST /v1/transactions` answered, as the tools count it.
pub fn judge(status: u16, body: &[u8]) -> Result<Accepted, SendError> {
    let answer: Option<Answer> = serde_json::from_slice(body).ok();
    match (status, answer.as_ref().and_then(|a| a.txn_id)) {
        (200 | 202, Some(id)) => Ok(Accepted {
            txn_id: id.to_string(),
            status: answer
                .as_ref()
                .and_then(|a| a.status)
                .and_then(|raw| serde_json::from_str::<&str>(raw.get()).ok())
                .and_then(Status::parse)
                .unwrap_or(Status::Pending),
        }),
        // A 2xx whose body cannot be read is an unknown outcome, not a refusal.
        (200 | 202, None) if answer.is_none() => Err(SendError::Transport("body")),
        (200 | 202, None) => Err(SendError::NoTxnId(status)),
        _ => Err(SendError::Refused {
            status,
            code: answer.and_then(|a| a.code).unwrap_or("-").to_string(),
        }),
    }
}

/// One keep-alive connection and what was read past the last answer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Why one exchange failed, and whether a retry on a fresh connection is safe.
struct Failed {
    kind: &'static str,
    /// The connection broke before any byte of an answer came back.
    before_answer: bool,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, &'static str> {
        let stream = TcpStream::connect(addr).await.map_err(|e| io_kind(&e))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes `request`, reads one answer and judges it: (what it said, keep the connection).
    async fn exchange<R>(
        &mut self,
        request: &[u8],
        judge: fn(u16, &[u8]) -> R,
    ) -> Result<(R, bool), Failed> {
        let broke = |kind, before_answer| Failed {
            kind,
            before_answer,
        };
        self.buf.clear();
        self.stream
            .write_all(request)
            .await
            .map_err(|e| broke(io_kind(&e), true))?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf).map_err(|k| broke(k, false))? {
                break head;
            }
            let before_answer = self.buf.is_empty();
            if self
                .read_more()
                .await
                .map_err(|k| broke(k, before_answer))?
                == 0
            {
                return Err(broke("connection reset", before_answer));
            }
        };
        let end = head.len + head.content_length;
        while self.buf.len() < end {
            if self.read_more().await.map_err(|k| broke(k, false))? == 0 {
                return Err(broke("body", false));
            }
        }
        let verdict = judge(head.status, &self.buf[head.len..end]);
        Ok((verdict, head.keep_alive && self.buf.len() == end))
    }

    /// Appends what the socket has to the buffer (its spare capacity is not zeroed first).
    async fn read_more(&mut self) -> Result<usize, &'static str> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        self.stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| io_kind(&e))
    }
}

fn io_kind(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused",
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => "connection reset",
        std::io::ErrorKind::TimedOut => "timeout",
        _ => "transport",
    }
}

/// Idle keep-alive connections to one endpoint; at most `limit` are kept.
pub struct Pool {
    endpoint: Endpoint,
    idle: Mutex<Vec<Conn>>,
    limit: usize,
    timeout: Duration,
}

impl Pool {
    pub fn new(endpoint: Endpoint, limit: usize, timeout: Duration) -> Pool {
        Pool {
            endpoint,
            idle: Mutex::new(Vec::new()),
            limit,
            timeout,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn take(&self) -> Option<Conn> {
        self.idle.lock().ok()?.pop()
    }

    fn give_back(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.limit
        {
            idle.push(conn);
        }
    }

    /// Posts one payment to `path` within the pool's timeout.
    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> Result<Accepted, SendError> {
        self.post_with(path, key, body, judge).await
    }

    /// Posts `body` to `path` within the pool's timeout; `judge` reads the
    /// answer. Each attempt's bytes are made afresh ([`request_to`]), so a
    /// signed request sent again carries a new nonce: the switch refuses a
    /// nonce it saw, and a first attempt may have reached it.
    pub async fn post_with<R>(
        &self,
        path: &str,
        key: Option<&str>,
        body: &str,
        judge: fn(u16, &[u8]) -> Result<R, SendError>,
    ) -> Result<R, SendError> {
        let build = || request_to(&self.endpoint, path, key, body);
        match tokio::time::timeout(self.timeout, self.exchange(&build, judge)).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(kind)) => Err(SendError::Transport(kind)),
            Err(_) => Err(SendError::Transport("timeout")),
        }
    }

    async fn exchange<R>(
        &self,
        build: &(dyn Fn() -> Vec<u8> + Sync),
        judge: fn(u16, &[u8]) -> R,
    ) -> Result<R, &'static str> {
        // A reused connection the server closed while idle: once more on a fresh one.
        if let Some(mut conn) = self.take() {
            match conn.exchange(&build(), judge).await {
                Ok((verdict, keep)) => {
                    if keep {
                        self.give_back(conn);
                    }
                    return Ok(verdict);
                }
                Err(f) if !f.before_answer => return Err(f.kind),
                Err(_) => {}
            }
        }
        let mut conn = Conn::open(self.endpoint.addr).await?;
        let (verdict, keep) = conn.exchange(&build(), judge).await.map_err(|f| f.kind)?;
        if keep {
            self.give_back(conn);
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_when_complete() {
        let ok = b"HTTP/1.1 202 Accepted\r\nContent-Length: 12\r\ncontent-type: application/json\r\n\r\n{\"txn_id\":1}";
        let head = parse_head(ok).unwrap().unwrap();
        assert_eq!(
            (head.status, head.content_length, head.keep_alive),
            (202, 12, true)
        );
        assert_eq!(&ok[head.len..], b"{\"txn_id\":1}");
        assert_eq!(parse_head(b"HTTP/1.1 202 Acc").unwrap(), None);
        let close = parse_head(b"HTTP/1.1 503 x\r\nConnection: close\r\ncontent-length: 0\r\n\r\n");
        assert!(!close.unwrap().unwrap().keep_alive);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn answers_are_judged_like_the_reqwest_path() {
        let ok = judge(202, br#"{"txn_id":"t1","status":"PENDING"}"#).unwrap();
        assert_eq!((ok.txn_id.as_str(), ok.status), ("t1", Status::Pending));
        let done = judge(200, br#"{"txn_id":"t2","status":"SUCCESS"}"#).unwrap();
        assert_eq!(done.status, Status::Success);
        assert_eq!(
            judge(422, br#"{"code":"UNKNOWN_VPA"}"#)
                .unwrap_err()
                .to_string(),
            "POST 422 UNKNOWN_VPA"
        );
        assert_eq!(judge(503, b"").unwrap_err().to_string(), "POST 503 -");
        assert_eq!(judge(202, b"{}").unwrap_err(), SendError::NoTxnId(202));
        assert_eq!(
            judge(202, b"{trunc").unwrap_err(),
            SendError::Transport("body")
        );
    }

    #[test]
    fn a_request_is_one_buffer_with_its_length() {
        let endpoint = Endpoint {
            addr: "127.0.0.1:8080".parse().unwrap(),
            host: "127.0.0.1:8080".into(),
            path: "/v1/transactions".into(),
            prefix: String::new(),
            signer: None,
        };
        let bytes = request(&endpoint, "lg-1-7", "{\"a\":1}");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("POST /v1/transactions HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("idempotency-key: lg-1-7\r\ncontent-length: 7\r\n\r\n{\"a\":1}"));
        let approve = request_to(
            &endpoint,
            &endpoint.path("/v1/collects/c1/approve"),
            None,
            "{}",
        );
        let text = String::from_utf8(approve).unwrap();
        assert!(
            text.starts_with("POST /v1/collects/c1/approve HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(!text.contains("idempotency-key"), "{text}");
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"), "{text}");
    }

    #[test]
    fn collect_answers_are_judged_by_their_collect_id() {
        let made = br#"{"collect_id":"c1","status":"REQUESTED","expires_at":"x"}"#;
        assert_eq!(judge_collect(201, made).unwrap(), "c1");
        assert_eq!(judge_collect(200, made).unwrap(), "c1");
        assert_eq!(
            judge_collect(422, br#"{"code":"UNKNOWN_VPA"}"#)
                .unwrap_err()
                .to_string(),
            "POST 422 UNKNOWN_VPA"
        );
        // An approval answers with the payment's txn_id: an accepted payment.
        let approved = br#"{"collect_id":"c1","status":"APPROVED","txn_id":"t1"}"#;
        let ok = judge(202, approved).unwrap();
        assert_eq!((ok.txn_id.as_str(), ok.status), ("t1", Status::Pending));
    }
}
