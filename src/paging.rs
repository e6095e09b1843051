//! Paging of every List call: the page size rules and one opaque, versioned page token format.
//!
//! A token carries where the previous page ended (an id, or a timestamp and sequence number:
//! whatever the listing's keyset needs), behind a version tag and base64url, so that clients
//! treat it as opaque and a later format can be told apart from this one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::invalid::Invalid;

/// Page size when the request names none: a screenful.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page size accepted: large enough for an export, small enough to bound one response.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The version tag of today's tokens.
const VERSION: &str = "v1";

/// A page request: how many items, and the position the previous page ended at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<P> {
    /// At most this many items.
    pub size: u32,
    /// Items after this position (exclusive), or from the start.
    pub after: Option<P>,
}

impl<P> Page<P> {
    /// How many items to ask the store for: one more than the page holds, which tells whether
    /// another page follows without a second query.
    pub fn probe(&self) -> u32 {
        self.size.saturating_add(1)
    }

    /// Cuts what the store returned for [`Page::probe`] to the page, and gives the position of
    /// its last item when another page follows.
    pub fn split<T>(
        &self,
        mut items: Vec<T>,
        position: impl FnOnce(&T) -> P,
    ) -> (Vec<T>, Option<P>) {
        let more = items.len() > self.size as usize;
        items.truncate(self.size as usize);
        let next = items.last().filter(|_| more).map(position);
        (items, next)
    }
}

/// Validates a requested page size; 0 means [`DEFAULT_PAGE_SIZE`].
pub fn page_size(requested: i32) -> Result<u32, Invalid> {
    match u32::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        _ => Err(Invalid::field(
            "page_size",
            format!("must be between 0 (default {DEFAULT_PAGE_SIZE}) and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// The token for a page that continues after `position`.
pub fn encode_token(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{VERSION}:{position}"))
}

/// The position a token carries; `None` for an empty token (the first page).
pub fn decode_token(token: &str) -> Result<Option<String>, Invalid> {
    if token.is_empty() {
        return Ok(None);
    }
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid_token)?;
    match text.split_once(':') {
        Some((VERSION, position)) => Ok(Some(position.to_owned())),
        _ => Err(invalid_token()),
    }
}

/// Decodes a token and parses its position with `parse`; any failure is the same refusal.
pub fn decode_token_with<T, E>(
    token: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, Invalid> {
    decode_token(token)?
        .map(|position| parse(&position).map_err(|_| invalid_token()))
        .transpose()
}

/// The refusal of a token this service did not issue.
pub fn invalid_token() -> Invalid {
    Invalid::field(
        "page_token",
        "is not one this service issued: pass next_page_token unchanged",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tokens() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(1000), Ok(1000));
        for bad in [-1, 1001] {
            assert_eq!(
                page_size(bad).unwrap_err().message,
                "page_size must be between 0 (default 50) and 1000"
            );
        }
        let token = encode_token("usr_abc");
        assert_eq!(decode_token(&token), Ok(Some("usr_abc".to_owned())));
        assert_eq!(decode_token(""), Ok(None));
        for bad in ["nope!", "dXNyX2FiYw", &URL_SAFE_NO_PAD.encode("v2:x")] {
            assert_eq!(decode_token(bad), Err(invalid_token()), "{bad}");
        }
        let parsed = decode_token_with(&encode_token("42"), str::parse::<i64>);
        assert_eq!(parsed, Ok(Some(42)));
        let unparsable = decode_token_with(&encode_token("x"), str::parse::<i64>);
        assert_eq!(unparsable, Err(invalid_token()));
        let page = Page {
            size: 2,
            after: None::<i32>,
        };
        assert_eq!(page.probe(), 3);
        assert_eq!(page.split(vec![1, 2, 3], |n| *n), (vec![1, 2], Some(2)));
        assert_eq!(page.split(vec![1, 2], |n| *n), (vec![1, 2], None));
    }
}
