//! The metadata headers Tollgate reads, and how a presented API key is found in them.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::keys::{ApiKeySecret, KeyFormatError};

/// Where clients put their API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Accepted too, as `Bearer <key>`.
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// Where internal callers of `Authorize` put the shared internal credential.
pub const INTERNAL_TOKEN_HEADER: &str = "x-tollgate-internal-token";

/// A request carrying `key` in the `x-api-key` header, as clients send it. Fails only for
/// characters a header cannot carry, which no well-formed key has; the error names no part of
/// the key.
pub fn with_api_key<T>(
    key: &str,
    message: T,
) -> Result<tonic::Request<T>, tonic::metadata::errors::InvalidMetadataValue> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(API_KEY_HEADER, key.parse()?);
    Ok(request)
}

/// Why a request carries no usable API key. Messages never repeat what was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Neither header is present.
    #[error("missing API key: send it in the x-api-key metadata header")]
    Missing,
    /// A header is present but does not hold a well-formed key.
    #[error("malformed API key: {0}")]
    Malformed(KeyFormatError),
}

/// Finds the API key in the `x-api-key` header or, failing that, `authorization: Bearer <key>`,
/// and checks its format and checksum. The caller passes the raw header values so that this works
/// for tonic metadata and plain HTTP headers alike.
pub fn presented_api_key(
    x_api_key: Option<&[u8]>,
    authorization: Option<&[u8]>,
) -> Result<ApiKeySecret, CredentialError> {
    let raw = match (x_api_key, authorization) {
        (Some(value), _) => value,
        (None, Some(value)) => {
            let value = value.trim_ascii();
            match value.get(..7) {
                Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
                _ => return Err(CredentialError::Malformed(KeyFormatError::Prefix)),
            }
        }
        (None, None) => return Err(CredentialError::Missing),
    };
    let text = std::str::from_utf8(raw.trim_ascii())
        .map_err(|_| CredentialError::Malformed(KeyFormatError::Shape))?;
    if text.is_empty() {
        return Err(CredentialError::Missing);
    }
    ApiKeySecret::parse(text).map_err(CredentialError::Malformed)
}

/// [`presented_api_key`] for a tonic request's metadata.
pub fn api_key_from_metadata(
    metadata: &tonic::metadata::MetadataMap,
) -> Result<ApiKeySecret, CredentialError> {
    presented_api_key(
        metadata.get(API_KEY_HEADER).map(|v| v.as_bytes()),
        metadata.get(AUTHORIZATION_HEADER).map(|v| v.as_bytes()),
    )
}

/// A shorter internal credential would be guessable.
pub const MIN_INTERNAL_TOKEN_LEN: usize = 24;
/// Bits of entropy an internal token must show, estimated from how often each of its
/// characters occurs (`openssl rand -base64 32` shows about 190, a 32-character hex string
/// about 120): this refuses words, repeats and keyboard runs, not every weak token.
pub const MIN_INTERNAL_TOKEN_BITS: f64 = 96.0;
/// Words of the placeholders that examples and templates ship: a token that contains one was
/// copied, not generated.
const PLACEHOLDER_WORDS: &[&str] = &[
    "change",
    "replace",
    "placeholder",
    "example",
    "secret",
    "token",
    "password",
    "default",
];

/// A shared secret that internal callers of `Authorize` present. `Debug` never prints it.
#[derive(Clone)]
pub struct InternalToken(SecretString);

impl InternalToken {
    /// Whether `presented` is the token. Compares SHA-256 digests so that the comparison time
    /// says nothing about how much of a guess was right.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.0.expose_secret().as_bytes()) == Sha256::digest(presented)
    }

    /// The token, for clients that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::str::FromStr for InternalToken {
    type Err = String;

    /// Accepts a token only if it looks generated: long enough, printable, no placeholder word,
    /// and enough entropy by its character counts. The error never repeats the token.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const GENERATE: &str = "generate one with `openssl rand -base64 32`";
        if s.len() < MIN_INTERNAL_TOKEN_LEN {
            return Err(format!(
                "the internal token must be at least {MIN_INTERNAL_TOKEN_LEN} characters; {GENERATE}"
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the internal token must be printable ASCII without spaces".to_owned());
        }
        let lower = s.to_ascii_lowercase();
        if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
            return Err(format!(
                "the internal token looks like a placeholder from an example; {GENERATE}"
            ));
        }
        if estimated_bits(s) < MIN_INTERNAL_TOKEN_BITS {
            return Err(format!(
                "the internal token is too predictable (under {MIN_INTERNAL_TOKEN_BITS} bits); {GENERATE}"
            ));
        }
        Ok(Self(SecretString::from(s.to_owned())))
    }
}

/// The entropy of `s` in bits, estimated from the frequency of its characters (Shannon).
fn estimated_bits(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for b in s.bytes() {
        *counts.entry(b).or_insert(0usize) += 1;
    }
    let n = s.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2() * n
        })
        .sum()
}

impl fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Environment;

    #[test]
    fn finds_the_key_in_either_header() {
        let key = ApiKeySecret::generate(Environment::Production).expect("os rng");
        let raw = key.expose().as_bytes();
        assert_eq!(presented_api_key(Some(raw), None), Ok(key.clone()));
        let bearer = format!("Bearer {}", key.expose());
        assert_eq!(presented_api_key(None, Some(bearer.as_bytes())), Ok(key));
    }

    #[test]
    fn internal_tokens_must_look_generated() {
        let generated = "kq0V3bq5fC7eE3n1Yx0bTqWm2hF9sLzP8aR4uJ6dGiM=";
        assert!(generated.parse::<InternalToken>().is_ok());
        for (bad, why) in [
            ("short-token", "at least"),
            ("change-me-to-a-long-random-token", "placeholder"),
            ("REPLACE_ME_WITH_A_LONG_RANDOM_TOKEN", "placeholder"),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "predictable"),
            ("abababababababababababababababab", "predictable"),
            ("with spaces in it is not a header value!", "printable"),
        ] {
            let err = bad.parse::<InternalToken>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains(bad), "the error repeats the token");
        }
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(presented_api_key(None, None), Err(CredentialError::Missing));
        assert_eq!(
            presented_api_key(Some(b"sk_live_short"), None),
            Err(CredentialError::Malformed(KeyFormatError::Shape))
        );
        assert_eq!(
            presented_api_key(None, Some(b"Basic abc")),
            Err(CredentialError::Malformed(KeyFormatError::Prefix))
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any header bytes get an answer, never a panic.
        #[test]
        fn any_header_is_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..60)) {
            let _ = presented_api_key(Some(&bytes), None);
            let _ = presented_api_key(None, Some(&bytes));
        }
    }
}
