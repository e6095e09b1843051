//! The event domain: every operation EventService exposes, free of gRPC types. The scope always
//! comes from the authorized key; writes go through the group-commit [`Ingestor`], reads
//! straight to the store.

use std::sync::Arc;

use tollgate::paging::Page;

use crate::EventError;
use crate::model::bounded_text;
use crate::model::query::{Cursor, ListFilter};
use crate::model::usage::{UsageQuery, UsageReport};
use crate::model::{Event, IngestOutcome, MAX_BATCH, NewEvent, Position, RawEvent, Scope};
use crate::store::EventStore;
use crate::writer::Ingestor;

/// The bounds the operations keep (see `config` for what each is for).
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// How far in the future an event's timestamp may be.
    pub max_future_skew: std::time::Duration,
    /// Bytes of events one `ListEvents` page holds at most.
    pub max_page_bytes: usize,
    /// Rows one usage report may have.
    pub max_usage_buckets: usize,
}

/// The event operations over a store and its writer.
#[derive(Debug, Clone)]
pub struct Events {
    store: Arc<dyn EventStore>,
    ingestor: Ingestor,
    max_future_skew: chrono::Duration,
    limits: EventLimits,
}

impl Events {
    /// The domain over a store and its writer.
    pub fn new(store: Arc<dyn EventStore>, ingestor: Ingestor, limits: EventLimits) -> Self {
        Self {
            store,
            ingestor,
            max_future_skew: chrono::Duration::from_std(limits.max_future_skew)
                .unwrap_or(chrono::Duration::MAX),
            limits,
        }
    }

    /// Validates and stores events, all or nothing. `single` names the field `event.` rather than
    /// `events[i].` in errors.
    pub async fn ingest(
        &self,
        scope: Scope,
        raw: Vec<RawEvent>,
        single: bool,
    ) -> Result<Vec<IngestOutcome>, EventError> {
        if raw.is_empty() || raw.len() > MAX_BATCH {
            return Err(EventError::invalid(
                "events",
                format!("must hold 1 to {MAX_BATCH} events, not {}", raw.len()),
            ));
        }
        let now = tollgate::time::now();
        let events = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let position = if single {
                    Position::Single
                } else {
                    Position::Batch(i)
                };
                NewEvent::validate(r, position, now, self.max_future_skew)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.ingestor.ingest(scope, events).await
    }

    /// One event.
    pub async fn get(&self, scope: &Scope, event_id: &str) -> Result<Event, EventError> {
        let event_id = bounded_text("event_id", event_id.to_owned(), true)?;
        self.store
            .get_event(scope, &event_id)
            .await?
            .ok_or(EventError::NotFound(event_id))
    }

    /// A page of events, newest first, and the cursor of the next page when there may be one.
    /// A page ends early when its events reach the page byte budget.
    pub async fn list(
        &self,
        scope: &Scope,
        filter: &ListFilter,
        page: Page<Cursor>,
    ) -> Result<(Vec<Event>, Option<Cursor>), EventError> {
        filter.validate()?;
        let (events, cut) = self
            .store
            .list_events(
                scope,
                filter,
                page.after,
                page.probe(),
                self.limits.max_page_bytes,
            )
            .await?;
        let cursor = |e: &Event| Cursor {
            ts: tollgate::time::to_micros(e.timestamp),
            seq: e.seq,
        };
        if cut {
            let next = events.last().map(cursor);
            return Ok((events, next));
        }
        Ok(page.split(events, cursor))
    }

    /// A usage report, refused if it would have more rows than allowed.
    pub async fn usage(
        &self,
        scope: &Scope,
        query: &UsageQuery,
    ) -> Result<UsageReport, EventError> {
        let max = self.limits.max_usage_buckets;
        self.store.usage(scope, query, max).await?.ok_or_else(|| {
            EventError::invalid(
                "window_size",
                format!(
                    "gives more than {max} buckets (windows × customers) over this range; \
                     narrow the range, widen the window or filter one customer"
                ),
            )
        })
    }
}
