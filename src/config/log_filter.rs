//! The log filter syntax (`logging.level`, `RUST_LOG`): an `EnvFilter` directive string. The
//! config's validation checks it here; the daemon's logging set-up (`daemon::logging`) uses the
//! same check to decide between `RUST_LOG`, the config and the default.

/// Checks an `EnvFilter` directive string (`info`, `info,dli_gitops=debug`, ...).
pub fn parse_filter(filter: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(|_| ())
        .map_err(|error| error.to_string())
}
