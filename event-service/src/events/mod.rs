//! Usage events: what a client sends, what is stored, and the rules between the two.

pub mod ingest;
pub mod properties;
pub mod query;
pub mod usage;

use chrono::{DateTime, Utc};
use tollgate::ids::TenantId;
use tollgate::keys::Environment;

use std::sync::Arc;

use crate::EventError;
use crate::store::EventStore;
use ingest::Ingestor;
use query::{Cursor, ListFilter};
use usage::{UsageQuery, UsageReport};

/// Longest `event_id`, `event_name`, `external_customer_id` and `source`, in characters.
pub const MAX_TEXT_CHARS: usize = 255;
/// Most events in one `IngestEvents` call.
pub const MAX_BATCH: usize = 1000;

/// Where events live: the tenant and environment of the key that wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The environment.
    pub environment: Environment,
}

/// A validated event, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Client-supplied idempotency key, or a generated `evt_…`.
    pub event_id: String,
    /// What happened.
    pub event_name: String,
    /// The customer it is about.
    pub external_customer_id: String,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// A JSON object, serialized.
    pub properties: String,
    /// Where it came from (may be empty).
    pub source: String,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Storage order, used by paging.
    pub seq: i64,
    /// The event's id.
    pub event_id: String,
    /// What happened.
    pub event_name: String,
    /// The customer.
    pub external_customer_id: String,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// A JSON object, serialized.
    pub properties: String,
    /// Where it came from.
    pub source: String,
    /// When it was committed.
    pub ingested_at: DateTime<Utc>,
}

/// The outcome of storing one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Its id.
    pub event_id: String,
    /// Whether it was stored before (and left unchanged).
    pub duplicate: bool,
}

/// Where an event sits in its request, to name it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The one event of `IngestEvent` (`event.…`).
    Single,
    /// Event `i` of `IngestEvents` (`events[i].…`).
    Batch(usize),
}

impl Position {
    /// The path of one of the event's fields.
    pub fn field(self, name: &str) -> String {
        match self {
            Position::Single => format!("event.{name}"),
            Position::Batch(i) => format!("events[{i}].{name}"),
        }
    }
}

/// The fields of an event as received, before validation.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// Possibly empty.
    pub event_id: String,
    /// Required.
    pub event_name: String,
    /// Required.
    pub external_customer_id: String,
    /// `None` means "now"; `Some(None)` a timestamp that is out of range.
    pub timestamp: Option<Option<DateTime<Utc>>>,
    /// Already a serialized JSON object, or the reason it is not one.
    pub properties: Result<String, String>,
    /// Possibly empty.
    pub source: String,
}

impl NewEvent {
    /// Validates one event. `prefix` names it in errors (`event.` or `events[3].`).
    pub fn validate(
        raw: RawEvent,
        position: Position,
        now: DateTime<Utc>,
        max_future_skew: chrono::Duration,
    ) -> Result<Self, EventError> {
        // Field paths are only built for an error: a batch of valid events formats nothing.
        let field = |name: &str| position.field(name);
        let text = |name: &str, value: String, required: bool| {
            checked_text(value, required, || field(name))
        };
        let event_id = if raw.event_id.is_empty() {
            generate_event_id()
        } else {
            text("event_id", raw.event_id, false)?
        };
        let event_name = text("event_name", raw.event_name, true)?;
        let external_customer_id = text("external_customer_id", raw.external_customer_id, true)?;
        let source = text("source", raw.source, false)?;
        let timestamp = match raw.timestamp {
            None => now,
            Some(None) => {
                return Err(EventError::invalid(
                    field("timestamp"),
                    "is not a valid time",
                ));
            }
            Some(Some(t)) if t > now + max_future_skew => {
                return Err(EventError::invalid(
                    field("timestamp"),
                    format!(
                        "is more than {} in the future",
                        humantime::format_duration(max_future_skew.to_std().unwrap_or_default())
                    ),
                ));
            }
            Some(Some(t)) if t.timestamp() < 0 => {
                return Err(EventError::invalid(field("timestamp"), "is before 1970"));
            }
            Some(Some(t)) => t,
        };
        let properties = raw
            .properties
            .map_err(|problem| EventError::invalid(field("properties"), problem))?;
        Ok(Self {
            event_id,
            event_name,
            external_customer_id,
            timestamp,
            properties,
            source,
        })
    }
}

/// The event domain: every operation EventService exposes, free of gRPC types. The scope always
/// comes from the authorized key.
#[derive(Debug, Clone)]
pub struct Events {
    store: Arc<dyn EventStore>,
    ingestor: Ingestor,
    max_future_skew: chrono::Duration,
}

impl Events {
    /// The domain over a store and its writer.
    pub fn new(
        store: Arc<dyn EventStore>,
        ingestor: Ingestor,
        max_future_skew: std::time::Duration,
    ) -> Self {
        Self {
            store,
            ingestor,
            max_future_skew: chrono::Duration::from_std(max_future_skew)
                .unwrap_or(chrono::Duration::MAX),
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
    pub async fn list(
        &self,
        scope: &Scope,
        filter: &ListFilter,
        after: Option<Cursor>,
        size: u32,
    ) -> Result<(Vec<Event>, Option<Cursor>), EventError> {
        if let (Some(start), Some(end)) = (filter.start_time, filter.end_time) {
            if end <= start {
                return Err(EventError::invalid("end_time", "must be after start_time"));
            }
        }
        // One extra row tells whether another page exists without a second query.
        let mut events = self
            .store
            .list_events(scope, filter, after, size + 1)
            .await?;
        let more = events.len() > size as usize;
        events.truncate(size as usize);
        let next = events.last().filter(|_| more).map(|e| Cursor {
            ts: tollgate::time::to_micros(e.timestamp),
            seq: e.seq,
        });
        Ok((events, next))
    }

    /// A usage report.
    pub async fn usage(
        &self,
        scope: &Scope,
        query: &UsageQuery,
    ) -> Result<UsageReport, EventError> {
        Ok(self.store.usage(scope, query).await?)
    }
}

/// A generated event id: `evt_` and a time-ordered 22-character body, like the other ids.
pub fn generate_event_id() -> String {
    format!(
        "evt_{}",
        tollgate::base62::encode_fixed(
            uuid::Uuid::now_v7().as_u128(),
            tollgate::base62::U128_WIDTH
        )
    )
}

/// Checks a text field: not blank when `required`, at most [`MAX_TEXT_CHARS`], no control
/// characters. Returns it unchanged (ids and names are matched exactly, so nothing is trimmed).
pub fn bounded_text(field: &str, value: String, required: bool) -> Result<String, EventError> {
    checked_text(value, required, || field)
}

/// [`bounded_text`], naming the field only when there is an error to report.
fn checked_text<F: Into<String>>(
    value: String,
    required: bool,
    field: impl FnOnce() -> F,
) -> Result<String, EventError> {
    match text_problem(&value, required) {
        None => Ok(value),
        Some(problem) => Err(EventError::invalid(field(), problem)),
    }
}

/// What is wrong with a text field's value, if anything (see [`bounded_text`]).
fn text_problem(value: &str, required: bool) -> Option<std::borrow::Cow<'static, str>> {
    let blank = value.trim().is_empty();
    if required && blank {
        return Some("is required and must not be blank".into());
    }
    if !required && !value.is_empty() && blank {
        return Some("must not be blank (leave it unset instead)".into());
    }
    // A string has at most as many characters as bytes: only long ones need counting.
    if value.len() > MAX_TEXT_CHARS && value.chars().count() > MAX_TEXT_CHARS {
        return Some(format!("must be at most {MAX_TEXT_CHARS} characters").into());
    }
    if value.chars().any(char::is_control) {
        return Some("must not contain control characters".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, customer: &str) -> RawEvent {
        RawEvent {
            event_id: String::new(),
            event_name: name.into(),
            external_customer_id: customer.into(),
            timestamp: None,
            properties: Ok("{}".into()),
            source: String::new(),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let now = tollgate::time::now();
        let skew = chrono::Duration::minutes(5);
        let err = NewEvent::validate(raw(" ", "c"), Position::Batch(3), now, skew).unwrap_err();
        assert_eq!(
            err.to_string(),
            "events[3].event_name is required and must not be blank"
        );
        let err = NewEvent::validate(raw("n", ""), Position::Single, now, skew).unwrap_err();
        assert!(err.to_string().starts_with("event.external_customer_id"));
        let mut future = raw("n", "c");
        future.timestamp = Some(Some(now + chrono::Duration::minutes(6)));
        let err = NewEvent::validate(future, Position::Single, now, skew).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event.timestamp is more than 5m in the future"
        );
        // Lengths count characters, not bytes.
        let longest = "é".repeat(MAX_TEXT_CHARS);
        assert!(NewEvent::validate(raw(&longest, "c"), Position::Single, now, skew).is_ok());
        let err = NewEvent::validate(
            raw(&format!("{longest}e"), "c"),
            Position::Batch(0),
            now,
            skew,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "events[0].event_name must be at most 255 characters"
        );
        let err = NewEvent::validate(raw("n", "c\u{7}"), Position::Single, now, skew).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event.external_customer_id must not contain control characters"
        );
        let mut blank_source = raw("n", "c");
        blank_source.source = "  ".into();
        let err = NewEvent::validate(blank_source, Position::Single, now, skew).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event.source must not be blank (leave it unset instead)"
        );
        let ok = NewEvent::validate(raw("api_call", "cus_1"), Position::Single, now, skew).unwrap();
        assert!(ok.event_id.starts_with("evt_"));
        assert_eq!(ok.timestamp, now);
    }
}
