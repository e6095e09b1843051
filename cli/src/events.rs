//! `tollgate events …`: ingest from JSON, list, usage.

use std::io::Read;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tollgate::proto::events::v1 as pb;

use crate::CliResult;
use crate::output::{print, table, time};
use crate::remote::{Remote, retrying, status};

/// Events per IngestEvents call (the service's maximum).
const BATCH: usize = 1000;

/// Event commands.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Send events from a JSON file (`-` for stdin): one object, an array, or one object per line.
    /// Fields: event_name, external_customer_id, and optionally event_id, timestamp (RFC 3339),
    /// properties (an object) and source.
    Ingest {
        /// The file, or `-` for standard input.
        #[arg(default_value = "-")]
        file: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List events, newest first.
    List {
        /// Only this event name.
        #[arg(long)]
        name: Option<String>,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// Aggregate one event name over a time range.
    Usage {
        /// The event name.
        #[arg(long)]
        name: String,
        /// count, sum, min, max or count-unique.
        #[arg(long, default_value = "count")]
        aggregation: String,
        /// The numeric property for sum/min/max (or the property for count-unique).
        #[arg(long)]
        property: Option<String>,
        /// Start (RFC 3339); default 24 hours ago.
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// End (RFC 3339, exclusive); default now.
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        /// minute, hour or day.
        #[arg(long)]
        window: Option<String>,
        /// One figure per customer.
        #[arg(long)]
        by_customer: bool,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

fn read_events(file: &str) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(one @ Value::Object(_)) => Ok(vec![one]),
        Ok(_) => Err("expected a JSON object or an array of objects".into()),
        // Not one document: one object per line.
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1).into())
            })
            .collect(),
    }
}

fn event_input(i: usize, v: &Value) -> Result<pb::EventInput, Box<dyn std::error::Error>> {
    let text = |field: &str| {
        v.get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp = match v.get("timestamp").and_then(Value::as_str) {
        None => None,
        Some(t) => Some(tollgate::time::to_proto(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| format!("event {i}: timestamp {t:?}: {e}"))?
                .with_timezone(&Utc),
        )),
    };
    let properties = match v.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(tollgate::json::map_to_struct(map.clone())),
        Some(_) => return Err(format!("event {i}: properties must be an object").into()),
    };
    // An event without an id gets one here rather than on the server, so that a batch resent
    // after UNAVAILABLE (see `retrying`) is stored once.
    let event_id = match text("event_id") {
        id if id.is_empty() => event_service::model::generate_event_id(),
        id => id,
    };
    Ok(pb::EventInput {
        event_id,
        event_name: text("event_name"),
        external_customer_id: text("external_customer_id"),
        timestamp,
        properties,
        source: text("source"),
    })
}

/// Runs an event command.
pub async fn events(command: EventsCommand) -> CliResult {
    match command {
        EventsCommand::Ingest { file, remote } => {
            let inputs = read_events(&file)?
                .iter()
                .enumerate()
                .map(|(i, v)| event_input(i, v))
                .collect::<Result<Vec<_>, _>>()?;
            let client = pb::event_service_client::EventServiceClient::new(remote.events().await?);
            let mut results = Vec::new();
            for (n, chunk) in inputs.chunks(BATCH).enumerate() {
                let response = retrying(|| {
                    let mut client = client.clone();
                    let request = remote
                        .request(pb::IngestEventsRequest {
                            events: chunk.to_vec(),
                        })
                        .map_err(|e| tonic::Status::invalid_argument(e.to_string()));
                    async move { client.ingest_events(request?).await }
                })
                .await
                .map_err(|e| {
                    format!(
                        "batch {} (events {} to {}) was not stored: {}",
                        n + 1,
                        n * BATCH,
                        n * BATCH + chunk.len() - 1,
                        status(e)
                    )
                })?;
                results.extend(response.into_inner().results);
            }
            let duplicates = results.iter().filter(|r| r.duplicate).count();
            let mut t = table(&["event_id", "duplicate"]);
            for r in &results {
                t.add_row(vec![r.event_id.clone(), r.duplicate.to_string()]);
            }
            let j = json!({
                "stored": results.len() - duplicates, "duplicates": duplicates,
                "results": results.iter().map(|r| json!({"event_id": r.event_id, "duplicate": r.duplicate})).collect::<Vec<_>>(),
            });
            print(remote.json, j, t);
            if !remote.json {
                eprintln!(
                    "{} stored, {duplicates} already there",
                    results.len() - duplicates
                );
            }
        }
        EventsCommand::List {
            name,
            customer,
            source,
            limit,
            remote,
        } => {
            let mut client =
                pb::event_service_client::EventServiceClient::new(remote.events().await?);
            let events = Remote::all_pages(limit, async |page_token, wanted| {
                let request = remote.request(pb::ListEventsRequest {
                    page_size: i32::try_from(wanted.min(1000)).unwrap_or(1000),
                    page_token,
                    event_name: name.clone().unwrap_or_default(),
                    external_customer_id: customer.clone().unwrap_or_default(),
                    source: source.clone().unwrap_or_default(),
                    start_time: None,
                    end_time: None,
                })?;
                let page = client.list_events(request).await.map_err(status)?;
                let page = page.into_inner();
                Ok((page.events, page.next_page_token))
            })
            .await?;
            let props = |e: &pb::Event| {
                e.properties
                    .as_ref()
                    .and_then(|p| tollgate::json::struct_to_map(p).ok())
                    .map(Value::Object)
                    .unwrap_or(json!({}))
            };
            let mut t = table(&[
                "event_id",
                "event_name",
                "customer",
                "timestamp",
                "properties",
                "source",
            ]);
            for e in &events {
                t.add_row(vec![
                    e.event_id.clone(),
                    e.event_name.clone(),
                    e.external_customer_id.clone(),
                    time(e.timestamp.as_ref()),
                    props(e).to_string(),
                    e.source.clone(),
                ]);
            }
            let j = events.iter().map(|e| json!({
                "event_id": e.event_id, "event_name": e.event_name, "external_customer_id": e.external_customer_id,
                "timestamp": time(e.timestamp.as_ref()), "properties": props(e), "source": e.source,
                "ingested_at": time(e.ingested_at.as_ref()),
            })).collect::<Vec<_>>();
            print(remote.json, json!(j), t);
        }
        EventsCommand::Usage {
            name,
            aggregation,
            property,
            from,
            to,
            window,
            by_customer,
            customer,
            remote,
        } => {
            let aggregation = match aggregation.as_str() {
                "count" => pb::Aggregation::Count,
                "sum" => pb::Aggregation::Sum,
                "min" => pb::Aggregation::Min,
                "max" => pb::Aggregation::Max,
                "count-unique" => pb::Aggregation::CountUnique,
                other => {
                    return Err(format!(
                        "--aggregation {other:?}: expected count, sum, min, max or count-unique"
                    )
                    .into());
                }
            };
            let window_size = match window.as_deref() {
                None => pb::WindowSize::Unspecified,
                Some("minute") => pb::WindowSize::Minute,
                Some("hour") => pb::WindowSize::Hour,
                Some("day") => pb::WindowSize::Day,
                Some(other) => {
                    return Err(format!("--window {other:?}: expected minute, hour or day").into());
                }
            };
            let to = to.unwrap_or_else(Utc::now);
            let from = from.unwrap_or(to - chrono::Duration::hours(24));
            let mut client =
                pb::event_service_client::EventServiceClient::new(remote.events().await?);
            let request = remote.request(pb::GetUsageRequest {
                event_name: name,
                start_time: Some(tollgate::time::to_proto(from)),
                end_time: Some(tollgate::time::to_proto(to)),
                aggregation: aggregation.into(),
                property: property.unwrap_or_default(),
                window_size: window_size.into(),
                group_by_customer: by_customer,
                external_customer_id: customer.unwrap_or_default(),
            })?;
            let report = client
                .get_usage(request)
                .await
                .map_err(status)?
                .into_inner();
            let mut t = table(&["window_start", "window_end", "customer", "value", "events"]);
            for b in &report.buckets {
                t.add_row(vec![
                    time(b.window_start.as_ref()),
                    time(b.window_end.as_ref()),
                    b.external_customer_id.clone(),
                    b.value.to_string(),
                    b.event_count.to_string(),
                ]);
            }
            t.add_row(vec![
                "total".to_owned(),
                String::new(),
                String::new(),
                report.total.to_string(),
                String::new(),
            ]);
            let j = json!({
                "total": report.total,
                "buckets": report.buckets.iter().map(|b| json!({
                    "window_start": time(b.window_start.as_ref()), "window_end": time(b.window_end.as_ref()),
                    "external_customer_id": b.external_customer_id, "value": b.value, "event_count": b.event_count,
                })).collect::<Vec<_>>(),
            });
            print(remote.json, j, t);
        }
    }
    Ok(())
}
