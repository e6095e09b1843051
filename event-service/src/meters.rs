//! The meter domain: every operation MeterService exposes, free of gRPC types, and the tasks
//! that backfill new meters and fold staged deltas into the rollups. The scope always comes from the authorized key.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tollgate::paging::Page;

use crate::EventError;
use crate::model::Scope;
use crate::model::meters::{Backfill, Meter, MeterDefinition, MeterKey, MeterQuery, MeterReport};
use crate::store::MeterStore;
use crate::store::meters::{CreateOutcome, FOLD_ROWS, Refused};

/// How often the backfill task looks for meters to backfill without being told of one (another
/// replica may have created it).
const BACKFILL_POLL: Duration = Duration::from_secs(5);
/// How long the backfill task waits after a failed step before it tries again.
const BACKFILL_RETRY: Duration = Duration::from_secs(1);
/// How long the fold task waits after a fold that took every staged row. Longer folds add up
/// more transactions' deltas for the same rollup rows (the fewer rows it writes, the less the
/// meters cost the write path); queries read what is staged besides the rollups, so the wait
/// never makes a figure stale, only those queries a little slower.
const FOLD_INTERVAL: Duration = Duration::from_millis(500);
/// How long this process's writer must stage nothing for the fold task to cut its wait short:
/// once ingest stops there are no more deltas to add up, and waiting out [`FOLD_INTERVAL`] only
/// leaves them staged longer. A writer under load stages every few tens of milliseconds.
const FOLD_QUIET: Duration = Duration::from_millis(100);
/// How long the fold task waits after a failed fold.
const FOLD_RETRY: Duration = Duration::from_secs(1);

/// The bounds meter reports keep.
#[derive(Debug, Clone, Copy)]
pub struct MeterLimits {
    /// Rows one report may have.
    pub max_rows: usize,
    /// Events one report may read where the rollups do not cover it.
    pub max_events: usize,
}

/// The meter operations over a store.
#[derive(Debug, Clone)]
pub struct Meters {
    store: Arc<dyn MeterStore>,
    limits: MeterLimits,
    /// Wakes the backfill task when a meter with earlier events was created here.
    created: Arc<Notify>,
}

impl Meters {
    /// The domain over a store.
    pub fn new(store: Arc<dyn MeterStore>, limits: MeterLimits) -> Self {
        Self {
            store,
            limits,
            created: Arc::new(Notify::new()),
        }
    }

    /// Creates a meter; its backfill starts at once.
    pub async fn create(
        &self,
        scope: &Scope,
        definition: MeterDefinition,
    ) -> Result<Meter, EventError> {
        match self.store.create_meter(scope, &definition).await? {
            CreateOutcome::Created(meter) => {
                tracing::info!(meter = definition.key.as_str(), event_name = %definition.event_name, aggregation = definition.aggregation.name(), "meter created");
                if meter.backfill != Backfill::Done {
                    self.created.notify_one();
                }
                Ok(meter)
            }
            CreateOutcome::Exists => Err(EventError::MeterExists(definition.key.as_str().into())),
        }
    }

    /// One meter.
    pub async fn get(&self, scope: &Scope, key: &MeterKey) -> Result<Meter, EventError> {
        self.store
            .get_meter(scope, key)
            .await?
            .ok_or_else(|| EventError::MeterNotFound(key.as_str().into()))
    }

    /// A page of meters in key order, and where the next starts.
    pub async fn list(
        &self,
        scope: &Scope,
        page: Page<MeterKey>,
    ) -> Result<(Vec<Meter>, Option<MeterKey>), EventError> {
        let meters = self
            .store
            .list_meters(scope, page.after.as_ref(), page.probe())
            .await?;
        Ok(page.split(meters, |m| m.definition.key.clone()))
    }

    /// Deletes a meter and its figures.
    pub async fn delete(&self, scope: &Scope, key: &MeterKey) -> Result<(), EventError> {
        if self.store.delete_meter(scope, key).await? {
            tracing::info!(meter = key.as_str(), "meter deleted");
            Ok(())
        } else {
            Err(EventError::MeterNotFound(key.as_str().into()))
        }
    }

    /// A meter's usage: exact, or refused while its backfill runs.
    pub async fn usage(
        &self,
        scope: &Scope,
        key: &MeterKey,
        query: &MeterQuery,
    ) -> Result<MeterReport, EventError> {
        let meter = self.get(scope, key).await?;
        if let Backfill::Running { done, total } = meter.backfill {
            let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
            return Err(EventError::FailedPrecondition(format!(
                "meter {} is still counting the events stored before it ({done}{of} so far): \
                 its usage is answered once every one is counted",
                key.as_str()
            )));
        }
        match self
            .store
            .meter_usage(
                scope,
                &meter,
                query,
                self.limits.max_rows,
                self.limits.max_events,
            )
            .await?
        {
            Ok(report) => Ok(report),
            Err(Refused::TooManyRows(max)) => Err(EventError::invalid(
                "window",
                format!(
                    "gives more than {max} figures over this range: use a wider window, a \
                     shorter range, or one customer"
                ),
            )),
            Err(Refused::TooManyEvents(max)) => Err(EventError::invalid(
                "window",
                format!(
                    "needs more than {max} events read: the meter's pre-aggregated figures cover \
                     days and months on day boundaries per customer, and minutes and hours on \
                     their boundaries across customers; use those, or a shorter range"
                ),
            )),
        }
    }

    /// Backfills meters until the task is aborted: at once when one is created here, and every
    /// few seconds for those created elsewhere (several replicas share the work safely: each
    /// step moves the meter's cursor in the transaction that counts its events).
    pub async fn run_backfill(self) {
        loop {
            match self.store.meters_backfilling().await {
                Ok(ids) => {
                    for id in ids {
                        self.backfill(id).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %tollgate::telemetry::error_chain(&e), "cannot list meters to backfill");
                }
            }
            tokio::select! {
                () = self.created.notified() => {}
                () = tokio::time::sleep(BACKFILL_POLL) => {}
            }
        }
    }

    /// Adds staged deltas to the rollups until the task is aborted: the oldest
    /// [`FOLD_ROWS`] at a time, at once while more wait, otherwise every `FOLD_INTERVAL` (500 ms), or
    /// sooner when this process's writer has staged since the last fold and then gone quiet.
    pub async fn run_fold(self) {
        loop {
            let before = self.store.staged_commits();
            match self.store.fold_meters().await {
                Ok(taken) if taken >= FOLD_ROWS => tokio::task::yield_now().await,
                Ok(_) => wait_to_fold(|| self.store.staged_commits(), before).await,
                Err(e) => {
                    tracing::warn!(error = %tollgate::telemetry::error_chain(&e), "meter fold failed; retrying");
                    tokio::time::sleep(FOLD_RETRY).await;
                }
            }
        }
    }

    async fn backfill(&self, id: i64) {
        let started = std::time::Instant::now();
        loop {
            match self.store.backfill_meter(id).await {
                Ok(true) => {
                    tracing::info!(
                        meter_id = id,
                        secs = started.elapsed().as_secs_f64(),
                        "meter backfilled"
                    );
                    return;
                }
                Ok(false) => tokio::task::yield_now().await,
                Err(e) => {
                    tracing::warn!(meter_id = id, error = %tollgate::telemetry::error_chain(&e), "meter backfill step failed; retrying");
                    tokio::time::sleep(BACKFILL_RETRY).await;
                }
            }
        }
    }
}

/// Waits [`FOLD_INTERVAL`], or less: until the writer, having staged since `before` (as
/// `staged` counts), stages nothing for [`FOLD_QUIET`]. An idle process waits the whole interval.
async fn wait_to_fold(staged: impl Fn() -> u64, before: u64) {
    let deadline = tokio::time::Instant::now() + FOLD_INTERVAL;
    let mut seen = before;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(FOLD_QUIET)).await;
        let now = staged();
        if now != before && now == seen {
            return;
        }
        seen = now;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::time::Instant;

    use super::{FOLD_INTERVAL, FOLD_QUIET, wait_to_fold};

    /// How long `wait_to_fold` waits while a writer commits a staged transaction every `every`
    /// (from the start) for `for_how_long`.
    async fn waited(
        every: Option<std::time::Duration>,
        for_how_long: std::time::Duration,
    ) -> std::time::Duration {
        let staged = Arc::new(AtomicU64::new(7));
        if let Some(every) = every {
            let staged = staged.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                while start.elapsed() < for_how_long {
                    tokio::time::sleep(every).await;
                    staged.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let start = Instant::now();
        wait_to_fold(|| staged.load(Ordering::Relaxed), 7).await;
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_writer_leaves_the_whole_interval() {
        assert_eq!(waited(None, FOLD_INTERVAL).await, FOLD_INTERVAL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_writer_leaves_the_whole_interval() {
        let every = FOLD_QUIET / 4;
        assert_eq!(waited(Some(every), FOLD_INTERVAL * 2).await, FOLD_INTERVAL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_gone_quiet_is_folded_after_the_quiet_time() {
        // Stages for 150 ms, then stops: the wait ends at the first quiet slice after that.
        let waited = waited(Some(FOLD_QUIET / 4), FOLD_QUIET * 3 / 2).await;
        assert_eq!(waited, FOLD_QUIET * 3, "{waited:?}");
        assert!(waited < FOLD_INTERVAL);
    }
}
