//! The binary form of a meter's staged deltas (`meter_pending.deltas`): what one insert
//! transaction adds to one meter's rollups, until a fold adds it to them.
//!
//! A version byte, then entries, each a tag byte and its fields: integers and floats as 8 bytes
//! little-endian, strings as a 4-byte length and their UTF-8 bytes. Written and read only by
//! this build's writer, fold and queries; a row this build cannot read is [`StoreError::Corrupt`].

use super::StoreError;
use crate::model::meters::{Aggregate, Latest};

/// The format's version, its first byte.
const VERSION: u8 = 1;

const DAY: u8 = 1;
const TOTAL: u8 = 2;
const DISTINCT: u8 = 3;

const HAS_MIN: u8 = 1;
const HAS_MAX: u8 = 2;
const HAS_LATEST: u8 = 4;

/// One staged delta of a meter.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// What a customer's group adds to a day (`meter_days`).
    Day {
        day: i64,
        customer: &'a str,
        group: &'a str,
        aggregate: Aggregate,
    },
    /// What a group adds to a bucket across customers (`meter_totals`).
    Total {
        width: i64,
        bucket: i64,
        group: &'a str,
        aggregate: Aggregate,
    },
    /// A distinct value of a customer's group on a day (`meter_distinct`).
    Distinct {
        day: i64,
        customer: &'a str,
        group: &'a str,
        value: &'a str,
    },
}

/// Writes entries of one meter.
#[derive(Debug)]
pub struct Writer(Vec<u8>);

impl Default for Writer {
    fn default() -> Self {
        Self(vec![VERSION])
    }
}

impl Writer {
    /// Appends an entry.
    pub fn push(&mut self, entry: &Entry<'_>) {
        match entry {
            Entry::Day {
                day,
                customer,
                group,
                aggregate,
            } => {
                self.0.push(DAY);
                self.int(*day);
                self.text(customer);
                self.text(group);
                self.aggregate(aggregate);
            }
            Entry::Total {
                width,
                bucket,
                group,
                aggregate,
            } => {
                self.0.push(TOTAL);
                self.int(*width);
                self.int(*bucket);
                self.text(group);
                self.aggregate(aggregate);
            }
            Entry::Distinct {
                day,
                customer,
                group,
                value,
            } => {
                self.0.push(DISTINCT);
                self.int(*day);
                self.text(customer);
                self.text(group);
                self.text(value);
            }
        }
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }

    fn int(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn float(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn text(&mut self, s: &str) {
        // Properties are bounded far below 4 GiB (the request size limit), so is any string.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(&s.as_bytes()[..len as usize]);
    }

    fn aggregate(&mut self, a: &Aggregate) {
        self.int(a.events);
        self.int(a.int_hi);
        self.int(a.int_lo);
        self.float(a.real_sum);
        self.int(a.reals);
        let flag = |present: bool, bit: u8| if present { bit } else { 0 };
        let flags = flag(a.min.is_some(), HAS_MIN)
            | flag(a.max.is_some(), HAS_MAX)
            | flag(a.latest.is_some(), HAS_LATEST);
        self.0.push(flags);
        if let Some(min) = a.min {
            self.float(min);
        }
        if let Some(max) = a.max {
            self.float(max);
        }
        if let Some(latest) = a.latest {
            self.int(latest.ts);
            self.float(latest.value);
        }
    }
}

/// The entries of a staged row, in the order written.
pub fn read(bytes: &[u8]) -> Result<Vec<Entry<'_>>, StoreError> {
    let mut r = Reader(bytes);
    match r.byte()? {
        VERSION => {}
        v => return Err(corrupt(&format!("version {v}"))),
    }
    let mut entries = Vec::new();
    while !r.0.is_empty() {
        let entry = match r.byte()? {
            DAY => Entry::Day {
                day: r.int()?,
                customer: r.text()?,
                group: r.text()?,
                aggregate: r.aggregate()?,
            },
            TOTAL => Entry::Total {
                width: r.int()?,
                bucket: r.int()?,
                group: r.text()?,
                aggregate: r.aggregate()?,
            },
            DISTINCT => Entry::Distinct {
                day: r.int()?,
                customer: r.text()?,
                group: r.text()?,
                value: r.text()?,
            },
            tag => return Err(corrupt(&format!("entry tag {tag}"))),
        };
        entries.push(entry);
    }
    Ok(entries)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("staged meter deltas: {what}"))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn eight(&mut self) -> Result<[u8; 8], StoreError> {
        self.take(8)?.try_into().map_err(|_| corrupt("truncated"))
    }

    fn int(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_le_bytes(self.eight()?))
    }

    fn float(&mut self) -> Result<f64, StoreError> {
        Ok(f64::from_le_bytes(self.eight()?))
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        let len: [u8; 4] = self.take(4)?.try_into().map_err(|_| corrupt("truncated"))?;
        let bytes = self.take(u32::from_le_bytes(len) as usize)?;
        std::str::from_utf8(bytes).map_err(|_| corrupt("a string is not UTF-8"))
    }

    fn aggregate(&mut self) -> Result<Aggregate, StoreError> {
        let mut a = Aggregate {
            events: self.int()?,
            int_hi: self.int()?,
            int_lo: self.int()?,
            real_sum: self.float()?,
            reals: self.int()?,
            ..Aggregate::default()
        };
        let flags = self.byte()?;
        if flags & HAS_MIN != 0 {
            a.min = Some(self.float()?);
        }
        if flags & HAS_MAX != 0 {
            a.max = Some(self.float()?);
        }
        if flags & HAS_LATEST != 0 {
            a.latest = Some(Latest {
                ts: self.int()?,
                value: self.float()?,
            });
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregate(seed: i64) -> Aggregate {
        Aggregate {
            events: seed,
            int_hi: -seed,
            int_lo: seed * 3,
            real_sum: seed as f64 / 7.0,
            reals: 2,
            min: (seed % 2 == 0).then_some(-1.5),
            max: (seed % 3 == 0).then_some(f64::MAX),
            latest: (seed % 5 == 0).then_some(Latest {
                ts: seed * 1000,
                value: 0.25,
            }),
        }
    }

    #[test]
    fn entries_read_back_as_written() {
        let mut entries = Vec::new();
        for seed in 0..30 {
            entries.push(Entry::Day {
                day: seed * 86_400_000_000,
                customer: "cus_é",
                group: if seed % 2 == 0 { "" } else { "[\"eu\"]" },
                aggregate: aggregate(seed),
            });
            entries.push(Entry::Total {
                width: 60_000_000,
                bucket: -seed,
                group: "",
                aggregate: aggregate(seed + 1),
            });
            entries.push(Entry::Distinct {
                day: seed,
                customer: "",
                group: "g",
                value: "user_\u{1F600}",
            });
        }
        let mut w = Writer::default();
        for e in &entries {
            w.push(e);
        }
        let bytes = w.finish();
        assert_eq!(read(&bytes).unwrap(), entries);
        assert!(read(&Writer::default().finish()).unwrap().is_empty());
    }

    #[test]
    fn damaged_rows_are_refused_not_misread() {
        let mut w = Writer::default();
        w.push(&Entry::Distinct {
            day: 1,
            customer: "c",
            group: "",
            value: "v",
        });
        let bytes = w.finish();
        // Cut anywhere but after the version byte (no entries: a valid row).
        for cut in (0..bytes.len()).filter(|&cut| cut != 1) {
            let err = read(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt(_)),
                "cut at {cut}: {err:?}"
            );
        }
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(matches!(read(&wrong_version), Err(StoreError::Corrupt(_))));
        let mut wrong_tag = bytes.clone();
        wrong_tag[1] = 7;
        assert!(matches!(read(&wrong_tag), Err(StoreError::Corrupt(_))));
        let mut not_utf8 = bytes;
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        assert!(matches!(read(&not_utf8), Err(StoreError::Corrupt(_))));
    }
}
