//! The revocation stream (`WatchRevocations`): event-service replicas evict their cached
//! decisions for a key as soon as it stops working, whichever identity-service replica changed
//! it.
//!
//! Everything sent comes from the key change log, in its order and with its numbers: a
//! subscriber that resumes after number N is sent every revocation after N from the log, then
//! each new one as this replica's follower applies it (PostgreSQL `NOTIFY` from whichever
//! replica committed it, or this process's own commit on SQLite). Where the log cannot continue
//! from N (pruned past it, or another database), the first message says to flush everything.

use std::future::Future;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tollgate::keys::KeyDigest;

use crate::store::{IdentityStore, KeyChange, KeyChangeKind, StoreError};
use crate::{Identity, IdentityError};

/// One message of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// Its number in the change log: resume after it.
    pub seq: i64,
    /// The key whose cached decisions must go; `None` in a message that only marks a position
    /// (the first one when starting from now) or flushes.
    pub digest: Option<KeyDigest>,
    /// Every cached decision must go: changes after the subscriber's position were missed.
    pub flush: bool,
}

/// Messages queued for one subscriber before the stream waits for it.
const QUEUED: usize = 256;
/// Changes read from the log in one go.
const CHANGES_PER_READ: u32 = 1000;

impl Identity {
    /// The revocations after the change numbered `after` (0: from now on), until the receiver
    /// is dropped or `until` resolves (the server drains). An error ends the stream; the
    /// subscriber resumes after the last number it saw.
    pub fn watch_revocations(
        &self,
        after: i64,
        until: impl Future<Output = ()> + Send + 'static,
    ) -> Result<mpsc::Receiver<Result<Revocation, IdentityError>>, IdentityError> {
        let Some(changes) = &self.changes else {
            return Err(IdentityError::Unavailable(
                "this identity-service does not follow the key change log".into(),
            ));
        };
        // Subscribed before the log is read: a change applied meanwhile is in both, and the
        // numbers tell the copy apart.
        let live = changes.subscribe();
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(async move {
            tokio::select! {
                result = stream(store.as_ref(), after, live, &tx) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %tollgate::telemetry::error_chain(&e), "revocation stream ended: cannot read the key change log");
                        // Nobody listening is fine.
                        let _ = tx.send(Err(IdentityError::Unavailable(
                            "cannot read the key change log; resume after the last seq".into(),
                        ))).await;
                    }
                }
                () = tx.closed() => {}
                () = until => {}
            }
        });
        Ok(rx)
    }
}

/// Sends revocations to `tx` until it closes, the broadcast ends, or the log cannot be read.
async fn stream(
    store: &dyn IdentityStore,
    after: i64,
    mut live: broadcast::Receiver<KeyChange>,
    tx: &mpsc::Sender<Result<Revocation, IdentityError>>,
) -> Result<(), StoreError> {
    let span = store.key_log_span().await?;
    let mut position = after;
    if after <= 0 || !span.continues(after) {
        position = span.latest;
        let mark = Revocation {
            seq: position,
            digest: None,
            flush: after > 0,
        };
        if tx.send(Ok(mark)).await.is_err() {
            return Ok(());
        }
    }
    loop {
        // What the log holds after the position...
        loop {
            let changes = store.key_changes_after(position, CHANGES_PER_READ).await?;
            for change in &changes {
                position = change.seq;
                if !send(tx, change).await {
                    return Ok(());
                }
            }
            if changes.len() < CHANGES_PER_READ as usize {
                break;
            }
        }
        // ...then each change as it is applied, until this subscriber falls so far behind that
        // the channel dropped some: those are read from the log again.
        loop {
            match live.recv().await {
                Ok(change) if change.seq > position => {
                    position = change.seq;
                    if !send(tx, &change).await {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}

/// Sends a change that revokes; whether the subscriber is still there.
async fn send(tx: &mpsc::Sender<Result<Revocation, IdentityError>>, change: &KeyChange) -> bool {
    if change.kind == KeyChangeKind::Issued {
        return !tx.is_closed();
    }
    tx.send(Ok(Revocation {
        seq: change.seq,
        digest: Some(change.digest),
        flush: false,
    }))
    .await
    .is_ok()
}
