//! The HTTP/JSON adapter: `/v1/events` and `/v1/meters`, each route the JSON framing of one
//! RPC. A handler authorizes the key exactly as the authorization layer does for gRPC (the same
//! decision cache, the same permission per operation) before it reads the body, turns the body
//! into the RPC's proto
//! request, and calls the same [`EventApi`] or [`MeterApi`] method a gRPC client reaches.
//! Nothing is validated here beyond framing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tollgate::http::{
    Head, HttpError, Json, Names, Query, answer, missing_in_answer, name_of, named, next_token,
    respond, rfc3339, timestamp_field,
};
use tollgate::permissions::Permission;
use tollgate::proto::events::v1 as pb;
use tollgate::proto::events::v1::event_service_server::EventService;
use tollgate::proto::events::v1::meter_service_server::MeterService;

use crate::authz::cache::AuthCache;
use crate::authz::layer::authorize;
use crate::grpc::EventApi;
use crate::grpc::meters::MeterApi;

/// What the handlers call.
#[derive(Debug, Clone)]
struct Api {
    events: EventApi,
    meters: MeterApi,
    auth: Arc<AuthCache>,
}

impl Api {
    /// Authorizes `request` for `permission` before anything else is read from it (an
    /// unauthorized client cannot make the service parse a large body), as the gRPC layer does.
    async fn caller(&self, permission: Permission, request: Request) -> Result<Caller, HttpError> {
        let principal = authorize(&self.auth, request.headers(), permission).await?;
        let (parts, body) = request.into_parts();
        let mut head = Head::new(parts);
        head.extensions_mut().insert(principal);
        Ok(Caller { head, body })
    }
}

/// An authorized request: its head (the principal in its extensions, as the gRPC layer puts
/// it) and its unread body.
struct Caller {
    head: Head,
    body: Body,
}

impl Caller {
    /// The JSON body, read now that the caller is known.
    async fn json<T: DeserializeOwned>(&mut self) -> Result<T, HttpError> {
        let request = self.head.with_body(std::mem::take(&mut self.body));
        Json::<T>::from_request(request, &())
            .await
            .map(|Json(body)| body)
    }

    /// The gRPC request `message` stands for.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.head.request(message)
    }
}

/// Every HTTP route of event-service.
pub fn router(events: EventApi, meters: MeterApi, auth: Arc<AuthCache>) -> Router {
    Router::new()
        .route("/v1/events", post(ingest_event).get(list_events))
        .route("/v1/events/bulk", post(ingest_events))
        .route("/v1/events/usage", post(get_usage))
        .route("/v1/events/{event_id}", get(get_event))
        .route("/v1/meters", post(create_meter).get(list_meters))
        .route("/v1/meters/{key}", get(get_meter).delete(delete_meter))
        .route("/v1/meters/{key}/usage", post(get_meter_usage))
        .with_state(Api {
            events,
            meters,
            auth,
        })
}

/// An event as a client sends it. Times are RFC 3339; `properties` is a JSON object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventInputJson {
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    event_name: String,
    #[serde(default)]
    external_customer_id: String,
    timestamp: Option<String>,
    properties: Option<Map<String, Value>>,
    #[serde(default)]
    source: String,
}

impl EventInputJson {
    /// The proto event; `field` names it in an error (`timestamp`, `events[3].timestamp`).
    fn into_proto(self, field: &str) -> Result<pb::EventInput, HttpError> {
        Ok(pb::EventInput {
            timestamp: timestamp_field(field, self.timestamp.as_deref())?,
            properties: self.properties.map(tollgate::json::map_to_struct),
            event_id: self.event_id,
            event_name: self.event_name,
            external_customer_id: self.external_customer_id,
            source: self.source,
        })
    }
}

#[derive(Debug, Serialize)]
struct EventJson {
    event_id: String,
    event_name: String,
    external_customer_id: String,
    timestamp: Option<String>,
    properties: Map<String, Value>,
    source: String,
    ingested_at: Option<String>,
}

impl TryFrom<pb::Event> for EventJson {
    type Error = HttpError;

    fn try_from(e: pb::Event) -> Result<Self, HttpError> {
        let properties = match &e.properties {
            Some(s) => tollgate::json::struct_to_map(s).map_err(|cause| {
                tracing::error!(%cause, "stored properties do not convert to JSON");
                missing_in_answer()
            })?,
            None => Map::new(),
        };
        Ok(Self {
            timestamp: rfc3339::from_proto(e.timestamp.as_ref()),
            ingested_at: rfc3339::from_proto(e.ingested_at.as_ref()),
            properties,
            event_id: e.event_id,
            event_name: e.event_name,
            external_customer_id: e.external_customer_id,
            source: e.source,
        })
    }
}

#[derive(Debug, Serialize)]
struct IngestResultJson {
    event_id: String,
    duplicate: bool,
}

impl From<pb::IngestResult> for IngestResultJson {
    fn from(r: pb::IngestResult) -> Self {
        Self {
            event_id: r.event_id,
            duplicate: r.duplicate,
        }
    }
}

async fn ingest_event(State(api): State<Api>, request: Request) -> Response {
    let result = async {
        let mut caller = api.caller(Permission::EventWrite, request).await?;
        let body: EventInputJson = caller.json().await?;
        let message = pb::IngestEventRequest {
            event: Some(body.into_proto("timestamp")?),
        };
        let ingested = answer(api.events.ingest_event(caller.request(message)).await)?;
        ingested
            .result
            .map(IngestResultJson::from)
            .ok_or_else(missing_in_answer)
    };
    respond("POST /v1/events", StatusCode::OK, result.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    #[serde(default)]
    events: Vec<EventInputJson>,
}

#[derive(Debug, Serialize)]
struct BulkResults {
    results: Vec<IngestResultJson>,
}

async fn ingest_events(State(api): State<Api>, request: Request) -> Response {
    let result = async {
        let mut caller = api.caller(Permission::EventWrite, request).await?;
        let body: BulkBody = caller.json().await?;
        let events = body
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| e.into_proto(&format!("events[{i}].timestamp")))
            .collect::<Result<Vec<_>, _>>()?;
        let message = pb::IngestEventsRequest { events };
        let ingested = answer(api.events.ingest_events(caller.request(message)).await)?;
        Ok(BulkResults {
            results: ingested.results.into_iter().map(Into::into).collect(),
        })
    };
    respond("POST /v1/events/bulk", StatusCode::OK, result.await)
}

async fn get_event(
    State(api): State<Api>,
    Path(event_id): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let caller = api.caller(Permission::EventRead, request).await?;
        let message = pb::GetEventRequest { event_id };
        let found = answer(api.events.get_event(caller.request(message)).await)?;
        found
            .event
            .ok_or_else(missing_in_answer)
            .and_then(EventJson::try_from)
    };
    respond("GET /v1/events/{event_id}", StatusCode::OK, result.await)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListEventsParams {
    #[serde(default)]
    page_size: i32,
    #[serde(default)]
    page_token: String,
    #[serde(default)]
    event_name: String,
    #[serde(default)]
    external_customer_id: String,
    #[serde(default)]
    source: String,
    start_time: Option<String>,
    end_time: Option<String>,
}

#[derive(Debug, Serialize)]
struct EventList {
    events: Vec<EventJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

async fn list_events(
    State(api): State<Api>,
    params: Result<Query<ListEventsParams>, HttpError>,
    request: Request,
) -> Response {
    let result = async {
        let caller = api.caller(Permission::EventRead, request).await?;
        let Query(p) = params?;
        let message = pb::ListEventsRequest {
            start_time: timestamp_field("start_time", p.start_time.as_deref())?,
            end_time: timestamp_field("end_time", p.end_time.as_deref())?,
            page_size: p.page_size,
            page_token: p.page_token,
            event_name: p.event_name,
            external_customer_id: p.external_customer_id,
            source: p.source,
        };
        let list = answer(api.events.list_events(caller.request(message)).await)?;
        Ok(EventList {
            events: list
                .events
                .into_iter()
                .map(EventJson::try_from)
                .collect::<Result<_, _>>()?,
            next_page_token: next_token(list.next_page_token),
        })
    };
    respond("GET /v1/events", StatusCode::OK, result.await)
}

const AGGREGATIONS: Names<pb::Aggregation> = &[
    ("count", pb::Aggregation::Count),
    ("sum", pb::Aggregation::Sum),
    ("min", pb::Aggregation::Min),
    ("max", pb::Aggregation::Max),
    ("count_unique", pb::Aggregation::CountUnique),
];

const WINDOW_SIZES: Names<pb::WindowSize> = &[
    ("minute", pb::WindowSize::Minute),
    ("hour", pb::WindowSize::Hour),
    ("day", pb::WindowSize::Day),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageBody {
    #[serde(default)]
    event_name: String,
    start_time: Option<String>,
    end_time: Option<String>,
    aggregation: Option<String>,
    #[serde(default)]
    property: String,
    window_size: Option<String>,
    #[serde(default)]
    group_by_customer: bool,
    #[serde(default)]
    external_customer_id: String,
}

#[derive(Debug, Serialize)]
struct UsageBucketJson {
    window_start: Option<String>,
    window_end: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    external_customer_id: String,
    value: f64,
    event_count: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    exact_value: String,
}

#[derive(Debug, Serialize)]
struct UsageJson {
    buckets: Vec<UsageBucketJson>,
    total: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    exact_total: String,
}

async fn get_usage(State(api): State<Api>, request: Request) -> Response {
    let result = async {
        let mut caller = api.caller(Permission::EventRead, request).await?;
        let b: UsageBody = caller.json().await?;
        let message = pb::GetUsageRequest {
            start_time: timestamp_field("start_time", b.start_time.as_deref())?,
            end_time: timestamp_field("end_time", b.end_time.as_deref())?,
            aggregation: named(
                "aggregation",
                AGGREGATIONS,
                b.aggregation.as_deref(),
                pb::Aggregation::Unspecified,
            )?
            .into(),
            window_size: named(
                "window_size",
                WINDOW_SIZES,
                b.window_size.as_deref(),
                pb::WindowSize::Unspecified,
            )?
            .into(),
            event_name: b.event_name,
            property: b.property,
            group_by_customer: b.group_by_customer,
            external_customer_id: b.external_customer_id,
        };
        let usage = answer(api.events.get_usage(caller.request(message)).await)?;
        Ok(UsageJson {
            buckets: usage
                .buckets
                .into_iter()
                .map(|b| UsageBucketJson {
                    window_start: rfc3339::from_proto(b.window_start.as_ref()),
                    window_end: rfc3339::from_proto(b.window_end.as_ref()),
                    external_customer_id: b.external_customer_id,
                    value: b.value,
                    event_count: b.event_count,
                    exact_value: b.exact_value,
                })
                .collect(),
            total: usage.total,
            exact_total: usage.exact_total,
        })
    };
    respond("POST /v1/events/usage", StatusCode::OK, result.await)
}

const METER_AGGREGATIONS: Names<pb::MeterAggregation> = &[
    ("count", pb::MeterAggregation::Count),
    ("sum", pb::MeterAggregation::Sum),
    ("min", pb::MeterAggregation::Min),
    ("max", pb::MeterAggregation::Max),
    ("count_unique", pb::MeterAggregation::CountUnique),
    ("latest", pb::MeterAggregation::Latest),
];

const METER_WINDOWS: Names<pb::MeterWindow> = &[
    ("minute", pb::MeterWindow::Minute),
    ("hour", pb::MeterWindow::Hour),
    ("day", pb::MeterWindow::Day),
    ("month", pb::MeterWindow::Month),
];

#[derive(Debug, Serialize)]
struct MeterJson {
    key: String,
    description: String,
    event_name: String,
    aggregation: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    property: String,
    group_by: Vec<String>,
    created_at: Option<String>,
    ready: bool,
    backfilled_events: i64,
    backfill_total: i64,
}

impl From<pb::Meter> for MeterJson {
    fn from(m: pb::Meter) -> Self {
        Self {
            aggregation: name_of(METER_AGGREGATIONS, m.aggregation),
            created_at: rfc3339::from_proto(m.created_at.as_ref()),
            key: m.key,
            description: m.description,
            event_name: m.event_name,
            property: m.property,
            group_by: m.group_by,
            ready: m.ready,
            backfilled_events: m.backfilled_events,
            backfill_total: m.backfill_total,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMeterBody {
    #[serde(default)]
    key: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    event_name: String,
    aggregation: Option<String>,
    #[serde(default)]
    property: String,
    #[serde(default)]
    group_by: Vec<String>,
}

async fn create_meter(State(api): State<Api>, request: Request) -> Response {
    let result = async {
        let mut caller = api.caller(Permission::MetersManage, request).await?;
        let b: CreateMeterBody = caller.json().await?;
        let message = pb::CreateMeterRequest {
            aggregation: named(
                "aggregation",
                METER_AGGREGATIONS,
                b.aggregation.as_deref(),
                pb::MeterAggregation::Unspecified,
            )?
            .into(),
            key: b.key,
            description: b.description,
            event_name: b.event_name,
            property: b.property,
            group_by: b.group_by,
        };
        let created = answer(api.meters.create_meter(caller.request(message)).await)?;
        created
            .meter
            .map(MeterJson::from)
            .ok_or_else(missing_in_answer)
    };
    respond("POST /v1/meters", StatusCode::CREATED, result.await)
}

async fn get_meter(State(api): State<Api>, Path(key): Path<String>, request: Request) -> Response {
    let result = async {
        let caller = api.caller(Permission::MetersManage, request).await?;
        let message = pb::GetMeterRequest { key };
        let found = answer(api.meters.get_meter(caller.request(message)).await)?;
        found
            .meter
            .map(MeterJson::from)
            .ok_or_else(missing_in_answer)
    };
    respond("GET /v1/meters/{key}", StatusCode::OK, result.await)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageParams {
    #[serde(default)]
    page_size: i32,
    #[serde(default)]
    page_token: String,
}

#[derive(Debug, Serialize)]
struct MeterList {
    meters: Vec<MeterJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

async fn list_meters(
    State(api): State<Api>,
    params: Result<Query<PageParams>, HttpError>,
    request: Request,
) -> Response {
    let result = async {
        let caller = api.caller(Permission::MetersManage, request).await?;
        let Query(p) = params?;
        let message = pb::ListMetersRequest {
            page_size: p.page_size,
            page_token: p.page_token,
        };
        let list = answer(api.meters.list_meters(caller.request(message)).await)?;
        Ok(MeterList {
            meters: list.meters.into_iter().map(Into::into).collect(),
            next_page_token: next_token(list.next_page_token),
        })
    };
    respond("GET /v1/meters", StatusCode::OK, result.await)
}

async fn delete_meter(
    State(api): State<Api>,
    Path(key): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let caller = api.caller(Permission::MetersManage, request).await?;
        let message = pb::DeleteMeterRequest { key };
        answer(api.meters.delete_meter(caller.request(message)).await)?;
        Ok(serde_json::json!({}))
    };
    respond("DELETE /v1/meters/{key}", StatusCode::OK, result.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeterUsageBody {
    start_time: Option<String>,
    end_time: Option<String>,
    #[serde(default)]
    external_customer_id: String,
    #[serde(default)]
    group_by_customer: bool,
    window: Option<String>,
}

#[derive(Debug, Serialize)]
struct MeterUsageRowJson {
    window_start: Option<String>,
    window_end: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    external_customer_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    group_values: Vec<String>,
    value: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    exact_value: String,
    event_count: i64,
}

#[derive(Debug, Serialize)]
struct MeterUsageJson {
    rows: Vec<MeterUsageRowJson>,
    total: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    exact_total: String,
    source: String,
}

async fn get_meter_usage(
    State(api): State<Api>,
    Path(key): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let mut caller = api.caller(Permission::EventRead, request).await?;
        let b: MeterUsageBody = caller.json().await?;
        let message = pb::GetMeterUsageRequest {
            key,
            start_time: timestamp_field("start_time", b.start_time.as_deref())?,
            end_time: timestamp_field("end_time", b.end_time.as_deref())?,
            external_customer_id: b.external_customer_id,
            group_by_customer: b.group_by_customer,
            window: named(
                "window",
                METER_WINDOWS,
                b.window.as_deref(),
                pb::MeterWindow::Unspecified,
            )?
            .into(),
        };
        let usage = answer(api.meters.get_meter_usage(caller.request(message)).await)?;
        Ok(MeterUsageJson {
            rows: usage
                .rows
                .into_iter()
                .map(|r| MeterUsageRowJson {
                    window_start: rfc3339::from_proto(r.window_start.as_ref()),
                    window_end: rfc3339::from_proto(r.window_end.as_ref()),
                    external_customer_id: r.external_customer_id,
                    group_values: r.group_values,
                    value: r.value,
                    exact_value: r.exact_value,
                    event_count: r.event_count,
                })
                .collect(),
            total: usage.total,
            exact_total: usage.exact_total,
            source: usage.source,
        })
    };
    respond("POST /v1/meters/{key}/usage", StatusCode::OK, result.await)
}
