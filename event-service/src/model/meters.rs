//! Meters: what a tenant bills by. A meter aggregates one event name's events, per customer and
//! per the values of some properties, and its figures are kept exact as events are stored (see
//! `store::meters`). This module holds the definitions, how a meter reads an event, and the
//! arithmetic of its aggregates, which the writer, the backfill and the queries share.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde_json::Value;
use tollgate::invalid::Invalid;

/// Longest meter key.
pub const MAX_KEY_CHARS: usize = 64;
/// Most group-by properties of one meter.
pub const MAX_GROUP_BY: usize = 3;
/// Most segments of a property path (`usage.input.tokens` has 3).
pub const MAX_PATH_SEGMENTS: usize = 4;

/// A meter's key, unique in its tenant and environment: a lowercase letter, then lowercase
/// letters, digits, `_`, `-` and `.`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterKey(String);

impl MeterKey {
    /// Validates a requested key.
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        let ok = s.len() <= MAX_KEY_CHARS
            && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Invalid::field(
                field,
                format!(
                    "must be a lowercase letter followed by lowercase letters, digits, _, - and . \
                     (at most {MAX_KEY_CHARS} characters), e.g. tokens_total"
                ),
            ))
        }
    }

    /// A key read back from storage, where it was validated on the way in.
    pub fn from_storage(s: String) -> Self {
        Self(s)
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a meter finds a value in an event's properties: a top-level key (`tokens`) or a path
/// of keys into nested objects (`usage.input_tokens`). Each key is letters, digits, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyPath(Vec<String>);

impl PropertyPath {
    /// Validates a requested path.
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        let segments: Vec<String> = s.split('.').map(str::to_owned).collect();
        let ok = segments.len() <= MAX_PATH_SEGMENTS
            && segments.iter().all(|k| {
                !k.is_empty()
                    && k.len() <= 128
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if ok {
            Ok(Self(segments))
        } else {
            Err(Invalid::field(
                field,
                format!(
                    "must be a property key of letters, digits, _ and -, or a path of up to \
                     {MAX_PATH_SEGMENTS} such keys joined by . (e.g. usage.input_tokens)"
                ),
            ))
        }
    }

    /// The path as written.
    pub fn as_string(&self) -> String {
        self.0.join(".")
    }

    /// The value at the path, if every step is an object that has the key.
    pub fn get<'a>(&self, properties: &'a Value) -> Option<&'a Value> {
        self.0
            .iter()
            .try_fold(properties, |value, key| value.as_object()?.get(key))
    }
}

/// How a meter aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterAggregation {
    /// How many events.
    Count,
    /// The sum of a numeric property (integers exactly, however large).
    Sum(PropertyPath),
    /// The smallest value of a numeric property.
    Min(PropertyPath),
    /// The largest value of a numeric property.
    Max(PropertyPath),
    /// How many distinct values a property takes (exactly: billing cannot use a sketch).
    CountUnique(PropertyPath),
    /// The value of a numeric property in the latest event (a gauge, such as seats). Of
    /// events with the same timestamp, the largest value: the figure then depends only on
    /// which events are stored, never on the order they arrived in.
    Latest(PropertyPath),
}

impl MeterAggregation {
    /// The storage name.
    pub fn name(&self) -> &'static str {
        match self {
            MeterAggregation::Count => "count",
            MeterAggregation::Sum(_) => "sum",
            MeterAggregation::Min(_) => "min",
            MeterAggregation::Max(_) => "max",
            MeterAggregation::CountUnique(_) => "count_unique",
            MeterAggregation::Latest(_) => "latest",
        }
    }

    /// The property it reads, if any.
    pub fn property(&self) -> Option<&PropertyPath> {
        match self {
            MeterAggregation::Count => None,
            MeterAggregation::Sum(p)
            | MeterAggregation::Min(p)
            | MeterAggregation::Max(p)
            | MeterAggregation::CountUnique(p)
            | MeterAggregation::Latest(p) => Some(p),
        }
    }

    /// The storage names of the aggregations whose rollups, for the same event name, property
    /// and group-by, are this one's: SUM, MIN and MAX each keep one aggregate holding all three
    /// figures. Meters among them share one rollup series.
    pub fn same_rollups(&self) -> &'static [&'static str] {
        match self {
            MeterAggregation::Count => &["count"],
            MeterAggregation::Sum(_) | MeterAggregation::Min(_) | MeterAggregation::Max(_) => {
                &["sum", "min", "max"]
            }
            MeterAggregation::CountUnique(_) => &["count_unique"],
            MeterAggregation::Latest(_) => &["latest"],
        }
    }

    /// From its storage name and property (validated on the way in).
    pub fn from_storage(name: &str, property: &str) -> Option<Self> {
        let path = || PropertyPath::parse("property", property).ok();
        Some(match name {
            "count" => MeterAggregation::Count,
            "sum" => MeterAggregation::Sum(path()?),
            "min" => MeterAggregation::Min(path()?),
            "max" => MeterAggregation::Max(path()?),
            "count_unique" => MeterAggregation::CountUnique(path()?),
            "latest" => MeterAggregation::Latest(path()?),
            _ => return None,
        })
    }
}

/// What a meter is, as its creator defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterDefinition {
    /// Its key.
    pub key: MeterKey,
    /// A description for people (may be empty).
    pub description: String,
    /// The events it reads.
    pub event_name: String,
    /// How.
    pub aggregation: MeterAggregation,
    /// Properties whose values split its figures, besides the customer.
    pub group_by: Vec<PropertyPath>,
}

/// A stored meter.
#[derive(Debug, Clone, PartialEq)]
pub struct Meter {
    /// Its number in the store.
    pub id: i64,
    /// The rollup series it reads: its own id, or that of an earlier meter that reads the same
    /// values (see [`MeterAggregation::same_rollups`]).
    pub series: i64,
    /// The definition.
    pub definition: MeterDefinition,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// How far the events stored before it have been counted.
    pub backfill: Backfill,
}

/// The counting of the events stored before a meter was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfill {
    /// Every event is counted: figures are exact.
    Done,
    /// `done` of `total` earlier events counted (`total` unknown until they are counted up).
    Running {
        /// Counted so far.
        done: i64,
        /// How many there are, once known.
        total: Option<i64>,
    },
}

/// A number read from an event: an integer (counted exactly) or any other number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A whole number below 9e15 in magnitude, as JSON integers are stored.
    Int(i64),
    /// Any other number.
    Real(f64),
}

/// Largest magnitude of a number summed as an integer (as `GetUsage` does).
const MAX_EXACT_INT: i64 = 9_000_000_000_000_000;

impl Number {
    /// The number a JSON value is, if it is one.
    pub fn of(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => match n.as_i64() {
                Some(i) if i.abs() < MAX_EXACT_INT => Some(Number::Int(i)),
                _ => n.as_f64().map(Number::Real),
            },
            _ => None,
        }
    }

    /// As a double.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Real(r) => r,
        }
    }
}

/// What a meter reads from one event: the values of its group-by properties (as one key) and
/// what it aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The group the event falls in: the group-by values as a JSON array (`null` for a missing
    /// one), or empty for a meter without group-by.
    pub group: String,
    /// What is aggregated; `None` when the event has nothing to count (a missing or
    /// non-numeric value), in which case it is left out.
    pub value: Option<Measure>,
}

/// A value a meter aggregates.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// An event to count.
    One,
    /// A number to sum or compare.
    Number(Number),
    /// A value to count once, as canonical JSON text.
    Distinct(String),
    /// A number whose event's timestamp decides whether it is the latest.
    Latest(Number),
}

/// Stored properties (a JSON object's text) as meters read them; unreadable text reads as
/// nothing, like `{}`.
pub fn parse_properties(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl MeterDefinition {
    /// What this meter reads from an event with these properties (a JSON object's text); an
    /// unreadable text reads as `{}`.
    pub fn read(&self, properties: &str) -> Reading {
        self.read_value(&parse_properties(properties))
    }

    /// [`MeterDefinition::read`] of parsed properties.
    pub fn read_value(&self, properties: &Value) -> Reading {
        let group = if self.group_by.is_empty() {
            String::new()
        } else {
            let values: Vec<&Value> = self
                .group_by
                .iter()
                .map(|p| p.get(properties).unwrap_or(&Value::Null))
                .collect();
            serde_json::to_string(&values).unwrap_or_default()
        };
        let value = match &self.aggregation {
            MeterAggregation::Count => Some(Measure::One),
            MeterAggregation::Sum(p) | MeterAggregation::Min(p) | MeterAggregation::Max(p) => {
                p.get(properties).and_then(Number::of).map(Measure::Number)
            }
            MeterAggregation::Latest(p) => {
                p.get(properties).and_then(Number::of).map(Measure::Latest)
            }
            MeterAggregation::CountUnique(p) => p
                .get(properties)
                .filter(|v| !v.is_null())
                .map(|v| Measure::Distinct(serde_json::to_string(v).unwrap_or_default())),
        };
        Reading { group, value }
    }
}

/// The aggregate of some events' values, as rollups store it and queries combine it. Integers
/// are summed exactly: each split at bit 32 into a high and a low part summed apart (neither sum
/// can overflow 64 bits for billions of values), put back together in 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Aggregate {
    /// Events counted.
    pub events: i64,
    /// Sum of the integers' high parts (`v >> 32`).
    pub int_hi: i64,
    /// Sum of the integers' low parts (`v & 0xffff_ffff`).
    pub int_lo: i64,
    /// Sum of the other numbers.
    pub real_sum: f64,
    /// How many other numbers there were.
    pub reals: i64,
    /// Smallest number.
    pub min: Option<f64>,
    /// Largest number.
    pub max: Option<f64>,
    /// The latest number (LATEST meters only) and its event's timestamp, in microseconds.
    pub latest: Option<Latest>,
}

/// A LATEST meter's value and when it was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latest {
    /// The event's timestamp, microseconds since the epoch.
    pub ts: i64,
    /// The value.
    pub value: f64,
}

impl Latest {
    /// The later of two; at the same timestamp, the larger value (see
    /// [`MeterAggregation::Latest`]). Values are JSON numbers, never NaN.
    fn later(a: Option<Latest>, b: Option<Latest>) -> Option<Latest> {
        match (a, b) {
            (Some(a), Some(b)) if (b.ts, b.value) > (a.ts, a.value) => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }
}

impl Aggregate {
    /// Adds the value of one event at `ts` (a distinct value only counts the event: the
    /// distinct values themselves are kept apart).
    pub fn add(&mut self, value: &Measure, ts: i64) {
        self.events += 1;
        match value {
            Measure::Latest(n) => {
                let value = n.as_f64();
                self.latest = Latest::later(self.latest, Some(Latest { ts, value }));
            }
            Measure::Number(n) => {
                match *n {
                    Number::Int(i) => {
                        self.int_hi += i >> 32;
                        self.int_lo += i & 0xffff_ffff;
                    }
                    Number::Real(r) => {
                        self.real_sum += r;
                        self.reals += 1;
                    }
                }
                let v = n.as_f64();
                self.min = Some(self.min.map_or(v, |m| m.min(v)));
                self.max = Some(self.max.map_or(v, |m| m.max(v)));
            }
            Measure::One | Measure::Distinct(_) => {}
        }
    }

    /// Adds another aggregate.
    pub fn merge(&mut self, other: &Aggregate) {
        self.events += other.events;
        self.int_hi += other.int_hi;
        self.int_lo += other.int_lo;
        self.real_sum += other.real_sum;
        self.reals += other.reals;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.latest = Latest::later(self.latest, other.latest);
    }

    /// The integers' exact sum.
    pub fn int_sum(&self) -> i128 {
        (i128::from(self.int_hi) << 32) + i128::from(self.int_lo)
    }

    /// The figure for `aggregation` (not COUNT_UNIQUE, whose figure is a set's size), as a
    /// double and, when it is a whole number computed exactly, exactly.
    pub fn figure(&self, aggregation: &MeterAggregation) -> (f64, Option<i128>) {
        match aggregation {
            MeterAggregation::Count | MeterAggregation::CountUnique(_) => {
                (self.events as f64, Some(i128::from(self.events)))
            }
            MeterAggregation::Sum(_) => {
                let exact = self.int_sum();
                let value = exact as f64 + self.real_sum;
                (value, (self.reals == 0).then_some(exact))
            }
            MeterAggregation::Min(_) => (self.min.unwrap_or_default(), None),
            MeterAggregation::Max(_) => (self.max.unwrap_or_default(), None),
            MeterAggregation::Latest(_) => (self.latest.map(|l| l.value).unwrap_or_default(), None),
        }
    }
}

/// The windows a meter's usage is reported in, aligned to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
    /// Days (UTC midnight).
    Day,
    /// Calendar months (UTC).
    Month,
}

/// Microseconds in a minute, an hour and a day.
pub const MINUTE: i64 = 60_000_000;
/// Microseconds in an hour.
pub const HOUR: i64 = 60 * MINUTE;
/// Microseconds in a day.
pub const DAY: i64 = 24 * HOUR;

impl Window {
    /// The start of the window holding `ts` (microseconds since the epoch).
    pub fn start_of(self, ts: i64) -> i64 {
        match self {
            Window::Minute => ts.div_euclid(MINUTE) * MINUTE,
            Window::Hour => ts.div_euclid(HOUR) * HOUR,
            Window::Day => ts.div_euclid(DAY) * DAY,
            Window::Month => {
                let t = tollgate::time::from_micros(ts);
                Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
                    .single()
                    .map(tollgate::time::to_micros)
                    .unwrap_or(ts)
            }
        }
    }

    /// The start of the window after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Window::Minute => start + MINUTE,
            Window::Hour => start + HOUR,
            Window::Day => start + DAY,
            Window::Month => {
                let t = tollgate::time::from_micros(start);
                let (year, month) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
                    .single()
                    .map(tollgate::time::to_micros)
                    .unwrap_or(start + 31 * DAY)
            }
        }
    }
}

/// A validated meter usage request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterQuery {
    /// Start (inclusive), microseconds.
    pub start: i64,
    /// End (exclusive), microseconds.
    pub end: i64,
    /// Only this customer.
    pub customer: Option<String>,
    /// One figure per customer.
    pub by_customer: bool,
    /// One figure per window.
    pub window: Option<Window>,
}

/// Most windows one meter report may span.
pub const MAX_METER_WINDOWS: i64 = 10_000;

impl MeterQuery {
    /// Checks the range and how many windows it spans.
    pub fn new(
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        customer: Option<String>,
        by_customer: bool,
        window: Option<Window>,
    ) -> Result<Self, Invalid> {
        let start = start.ok_or_else(|| Invalid::field("start_time", "is required"))?;
        let end = end.ok_or_else(|| Invalid::field("end_time", "is required"))?;
        let (start, end) = (
            tollgate::time::to_micros(start),
            tollgate::time::to_micros(end),
        );
        if start < 0 {
            return Err(Invalid::field("start_time", "is before 1970"));
        }
        if end <= start {
            return Err(Invalid::field("end_time", "must be after start_time"));
        }
        let width = match window {
            Some(Window::Minute) => Some(MINUTE),
            Some(Window::Hour) => Some(HOUR),
            Some(Window::Day) => Some(DAY),
            Some(Window::Month) => Some(28 * DAY),
            None => None,
        };
        if let Some(width) = width {
            let windows = (end - 1) / width - start / width + 1;
            if windows > MAX_METER_WINDOWS {
                return Err(Invalid::field(
                    "window",
                    format!(
                        "gives about {windows} windows over this range; at most \
                         {MAX_METER_WINDOWS} are allowed"
                    ),
                ));
            }
        }
        Ok(Self {
            start,
            end,
            customer,
            by_customer,
            window,
        })
    }

    /// The window start an event at `ts` is reported under (the range's start without windows).
    pub fn bucket(&self, ts: i64) -> i64 {
        match self.window {
            Some(window) => window.start_of(ts).max(self.start),
            None => self.start,
        }
    }
}

/// One figure of a meter report.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterRow {
    /// Where its window starts (clipped to the range), or the range's start.
    pub start: i64,
    /// The customer, when reported per customer.
    pub customer: Option<String>,
    /// The group-by values (a JSON array), when the meter has group-by properties.
    pub group: Option<String>,
    /// The figure, as a double.
    pub value: f64,
    /// The figure exactly, when it is a whole number computed exactly.
    pub exact: Option<i128>,
    /// Events that went into it.
    pub events: i64,
}

/// A meter report.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterReport {
    /// The figures, by window, customer and group.
    pub rows: Vec<MeterRow>,
    /// The figure over the whole range, every customer and group.
    pub total: f64,
    /// The total exactly, as [`MeterRow::exact`].
    pub total_exact: Option<i128>,
    /// Where the figures came from: pre-aggregated rollups or a scan of the events.
    pub source: ReportSource,
}

/// Where a report's figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportSource {
    /// The meter's rollups.
    Rollups,
    /// A scan of the events (a range or window finer than the rollups).
    Events,
}

/// The key of a report row while it is put together.
pub type RowKey = (i64, Option<String>, String);

/// Puts a report together from aggregates (and, for COUNT_UNIQUE, distinct values) keyed by
/// row, and the grand total's.
#[derive(Debug, Default)]
pub struct ReportBuilder {
    rows: BTreeMap<RowKey, (Aggregate, std::collections::HashSet<String>)>,
    total: Aggregate,
    distinct: std::collections::HashSet<String>,
}

impl ReportBuilder {
    /// Adds an aggregate to a row (and to the total).
    pub fn add(&mut self, key: RowKey, aggregate: &Aggregate) {
        self.rows.entry(key).or_default().0.merge(aggregate);
        self.total.merge(aggregate);
    }

    /// Adds a distinct value seen in a row (COUNT_UNIQUE).
    pub fn add_distinct(&mut self, key: RowKey, value: &str) {
        let row = self.rows.entry(key).or_default();
        if row.1.insert(value.to_owned()) {
            row.0.events += 1;
        }
        if self.distinct.insert(value.to_owned()) {
            self.total.events += 1;
        }
    }

    /// Adds the reading of an event at `ts`.
    pub fn add_reading(&mut self, key: RowKey, value: &Measure, ts: i64) {
        match value {
            Measure::Distinct(v) => self.add_distinct(key, v),
            other => {
                let mut one = Aggregate::default();
                one.add(other, ts);
                self.add(key, &one);
            }
        }
    }

    /// How many rows so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The report.
    pub fn finish(self, meter: &MeterDefinition, source: ReportSource) -> MeterReport {
        let grouped = !meter.group_by.is_empty();
        let rows = self
            .rows
            .into_iter()
            .filter(|(_, (aggregate, _))| aggregate.events > 0)
            .map(|((start, customer, group), (aggregate, _))| {
                let (value, exact) = aggregate.figure(&meter.aggregation);
                MeterRow {
                    start,
                    customer,
                    group: grouped.then_some(group),
                    value,
                    exact,
                    events: aggregate.events,
                }
            })
            .collect();
        let (total, total_exact) = self.total.figure(&meter.aggregation);
        MeterReport {
            rows,
            total,
            total_exact,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;

    fn meter(aggregation: MeterAggregation, group_by: &[&str]) -> MeterDefinition {
        MeterDefinition {
            key: MeterKey::parse("key", "m").unwrap(),
            description: String::new(),
            event_name: "e".into(),
            aggregation,
            group_by: group_by
                .iter()
                .map(|p| PropertyPath::parse("group_by", p).unwrap())
                .collect(),
        }
    }

    #[test]
    fn paths_read_nested_values_and_groups_are_canonical() {
        let m = meter(
            MeterAggregation::Sum(PropertyPath::parse("p", "usage.tokens").unwrap()),
            &["model", "region"],
        );
        let r = m.read(r#"{"usage":{"tokens":12},"model":"gpt","extra":1}"#);
        assert_eq!(r.group, r#"["gpt",null]"#);
        assert_eq!(r.value, Some(Measure::Number(Number::Int(12))));
        assert_eq!(m.read(r#"{"usage":{"tokens":"12"}}"#).value, None);
        assert_eq!(m.read(r#"{"usage":3}"#).value, None);
        assert_eq!(m.read("not json").value, None);
    }

    #[test]
    fn integer_sums_are_exact_past_64_bits() {
        let mut a = Aggregate::default();
        for _ in 0..4 {
            a.add(&Measure::Number(Number::Int(MAX_EXACT_INT - 1)), 0);
        }
        a.add(&Measure::Number(Number::Int(-5)), 0);
        let sum = a.figure(&MeterAggregation::Sum(
            PropertyPath::parse("p", "x").unwrap(),
        ));
        assert_eq!(sum.1, Some(4 * i128::from(MAX_EXACT_INT - 1) - 5));
        let mut halves = Aggregate::default();
        halves.merge(&a);
        halves.merge(&Aggregate::default());
        assert_eq!(halves, a);
    }

    #[test]
    fn latest_is_the_same_in_any_order_of_events_and_merges() {
        let latest = MeterAggregation::Latest(PropertyPath::parse("p", "seats").unwrap());
        // (ts, value): the latest timestamp wins; at a tie, the larger value.
        let events = [(5, 1.0), (9, 3.0), (9, 7.0), (2, 100.0), (9, -1.0)];
        let mut forward = Aggregate::default();
        for (ts, v) in events {
            forward.add(&Measure::Latest(Number::Real(v)), ts);
        }
        let mut backward = Aggregate::default();
        for (ts, v) in events.iter().rev() {
            backward.add(&Measure::Latest(Number::Real(*v)), *ts);
        }
        let (mut early, mut late) = (Aggregate::default(), Aggregate::default());
        for (n, (ts, v)) in events.iter().enumerate() {
            let half = if n % 2 == 0 { &mut early } else { &mut late };
            half.add(&Measure::Latest(Number::Real(*v)), *ts);
        }
        late.merge(&early);
        for a in [forward, backward, late] {
            assert_eq!(a.figure(&latest).0, 7.0);
            assert_eq!(a.events, 5);
        }
        assert_eq!(Aggregate::default().latest, None);
    }

    #[test]
    fn months_are_calendar_months() {
        let t = |s: &str| tollgate::time::to_micros(s.parse::<DateTime<Utc>>().unwrap());
        let start = Window::Month.start_of(t("2026-02-14T10:00:00Z"));
        assert_eq!(start, t("2026-02-01T00:00:00Z"));
        assert_eq!(Window::Month.next(start), t("2026-03-01T00:00:00Z"));
        assert_eq!(
            Window::Month.next(t("2026-12-01T00:00:00Z")),
            t("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            Window::Day.start_of(t("2026-02-14T10:00:00Z")),
            t("2026-02-14T00:00:00Z")
        );
    }

    #[test]
    fn keys_and_paths_are_validated() {
        assert!(MeterKey::parse("key", "tokens_total.v2").is_ok());
        for bad in ["", "Tokens", "1x", "a b", &"a".repeat(65)] {
            assert!(MeterKey::parse("key", bad).is_err(), "{bad}");
        }
        for bad in ["", "a..b", "a.b.c.d.e", "a b", "$"] {
            assert!(PropertyPath::parse("p", bad).is_err(), "{bad}");
        }
    }
}
