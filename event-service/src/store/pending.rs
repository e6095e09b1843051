//! The binary form of a meter's staged deltas (`meter_pending.deltas`): what one insert
//! transaction adds to one meter's rollups, until a fold adds it to them.
//!
//! A version byte, then entries, each a tag byte and its fields. Version 2 (written): integers
//! as zigzag LEB128 varints; a day or a bucket as its multiple of the window and the remainder
//! (a day is then 3 bytes, not 8); strings as a varint length and their UTF-8 bytes; floats as
//! 8 bytes little-endian, and a float sum of zero left out. A customer's day of a SUM of whole
//! numbers takes about 21 bytes, not version 1's 66: the writer stages, and PostgreSQL writes to
//! its log, tens of KiB less per batch. Version 1 (8-byte integers, 4-byte lengths) is still read, so
//! rows staged by an earlier build fold after an upgrade. Written and read only by the writer,
//! fold and queries; a row this build cannot read is [`StoreError::Corrupt`].

use super::StoreError;
use crate::model::meters::{Aggregate, DAY as DAY_WIDTH, Latest};

/// The format's version, its first byte.
const VERSION: u8 = 2;
/// The first format, still read.
const VERSION_1: u8 = 1;

const DAY: u8 = 1;
const TOTAL: u8 = 2;
const DISTINCT: u8 = 3;

const HAS_MIN: u8 = 1;
const HAS_MAX: u8 = 2;
const HAS_LATEST: u8 = 4;
/// Version 2: the float sum follows (it is left out when its bits are zero).
const HAS_REAL_SUM: u8 = 8;

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
                self.time(*day, DAY_WIDTH);
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
                self.time(*bucket, *width);
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
                self.time(*day, DAY_WIDTH);
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

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn int(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    /// A time as its multiple of `width` and the (non-negative) remainder.
    fn time(&mut self, v: i64, width: i64) {
        let width = width.max(1);
        self.int(v.div_euclid(width));
        self.varint(v.rem_euclid(width) as u64);
    }

    fn float(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn text(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn aggregate(&mut self, a: &Aggregate) {
        self.int(a.events);
        self.int(a.int_hi);
        self.int(a.int_lo);
        self.int(a.reals);
        let flag = |present: bool, bit: u8| if present { bit } else { 0 };
        // Bits, not `== 0.0`: a sum of -0.0 keeps its sign.
        let real_sum = a.real_sum.to_bits() != 0;
        let flags = flag(a.min.is_some(), HAS_MIN)
            | flag(a.max.is_some(), HAS_MAX)
            | flag(a.latest.is_some(), HAS_LATEST)
            | flag(real_sum, HAS_REAL_SUM);
        self.0.push(flags);
        if real_sum {
            self.float(a.real_sum);
        }
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
    let mut r = Reader {
        rest: bytes,
        version: 0,
    };
    r.version = match r.byte()? {
        v @ (VERSION | VERSION_1) => v,
        v => return Err(corrupt(&format!("version {v}"))),
    };
    let mut entries = Vec::new();
    while !r.rest.is_empty() {
        let entry = match r.byte()? {
            DAY => Entry::Day {
                day: r.time(DAY_WIDTH)?,
                customer: r.text()?,
                group: r.text()?,
                aggregate: r.aggregate()?,
            },
            TOTAL => {
                let width = r.int()?;
                Entry::Total {
                    width,
                    bucket: r.time(width)?,
                    group: r.text()?,
                    aggregate: r.aggregate()?,
                }
            }
            DISTINCT => Entry::Distinct {
                day: r.time(DAY_WIDTH)?,
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

struct Reader<'a> {
    rest: &'a [u8],
    version: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn eight(&mut self) -> Result<[u8; 8], StoreError> {
        self.take(8)?.try_into().map_err(|_| corrupt("truncated"))
    }

    fn varint(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            // The tenth byte holds the 64th bit alone.
            if shift == 63 && b > 1 {
                return Err(corrupt("a number is too long"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("a number is too long"))
    }

    fn int(&mut self) -> Result<i64, StoreError> {
        if self.version == VERSION_1 {
            return Ok(i64::from_le_bytes(self.eight()?));
        }
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn time(&mut self, width: i64) -> Result<i64, StoreError> {
        if self.version == VERSION_1 {
            return self.int();
        }
        let width = width.max(1);
        let multiple = self.int()?;
        let remainder = i64::try_from(self.varint()?)
            .ok()
            .filter(|r| *r < width)
            .ok_or_else(|| corrupt("a time's remainder is out of range"))?;
        // In 128 bits: the multiple of a time near i64::MIN times the width is below it.
        i64::try_from(i128::from(multiple) * i128::from(width) + i128::from(remainder))
            .map_err(|_| corrupt("a time is out of range"))
    }

    fn float(&mut self) -> Result<f64, StoreError> {
        Ok(f64::from_le_bytes(self.eight()?))
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        let len = if self.version == VERSION_1 {
            let len: [u8; 4] = self.take(4)?.try_into().map_err(|_| corrupt("truncated"))?;
            u64::from(u32::from_le_bytes(len))
        } else {
            self.varint()?
        };
        let len = usize::try_from(len).map_err(|_| corrupt("truncated"))?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| corrupt("a string is not UTF-8"))
    }

    fn aggregate(&mut self) -> Result<Aggregate, StoreError> {
        let mut a = Aggregate {
            events: self.int()?,
            int_hi: self.int()?,
            int_lo: self.int()?,
            ..Aggregate::default()
        };
        if self.version == VERSION_1 {
            a.real_sum = self.float()?;
        }
        a.reals = self.int()?;
        let flags = self.byte()?;
        if self.version != VERSION_1 && flags & HAS_REAL_SUM != 0 {
            a.real_sum = self.float()?;
        }
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

    #[test]
    fn extreme_values_read_back_exactly() {
        let extreme = Aggregate {
            events: i64::MAX,
            int_hi: i64::MIN,
            int_lo: -1,
            real_sum: -0.0,
            reals: 0,
            min: Some(f64::NEG_INFINITY),
            max: Some(f64::MIN_POSITIVE),
            latest: Some(Latest {
                ts: i64::MIN,
                value: -0.0,
            }),
        };
        let entries = [
            Entry::Day {
                day: i64::MIN,
                customer: "",
                group: "",
                aggregate: extreme,
            },
            Entry::Total {
                width: 0,
                bucket: i64::MAX,
                group: "x",
                aggregate: Aggregate::default(),
            },
            Entry::Total {
                width: -5,
                bucket: i64::MIN,
                group: "",
                aggregate: extreme,
            },
            Entry::Distinct {
                day: i64::MAX,
                customer: "c",
                group: "",
                value: &"v".repeat(300),
            },
        ];
        let mut w = Writer::default();
        for e in &entries {
            w.push(e);
        }
        let bytes = w.finish();
        let read = read(&bytes).unwrap();
        assert_eq!(read, entries);
        // PartialEq takes -0.0 for 0.0: the sign is checked apart.
        let Entry::Day { aggregate, .. } = &read[0] else {
            panic!("{:?}", read[0]);
        };
        assert!(aggregate.real_sum.is_sign_negative());
    }

    #[test]
    fn a_customer_day_is_a_third_of_the_first_format() {
        let mut w = Writer::default();
        w.push(&Entry::Day {
            day: 20_000 * 86_400_000_000,
            customer: "cus_0042",
            group: "",
            aggregate: Aggregate {
                events: 3,
                int_lo: 1_500,
                ..Aggregate::default()
            },
        });
        // Version 1 took 1 + 8 + 12 + 4 + 41 = 66 bytes for this entry.
        assert_eq!(w.finish().len() - 1, 21);
    }

    #[test]
    fn rows_of_the_first_format_are_still_read() {
        // A Day entry and a Distinct entry as version 1 wrote them, by hand.
        let mut v1 = vec![1u8, 1];
        v1.extend_from_slice(&(86_400_000_000i64 * 3).to_le_bytes());
        for s in ["cus", ""] {
            v1.extend_from_slice(&(s.len() as u32).to_le_bytes());
            v1.extend_from_slice(s.as_bytes());
        }
        for v in [2i64, 0, 7] {
            v1.extend_from_slice(&v.to_le_bytes());
        }
        v1.extend_from_slice(&0.5f64.to_le_bytes());
        v1.extend_from_slice(&1i64.to_le_bytes());
        v1.push(HAS_MAX);
        v1.extend_from_slice(&4.5f64.to_le_bytes());
        v1.push(3);
        v1.extend_from_slice(&9i64.to_le_bytes());
        for s in ["cus", "g", "user"] {
            v1.extend_from_slice(&(s.len() as u32).to_le_bytes());
            v1.extend_from_slice(s.as_bytes());
        }
        assert_eq!(
            read(&v1).unwrap(),
            [
                Entry::Day {
                    day: 86_400_000_000 * 3,
                    customer: "cus",
                    group: "",
                    aggregate: Aggregate {
                        events: 2,
                        int_lo: 7,
                        real_sum: 0.5,
                        reals: 1,
                        max: Some(4.5),
                        ..Aggregate::default()
                    },
                },
                Entry::Distinct {
                    day: 9,
                    customer: "cus",
                    group: "g",
                    value: "user",
                },
            ]
        );
    }

    #[test]
    fn overlong_numbers_are_refused() {
        // A Distinct entry whose day multiple never ends, or runs past 64 bits.
        let endless = [VERSION, DISTINCT, 0x80, 0x80, 0x80];
        assert!(matches!(read(&endless), Err(StoreError::Corrupt(_))));
        let mut too_long = vec![VERSION, DISTINCT];
        too_long.extend_from_slice(&[0xff; 9]);
        too_long.push(0x02);
        assert!(matches!(read(&too_long), Err(StoreError::Corrupt(_))));
        // A remainder not below the day's width.
        let mut w = Writer::default();
        w.time(86_400_000_000 * 2 - 1, 86_400_000_000 * 2);
        let mut bad = vec![VERSION, DISTINCT];
        bad.extend_from_slice(&w.finish()[1..]);
        bad.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(read(&bad), Err(StoreError::Corrupt(_))));
    }
}
