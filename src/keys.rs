//! The API key format: `sk_live_` or `sk_test_`, 30 base62 characters from the operating
//! system's CSPRNG (178 bits), then a 6-character base62 CRC32 of everything before it, as GitHub
//! tokens do. The checksum lets a service reject a mistyped or made-up key without a database
//! lookup. Only the SHA-256 digest of a key is ever stored, compared or used as a cache key.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::base62;

/// Random characters in a key (30 × log2(62) ≈ 178 bits, above the 128 the spec asks for).
const RANDOM_LEN: usize = 30;
/// Characters of the checksum (62^6 > 2^32, so any CRC32 fits).
const CHECKSUM_LEN: usize = 6;
/// Characters of the key shown in display hints.
const HINT_TAIL: usize = 4;

/// Why the operating system's random number generator gave no bytes.
pub type RandomnessError = getrandom::Error;

/// One of a tenant's two environments. An API key is pinned to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Environment {
    /// Live traffic (`sk_live_` keys).
    Production,
    /// Testing (`sk_test_` keys).
    Sandbox,
}

impl Environment {
    /// Both environments, in a stable order.
    pub const ALL: [Environment; 2] = [Environment::Production, Environment::Sandbox];

    /// The name used in storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The prefix of this environment's keys.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Environment::Production => "sk_live_",
            Environment::Sandbox => "sk_test_",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a presented string is not an API key. The messages never repeat the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Does not start with `sk_live_` or `sk_test_`.
    #[error("API key must start with sk_live_ or sk_test_")]
    Prefix,
    /// Wrong length or characters other than letters and digits.
    #[error("API key has the wrong length or characters")]
    Shape,
    /// The checksum does not match: mistyped, truncated or made up.
    #[error("API key checksum does not match")]
    Checksum,
}

/// A raw API key. Its `Debug` and `Display` print only the display hint, so that it cannot reach
/// a log line, span or error message by accident; [`ApiKeySecret::expose`] is the only way out.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret {
    secret: String,
    environment: Environment,
}

impl ApiKeySecret {
    /// A new random key for `environment`.
    pub fn generate(environment: Environment) -> Result<Self, getrandom::Error> {
        let mut secret = String::with_capacity(8 + RANDOM_LEN + CHECKSUM_LEN);
        secret.push_str(environment.key_prefix());
        secret.push_str(&base62::random(RANDOM_LEN)?);
        let checksum = checksum(&secret);
        secret.push_str(&checksum);
        Ok(Self {
            secret,
            environment,
        })
    }

    /// Checks the prefix, shape and checksum of a presented key, without any lookup.
    pub fn parse(presented: &str) -> Result<Self, KeyFormatError> {
        let environment = Environment::ALL
            .into_iter()
            .find(|e| presented.starts_with(e.key_prefix()))
            .ok_or(KeyFormatError::Prefix)?;
        let body = &presented[environment.key_prefix().len()..];
        if body.len() != RANDOM_LEN + CHECKSUM_LEN || !base62::is_base62(body) {
            return Err(KeyFormatError::Shape);
        }
        let (head, sum) = presented.split_at(presented.len() - CHECKSUM_LEN);
        if checksum(head) != sum {
            return Err(KeyFormatError::Checksum);
        }
        Ok(Self {
            secret: presented.to_owned(),
            environment,
        })
    }

    /// The environment the key's prefix names.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// SHA-256 of the whole key: what is stored, looked up and cached.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.secret.as_bytes()).into())
    }

    /// The prefix and the last four characters, e.g. `sk_live_...a1B2`.
    pub fn display_hint(&self) -> String {
        let tail = &self.secret[self.secret.len() - HINT_TAIL..];
        format!("{}...{}", self.environment.key_prefix(), tail)
    }

    /// The raw key, for the one response that hands it to its owner and for clients sending it.
    pub fn expose(&self) -> &str {
        &self.secret
    }
}

impl std::str::FromStr for ApiKeySecret {
    type Err = KeyFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({})", self.display_hint())
    }
}

fn checksum(head: &str) -> String {
    base62::encode_fixed(u128::from(crc32fast::hash(head.as_bytes())), CHECKSUM_LEN)
}

/// SHA-256 of an API key. Not secret in itself (it cannot be turned back into the key), so it may
/// be used as a cache key and sent between services.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// Reads a digest sent by a peer; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits are enough to tell keys apart in a debug print.
        write!(f, "KeyDigest(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        for env in Environment::ALL {
            let key = ApiKeySecret::generate(env).expect("os rng");
            assert!(key.expose().starts_with(env.key_prefix()));
            assert_eq!(key.expose().len(), 8 + RANDOM_LEN + CHECKSUM_LEN);
            let parsed = ApiKeySecret::parse(key.expose()).expect("valid key");
            assert_eq!(parsed.environment(), env);
            assert_eq!(parsed.digest(), key.digest());
        }
    }

    #[test]
    fn malformed_keys_are_rejected_locally() {
        let key = ApiKeySecret::generate(Environment::Production).expect("os rng");
        let raw = key.expose();
        assert_eq!(
            ApiKeySecret::parse("pk_live_abc"),
            Err(KeyFormatError::Prefix)
        );
        assert_eq!(
            ApiKeySecret::parse(&raw[..raw.len() - 1]),
            Err(KeyFormatError::Shape)
        );
        assert_eq!(
            ApiKeySecret::parse(&format!("{}-", &raw[..raw.len() - 1])),
            Err(KeyFormatError::Shape)
        );
        // Flip one character of the random part: the checksum catches it.
        let mut flipped: Vec<char> = raw.chars().collect();
        flipped[10] = if flipped[10] == 'a' { 'b' } else { 'a' };
        let flipped: String = flipped.into_iter().collect();
        assert_eq!(ApiKeySecret::parse(&flipped), Err(KeyFormatError::Checksum));
        // A live key relabelled as a test key fails too: the prefix is under the checksum.
        let relabelled = raw.replacen("sk_live_", "sk_test_", 1);
        assert_eq!(
            ApiKeySecret::parse(&relabelled),
            Err(KeyFormatError::Checksum)
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKeySecret::generate(Environment::Sandbox).expect("os rng");
        let printed = format!("{key:?} {:?}", key.digest());
        assert!(!printed.contains(key.expose()));
        assert!(!printed.contains(&key.expose()[8..20]));
        assert!(printed.contains("sk_test_..."));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever is presented, parsing answers (never panics), and accepts only what has a
        /// prefix, the length and a matching checksum.
        #[test]
        fn any_text_is_parsed_or_refused(text in "\\PC{0,60}") {
            if let Ok(key) = ApiKeySecret::parse(&text) {
                prop_assert_eq!(key.expose(), text.as_str());
                prop_assert_eq!(text.len(), 8 + RANDOM_LEN + CHECKSUM_LEN);
            }
        }

        /// Every generated key parses back; any one character changed, it does not.
        #[test]
        fn one_changed_character_is_caught(position in 8usize..44, replacement in proptest::sample::select(crate::base62::ALPHABET.to_vec())) {
            let key = ApiKeySecret::generate(Environment::Production).unwrap();
            prop_assert!(ApiKeySecret::parse(key.expose()).is_ok());
            let mut changed = key.expose().as_bytes().to_vec();
            prop_assume!(changed[position] != replacement);
            changed[position] = replacement;
            let changed = String::from_utf8(changed).unwrap();
            prop_assert!(ApiKeySecret::parse(&changed).is_err());
        }
    }
}
