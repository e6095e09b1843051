//! Usage events as the domain sees them, below every operation and the store: what a client
//! sends, what is stored, and the rules between the two. Validation refuses bad input with an
//! [`Invalid`] naming the field.

pub mod meters;
pub mod properties;
pub mod query;
pub mod usage;

use chrono::{DateTime, Utc};
use tollgate::ids::TenantId;
use tollgate::invalid::Invalid;
use tollgate::keys::Environment;

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
    /// When it happened, as sent.
    pub timestamp: ReceivedTime,
    /// A JSON object, absent meaning `{}`.
    pub properties: Option<prost_types::Struct>,
    /// Possibly empty.
    pub source: String,
}

/// An event's timestamp as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceivedTime {
    /// None was sent: the event happened now.
    Unset,
    /// This time.
    At(DateTime<Utc>),
    /// One that no calendar holds (out of range, or bad nanoseconds).
    OutOfRange,
}

impl NewEvent {
    /// Validates one event; `position` names it in errors (`event.` or `events[3].`).
    pub fn validate(
        raw: RawEvent,
        position: Position,
        now: DateTime<Utc>,
        max_future_skew: chrono::Duration,
    ) -> Result<Self, Invalid> {
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
            ReceivedTime::Unset => now,
            ReceivedTime::OutOfRange => {
                return Err(Invalid::field(field("timestamp"), "is not a valid time"));
            }
            ReceivedTime::At(t) if t > now + max_future_skew => {
                return Err(Invalid::field(
                    field("timestamp"),
                    format!(
                        "is more than {} in the future",
                        humantime::format_duration(max_future_skew.to_std().unwrap_or_default())
                    ),
                ));
            }
            ReceivedTime::At(t) if t.timestamp() < 0 => {
                return Err(Invalid::field(field("timestamp"), "is before 1970"));
            }
            ReceivedTime::At(t) => t,
        };
        let properties = properties::to_json(raw.properties.as_ref()).map_err(|refused| {
            Invalid::field(
                format!("{}{}", field("properties"), refused.path),
                refused.problem,
            )
        })?;
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
pub fn bounded_text(field: &str, value: String, required: bool) -> Result<String, Invalid> {
    checked_text(value, required, || field)
}

/// [`bounded_text`], naming the field only when there is an error to report.
fn checked_text<F: Into<String>>(
    value: String,
    required: bool,
    field: impl FnOnce() -> F,
) -> Result<String, Invalid> {
    match text_problem(&value, required) {
        None => Ok(value),
        Some(problem) => Err(Invalid::field(field(), problem)),
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
            timestamp: ReceivedTime::Unset,
            properties: None,
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
        future.timestamp = ReceivedTime::At(now + chrono::Duration::minutes(6));
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

#[cfg(test)]
mod generated {
    use proptest::prelude::*;
    use prost_types::value::Kind;
    use prost_types::{Struct, Value};

    use super::*;

    /// Properties of any shape: any text and numbers (NaN and infinity too), nested up to 24.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<f64>().prop_map(Kind::NumberValue),
            "\\PC{0,10}|[\\x00-\\x1f]{1,3}".prop_map(Kind::StringValue),
            any::<bool>().prop_map(Kind::BoolValue),
            Just(Kind::NullValue(0)),
        ]
        .prop_map(|kind| Value { kind: Some(kind) });
        leaf.prop_recursive(24, 64, 4, |inner| {
            prop_oneof![
                proptest::collection::btree_map("\\PC{0,6}", inner.clone(), 0..4).prop_map(
                    |fields| Value {
                        kind: Some(Kind::StructValue(Struct {
                            fields: fields.into_iter().collect()
                        }))
                    }
                ),
                proptest::collection::vec(inner, 0..4).prop_map(|values| Value {
                    kind: Some(Kind::ListValue(prost_types::ListValue { values }))
                }),
            ]
        })
    }

    proptest! {
        /// Any event is either accepted, meeting every rule, or refused naming a field of its
        /// own; never a panic.
        #[test]
        fn any_event_is_validated_or_refused_by_field(
            event_id in "\\PC{0,260}|\\s{1,3}|",
            event_name in "\\PC{0,260}|\\s{1,3}|[\\x00-\\x1f]{1,3}",
            external_customer_id in "\\PC{0,260}|",
            source in "\\PC{0,20}|\\s+",
            time in proptest::option::of((any::<i64>(), any::<u32>())),
            properties in proptest::option::of(proptest::collection::btree_map("\\PC{0,6}", value(), 0..5)),
            index in proptest::option::of(0usize..1000),
        ) {
            let now = tollgate::time::now();
            let timestamp = match time {
                None => ReceivedTime::Unset,
                Some((seconds, nanos)) => chrono::DateTime::from_timestamp(seconds, nanos)
                    .map_or(ReceivedTime::OutOfRange, ReceivedTime::At),
            };
            let raw = RawEvent {
                event_id,
                event_name,
                external_customer_id,
                timestamp,
                properties: properties.map(|f| Struct { fields: f.into_iter().collect() }),
                source,
            };
            let position = index.map_or(Position::Single, Position::Batch);
            match NewEvent::validate(raw, position, now, chrono::Duration::minutes(5)) {
                Ok(event) => {
                    for text in [&event.event_id, &event.event_name, &event.external_customer_id] {
                        prop_assert!(!text.trim().is_empty());
                        prop_assert!(text.chars().count() <= MAX_TEXT_CHARS);
                        prop_assert!(!text.chars().any(char::is_control));
                    }
                    let parsed: serde_json::Value = serde_json::from_str(&event.properties).unwrap();
                    prop_assert!(parsed.is_object());
                    prop_assert!(!event.properties.contains("\\u0000"));
                    prop_assert!(event.timestamp <= now + chrono::Duration::minutes(5));
                }
                Err(invalid) => {
                    let prefix = position.field("");
                    prop_assert!(invalid.field.starts_with(&prefix), "{:?}", invalid);
                    prop_assert!(invalid.message.starts_with(&invalid.field), "{:?}", invalid);
                }
            }
        }
    }
}
