//! `GET /v1/transactions/{id}/events`: a Server-Sent Events stream of one
//! transaction's status changes, ending after its terminal event.
//!
//! Sources, in order of authority: the transaction's checkpoints in Postgres
//! (read once at the start, and again whenever a gap could exist) and the
//! live events from RabbitMQ (`EventFeed`), which are what make the stream
//! follow a saga running on another switch process. Events are deduplicated
//! and ordered by `seq`: a live event that skips a `seq` triggers a re-read
//! first. While the feed is disconnected the stream polls Postgres. Each
//! frame's `data` says which source delivered it (`"via"`).
//!
//! Bounded: at most `max_streams` open streams (`503` beyond), each open at
//! most `STREAM_LIFETIME` (clients reconnect with `Last-Event-ID`).

use super::AppState;
use super::problem::Problem;
use super::problem::ProblemDoc;
use crate::adapters::event_feed::{EventFeed, Subscription};
use crate::adapters::store::Store;
use crate::events::{TxnEvent, seq_of_event_id};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

/// Longest life of one stream.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(300);
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Re-read period while the feed is connected (a safety net) and while not.
const SAFETY_POLL: Duration = Duration::from_secs(10);
const FALLBACK_POLL: Duration = Duration::from_millis(500);

/// What the SSE endpoint shares.
#[derive(Clone)]
pub struct EventStreams {
    pub feed: EventFeed,
    pub slots: Arc<Semaphore>,
}

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/transactions/{id}/events", web::get().to(stream));
}

/// The transaction's events as Server-Sent Events (`id` is the checkpoint
/// version: `Last-Event-ID` resumes), until its terminal event.
#[utoipa::path(get, path = "/v1/transactions/{id}/events", tag = "payments",
    params(
        ("id" = uuid::Uuid, Path, description = "The transaction's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 404, description = "TXN_NOT_FOUND", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub(crate) async fn stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let caller = super::auth::client(&state, &req, b"").await?;
    let txn_id = super::transactions::parse_txn_id(&path.into_inner())?;
    super::transactions::must_see(&state, &caller, txn_id).await?;
    let after = match req.headers().get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| seq_of_event_id(txn_id, s.trim()))
            .ok_or_else(|| {
                Problem::bad_request(
                    "INVALID_LAST_EVENT_ID",
                    "Last-Event-ID must be an event id of this transaction (<txn_id>:<seq>)",
                )
            })?,
    };
    let permit = state
        .events
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::busy("too many event streams are open; retry later"))?;
    // Subscribe before reading history: whatever is published after the
    // read is then certain to arrive live.
    let sub = state.events.feed.subscribe(txn_id).await;
    let history = state
        .store
        .txn_events(txn_id)
        .await
        .map_err(|e| Problem::unavailable(&e))?
        .ok_or_else(|| Problem::not_found("TXN_NOT_FOUND", format!("no transaction {txn_id}")))?;
    // A client that already has the terminal event (a browser reconnecting
    // with its id after the stream ended) gets an empty stream that ends.
    let finished = history
        .last()
        .is_some_and(|e| e.is_terminal() && e.seq <= after);
    let mut s = Stream {
        txn_id,
        store: state.store.clone(),
        feed: state.events.feed.clone(),
        generation: state.events.feed.generation(),
        sub,
        sent: after,
        backlog: VecDeque::new(),
        done: finished,
        deadline: Instant::now() + STREAM_LIFETIME,
        next_heartbeat: Instant::now() + HEARTBEAT,
        next_poll: Instant::now() + SAFETY_POLL,
        _permit: permit,
    };
    s.absorb(history, "postgres");
    let body = futures::stream::unfold(s, |mut s| async move {
        let frame = s.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(
            futures::stream::once(async { Ok(Bytes::from_static(b"retry: 2000\n\n")) }).chain(body),
        ))
}

struct Stream {
    txn_id: Uuid,
    store: Store,
    feed: EventFeed,
    generation: u64,
    sub: Subscription,
    /// Highest `seq` sent.
    sent: i32,
    /// Events to send, in `seq` order, each tagged with its source.
    backlog: VecDeque<(TxnEvent, &'static str)>,
    done: bool,
    deadline: Instant,
    next_heartbeat: Instant,
    next_poll: Instant,
    _permit: OwnedSemaphorePermit,
}

impl Stream {
    /// Highest `seq` sent or queued.
    fn queued(&self) -> i32 {
        self.backlog.back().map_or(self.sent, |(e, _)| e.seq)
    }

    /// Queues the events not sent or queued yet, in order.
    fn absorb(&mut self, events: Vec<TxnEvent>, via: &'static str) {
        for e in events {
            if e.seq > self.sent && !self.backlog.iter().any(|(b, _)| b.seq == e.seq) {
                self.backlog.push_back((e, via));
            }
        }
        self.backlog.make_contiguous().sort_by_key(|(e, _)| e.seq);
    }

    async fn reread(&mut self) {
        self.next_poll = Instant::now()
            + if self.feed.connected() {
                SAFETY_POLL
            } else {
                FALLBACK_POLL
            };
        if let Ok(Some(events)) = self.store.txn_events(self.txn_id).await {
            self.absorb(events, "postgres");
        }
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            if let Some((event, via)) = self.backlog.pop_front() {
                if event.seq <= self.sent {
                    continue;
                }
                self.sent = event.seq;
                self.done = event.is_terminal();
                self.next_heartbeat = Instant::now() + HEARTBEAT;
                return Some(frame(&event, via));
            }
            let now = Instant::now();
            if now >= self.deadline {
                return None;
            }
            let generation = self.feed.generation();
            if generation != self.generation || now >= self.next_poll {
                self.generation = generation;
                self.reread().await;
                continue;
            }
            if now >= self.next_heartbeat {
                self.next_heartbeat = now + HEARTBEAT;
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
            let poll_at = if self.feed.connected() {
                self.next_poll
            } else {
                self.next_poll.min(now + FALLBACK_POLL)
            };
            let wake = poll_at.min(self.next_heartbeat).min(self.deadline);
            tokio::select! {
                live = self.sub.events.recv() => match live {
                    Some(event) if event.seq > self.queued() + 1 => {
                        // A gap: something was missed; Postgres has it all.
                        self.reread().await;
                        self.absorb(vec![event], "rabbitmq");
                    }
                    Some(event) => self.absorb(vec![event], "rabbitmq"),
                    None => self.next_poll = Instant::now(),
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

fn frame(event: &TxnEvent, via: &str) -> Bytes {
    let mut data = serde_json::to_value(event).unwrap_or_default();
    data["via"] = via.into();
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.event_id, event.event_type, data
    ))
}
