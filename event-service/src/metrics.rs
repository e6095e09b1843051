//! event-service's own metrics, beside the request and pool metrics every service has.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tollgate::metrics::LATENCY_BUCKETS;

/// Commit group sizes, in events: from one lone event to the writer's largest group.
const GROUP_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// Counters and histograms of authorization and ingest.
#[derive(Debug, Clone)]
pub struct EventMetrics {
    /// Decision lookups by result (hit, miss).
    pub auth_cache: IntCounterVec,
    /// Decisions dropped by cause (expired, size, explicit, replaced).
    pub auth_cache_evictions: IntCounterVec,
    /// `Authorize` calls by outcome (ok, error).
    pub authorize_calls: IntCounterVec,
    /// `Authorize` call latency.
    pub authorize_duration: HistogramVec,
    /// Events per commit (group commit batch size).
    pub commit_events: Histogram,
    /// Commit latency.
    pub commit_duration: Histogram,
    /// Commits by result (ok, error).
    pub commits: IntCounterVec,
    /// Latency of the syncs that make SQLite commits durable (none on PostgreSQL, whose commits
    /// are durable when they return).
    pub sync_duration: Histogram,
}

impl EventMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            auth_cache: IntCounterVec::new(
                Opts::new(
                    "auth_cache_lookups_total",
                    "authorization decision lookups by result",
                ),
                &["result"],
            )?,
            auth_cache_evictions: IntCounterVec::new(
                Opts::new(
                    "auth_cache_evictions_total",
                    "cached decisions dropped, by cause",
                ),
                &["cause"],
            )?,
            authorize_calls: IntCounterVec::new(
                Opts::new(
                    "authorize_calls_total",
                    "Authorize calls to identity-service by outcome",
                ),
                &["outcome"],
            )?,
            authorize_duration: HistogramVec::new(
                HistogramOpts::new("authorize_call_duration_seconds", "Authorize call latency")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["outcome"],
            )?,
            commit_events: Histogram::with_opts(
                HistogramOpts::new("ingest_commit_events", "events per ingest commit")
                    .buckets(GROUP_BUCKETS.to_vec()),
            )?,
            commit_duration: Histogram::with_opts(
                HistogramOpts::new("ingest_commit_duration_seconds", "ingest commit latency")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            commits: IntCounterVec::new(
                Opts::new("ingest_commits_total", "ingest commits by result"),
                &["result"],
            )?,
            sync_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "ingest_sync_duration_seconds",
                    "latency of the log syncs that make committed events durable (SQLite)",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
        };
        registry.register(Box::new(m.auth_cache.clone()))?;
        registry.register(Box::new(m.auth_cache_evictions.clone()))?;
        registry.register(Box::new(m.authorize_calls.clone()))?;
        registry.register(Box::new(m.authorize_duration.clone()))?;
        registry.register(Box::new(m.commit_events.clone()))?;
        registry.register(Box::new(m.commit_duration.clone()))?;
        registry.register(Box::new(m.commits.clone()))?;
        registry.register(Box::new(m.sync_duration.clone()))?;
        Ok(m)
    }
}
