//! Prefixed, time-ordered identifiers (`ten_…`, `usr_…`, `sec_…`): the prefix tells a person what
//! an id names, and the body is a UUIDv7 in fixed-width base62 so that ids sort by creation time
//! (which keeps B-tree inserts at the right edge and makes id order a stable paging order).

use std::fmt;

use crate::base62;

/// An id string that does not have the expected prefix and body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must look like {prefix}<{width} letters or digits>")]
pub struct IdFormatError {
    /// The prefix the id should start with.
    pub prefix: &'static str,
    /// How many base62 characters follow the prefix.
    pub width: usize,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// What every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id, ordered after every id generated before it by this process.
            pub fn generate() -> Self {
                let body = base62::encode_fixed(uuid::Uuid::now_v7().as_u128(), base62::U128_WIDTH);
                Self(format!("{}{}", Self::PREFIX, body))
            }

            /// Checks the prefix and body of an id received from outside.
            pub fn parse(s: &str) -> Result<Self, IdFormatError> {
                match s.strip_prefix(Self::PREFIX) {
                    Some(body) if body.len() == base62::U128_WIDTH && base62::is_base62(body) => {
                        Ok(Self(s.to_owned()))
                    }
                    _ => Err(IdFormatError { prefix: Self::PREFIX, width: base62::U128_WIDTH }),
                }
            }

            /// The id as stored and sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A tenant (an organisation), `ten_<random>`.
    TenantId,
    "ten_"
);
prefixed_id!(
    /// A person's account or a service account, `usr_<random>`.
    UserId,
    "usr_"
);
prefixed_id!(
    /// An API key, `sec_<random>` (the seeds call keys "secrets").
    ApiKeyId,
    "sec_"
);
prefixed_id!(
    /// A record of the audit log, `aud_<random>`.
    AuditId,
    "aud_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_creation() {
        let ids: Vec<UserId> = (0..100).map(|_| UserId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for id in &ids {
            assert_eq!(UserId::parse(id.as_str()).as_ref(), Ok(id));
        }
    }

    #[test]
    fn foreign_and_malformed_ids_are_rejected() {
        let user = UserId::generate();
        assert!(ApiKeyId::parse(user.as_str()).is_err());
        assert!(UserId::parse("usr_").is_err());
        assert!(UserId::parse("usr_abc").is_err());
        assert!(UserId::parse(&format!("{}!", &user.as_str()[..user.as_str().len() - 1])).is_err());
        let err = UserId::parse("nope").unwrap_err();
        assert_eq!(err.to_string(), "must look like usr_<22 letters or digits>");
    }
}
