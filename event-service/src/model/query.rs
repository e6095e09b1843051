//! Reading events: one by id, or pages of a filtered list, newest first, with keyset paging.

use chrono::{DateTime, Utc};
use tollgate::invalid::Invalid;
use tollgate::paging::{decode_token_with, encode_token};

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this name.
    pub event_name: Option<String>,
    /// Only this customer.
    pub external_customer_id: Option<String>,
    /// Only this source.
    pub source: Option<String>,
    /// Timestamp at or after.
    pub start_time: Option<DateTime<Utc>>,
    /// Timestamp before.
    pub end_time: Option<DateTime<Utc>>,
}

impl ListFilter {
    /// Checks what no single field can: that the range is not empty.
    pub fn validate(&self) -> Result<(), Invalid> {
        match (self.start_time, self.end_time) {
            (Some(start), Some(end)) if end <= start => {
                Err(Invalid::field("end_time", "must be after start_time"))
            }
            _ => Ok(()),
        }
    }
}

/// Where a page starts: just after the last event of the previous page in (timestamp, seq)
/// descending order. Keyset paging stays correct while new events arrive: a new event can only
/// sort before the cursor (it is newer, or has a higher seq at an equal timestamp) or land in
/// the part not yet read, never shift what was already returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last event's timestamp, in microseconds.
    pub ts: i64,
    /// The last event's storage sequence number.
    pub seq: i64,
}

impl Cursor {
    /// The opaque page token.
    pub fn encode(self) -> String {
        encode_token(&format!("{}:{}", self.ts, self.seq))
    }

    /// Reads a page token (empty: the first page).
    pub fn decode(token: &str) -> Result<Option<Self>, Invalid> {
        decode_token_with(token, |position| {
            let (ts, seq) = position.split_once(':').ok_or(())?;
            Ok::<_, ()>(Self {
                ts: ts.parse().map_err(|_| ())?,
                seq: seq.parse().map_err(|_| ())?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn tokens_round_trip_and_reject_forgeries() {
        let c = Cursor {
            ts: 1_700_000_000_000_000,
            seq: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), Some(c));
        assert_eq!(Cursor::decode("").unwrap(), None);
        for bad in ["nope", "djE6eA", &URL_SAFE_NO_PAD.encode("v2:1:2")] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
