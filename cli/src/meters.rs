//! `tollgate meters …`: define meters and read their exact usage.

use chrono::{DateTime, Utc};
use serde_json::json;
use tollgate::proto::events::v1 as pb;

use crate::CliResult;
use crate::output::{print, table, time};
use crate::remote::{Remote, status};

fn parse_aggregation(s: &str) -> Result<pb::MeterAggregation, String> {
    Ok(match s {
        "count" => pb::MeterAggregation::Count,
        "sum" => pb::MeterAggregation::Sum,
        "min" => pb::MeterAggregation::Min,
        "max" => pb::MeterAggregation::Max,
        "count-unique" => pb::MeterAggregation::CountUnique,
        "latest" => pb::MeterAggregation::Latest,
        other => {
            return Err(format!(
                "{other:?}: expected count, sum, min, max, count-unique or latest"
            ));
        }
    })
}

fn parse_window(s: &str) -> Result<pb::MeterWindow, String> {
    Ok(match s {
        "minute" => pb::MeterWindow::Minute,
        "hour" => pb::MeterWindow::Hour,
        "day" => pb::MeterWindow::Day,
        "month" => pb::MeterWindow::Month,
        other => return Err(format!("{other:?}: expected minute, hour, day or month")),
    })
}

fn aggregation_name(value: i32) -> &'static str {
    match pb::MeterAggregation::try_from(value) {
        Ok(pb::MeterAggregation::Count) => "count",
        Ok(pb::MeterAggregation::Sum) => "sum",
        Ok(pb::MeterAggregation::Min) => "min",
        Ok(pb::MeterAggregation::Max) => "max",
        Ok(pb::MeterAggregation::CountUnique) => "count-unique",
        Ok(pb::MeterAggregation::Latest) => "latest",
        _ => "unknown",
    }
}

/// Meter commands.
#[derive(Debug, clap::Subcommand)]
pub enum MetersCommand {
    /// Define a meter (a person's key): what it counts, and how.
    Create {
        /// Its key, e.g. tokens_total.
        key: String,
        /// The event name it reads.
        #[arg(long)]
        event_name: String,
        /// count, sum, min, max, count-unique or latest.
        #[arg(long, value_parser = parse_aggregation)]
        aggregation: pb::MeterAggregation,
        /// The property it reads (not for count), e.g. tokens or usage.input_tokens.
        #[arg(long)]
        property: Option<String>,
        /// A property to split figures by, besides the customer (repeat, at most 3).
        #[arg(long = "group-by")]
        group_by: Vec<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the meters, with their backfill progress.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a meter and its figures (the events stay).
    Delete {
        /// Its key.
        key: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// A meter's exact usage (an event:read key).
    Usage {
        /// Its key.
        key: String,
        /// Start (RFC 3339); default the start of the current month (UTC).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// End (RFC 3339, exclusive); default now.
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        /// One figure per customer.
        #[arg(long)]
        by_customer: bool,
        /// minute, hour, day or month.
        #[arg(long, value_parser = parse_window)]
        window: Option<pb::MeterWindow>,
        #[command(flatten)]
        remote: Remote,
    },
}

fn print_meters(json_mode: bool, meters: &[pb::Meter]) {
    let mut t = table(&[
        "key",
        "event_name",
        "aggregation",
        "property",
        "group_by",
        "ready",
        "created_at",
    ]);
    for m in meters {
        let ready = if m.ready {
            "yes".to_owned()
        } else {
            format!("counting {} of {}", m.backfilled_events, m.backfill_total)
        };
        t.add_row(vec![
            m.key.clone(),
            m.event_name.clone(),
            aggregation_name(m.aggregation).into(),
            m.property.clone(),
            m.group_by.join(", "),
            ready,
            time(m.created_at.as_ref()),
        ]);
    }
    let j = meters
        .iter()
        .map(|m| {
            json!({
                "key": m.key, "description": m.description, "event_name": m.event_name,
                "aggregation": aggregation_name(m.aggregation), "property": m.property,
                "group_by": m.group_by, "ready": m.ready, "created_at": time(m.created_at.as_ref()),
                "backfilled_events": m.backfilled_events, "backfill_total": m.backfill_total,
            })
        })
        .collect::<Vec<_>>();
    print(json_mode, json!(j), t);
}

/// Runs a meter command.
pub async fn meters(command: MetersCommand) -> CliResult {
    match command {
        MetersCommand::Create {
            key,
            event_name,
            aggregation,
            property,
            group_by,
            description,
            remote,
        } => {
            let mut client =
                pb::meter_service_client::MeterServiceClient::new(remote.events().await?);
            let meter = client
                .create_meter(remote.request(pb::CreateMeterRequest {
                    key,
                    description,
                    event_name,
                    aggregation: aggregation.into(),
                    property: property.unwrap_or_default(),
                    group_by,
                })?)
                .await
                .map_err(status)?
                .into_inner()
                .meter
                .unwrap_or_default();
            print_meters(remote.json, &[meter]);
        }
        MetersCommand::List { remote } => {
            let mut client =
                pb::meter_service_client::MeterServiceClient::new(remote.events().await?);
            let meters = Remote::all_pages(usize::MAX, async |page_token, _| {
                let request = remote.request(pb::ListMetersRequest {
                    page_size: 1000,
                    page_token,
                })?;
                let page = client.list_meters(request).await.map_err(status)?;
                let page = page.into_inner();
                Ok((page.meters, page.next_page_token))
            })
            .await?;
            print_meters(remote.json, &meters);
        }
        MetersCommand::Delete { key, remote } => {
            let mut client =
                pb::meter_service_client::MeterServiceClient::new(remote.events().await?);
            client
                .delete_meter(remote.request(pb::DeleteMeterRequest { key: key.clone() })?)
                .await
                .map_err(status)?;
            let mut t = table(&["deleted"]);
            t.add_row(vec![key.clone()]);
            print(remote.json, json!({ "deleted": key }), t);
        }
        MetersCommand::Usage {
            key,
            from,
            to,
            customer,
            by_customer,
            window,
            remote,
        } => {
            use chrono::{Datelike, TimeZone};
            let to = to.unwrap_or_else(Utc::now);
            let from = match from {
                Some(from) => from,
                None => Utc
                    .with_ymd_and_hms(to.year(), to.month(), 1, 0, 0, 0)
                    .single()
                    .ok_or("cannot find the start of this month")?,
            };
            let mut client =
                pb::meter_service_client::MeterServiceClient::new(remote.events().await?);
            let report = client
                .get_meter_usage(remote.request(pb::GetMeterUsageRequest {
                    key,
                    start_time: Some(tollgate::time::to_proto(from)),
                    end_time: Some(tollgate::time::to_proto(to)),
                    external_customer_id: customer.unwrap_or_default(),
                    group_by_customer: by_customer,
                    window: window.unwrap_or(pb::MeterWindow::Unspecified).into(),
                })?)
                .await
                .map_err(status)?
                .into_inner();
            let figure = |exact: &str, value: f64| {
                if exact.is_empty() {
                    value.to_string()
                } else {
                    exact.to_owned()
                }
            };
            let mut t = table(&[
                "window_start",
                "window_end",
                "customer",
                "group",
                "value",
                "events",
            ]);
            for r in &report.rows {
                t.add_row(vec![
                    time(r.window_start.as_ref()),
                    time(r.window_end.as_ref()),
                    r.external_customer_id.clone(),
                    r.group_values.join(", "),
                    figure(&r.exact_value, r.value),
                    r.event_count.to_string(),
                ]);
            }
            t.add_row(vec![
                "total".to_owned(),
                String::new(),
                String::new(),
                String::new(),
                figure(&report.exact_total, report.total),
                String::new(),
            ]);
            let j = json!({
                "total": report.total, "exact_total": report.exact_total, "source": report.source,
                "rows": report.rows.iter().map(|r| json!({
                    "window_start": time(r.window_start.as_ref()), "window_end": time(r.window_end.as_ref()),
                    "external_customer_id": r.external_customer_id, "group_values": r.group_values,
                    "value": r.value, "exact_value": r.exact_value, "event_count": r.event_count,
                })).collect::<Vec<_>>(),
            });
            print(remote.json, j, t);
        }
    }
    Ok(())
}
