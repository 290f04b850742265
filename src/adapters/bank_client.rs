//! The switch's client for Bank API v1: typed requests, a deadline per call, and
//! answers folded into the few outcomes the saga reasons about. Every status,
//! body and transport failure maps to exactly one of: applied, declined (code),
//! or unknown — never to a guess.
//!
//! One distinction inside "unknown" matters to the saga: `Unknown::NotDelivered`
//! means the TCP connection could not even be opened, so the bank cannot have
//! seen this attempt. Anything after the request may have left is `MaybeApplied`.

use super::bank_api::{
    Balances, DeclineCode, ErrorBody, FeedPage, MoveAnswer, MoveRequest, OpKind, OpStatus, OpView,
    ReverseAnswer, ReverseRequest,
};
use std::time::Duration;

/// Why an outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// The connection was never established: this attempt did not reach the bank.
    NotDelivered(String),
    /// The switch itself refused to send it (circuit open, bulkhead full):
    /// not delivered, and the bank is known to be unwell.
    Rejected(String),
    /// The request may have reached the bank (timeout, 5xx, 429, reset,
    /// unparseable answer, or a 400/409 refusal that signals a bug on our side).
    MaybeApplied(String),
}

impl Unknown {
    pub fn maybe_delivered(&self) -> bool {
        matches!(self, Unknown::MaybeApplied(_))
    }
    pub fn detail(&self) -> &str {
        match self {
            Unknown::NotDelivered(d) | Unknown::Rejected(d) | Unknown::MaybeApplied(d) => d,
        }
    }
}

/// Result of a debit or credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOutcome {
    Applied,
    Declined(DeclineCode),
    Unknown(Unknown),
}

/// Result of a reverse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseOutcome {
    /// The original had been applied and is now undone (now or earlier).
    Reversed,
    /// Nothing to undo: the original was declined or never seen (now tombstoned).
    Noop,
    Unknown(Unknown),
}

/// Why a read (the change feed, balances) gave no answer. Reads move no money,
/// so there is no "unknown outcome" to resolve: the caller retries or gives up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Status(String),
    #[error("unreadable answer: {0}")]
    Body(String),
}

/// Result of a status inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InquiryOutcome {
    Found(OpView),
    /// `404 UNKNOWN`: the bank has never seen this op_id (so far).
    NotFound,
    Unknown(Unknown),
}

/// A Bank API v1 client for one endpoint.
#[derive(Clone, Debug)]
pub struct BankClient {
    http: reqwest::Client,
    base_url: String,
    /// Deadline of a debit, a credit and every read.
    timeout: Duration,
    /// Deadline of a status inquiry (NPCI: check-status 10 s).
    inquiry_timeout: Duration,
    /// Deadline of a reverse (NPCI: reversal 10 s).
    reverse_timeout: Duration,
    /// The movement endpoints, parsed once (`None` if the base URL is not one).
    urls: Option<std::sync::Arc<MovementUrls>>,
}

#[derive(Debug)]
struct MovementUrls {
    debit: reqwest::Url,
    credit: reqwest::Url,
    reverse: reqwest::Url,
}

impl MovementUrls {
    fn parse(base: &str) -> Option<MovementUrls> {
        let at = |path: &str| reqwest::Url::parse(&format!("{base}/v1/{path}")).ok();
        Some(MovementUrls {
            debit: at("debit")?,
            credit: at("credit")?,
            reverse: at("reverse")?,
        })
    }
}

impl BankClient {
    /// Builds a client for `base_url` (e.g. `http://127.0.0.1:9101`); every call
    /// gives up after `timeout`.
    pub fn new(http: reqwest::Client, base_url: &str, timeout: Duration) -> BankClient {
        let base_url = base_url.trim_end_matches('/').to_string();
        BankClient {
            http,
            urls: MovementUrls::parse(&base_url).map(std::sync::Arc::new),
            base_url,
            timeout,
            inquiry_timeout: timeout,
            reverse_timeout: timeout,
        }
    }

    /// The same client with its own deadlines for status inquiries and
    /// reverses (otherwise those of every call).
    pub fn with_step_timeouts(mut self, inquiry: Duration, reverse: Duration) -> BankClient {
        self.inquiry_timeout = inquiry;
        self.reverse_timeout = reverse;
        self
    }

    /// A connection-pooling HTTP client suited to bank calls (shared by all
    /// endpoints). It follows no redirect and retries nothing on its own: a
    /// bank call is resent only by the saga, which knows whether it may be.
    pub fn http_client() -> reqwest::Client {
        Self::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    }

    /// The same for endpoints that speak HTTP/2 over cleartext (prior
    /// knowledge): one connection per endpoint carries every call as a
    /// stream, so calls in flight cost a stream each, not a connection.
    pub fn http2_client() -> reqwest::Client {
        Self::builder()
            .http2_prior_knowledge()
            .http2_adaptive_window(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(1_000))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn debit(&self, req: &MoveRequest) -> MoveOutcome {
        self.movement("debit", OpKind::Debit, req).await
    }

    pub async fn credit(&self, req: &MoveRequest) -> MoveOutcome {
        self.movement("credit", OpKind::Credit, req).await
    }

    /// The URL of a movement endpoint (parsed once; a bad base URL fails
    /// here, before anything is sent, as "not delivered").
    fn url(&self, pick: fn(&MovementUrls) -> &reqwest::Url) -> Result<reqwest::Url, Unknown> {
        self.urls
            .as_deref()
            .map(|u| pick(u).clone())
            .ok_or_else(|| Unknown::NotDelivered(format!("{} is not a usable URL", self.base_url)))
    }

    async fn movement(&self, path: &str, kind: OpKind, req: &MoveRequest) -> MoveOutcome {
        let pick: fn(&MovementUrls) -> &reqwest::Url = match kind {
            OpKind::Debit => |u| &u.debit,
            _ => |u| &u.credit,
        };
        let url = match self.url(pick) {
            Ok(url) => url,
            Err(unknown) => return MoveOutcome::Unknown(unknown),
        };
        debug_assert!(url.path().ends_with(path));
        let call = self.http.post(url).timeout(self.timeout).json(req);
        let (status, body) = match send(call).await {
            Ok(answer) => answer,
            Err(unknown) => return MoveOutcome::Unknown(unknown),
        };
        match status {
            200 | 422 => match serde_json::from_slice::<MoveAnswer>(&body) {
                Ok(a) if a.op_id != req.op_id => MoveOutcome::Unknown(Unknown::MaybeApplied(
                    format!("{} answer names op_id {:?}", kind.as_str(), a.op_id),
                )),
                Ok(a) if status == 200 && a.status == OpStatus::Applied => MoveOutcome::Applied,
                Ok(MoveAnswer {
                    status: OpStatus::Declined,
                    code: Some(code),
                    ..
                }) if status == 422 => MoveOutcome::Declined(code),
                Ok(other) => MoveOutcome::Unknown(Unknown::MaybeApplied(format!(
                    "unexpected {status} answer {other:?}"
                ))),
                Err(e) => MoveOutcome::Unknown(Unknown::MaybeApplied(format!(
                    "unreadable {status} answer: {e}"
                ))),
            },
            other => MoveOutcome::Unknown(Unknown::MaybeApplied(describe(other, &body))),
        }
    }

    pub async fn reverse(&self, req: &ReverseRequest) -> ReverseOutcome {
        let url = match self.url(|u| &u.reverse) {
            Ok(url) => url,
            Err(unknown) => return ReverseOutcome::Unknown(unknown),
        };
        let call = self.http.post(url).timeout(self.reverse_timeout).json(req);
        let (status, body) = match send(call).await {
            Ok(answer) => answer,
            Err(unknown) => return ReverseOutcome::Unknown(unknown),
        };
        if status != 200 {
            return ReverseOutcome::Unknown(Unknown::MaybeApplied(describe(status, &body)));
        }
        match serde_json::from_slice::<ReverseAnswer>(&body) {
            Ok(a) if a.op_id == req.op_id && a.status == OpStatus::Reversed => {
                ReverseOutcome::Reversed
            }
            Ok(a) if a.op_id == req.op_id && a.status == OpStatus::Noop => ReverseOutcome::Noop,
            Ok(other) => ReverseOutcome::Unknown(Unknown::MaybeApplied(format!(
                "unexpected reverse answer {other:?}"
            ))),
            Err(e) => ReverseOutcome::Unknown(Unknown::MaybeApplied(format!(
                "unreadable reverse answer: {e}"
            ))),
        }
    }

    pub async fn inquire(&self, op_id: &str) -> InquiryOutcome {
        let call = self
            .http
            .get(format!("{}/v1/ops/{op_id}", self.base_url))
            .timeout(self.inquiry_timeout);
        let (status, body) = match send(call).await {
            Ok(answer) => answer,
            Err(unknown) => return InquiryOutcome::Unknown(unknown),
        };
        match status {
            200 => match serde_json::from_slice::<OpView>(&body) {
                Ok(view) if view.op_id == op_id => InquiryOutcome::Found(view),
                Ok(view) => InquiryOutcome::Unknown(Unknown::MaybeApplied(format!(
                    "inquiry answer names op_id {:?}",
                    view.op_id
                ))),
                Err(e) => InquiryOutcome::Unknown(Unknown::MaybeApplied(format!(
                    "unreadable inquiry answer: {e}"
                ))),
            },
            404 => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) if v.get("status").and_then(|s| s.as_str()) == Some("UNKNOWN") => {
                    InquiryOutcome::NotFound
                }
                _ => InquiryOutcome::Unknown(Unknown::MaybeApplied(describe(404, &body))),
            },
            other => InquiryOutcome::Unknown(Unknown::MaybeApplied(describe(other, &body))),
        }
    }

    /// `GET /v1/ops?after_seq&limit`: one page of the bank's change feed.
    pub async fn feed_page(&self, after_seq: i64, limit: u32) -> Result<FeedPage, ReadError> {
        let call = self
            .http
            .get(format!(
                "{}/v1/ops?after_seq={after_seq}&limit={limit}",
                self.base_url
            ))
            .timeout(self.timeout);
        let body = read_ok(call)
            .await?
            .ok_or_else(|| ReadError::Status("HTTP 404".into()))?;
        serde_json::from_slice(&body).map_err(|e| ReadError::Body(e.to_string()))
    }

    /// `GET /admin/balances` (the simulator's admin extension); `None` when
    /// the bank does not offer it (`404`).
    pub async fn balances(&self) -> Result<Option<Balances>, ReadError> {
        let call = self
            .http
            .get(format!("{}/admin/balances", self.base_url))
            .timeout(self.timeout);
        match read_ok(call).await? {
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| ReadError::Body(e.to_string())),
            None => Ok(None),
        }
    }

    /// `GET /v1/health`: true when the bank says it accepts operations.
    pub async fn health(&self) -> bool {
        let call = self
            .http
            .get(format!("{}/v1/health", self.base_url))
            .timeout(self.timeout);
        matches!(send(call).await, Ok((200, _)))
    }
}

/// Sends and reads the whole answer within the request's deadline.
async fn send(call: reqwest::RequestBuilder) -> Result<(u16, bytes::Bytes), Unknown> {
    let response = call.send().await.map_err(classify)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(classify)?;
    Ok((status, body))
}

/// The body of a `200`, `None` for a `404`, an error for anything else.
async fn read_ok(call: reqwest::RequestBuilder) -> Result<Option<bytes::Bytes>, ReadError> {
    match send(call).await {
        Ok((200, body)) => Ok(Some(body)),
        Ok((404, _)) => Ok(None),
        Ok((status, body)) => Err(ReadError::Status(describe(status, &body))),
        Err(unknown) => Err(ReadError::Transport(unknown.detail().to_string())),
    }
}

fn classify(e: reqwest::Error) -> Unknown {
    if e.is_connect() {
        Unknown::NotDelivered(format!("cannot connect: {e}"))
    } else if e.is_timeout() {
        Unknown::MaybeApplied("no answer before the deadline".into())
    } else {
        Unknown::MaybeApplied(format!("transport: {e}"))
    }
}

fn describe(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => format!("HTTP {status} {}", e.code),
        Err(_) => format!("HTTP {status}"),
    }
}
