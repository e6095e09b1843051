//! One place that sets up logging for every binary: `tracing` to stderr, as text for people or
//! JSON for log pipelines, filtered by `RUST_LOG` when set and by the configured level otherwise.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Installs the global subscriber. `default_filter` (e.g. `info`) applies when `RUST_LOG` is
/// unset. Calling it twice (as tests that start several services do) keeps the first one.
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(default_filter),
    }
    .map_err(|e| format!("invalid log filter: {e}"))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // try_init fails only if a subscriber is already set, which is fine.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// The logging flags every Tollgate binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log line format: `text` for people, `json` for log pipelines.
    #[arg(
        long,
        env = "TOLLGATE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Log filter when RUST_LOG is unset, e.g. `info` or `identity_service=debug,info`.
    #[arg(
        long,
        env = "TOLLGATE_LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: String,
}

impl LogArgs {
    /// Installs the subscriber these flags describe.
    pub fn init(&self) -> Result<(), String> {
        init(self.log_format, &self.log_level)
    }
}

/// Parses `10s`, `500ms`, `2m` and the like, for duration flags.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 500ms, 2m)"))
}

/// An error and all its sources, `: `-separated, for a log line. A source whose text the line
/// already ends with is left out: some errors print their source themselves (rustls through
/// tonic's transport error did, doubling a long certificate message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Chained {
        #[error("cannot check")]
        Outer(#[source] Box<Chained>),
        #[error("transport error: {0}")]
        Printing(#[source] Box<Chained>),
        #[error("certificate not valid")]
        Root,
    }

    #[test]
    fn the_chain_names_each_cause_once() {
        let e = Chained::Outer(Box::new(Chained::Printing(Box::new(Chained::Root))));
        assert_eq!(
            error_chain(&e),
            "cannot check: transport error: certificate not valid"
        );
        assert_eq!(
            error_chain(&Chained::Outer(Box::new(Chained::Root))),
            "cannot check: certificate not valid"
        );
    }
}
