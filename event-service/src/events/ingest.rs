//! The write path: group commit through one writer per database.
//!
//! Every ingest request (one event or a batch) goes to a single writer task. The writer takes
//! what has queued while the previous commit ran, writes it all in one transaction, and only then
//! answers each caller. A commit costs one fsync whatever its size, so under concurrency many
//! callers share one, and a caller is never told OK before its own events are durable.
//!
//! SQLite takes one writer at a time, so it gets one writer task. PostgreSQL gets several
//! ([`EventStore::writers`]): each commit group is one server process's work, and a second group
//! can be inserted while the first waits for its commit.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{IngestOutcome, NewEvent, Scope};
use crate::EventError;
use crate::metrics::EventMetrics;
use crate::store::{EventStore, StoreError};

/// Requests waiting for the writer. When the queue is full, callers wait (back-pressure)
/// rather than pile up unbounded memory.
const QUEUE_DEPTH: usize = 4096;
/// Events the writer takes into one transaction at most. A large group amortises the commit;
/// past a few thousand rows the transaction is long enough that latency suffers.
const MAX_GROUP_EVENTS: usize = 5000;

struct WriteRequest {
    scope: Scope,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, Arc<StoreError>>>,
}

impl WriteRequest {
    /// Answers with each event's outcome, given which events were new. The events are not needed
    /// once committed, so their ids move into the answer.
    fn answer(self, inserted: Vec<bool>) {
        let outcomes = self
            .events
            .into_iter()
            .zip(inserted)
            .map(|(event, new)| IngestOutcome {
                event_id: event.event_id,
                duplicate: !new,
            })
            .collect();
        let _ = self.reply.send(Ok(outcomes));
    }
}

/// A handle to the writer. Cloning it is cheap; the writer stops when every handle is dropped
/// and the queue is drained.
#[derive(Debug, Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<WriteRequest>,
}

impl Ingestor {
    /// Starts the writers for `store`. The handle finishes when they all have.
    pub fn start(store: Arc<dyn EventStore>, metrics: EventMetrics) -> (Self, JoinHandle<()>) {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let requests = Arc::new(Mutex::new(requests));
        let writers: Vec<_> = (0..store.writers().max(1))
            .map(|_| tokio::spawn(run_writer(store.clone(), requests.clone(), metrics.clone())))
            .collect();
        let all = tokio::spawn(async move {
            for writer in writers {
                if let Err(e) = writer.await {
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
            }
        });
        (Self { queue }, all)
    }

    /// Stores validated events of one scope, all or nothing; answers once they are committed.
    pub async fn ingest(
        &self,
        scope: Scope,
        events: Vec<NewEvent>,
    ) -> Result<Vec<IngestOutcome>, EventError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(WriteRequest {
                scope,
                events,
                reply,
            })
            .await
            .map_err(|_| EventError::ShuttingDown)?;
        answer
            .await
            .map_err(|_| EventError::ShuttingDown)?
            .map_err(|e| EventError::Internal(Box::new(SharedStoreError(e))))
    }
}

/// A store error shared by every request of a failed group.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct SharedStoreError(Arc<StoreError>);

/// Takes what has queued (waiting for at least one request) as one group; `None` once the queue
/// is closed and empty. One writer at a time takes a group.
async fn next_group(
    requests: &Mutex<mpsc::Receiver<WriteRequest>>,
) -> Option<(Vec<WriteRequest>, usize)> {
    let mut requests = requests.lock().await;
    let first = requests.recv().await?;
    let mut size = first.events.len();
    let mut group = vec![first];
    while size < MAX_GROUP_EVENTS {
        match requests.try_recv() {
            Ok(next) => {
                size += next.events.len();
                group.push(next);
            }
            Err(_) => break,
        }
    }
    Some((group, size))
}

async fn run_writer(
    store: Arc<dyn EventStore>,
    requests: Arc<Mutex<mpsc::Receiver<WriteRequest>>>,
    metrics: EventMetrics,
) {
    while let Some((group, size)) = next_group(&requests).await {
        metrics.commit_events.observe(size as f64);
        let started = std::time::Instant::now();
        let ok = commit(store.as_ref(), group).await;
        metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        metrics
            .commits
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }
    tracing::debug!("ingest writer stopped");
}

/// Commits a group and answers its callers; whether the group committed in one go.
async fn commit(store: &dyn EventStore, group: Vec<WriteRequest>) -> bool {
    let batches: Vec<_> = group
        .iter()
        .map(|r| (&r.scope, r.events.as_slice()))
        .collect();
    match store.insert(&batches).await {
        Ok(results) => {
            tracing::trace!(requests = group.len(), "group committed");
            for (request, inserted) in group.into_iter().zip(results) {
                request.answer(inserted);
            }
            true
        }
        Err(e) if group.len() > 1 => {
            // One request's rows may have failed the whole group: retry each on its own so
            // that the others still commit and only the culprit gets the error.
            tracing::warn!(error = %tollgate::telemetry::error_chain(&e), requests = group.len(), "group commit failed; retrying requests one by one");
            for request in group {
                match store
                    .insert(&[(&request.scope, request.events.as_slice())])
                    .await
                {
                    Ok(mut results) => request.answer(results.pop().unwrap_or_default()),
                    Err(e) => {
                        let _ = request.reply.send(Err(Arc::new(e)));
                    }
                }
            }
            false
        }
        Err(e) => {
            let e = Arc::new(e);
            for request in group {
                let _ = request.reply.send(Err(e.clone()));
            }
            false
        }
    }
}
