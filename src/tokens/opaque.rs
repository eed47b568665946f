//! Server-generated secrets: client secrets (`kws_`) and API tokens (`kwt_`).
//!
//! Format: prefix, 43 characters of base64url (256 bits from the OS CSPRNG),
//! then 6 characters of checksum (the first 32 bits of SHA-256 over prefix and
//! body). The prefix lets secret scanners find them; the checksum lets a
//! scanner, or this server, tell a real one from a typo without a lookup.
//! Never change the prefixes: tokens already issued would stop matching.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Every client ID starts with this (not a secret).
pub const CLIENT_ID_PREFIX: &str = "kwc_";
pub const CLIENT_SECRET_PREFIX: &str = "kws_";
pub const API_TOKEN_PREFIX: &str = "kwt_";
/// A user's one-time setup link (`/console/setup?token=kwl_...`).
pub const SETUP_LINK_PREFIX: &str = "kwl_";
/// A console session cookie's value.
pub const SESSION_PREFIX: &str = "kwss_";

const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;

/// A secret in clear. It cannot be serialised and its `Debug` is redacted, so
/// it reaches a caller only where code asks for `expose()` on purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS CSPRNG failing is not something a server can recover from.
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator failed");
    bytes
}

fn checksum(prefix: &str, body: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{prefix}{body}").as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..4])
}

/// A new secret with the given prefix.
pub fn generate(prefix: &str) -> Secret {
    let body = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let sum = checksum(prefix, &body);
    Secret(format!("{prefix}{body}{sum}"))
}

/// Whether `candidate` has the shape and checksum of a secret with `prefix`.
pub fn is_well_formed(candidate: &str, prefix: &str) -> bool {
    let Some(rest) = candidate.strip_prefix(prefix) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.is_ascii() {
        return false;
    }
    let (body, sum) = rest.split_at(BODY_LEN);
    checksum(prefix, body)
        .as_bytes()
        .ct_eq(sum.as_bytes())
        .into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    digest
}

/// A stored hash back as bytes: 64 lower-case hex digits, as `sha256_hex`
/// writes them; None for anything else.
pub fn digest_from_hex(text: &str) -> Option<[u8; 32]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(digest)
}

/// Lower-case hex, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Compares two stored hashes without an early exit.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Compares two digests without an early exit.
pub fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// A random identifier such as `kwc_3f9a...` (not a secret).
pub fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", hex(&random_bytes::<10>()))
}

/// An identifier that sorts by creation time (milliseconds), then by order
/// of creation within this process, then at random: used where "newest
/// first" is the natural order, such as the audit log. Two events of one
/// request often share a millisecond; the sequence keeps them in order.
pub fn time_ordered_id(now_millis: i64) -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let floor = (now_millis.max(0) as u64) << 16;
    let next = |last: u64| floor.max(last + 1);
    // The closure never refuses, so fetch_update always succeeds.
    let last = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(next(last))
        })
        .unwrap_or_else(|last| last);
    format!("{:016x}{}", next(last), hex(&random_bytes::<6>()))
}

/// The first characters of a token, safe to show in lists: enough for a
/// person to recognise it, far too few to use it.
pub fn display_prefix(token: &str) -> String {
    token.chars().take(API_TOKEN_PREFIX.len() + 6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_their_prefix_and_a_valid_checksum() {
        let secret = generate(API_TOKEN_PREFIX);
        assert!(secret.expose().starts_with("kwt_"));
        assert!(is_well_formed(secret.expose(), API_TOKEN_PREFIX));
        assert!(!is_well_formed(secret.expose(), CLIENT_SECRET_PREFIX));
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let secret = generate(CLIENT_SECRET_PREFIX);
        let mut chars: Vec<char> = secret.expose().chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        let typo: String = chars.into_iter().collect();
        assert!(!is_well_formed(&typo, CLIENT_SECRET_PREFIX));
    }

    #[test]
    fn two_secrets_differ_and_debug_hides_them() {
        let a = generate(API_TOKEN_PREFIX);
        let b = generate(API_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(a.hash().len(), 64);
    }

    #[test]
    fn a_stored_hash_reads_back_as_its_digest_and_nothing_else_does() {
        let hex = sha256_hex(b"kws_x");
        assert_eq!(digest_from_hex(&hex), Some(sha256(b"kws_x")));
        assert_eq!(digest_from_hex(&hex.to_uppercase()), None);
        assert_eq!(digest_from_hex(&hex[1..]), None);
        assert_eq!(digest_from_hex(&format!("{}g", &hex[1..])), None);
        assert_eq!(digest_from_hex(""), None);
    }

    #[test]
    fn time_ordered_ids_sort_by_time() {
        assert!(time_ordered_id(1_000) < time_ordered_id(2_000));
        let same_millisecond: Vec<String> = (0..100).map(|_| time_ordered_id(3_000)).collect();
        assert!(same_millisecond.windows(2).all(|w| w[0] < w[1]));
    }
}
