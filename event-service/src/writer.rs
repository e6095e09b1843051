//! The write path: group commit through one writer per database.
//!
//! Every ingest request (one event or a batch) goes to a single writer task. The writer takes
//! what has queued while the previous commit ran, writes it all in one transaction, and only then
//! answers each caller. A commit costs one fsync whatever its size, so under concurrency many
//! callers share one, and a caller is never told OK before its own events are durable.
//!
//! SQLite takes one writer at a time, so it gets one writer task. Its commits return before they
//! are durable ([`EventStore::syncs_separately`]): the writer hands each committed group to a
//! syncer task and goes on to write the next group while the syncer fsyncs the log, and the
//! syncer answers a group's callers once a sync begun after its commit has finished. One sync
//! covers every group committed before it began. PostgreSQL gets several writers
//! ([`EventStore::writers`]): each commit group is one server process's work, and a second group
//! can be inserted while the first waits for its commit.
//!
//! SQLite's log is copied into the database file by a checkpointer task beside the writer
//! ([`EventStore::checkpoints_separately`]), which the syncer wakes after each sync; left to the
//! writer, that copying ran inside every few commits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::EventError;
use crate::metrics::EventMetrics;
use crate::model::{IngestOutcome, NewEvent, Scope};
use crate::store::{EventStore, StoreError};

/// Requests waiting for the writer. When the queue is full, callers wait (back-pressure)
/// rather than pile up unbounded memory.
const QUEUE_DEPTH: usize = 4096;
/// Events the writer takes into one transaction at most. A large group amortises the commit;
/// past a few thousand rows the transaction is long enough that latency suffers.
const MAX_GROUP_EVENTS: usize = 5000;
/// Commit groups between being taken and being synced, when the store syncs separately: one
/// being written while the one before it syncs. The writer takes no further group until that
/// sync is done, so requests keep gathering meanwhile: letting it run further ahead halved the
/// groups and doubled the commits (and with them each commit's fixed cost) for no more events.
const GROUPS_IN_FLIGHT: usize = 2;
/// Times the writer lets the runtime run before closing a group, while each turn brings more
/// requests. Requests arriving together on the connections are still being read and decoded when
/// the first reaches the queue, so closing the group at once commits a handful of events at a
/// time; a few turns let the group fill, and more only add latency (the trial of 0 to 32 turns is
/// in docs/benchmarks.md). One request alone pays a single yield, a few microseconds.
const GATHER_TURNS: usize = 3;
/// How long the checkpointer lets commits gather once a sync has woken it: a page that several
/// commits rewrote is copied once.
const CHECKPOINT_PACE: Duration = Duration::from_millis(10);
/// How long the checkpointer rests after a failed checkpoint. The writer copies the log itself
/// past its backstop meanwhile, so nothing waits on it.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

struct WriteRequest {
    scope: Scope,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, Arc<StoreError>>>,
}

/// What became of a request's commit: which of its events were new, or why it failed.
type Outcome = Result<Vec<bool>, Arc<StoreError>>;

/// A request and what became of its commit, to be told to its caller (once durable).
type Settled = (WriteRequest, Outcome);

/// Tells each caller what became of its request. The events are not needed once committed, so
/// their ids move into the answer.
fn answer(settled: Vec<Settled>) {
    for (request, outcome) in settled {
        let outcome = outcome.map(|inserted| {
            request
                .events
                .into_iter()
                .zip(inserted)
                .map(|(event, new)| IngestOutcome {
                    event_id: event.event_id,
                    duplicate: !new,
                })
                .collect()
        });
        let _ = request.reply.send(outcome);
    }
}

/// Why the write path can store nothing more: the first fatal failure, once there is one. A
/// failed sync is fatal because the kernel may have dropped the pages it could not write, so a
/// later sync that succeeds proves nothing about them; a writer that panicked is fatal because
/// what it held is lost. The service then reports NOT_SERVING and exits with an error, so that
/// it is restarted and SQLite recovers from the log.
#[derive(Debug, Clone)]
pub struct Failure(Arc<watch::Sender<Option<String>>>);

impl Failure {
    fn new() -> Self {
        Self(Arc::new(watch::channel(None).0))
    }

    /// Records the first fatal failure; later ones only go to the log.
    fn set(&self, reason: String) {
        tracing::error!(%reason, "the write path failed; no more events will be stored");
        self.0.send_if_modified(|failure| {
            if failure.is_none() {
                *failure = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The failure, if there is one.
    pub fn get(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Resolves with the failure once there is one.
    pub async fn wait(&self) -> String {
        let mut failures = self.0.subscribe();
        loop {
            if let Some(reason) = failures.borrow_and_update().clone() {
                return reason;
            }
            if failures.changed().await.is_err() {
                // The sender lives in `self`: it cannot be gone.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A handle to the writer. Cloning it is cheap; the writer stops when every handle is dropped
/// and the queue is drained.
#[derive(Debug, Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<WriteRequest>,
    failure: Failure,
}

impl Ingestor {
    /// Starts the writers for `store`. The handle finishes when they all have.
    pub fn start(store: Arc<dyn EventStore>, metrics: EventMetrics) -> (Self, JoinHandle<()>) {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let requests = Arc::new(Mutex::new(requests));
        let failure = Failure::new();
        let (synced, syncer, checkpointer) = if store.syncs_separately() {
            let (committed, to_sync) = mpsc::unbounded_channel();
            // One wake-up pending at most: a checkpoint copies everything committed before it.
            let (wake, checkpointer) = if store.checkpoints_separately() {
                let (wake, woken) = mpsc::channel(1);
                let checkpointer = tokio::spawn(run_checkpointer(store.clone(), woken));
                (Some(wake), Some(checkpointer))
            } else {
                (None, None)
            };
            let syncer = tokio::spawn(run_syncer(
                store.clone(),
                to_sync,
                wake,
                metrics.clone(),
                failure.clone(),
            ));
            let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
            (
                Some(SyncQueue { committed, slots }),
                Some(syncer),
                checkpointer,
            )
        } else {
            (None, None, None)
        };
        let mut tasks: Vec<_> = (0..store.writers().max(1))
            .map(|_| {
                let writer = run_writer(
                    store.clone(),
                    requests.clone(),
                    synced.clone(),
                    metrics.clone(),
                );
                tokio::spawn(writer)
            })
            .collect();
        // The syncer stops once the writers (holding the only senders) have, after answering
        // what they committed, and the checkpointer once the syncer has.
        tasks.extend(syncer);
        tasks.extend(checkpointer);
        let supervisor = failure.clone();
        let all = tokio::spawn(async move {
            for task in tasks {
                if let Err(e) = task.await {
                    supervisor.set(format!("an ingest task ended abnormally: {e}"));
                }
            }
        });
        (Self { queue, failure }, all)
    }

    /// What fails the write path for good, when it happens.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// Stores validated events of one scope, all or nothing; answers once they are committed.
    pub async fn ingest(
        &self,
        scope: Scope,
        events: Vec<NewEvent>,
    ) -> Result<Vec<IngestOutcome>, EventError> {
        if self.failure.get().is_some() {
            return Err(EventError::ShuttingDown);
        }
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
            .map_err(|e| EventError::store(e.is_unavailable(), Box::new(SharedStoreError(e))))
    }
}

/// A store error shared by every request of a failed group.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct SharedStoreError(Arc<StoreError>);

/// Takes what has queued (waiting for at least one request) as one group, giving the runtime up
/// to [`GATHER_TURNS`] turns to queue more; `None` once the queue is closed and empty. One writer
/// at a time takes a group.
async fn next_group(
    requests: &Mutex<mpsc::Receiver<WriteRequest>>,
) -> Option<(Vec<WriteRequest>, usize)> {
    let mut requests = requests.lock().await;
    let first = requests.recv().await?;
    let mut size = first.events.len();
    let mut group = vec![first];
    take_queued(&mut requests, &mut group, &mut size);
    for _ in 0..GATHER_TURNS {
        if size >= MAX_GROUP_EVENTS {
            break;
        }
        // Lets the connection tasks decode what has arrived; see GATHER_TURNS.
        tokio::task::yield_now().await;
        if !take_queued(&mut requests, &mut group, &mut size) {
            break;
        }
    }
    Some((group, size))
}

/// Moves what has queued into `group` until it holds [`MAX_GROUP_EVENTS`]; whether any came.
fn take_queued(
    requests: &mut mpsc::Receiver<WriteRequest>,
    group: &mut Vec<WriteRequest>,
    size: &mut usize,
) -> bool {
    let before = group.len();
    while *size < MAX_GROUP_EVENTS {
        let Ok(next) = requests.try_recv() else {
            break;
        };
        *size += next.events.len();
        group.push(next);
    }
    group.len() > before
}

/// Committed groups on their way to the syncer.
#[derive(Clone)]
struct SyncQueue {
    /// Unbounded: `slots` bounds it.
    committed: mpsc::UnboundedSender<Committed>,
    /// One per group taken and not yet synced ([`GROUPS_IN_FLIGHT`]).
    slots: Arc<Semaphore>,
}

/// A committed group waiting for its sync, holding its slot until its callers are answered.
struct Committed {
    settled: Vec<Settled>,
    _slot: OwnedSemaphorePermit,
}

/// Commits groups; answers their callers, or (when `synced`) hands them to the syncer.
async fn run_writer(
    store: Arc<dyn EventStore>,
    requests: Arc<Mutex<mpsc::Receiver<WriteRequest>>>,
    synced: Option<SyncQueue>,
    metrics: EventMetrics,
) {
    loop {
        // Where this group goes once committed: with a slot of its own to the syncer, or (None)
        // straight back to its callers.
        let syncing = match &synced {
            // The semaphore is never closed.
            Some(queue) => match queue.slots.clone().acquire_owned().await {
                Ok(slot) => Some((queue, slot)),
                Err(_) => break,
            },
            None => None,
        };
        let Some((group, size)) = next_group(&requests).await else {
            break;
        };
        metrics.commit_events.observe(size as f64);
        let started = std::time::Instant::now();
        let (settled, ok) = commit(store.as_ref(), group).await;
        metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        metrics
            .commits
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        match syncing {
            // Should the syncer be gone, the requests drop unanswered and their callers hear
            // that the service is shutting down: never an OK without a sync.
            Some((queue, slot)) => {
                let _ = queue.committed.send(Committed {
                    settled,
                    _slot: slot,
                });
            }
            None => answer(settled),
        }
    }
    tracing::debug!("ingest writer stopped");
}

/// Syncs committed groups to disk and then answers their callers. Each sync takes every group
/// committed so far.
async fn run_syncer(
    store: Arc<dyn EventStore>,
    mut to_sync: mpsc::UnboundedReceiver<Committed>,
    checkpoint: Option<mpsc::Sender<()>>,
    metrics: EventMetrics,
    failure: Failure,
) {
    let mut failed: Option<Arc<StoreError>> = None;
    while let Some(first) = to_sync.recv().await {
        let mut groups = vec![first];
        while let Ok(more) = to_sync.try_recv() {
            groups.push(more);
        }
        // After a failed sync none is tried again (see `Failure`): what the writer still
        // commits is answered with the same error.
        let synced = match &failed {
            Some(e) => Err(e.clone()),
            None => {
                let started = std::time::Instant::now();
                let synced = store.sync().await.map_err(Arc::new);
                metrics
                    .sync_duration
                    .observe(started.elapsed().as_secs_f64());
                if let Err(e) = &synced {
                    failure.set(format!(
                        "cannot sync committed events to disk: {}",
                        tollgate::telemetry::error_chain(e.as_ref())
                    ));
                    failed = Some(e.clone());
                }
                synced
            }
        };
        if let (Ok(()), Some(wake)) = (&synced, &checkpoint) {
            // Full: a wake-up is pending already.
            let _ = wake.try_send(());
        }
        if let Err(e) = synced {
            // The commits may or may not survive a crash: tell their callers they failed, and a
            // retry (idempotent by event id) after the restart settles it either way.
            let outcomes = groups.iter_mut().flat_map(|g| &mut g.settled);
            for (_, outcome) in outcomes {
                if outcome.is_ok() {
                    *outcome = Err(e.clone());
                }
            }
        }
        // Each group's slot is freed once its callers have their answers.
        for group in groups {
            answer(group.settled);
        }
    }
    tracing::debug!("ingest syncer stopped");
}

/// Copies the log into the database file each time a sync wakes it ([`EventStore::checkpoint`]),
/// until the syncer stops. A failed checkpoint fails nothing: what was committed is in the synced
/// log either way.
async fn run_checkpointer(store: Arc<dyn EventStore>, mut woken: mpsc::Receiver<()>) {
    while woken.recv().await.is_some() {
        tokio::time::sleep(CHECKPOINT_PACE).await;
        if let Err(e) = store.checkpoint().await {
            tracing::warn!(
                error = %tollgate::telemetry::error_chain(&e),
                "cannot copy the write-ahead log into the database file; trying again after the \
                 next sync in 1 s"
            );
            tokio::time::sleep(CHECKPOINT_RETRY).await;
        }
    }
    tracing::debug!("checkpointer stopped");
}

/// Commits a group; each request with what became of it, and whether the group committed in one
/// go.
async fn commit(store: &dyn EventStore, group: Vec<WriteRequest>) -> (Vec<Settled>, bool) {
    let batches: Vec<_> = group
        .iter()
        .map(|r| (&r.scope, r.events.as_slice()))
        .collect();
    match store.insert(&batches).await {
        Ok(results) => {
            tracing::trace!(requests = group.len(), "group committed");
            let settled = group.into_iter().zip(results.into_iter().map(Ok));
            (settled.collect(), true)
        }
        Err(e) if group.len() > 1 => {
            // One request's rows may have failed the whole group: retry each on its own so
            // that the others still commit and only the culprit gets the error.
            tracing::warn!(error = %tollgate::telemetry::error_chain(&e), requests = group.len(), "group commit failed; retrying requests one by one");
            let mut settled = Vec::with_capacity(group.len());
            for request in group {
                let outcome = store
                    .insert(&[(&request.scope, request.events.as_slice())])
                    .await
                    .map(|mut results| results.pop().unwrap_or_default())
                    .map_err(Arc::new);
                settled.push((request, outcome));
            }
            (settled, false)
        }
        Err(e) => {
            let e = Arc::new(e);
            let settled = group.into_iter().map(|r| (r, Err(e.clone())));
            (settled.collect(), false)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use async_trait::async_trait;
    use tokio::sync::Notify;

    use super::*;
    use crate::model::query::{Cursor, ListFilter};
    use crate::model::usage::{UsageQuery, UsageReport};
    use crate::model::{Event, NewEvent};
    use crate::store::{Batch, Checkpointed, EventStore};

    /// A real SQLite store whose syncs wait for the test to let them finish, and then succeed or
    /// fail as the test says.
    #[derive(Debug)]
    struct GatedSync {
        inner: Arc<dyn EventStore>,
        entered: Notify,
        release: Notify,
        fail: std::sync::atomic::AtomicBool,
        /// The next insert panics, as a bug in the write path would.
        panic: std::sync::atomic::AtomicBool,
        /// What each checkpoint found, as it finishes.
        checkpoints: mpsc::UnboundedSender<Checkpointed>,
    }

    #[async_trait]
    impl tollgate::server::DatabaseHealth for GatedSync {
        async fn reachable(&self) -> bool {
            self.inner.reachable().await
        }
        fn pool_stats(&self) -> (u32, usize) {
            self.inner.pool_stats()
        }
    }

    #[async_trait]
    impl EventStore for GatedSync {
        fn writers(&self) -> usize {
            self.inner.writers()
        }
        async fn insert(&self, batches: &[Batch<'_>]) -> Result<Vec<Vec<bool>>, StoreError> {
            if self.panic.swap(false, std::sync::atomic::Ordering::SeqCst) {
                panic!("a bug in the write path");
            }
            self.inner.insert(batches).await
        }
        fn syncs_separately(&self) -> bool {
            true
        }
        async fn sync(&self) -> Result<(), StoreError> {
            self.entered.notify_one();
            self.release.notified().await;
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(std::io::Error::other("disk gone").into());
            }
            self.inner.sync().await
        }
        fn checkpoints_separately(&self) -> bool {
            self.inner.checkpoints_separately()
        }
        async fn checkpoint(&self) -> Result<Option<Checkpointed>, StoreError> {
            let done = self.inner.checkpoint().await?;
            if let Some(done) = done {
                let _ = self.checkpoints.send(done);
            }
            Ok(done)
        }
        async fn get_event(
            &self,
            scope: &Scope,
            event_id: &str,
        ) -> Result<Option<Event>, StoreError> {
            self.inner.get_event(scope, event_id).await
        }
        async fn list_events(
            &self,
            scope: &Scope,
            filter: &ListFilter,
            after: Option<Cursor>,
            limit: u32,
            max_bytes: usize,
        ) -> Result<(Vec<Event>, bool), StoreError> {
            self.inner
                .list_events(scope, filter, after, limit, max_bytes)
                .await
        }
        async fn usage(
            &self,
            scope: &Scope,
            query: &UsageQuery,
            max_rows: usize,
        ) -> Result<Option<UsageReport>, StoreError> {
            self.inner.usage(scope, query, max_rows).await
        }
    }

    async fn gated(dir: &std::path::Path, fail: bool) -> Arc<GatedSync> {
        gated_checkpoints(dir, fail).await.0
    }

    /// [`gated`], with what each checkpoint finds.
    async fn gated_checkpoints(
        dir: &std::path::Path,
        fail: bool,
    ) -> (Arc<GatedSync>, mpsc::UnboundedReceiver<Checkpointed>) {
        let url = tollgate::testing::sqlite_in(dir);
        let inner: Arc<dyn EventStore> =
            Arc::new(crate::store::sql::SqlStore::connect(&url).await.unwrap());
        assert!(inner.syncs_separately(), "SQLite commits are synced apart");
        assert!(inner.checkpoints_separately(), "and checkpointed apart");
        let (checkpoints, found) = mpsc::unbounded_channel();
        let store = GatedSync {
            inner,
            entered: Notify::new(),
            release: Notify::new(),
            fail: fail.into(),
            panic: false.into(),
            checkpoints,
        };
        (Arc::new(store), found)
    }

    fn scope() -> Scope {
        Scope {
            tenant_id: tollgate::ids::TenantId::generate(),
            environment: tollgate::keys::Environment::Production,
        }
    }

    fn event(id: &str) -> NewEvent {
        NewEvent {
            event_id: id.into(),
            event_name: "call".into(),
            external_customer_id: "c1".into(),
            timestamp: tollgate::time::now(),
            properties: "{}".into(),
            source: String::new(),
        }
    }

    impl GatedSync {
        /// Waits for the next sync to begin, then lets it finish.
        async fn let_a_sync_finish(&self) {
            self.entered.notified().await;
            self.release.notify_one();
        }
    }

    /// Ingests one event in a task of its own, whose result is the caller's answer.
    fn send(
        ingestor: &Ingestor,
        scope: &Scope,
        id: &str,
    ) -> tokio::task::JoinHandle<Result<Vec<IngestOutcome>, EventError>> {
        let (ingestor, scope, events) = (ingestor.clone(), scope.clone(), vec![event(id)]);
        tokio::spawn(async move { ingestor.ingest(scope, events).await })
    }

    fn metrics() -> EventMetrics {
        EventMetrics::register(&prometheus::Registry::new()).unwrap()
    }

    #[tokio::test]
    async fn a_caller_hears_ok_only_once_its_commit_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = gated(dir.path(), false).await;
        let (ingestor, _writers) = Ingestor::start(store.clone(), metrics());
        let s = scope();
        let caller = send(&ingestor, &s, "a");
        // The sync has begun, so the commit is done: the event is stored but not yet durable,
        // and its caller must still be waiting.
        store.entered.notified().await;
        assert!(store.get_event(&s, "a").await.unwrap().is_some());
        tokio::task::yield_now().await;
        assert!(!caller.is_finished(), "answered before the sync finished");
        store.release.notify_one();
        let outcome = caller.await.unwrap().unwrap();
        assert_eq!(outcome.len(), 1);
        assert_eq!(outcome[0].event_id, "a");
        assert!(!outcome[0].duplicate);
    }

    #[tokio::test]
    async fn a_sync_wakes_the_checkpointer_which_stops_with_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut checkpoints) = gated_checkpoints(dir.path(), false).await;
        let (ingestor, writers) = Ingestor::start(store.clone(), metrics());
        let s = scope();
        let caller = send(&ingestor, &s, "a");
        // Nothing is copied before the commit is synced.
        store.entered.notified().await;
        tokio::task::yield_now().await;
        assert!(
            checkpoints.try_recv().is_err(),
            "checkpointed before the sync"
        );
        store.release.notify_one();
        caller.await.unwrap().unwrap();
        // Then the checkpointer copies the whole log, the commit's pages with it.
        let found = tokio::time::timeout(std::time::Duration::from_secs(30), checkpoints.recv())
            .await
            .expect("a checkpoint follows the sync")
            .unwrap();
        assert!(found.log > 0, "{found:?}");
        assert_eq!(found.copied, found.log, "{found:?}");
        // The writers' handle finishes only once the checkpointer has stopped too.
        drop(ingestor);
        tokio::time::timeout(std::time::Duration::from_secs(30), writers)
            .await
            .expect("the write path's tasks stop once its handles are gone")
            .unwrap();
    }

    #[tokio::test]
    async fn a_failed_sync_fails_its_callers_and_the_write_path_and_a_retry_finds_the_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = gated(dir.path(), true).await;
        let (ingestor, _writers) = Ingestor::start(store.clone(), metrics());
        let s = scope();
        let caller = send(&ingestor, &s, "a");
        store.let_a_sync_finish().await;
        let err = caller.await.unwrap().unwrap_err();
        assert!(matches!(err, EventError::Internal(_)), "{err:?}");
        // The write path is failed for good: the service stops taking events.
        let reason = ingestor.failure().wait().await;
        assert!(reason.contains("cannot sync"), "{reason}");
        let refused = send(&ingestor, &s, "b").await.unwrap().unwrap_err();
        assert!(matches!(refused, EventError::ShuttingDown), "{refused:?}");
        // The commit itself went through: the retry a client makes once the service has
        // restarted (a new writer on the same database) is told the event is a duplicate.
        store.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let (ingestor, _writers) = Ingestor::start(store.clone(), metrics());
        let retry = send(&ingestor, &s, "a");
        store.let_a_sync_finish().await;
        let outcome = retry.await.unwrap().unwrap();
        assert!(outcome[0].duplicate);
        assert!(store.get_event(&s, "a").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_writer_that_panics_fails_the_write_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = gated(dir.path(), false).await;
        store.panic.store(true, std::sync::atomic::Ordering::SeqCst);
        let (ingestor, _writers) = Ingestor::start(store.clone(), metrics());
        let s = scope();
        // The caller of the lost group hears that the service is going away, never OK.
        let lost = send(&ingestor, &s, "a").await.unwrap().unwrap_err();
        assert!(matches!(lost, EventError::ShuttingDown), "{lost:?}");
        let reason = ingestor.failure().wait().await;
        assert!(reason.contains("ended abnormally"), "{reason}");
        let refused = send(&ingestor, &s, "b").await.unwrap().unwrap_err();
        assert!(matches!(refused, EventError::ShuttingDown), "{refused:?}");
    }
}
