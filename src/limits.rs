//! Every bound a client can meet, with its default and the flag that changes it. The Limits
//! table in docs/operations.md lists the same; the bounds a service alone has (event-service's
//! page bytes and usage buckets) are in its own config next to these.

use std::time::Duration;

/// Levels of nesting an event's properties may have (an object in an object counts two). Deeper
/// is refused at validation, naming the field; beyond about 32 levels a request cannot even be
/// decoded (prost's recursion limit), which is refused too.
pub const MAX_PROPERTIES_DEPTH: usize = 16;

/// Largest request a server decodes: a full batch of 1000 events with large properties fits;
/// tonic's own default (4 MiB) does not.
pub const DEFAULT_MAX_MESSAGE_SIZE: &str = "16MiB";
/// Concurrent requests (HTTP/2 streams) one connection may have open: plenty for a client that
/// multiplexes, few enough that one connection cannot take every worker.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// How long one request may take before it is cancelled: far above any request's normal time,
/// so only something stuck meets it.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
/// How long PostgreSQL runs one statement before cancelling it (SQLite cannot interrupt a
/// statement: there the request timeout and the bounds on each request's work hold instead).
pub const DEFAULT_STATEMENT_TIMEOUT: &str = "30s";

/// The server-side bounds both services take.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerLimits {
    /// Largest request message decoded, e.g. 16MiB.
    #[arg(long, env = "TOLLGATE_MAX_MESSAGE_SIZE", default_value = DEFAULT_MAX_MESSAGE_SIZE, value_parser = parse_size)]
    pub max_message_size: usize,
    /// Concurrent requests (HTTP/2 streams) per connection.
    #[arg(long, env = "TOLLGATE_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,
    /// How long a request may take before it is cancelled (CANCELLED, "Timeout expired").
    #[arg(long, env = "TOLLGATE_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = crate::telemetry::parse_duration)]
    pub request_timeout: Duration,
    /// How long PostgreSQL may run one statement (`statement_timeout`; SQLite has none).
    #[arg(long, env = "TOLLGATE_STATEMENT_TIMEOUT", default_value = DEFAULT_STATEMENT_TIMEOUT, value_parser = crate::telemetry::parse_duration)]
    pub statement_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_message_size: parse_size(DEFAULT_MAX_MESSAGE_SIZE).unwrap_or(16 << 20),
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            request_timeout: crate::telemetry::parse_duration(DEFAULT_REQUEST_TIMEOUT)
                .unwrap_or(Duration::from_secs(30)),
            statement_timeout: crate::telemetry::parse_duration(DEFAULT_STATEMENT_TIMEOUT)
                .unwrap_or(Duration::from_secs(30)),
        }
    }
}

impl ServerLimits {
    /// A tonic server builder with these bounds. It accepts HTTP/1.1 beside HTTP/2: the JSON
    /// routes share the gRPC port, and curl speaks HTTP/1.1 to a plaintext port.
    pub fn server(&self) -> tonic::transport::Server {
        tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(self.max_concurrent_streams)
            .timeout(self.request_timeout)
    }
}

/// Parses a size such as `16MiB`, `512KiB`, `4MB` or `1048576` (bytes).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 16MiB, 512KiB, 1048576)"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} must be more than 0 and fit in memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4MB"), Ok(4_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        for bad in ["", "MiB", "0", "1 parsec", "-1MiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(ServerLimits::default().max_message_size, 16 << 20);
    }
}
