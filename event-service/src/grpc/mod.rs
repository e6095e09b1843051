//! The gRPC adapters: wire types in, domain types to [`Events`] (here) and to
//! [`crate::meters::Meters`] ([`meters`]), domain types back out, and [`EventError`] to
//! `Status` through its one `From` impl. The principal was put into the request's extensions
//! by the authorization layer.

pub mod meters;

use std::sync::Arc;

use tollgate::proto::events::v1 as pb;
use tollgate::time::{from_proto, to_proto};
use tonic::{Request, Response, Status};

use tollgate::paging::{Page, page_size};

use crate::EventError;
use crate::authz::Principal;
use crate::events::Events;
use crate::model::properties;
use crate::model::query::{Cursor, ListFilter};
use crate::model::usage::{Aggregation, PropertyName, UsageQuery};
use crate::model::{Event, IngestOutcome, RawEvent, ReceivedTime, Scope, bounded_text};

/// Implements `tollgate.events.v1.EventService` over [`Events`].
#[derive(Debug, Clone)]
pub struct EventApi {
    events: Events,
}

impl EventApi {
    /// The adapter.
    pub fn new(events: Events) -> Self {
        Self { events }
    }
}

/// The scope of the authorized key. Without a principal the request did not pass the
/// authorization layer, which is a wiring fault: refuse rather than guess a tenant.
fn scope_of<T>(request: &Request<T>) -> Result<Scope, Status> {
    request
        .extensions()
        .get::<Arc<Principal>>()
        .map(|p| p.scope())
        .ok_or_else(|| Status::unauthenticated("request was not authorized"))
}

fn raw_event(input: pb::EventInput) -> RawEvent {
    RawEvent {
        event_id: input.event_id,
        event_name: input.event_name,
        external_customer_id: input.external_customer_id,
        timestamp: match &input.timestamp {
            None => ReceivedTime::Unset,
            Some(t) => from_proto(t).map_or(ReceivedTime::OutOfRange, ReceivedTime::At),
        },
        properties: input.properties,
        source: input.source,
    }
}

fn result_to_proto(o: IngestOutcome) -> pb::IngestResult {
    pb::IngestResult {
        event_id: o.event_id,
        duplicate: o.duplicate,
    }
}

fn event_to_proto(e: Event) -> pb::Event {
    pb::Event {
        properties: Some(properties::from_json(&e.properties)),
        event_id: e.event_id,
        event_name: e.event_name,
        external_customer_id: e.external_customer_id,
        timestamp: Some(to_proto(e.timestamp)),
        source: e.source,
        ingested_at: Some(to_proto(e.ingested_at)),
    }
}

fn optional_text(field: &str, value: String) -> Result<Option<String>, EventError> {
    if value.is_empty() {
        Ok(None)
    } else {
        Ok(Some(bounded_text(field, value, false)?))
    }
}

fn optional_time(
    field: &str,
    value: Option<prost_types::Timestamp>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, EventError> {
    value
        .map(|t| from_proto(&t).ok_or_else(|| EventError::invalid(field, "is not a valid time")))
        .transpose()
}

fn usage_query(req: pb::GetUsageRequest) -> Result<UsageQuery, EventError> {
    let property = || PropertyName::parse(&req.property);
    let aggregation = match pb::Aggregation::try_from(req.aggregation) {
        Ok(pb::Aggregation::Count) => Aggregation::Count,
        Ok(pb::Aggregation::Sum) => Aggregation::Sum(property()?),
        Ok(pb::Aggregation::Min) => Aggregation::Min(property()?),
        Ok(pb::Aggregation::Max) => Aggregation::Max(property()?),
        Ok(pb::Aggregation::CountUnique) if req.property.is_empty() => {
            Aggregation::CountUnique(None)
        }
        Ok(pb::Aggregation::CountUnique) => Aggregation::CountUnique(Some(property()?)),
        _ => {
            return Err(EventError::invalid(
                "aggregation",
                "is required: AGGREGATION_COUNT, _SUM, _MIN, _MAX or _COUNT_UNIQUE",
            ));
        }
    };
    const MINUTE: i64 = 60_000_000;
    let window = match pb::WindowSize::try_from(req.window_size) {
        Ok(pb::WindowSize::Unspecified) => None,
        Ok(pb::WindowSize::Minute) => Some(MINUTE),
        Ok(pb::WindowSize::Hour) => Some(60 * MINUTE),
        Ok(pb::WindowSize::Day) => Some(24 * 60 * MINUTE),
        Err(_) => {
            return Err(EventError::invalid(
                "window_size",
                "must be WINDOW_SIZE_MINUTE, _HOUR, _DAY or unset",
            ));
        }
    };
    Ok(UsageQuery::new(
        bounded_text("event_name", req.event_name, true)?,
        optional_time("start_time", req.start_time)?,
        optional_time("end_time", req.end_time)?,
        aggregation,
        window,
        req.group_by_customer,
        optional_text("external_customer_id", req.external_customer_id)?,
    )?)
}

#[tonic::async_trait]
impl pb::event_service_server::EventService for EventApi {
    async fn ingest_event(
        &self,
        request: Request<pb::IngestEventRequest>,
    ) -> Result<Response<pb::IngestEventResponse>, Status> {
        let scope = scope_of(&request)?;
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| EventError::invalid("event", "is required"))?;
        let mut results = self
            .events
            .ingest(scope, vec![raw_event(event)], true)
            .await?;
        Ok(Response::new(pb::IngestEventResponse {
            result: results.pop().map(result_to_proto),
        }))
    }

    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestEventsResponse>, Status> {
        let scope = scope_of(&request)?;
        let raw = request
            .into_inner()
            .events
            .into_iter()
            .map(raw_event)
            .collect();
        let results = self.events.ingest(scope, raw, false).await?;
        Ok(Response::new(pb::IngestEventsResponse {
            results: results.into_iter().map(result_to_proto).collect(),
        }))
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::GetEventResponse>, Status> {
        let scope = scope_of(&request)?;
        let event = self.events.get(&scope, &request.get_ref().event_id).await?;
        Ok(Response::new(pb::GetEventResponse {
            event: Some(event_to_proto(event)),
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let scope = scope_of(&request)?;
        let req = request.into_inner();
        let filter = ListFilter {
            event_name: optional_text("event_name", req.event_name)?,
            external_customer_id: optional_text("external_customer_id", req.external_customer_id)?,
            source: optional_text("source", req.source)?,
            start_time: optional_time("start_time", req.start_time)?,
            end_time: optional_time("end_time", req.end_time)?,
        };
        let page = Page {
            size: page_size(req.page_size)?,
            after: Cursor::decode(&req.page_token)?,
        };
        let (events, next) = self.events.list(&scope, &filter, page).await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: events.into_iter().map(event_to_proto).collect(),
            next_page_token: next.map(Cursor::encode).unwrap_or_default(),
        }))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let scope = scope_of(&request)?;
        let query = usage_query(request.into_inner())?;
        let report = self.events.usage(&scope, &query).await?;
        Ok(Response::new(pb::GetUsageResponse {
            buckets: report
                .rows
                .iter()
                .map(|row| {
                    let (start, end) = query.span_of(row);
                    pb::UsageBucket {
                        window_start: Some(to_proto(tollgate::time::from_micros(start))),
                        window_end: Some(to_proto(tollgate::time::from_micros(end))),
                        external_customer_id: row.external_customer_id.clone().unwrap_or_default(),
                        value: row.value,
                        exact_value: row.exact.map(|e| e.to_string()).unwrap_or_default(),
                        event_count: u64::try_from(row.event_count).unwrap_or_default(),
                    }
                })
                .collect(),
            total: report.total,
            exact_total: report
                .total_exact
                .map(|e| e.to_string())
                .unwrap_or_default(),
        }))
    }
}
