//! Logging setup: `tracing` with `RUST_LOG`-style filtering, human lines by
//! default or JSON lines (`--log-format json` / `LOG_FORMAT=json`). Logs go to
//! stderr so that stdout stays free for machine-readable lines.

use crate::cli::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Already initialised (e.g. twice in one process): keep the first.
    let _ = result;
}
