//! The gRPC adapter of MeterService: wire types in, domain types to [`Meters`], domain types
//! back out.

use tollgate::paging::{Page, decode_token_with, encode_token, page_size};
use tollgate::proto::events::v1 as pb;
use tollgate::time::to_proto;
use tonic::{Request, Response, Status};

use super::{optional_text, optional_time, scope_of};
use crate::EventError;
use crate::meters::Meters;
use crate::model::bounded_text;
use crate::model::meters::{
    Backfill, MAX_GROUP_BY, Meter, MeterAggregation, MeterDefinition, MeterKey, MeterQuery,
    PropertyPath, ReportSource, Window,
};

/// Implements `tollgate.events.v1.MeterService` over [`Meters`].
#[derive(Debug, Clone)]
pub struct MeterApi {
    meters: Meters,
}

impl MeterApi {
    /// The adapter.
    pub fn new(meters: Meters) -> Self {
        Self { meters }
    }
}

fn key(value: &str) -> Result<MeterKey, EventError> {
    if value.is_empty() {
        return Err(EventError::invalid("key", "is required"));
    }
    Ok(MeterKey::parse("key", value)?)
}

fn aggregation_to_proto(a: &MeterAggregation) -> pb::MeterAggregation {
    match a {
        MeterAggregation::Count => pb::MeterAggregation::Count,
        MeterAggregation::Sum(_) => pb::MeterAggregation::Sum,
        MeterAggregation::Min(_) => pb::MeterAggregation::Min,
        MeterAggregation::Max(_) => pb::MeterAggregation::Max,
        MeterAggregation::CountUnique(_) => pb::MeterAggregation::CountUnique,
        MeterAggregation::Latest(_) => pb::MeterAggregation::Latest,
    }
}

fn definition(req: pb::CreateMeterRequest) -> Result<MeterDefinition, EventError> {
    let property = || -> Result<PropertyPath, EventError> {
        if req.property.is_empty() {
            return Err(EventError::invalid(
                "property",
                "is required for SUM, MIN, MAX, COUNT_UNIQUE and LATEST",
            ));
        }
        Ok(PropertyPath::parse("property", &req.property)?)
    };
    let aggregation = match pb::MeterAggregation::try_from(req.aggregation) {
        Ok(pb::MeterAggregation::Count) => {
            if !req.property.is_empty() {
                return Err(EventError::invalid(
                    "property",
                    "must be empty for COUNT, which counts events",
                ));
            }
            MeterAggregation::Count
        }
        Ok(pb::MeterAggregation::Sum) => MeterAggregation::Sum(property()?),
        Ok(pb::MeterAggregation::Min) => MeterAggregation::Min(property()?),
        Ok(pb::MeterAggregation::Max) => MeterAggregation::Max(property()?),
        Ok(pb::MeterAggregation::CountUnique) => MeterAggregation::CountUnique(property()?),
        Ok(pb::MeterAggregation::Latest) => MeterAggregation::Latest(property()?),
        Ok(pb::MeterAggregation::Unspecified) | Err(_) => {
            return Err(EventError::invalid(
                "aggregation",
                "must be COUNT, SUM, MIN, MAX, COUNT_UNIQUE or LATEST",
            ));
        }
    };
    if req.group_by.len() > MAX_GROUP_BY {
        return Err(EventError::invalid(
            "group_by",
            format!("may name at most {MAX_GROUP_BY} properties"),
        ));
    }
    let group_by = req
        .group_by
        .iter()
        .enumerate()
        .map(|(i, p)| PropertyPath::parse(&format!("group_by[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MeterDefinition {
        key: key(&req.key)?,
        description: bounded_text("description", req.description, false)?,
        event_name: bounded_text("event_name", req.event_name, true)?,
        aggregation,
        group_by,
    })
}

fn meter_to_proto(m: Meter) -> pb::Meter {
    let (ready, done, total) = match m.backfill {
        Backfill::Done => (true, 0, 0),
        Backfill::Running { done, total } => (false, done, total.unwrap_or_default()),
    };
    let d = m.definition;
    pb::Meter {
        aggregation: aggregation_to_proto(&d.aggregation).into(),
        property: d
            .aggregation
            .property()
            .map(PropertyPath::as_string)
            .unwrap_or_default(),
        key: d.key.as_str().to_owned(),
        description: d.description,
        event_name: d.event_name,
        group_by: d.group_by.iter().map(PropertyPath::as_string).collect(),
        created_at: Some(to_proto(m.created_at)),
        ready,
        backfilled_events: done,
        backfill_total: total,
    }
}

fn window(value: i32) -> Result<Option<Window>, EventError> {
    match pb::MeterWindow::try_from(value) {
        Ok(pb::MeterWindow::Unspecified) => Ok(None),
        Ok(pb::MeterWindow::Minute) => Ok(Some(Window::Minute)),
        Ok(pb::MeterWindow::Hour) => Ok(Some(Window::Hour)),
        Ok(pb::MeterWindow::Day) => Ok(Some(Window::Day)),
        Ok(pb::MeterWindow::Month) => Ok(Some(Window::Month)),
        Err(_) => Err(EventError::invalid(
            "window",
            "must be MINUTE, HOUR, DAY, MONTH or unset",
        )),
    }
}

#[tonic::async_trait]
impl pb::meter_service_server::MeterService for MeterApi {
    async fn create_meter(
        &self,
        request: Request<pb::CreateMeterRequest>,
    ) -> Result<Response<pb::CreateMeterResponse>, Status> {
        let scope = scope_of(&request)?;
        let definition = definition(request.into_inner())?;
        let meter = self.meters.create(&scope, definition).await?;
        Ok(Response::new(pb::CreateMeterResponse {
            meter: Some(meter_to_proto(meter)),
        }))
    }

    async fn get_meter(
        &self,
        request: Request<pb::GetMeterRequest>,
    ) -> Result<Response<pb::GetMeterResponse>, Status> {
        let scope = scope_of(&request)?;
        let meter = self
            .meters
            .get(&scope, &key(&request.get_ref().key)?)
            .await?;
        Ok(Response::new(pb::GetMeterResponse {
            meter: Some(meter_to_proto(meter)),
        }))
    }

    async fn list_meters(
        &self,
        request: Request<pb::ListMetersRequest>,
    ) -> Result<Response<pb::ListMetersResponse>, Status> {
        let scope = scope_of(&request)?;
        let req = request.into_inner();
        let page = Page {
            size: page_size(req.page_size)?,
            after: decode_token_with(&req.page_token, |s| MeterKey::parse("page_token", s))?,
        };
        let (meters, next) = self.meters.list(&scope, page).await?;
        Ok(Response::new(pb::ListMetersResponse {
            meters: meters.into_iter().map(meter_to_proto).collect(),
            next_page_token: next.map(|k| encode_token(k.as_str())).unwrap_or_default(),
        }))
    }

    async fn delete_meter(
        &self,
        request: Request<pb::DeleteMeterRequest>,
    ) -> Result<Response<pb::DeleteMeterResponse>, Status> {
        let scope = scope_of(&request)?;
        self.meters
            .delete(&scope, &key(&request.get_ref().key)?)
            .await?;
        Ok(Response::new(pb::DeleteMeterResponse {}))
    }

    async fn get_meter_usage(
        &self,
        request: Request<pb::GetMeterUsageRequest>,
    ) -> Result<Response<pb::GetMeterUsageResponse>, Status> {
        let scope = scope_of(&request)?;
        let req = request.into_inner();
        let key = key(&req.key)?;
        let query = MeterQuery::new(
            optional_time("start_time", req.start_time)?,
            optional_time("end_time", req.end_time)?,
            optional_text("external_customer_id", req.external_customer_id)?,
            req.group_by_customer,
            window(req.window)?,
        )
        .map_err(EventError::from)?;
        let report = self.meters.usage(&scope, &key, &query).await?;
        let time = |micros: i64| Some(to_proto(tollgate::time::from_micros(micros)));
        Ok(Response::new(pb::GetMeterUsageResponse {
            rows: report
                .rows
                .iter()
                .map(|row| {
                    let end = match query.window {
                        Some(w) => w.next(w.start_of(row.start)).min(query.end),
                        None => query.end,
                    };
                    pb::MeterUsageRow {
                        window_start: time(row.start),
                        window_end: time(end),
                        external_customer_id: row.customer.clone().unwrap_or_default(),
                        group_values: row
                            .group
                            .as_deref()
                            .and_then(|g| serde_json::from_str::<Vec<serde_json::Value>>(g).ok())
                            .map(|values| values.iter().map(ToString::to_string).collect())
                            .unwrap_or_default(),
                        value: row.value,
                        exact_value: row.exact.map(|e| e.to_string()).unwrap_or_default(),
                        event_count: row.events,
                    }
                })
                .collect(),
            total: report.total,
            exact_total: report
                .total_exact
                .map(|e| e.to_string())
                .unwrap_or_default(),
            source: match report.source {
                ReportSource::Rollups => "rollups",
                ReportSource::Events => "events",
            }
            .to_owned(),
        }))
    }
}
