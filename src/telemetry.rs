//! Logging setup: `tracing` with `RUST_LOG`-style filtering, human lines by
//! default or JSON lines (`--log-format json` / `LOG_FORMAT=json`). Logs go to
//! stderr so that stdout stays free for machine-readable lines.
//!
//! Requests the HTTP framework rejects before any handler (a bad
//! Content-Length, bad header bytes, a header block over the limit) each log
//! an ERROR line from `actix_http`: a client could fill the log at will.
//! Those lines are rate limited — at most one per `QUIET` per process; the
//! others are dropped (the client got its 400 or 431 all the same).

use crate::cli::LogFormat;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// At most one framework rejection line per this long.
const QUIET: Duration = Duration::from_secs(10);

/// When the last framework rejection line was let through (ms since the epoch).
static LAST_REJECTION_LOGGED: AtomicU64 = AtomicU64::new(0);

/// The filter of the log lines: lets everything through but framework
/// rejection lines beyond one per `QUIET`. The framework logs through the
/// `log` crate, so the target is the log record's (`normalized_metadata`).
struct QuietFramework;

impl<S> tracing_subscriber::layer::Filter<S> for QuietFramework {
    fn enabled(
        &self,
        _meta: &tracing::Metadata<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        use tracing_log::NormalizeEvent;
        match event.normalized_metadata() {
            Some(meta) => let_through(&meta),
            None => let_through(event.metadata()),
        }
    }
}

/// Whether an event of this metadata is let through.
fn let_through(meta: &tracing::Metadata<'_>) -> bool {
    if !meta.target().starts_with("actix_http::h1") || *meta.level() > tracing::Level::WARN {
        return true;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = LAST_REJECTION_LOGGED.load(Ordering::Relaxed);
    now.saturating_sub(last) >= QUIET.as_millis() as u64
        && LAST_REJECTION_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(QuietFramework),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(QuietFramework),
            )
            .try_init(),
    };
    // Already initialised (e.g. twice in one process): keep the first.
    let _ = result;
}

#[cfg(test)]
mod tests {
    #[test]
    fn framework_rejections_are_let_through_once_per_quiet_period() {
        use tracing::Level;
        // A metadata of the framework's target, built the way tracing does.
        struct Cs;
        impl tracing::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                &META
            }
        }
        static CS: Cs = Cs;
        static META: tracing::Metadata<'static> = tracing::Metadata::new(
            "event",
            "actix_http::h1::dispatcher",
            Level::ERROR,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CS)),
            tracing::metadata::Kind::EVENT,
        );
        assert!(super::let_through(&META));
        assert!(
            !super::let_through(&META),
            "a second line within the quiet period is dropped"
        );
    }
}
