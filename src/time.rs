//! Time as the services handle it: `chrono::DateTime<Utc>` in the domain, microseconds since the
//! Unix epoch in storage (one integer type both SQLite and PostgreSQL index and compare alike),
//! and `google.protobuf.Timestamp` on the wire.

use chrono::{DateTime, TimeZone, Utc};

/// Microseconds since the Unix epoch, as stored.
pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Reads a stored time. Out-of-range values (which the services never write) clamp to the epoch.
pub fn from_micros(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros).single().unwrap_or_default()
}

/// Now, truncated to the microsecond so that what is stored and what is returned are equal.
pub fn now() -> DateTime<Utc> {
    from_micros(to_micros(Utc::now()))
}

/// To the wire.
pub fn to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// From the wire; `None` for a timestamp outside what chrono can hold or with bad nanos.
pub fn from_proto(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    let t = DateTime::from_timestamp(t.seconds, nanos)?;
    // Storage keeps microseconds; truncate here so the caller sees what will be stored.
    Some(from_micros(to_micros(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = now();
        assert_eq!(from_micros(to_micros(t)), t);
        assert_eq!(from_proto(&to_proto(t)), Some(t));
        assert_eq!(
            from_proto(&prost_types::Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
    }
}
