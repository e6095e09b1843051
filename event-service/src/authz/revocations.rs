//! Following identity-service's revocation stream, so that a key deleted (alone or with its
//! account) or rotated to an expiry, on any identity-service replica, stops working here at
//! once rather than when its cached decisions expire.
//!
//! The stream resumes after the last change seen, so a reconnection misses nothing; when
//! identity-service cannot continue from there (its log was pruned past it, or it is another
//! database) it says to flush, and every cached decision goes. The first connection flushes
//! too: what was cached before it cannot be vouched for. While the stream is down, cached
//! decisions live out their TTL exactly as without it; the `revocation_stream_up` gauge is 0
//! and a warning says so.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tollgate::keys::KeyDigest;
use tollgate::proto::identity::v1 as pb;

use super::cache::AuthCache;

/// The first wait before connecting again; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The stream's metrics.
#[derive(Debug, Clone)]
pub struct RevocationMetrics {
    /// 1 while the stream is followed, 0 while it is down.
    pub up: IntGauge,
    /// Messages applied, by kind (key, flush).
    pub received: IntCounterVec,
    /// Connections lost or refused.
    pub failures: prometheus::IntCounter,
}

impl RevocationMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            up: IntGauge::new(
                "revocation_stream_up",
                "1 while identity-service's revocation stream is followed; while 0, a deleted key \
                 keeps working until its cached decisions expire (the cache TTL)",
            )?,
            received: IntCounterVec::new(
                Opts::new(
                    "revocations_total",
                    "revocations applied to the decision cache, by kind (key, flush)",
                ),
                &["kind"],
            )?,
            failures: prometheus::IntCounter::new(
                "revocation_stream_failures_total",
                "revocation stream connections lost or refused",
            )?,
        };
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.received.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        Ok(m)
    }
}

/// Follows the stream for as long as the task runs (it is aborted when the service stops).
pub async fn follow(cache: Arc<AuthCache>, metrics: RevocationMetrics, ttl: Duration) {
    let mut position = 0;
    let mut backoff = MIN_BACKOFF;
    // Whether the loss of the stream has been reported since it was last followed; the first
    // failure is reported, the retries are not.
    let mut reported = false;
    loop {
        let ended = match cache.client().watch_revocations(position).await {
            Ok(stream) => {
                let followed = apply(&cache, &metrics, stream, &mut position).await;
                if followed.messages > 0 {
                    // It was followed: try again at once after losing it.
                    backoff = MIN_BACKOFF;
                    reported = false;
                }
                followed.ended
            }
            Err(status) => Err(status),
        };
        metrics.up.set(0);
        metrics.failures.inc();
        if !reported {
            let error = match &ended {
                Ok(()) => "identity-service ended the stream".to_owned(),
                Err(status) => format!("{}: {}", status.code(), status.message()),
            };
            tracing::warn!(
                error,
                ttl_secs = ttl.as_secs_f64(),
                "not following identity-service's revocation stream: until it is back, a deleted \
                 key keeps working until its cached decisions expire"
            );
            reported = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How one connection went.
struct Followed {
    /// Messages applied.
    messages: u64,
    /// How it ended.
    ended: Result<(), tonic::Status>,
}

/// Applies one connection's messages until it ends.
async fn apply(
    cache: &AuthCache,
    metrics: &RevocationMetrics,
    mut stream: tonic::Streaming<pb::WatchRevocationsResponse>,
    position: &mut i64,
) -> Followed {
    let mut messages = 0;
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => {
                return Followed {
                    messages,
                    ended: Ok(()),
                };
            }
            Err(status) => {
                return Followed {
                    messages,
                    ended: Err(status),
                };
            }
        };
        let first = messages == 0;
        let digest =
            (!message.key_digest.is_empty()).then(|| KeyDigest::from_slice(&message.key_digest));
        match digest {
            Some(Some(digest)) if !message.flush => {
                cache.revoke(&digest).await;
                metrics.received.with_label_values(&["key"]).inc();
            }
            _ if message.flush || (first && *position == 0) || digest.is_some() => {
                // A flush, the very first position (nothing cached before it is vouched for),
                // or a digest this build cannot read: everything goes.
                cache.revoke_all();
                metrics.received.with_label_values(&["flush"]).inc();
            }
            _ => {}
        }
        *position = message.seq;
        messages += 1;
        if first {
            metrics.up.set(1);
            tracing::info!(
                seq = message.seq,
                "following identity-service's revocation stream"
            );
        }
    }
}
