//! A deadline on reading a request body: a client that trickles its body in
//! (a byte a minute) would otherwise hold a connection and a task for as
//! long as it likes. The payload of every request with a body is wrapped
//! (`wrap`, in the server's middleware); past `BODY_READ_TIMEOUT` from the
//! start its next read fails with a timeout, which the handler answers
//! `408 BODY_TIMEOUT` (`problem::body_bytes`).

use actix_web::HttpMessage;
use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures::Stream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The longest a request body may take to arrive.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The message the timeout error carries (how `body_bytes` knows it).
pub const TIMED_OUT: &str = "the request body did not arrive in time";

struct Deadline<S> {
    inner: S,
    sleep: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl<S> Stream for Deadline<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, TIMED_OUT);
            return Poll::Ready(Some(Err(PayloadError::Io(e))));
        }
        Poll::Pending
    }
}

/// Whether a request announces a body (a length above 0, or chunks).
pub fn has_body(headers: &actix_web::http::header::HeaderMap) -> bool {
    use actix_web::http::header;
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING)
}

/// Puts the deadline on a request's body, if it has one.
pub fn wrap(req: &mut ServiceRequest) {
    if !has_body(req.headers()) {
        return;
    }
    let inner = req.take_payload();
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Deadline {
        inner,
        sleep: Box::pin(tokio::time::sleep(BODY_READ_TIMEOUT)),
        done: false,
    });
    req.set_payload(Payload::from(stream));
}
