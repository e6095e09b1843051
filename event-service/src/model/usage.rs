//! Usage figures: one event name aggregated over a time range, optionally per window and per
//! customer.

use chrono::{DateTime, Utc};

use tollgate::invalid::Invalid;

/// Most windows one report may have, so that a minute-by-minute year cannot be asked for.
pub const MAX_WINDOWS: i64 = 10_000;

/// How values are aggregated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregation {
    /// How many events.
    Count,
    /// Sum of a numeric property.
    Sum(PropertyName),
    /// Smallest value of a numeric property.
    Min(PropertyName),
    /// Largest value of a numeric property.
    Max(PropertyName),
    /// Distinct values of a property, or of customers when `None`.
    CountUnique(Option<PropertyName>),
}

/// A top-level property name: letters, digits, `_` and `-`, at most 128 characters. The limit
/// on characters keeps the name safe to place inside a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyName(String);

impl PropertyName {
    /// Validates a requested name.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Invalid::field(
                "property",
                "must be a top-level property name of letters, digits, _ and - (at most 128)",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated usage request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// The event name.
    pub event_name: String,
    /// Start (inclusive), microseconds.
    pub start: i64,
    /// End (exclusive), microseconds.
    pub end: i64,
    /// How.
    pub aggregation: Aggregation,
    /// Window width in microseconds, windows aligned to the Unix epoch (days to UTC midnight).
    pub window: Option<i64>,
    /// One figure per customer.
    pub group_by_customer: bool,
    /// Only this customer.
    pub external_customer_id: Option<String>,
}

impl UsageQuery {
    /// Checks the range and the window count.
    pub fn new(
        event_name: String,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        aggregation: Aggregation,
        window: Option<i64>,
        group_by_customer: bool,
        external_customer_id: Option<String>,
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
        if let Some(width) = window {
            let windows = (end - 1) / width - start / width + 1;
            if windows > MAX_WINDOWS {
                return Err(Invalid::field(
                    "window_size",
                    format!(
                        "gives {windows} windows over this range; at most {MAX_WINDOWS} are allowed"
                    ),
                ));
            }
        }
        Ok(Self {
            event_name,
            start,
            end,
            aggregation,
            window,
            group_by_customer,
            external_customer_id,
        })
    }
}

/// One row of a report, as the store computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// Window number (`ts / width`), when windowed.
    pub window: Option<i64>,
    /// The customer, when grouped.
    pub external_customer_id: Option<String>,
    /// The figure, as a double: beyond the double range a sum is ±infinity.
    pub value: f64,
    /// The figure exactly, when it is a whole number computed exactly: counts, and sums whose
    /// values were all integers (however large the sum).
    pub exact: Option<i128>,
    /// Events that went into it.
    pub event_count: i64,
}

/// A full report.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    /// The figures, by window then customer.
    pub rows: Vec<UsageRow>,
    /// The figure over the whole range and every customer.
    pub total: f64,
    /// The total exactly, as [`UsageRow::exact`].
    pub total_exact: Option<i128>,
}

impl UsageQuery {
    /// The time span of a row: its window clipped to the range, or the whole range.
    pub fn span_of(&self, row: &UsageRow) -> (i64, i64) {
        match (self.window, row.window) {
            (Some(width), Some(n)) => {
                ((n * width).max(self.start), ((n + 1) * width).min(self.end))
            }
            _ => (self.start, self.end),
        }
    }
}
