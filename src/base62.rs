//! Base62 with the alphabet in ASCII order (`0-9A-Za-z`), so that fixed-width encodings sort
//! as their numbers do: ids made from time-ordered UUIDs stay time-ordered as strings.

/// The 62 digits, in ascending ASCII order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters needed to write any `u128` in base62 (62^22 > 2^128).
pub const U128_WIDTH: usize = 22;

/// Writes `value` as exactly `width` base62 digits, left-padded with `0`.
/// `width` must be large enough for `value`; higher digits are dropped otherwise.
pub fn encode_fixed(mut value: u128, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits.into_iter().map(char::from).collect()
}

/// Whether every byte of `s` is a base62 digit.
pub fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `len` base62 characters drawn uniformly from the operating system's CSPRNG.
pub fn random(len: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)?;
        // Rejection sampling: 248 = 4 * 62, so bytes below it map uniformly onto the alphabet.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_preserves_order() {
        let values = [0u128, 1, 61, 62, 3843, 1 << 64, u128::MAX - 1, u128::MAX];
        let encoded: Vec<String> = values
            .iter()
            .map(|v| encode_fixed(*v, U128_WIDTH))
            .collect();
        assert!(encoded.iter().all(|e| e.len() == U128_WIDTH));
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{encoded:?}");
        assert_eq!(encode_fixed(61, 2), "0z");
    }

    #[test]
    fn random_is_base62_of_requested_length() {
        let a = random(40).expect("os rng");
        let b = random(40).expect("os rng");
        assert_eq!(a.len(), 40);
        assert!(is_base62(&a));
        assert_ne!(a, b);
    }
}
