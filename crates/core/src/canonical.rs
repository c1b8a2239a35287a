//! Hash schemes over canonical JSON encodings, and what they share.
//!
//! A state hash is only reproducible if every party serializes the state
//! byte-for-byte alike; each [`HashScheme`] names one such serialization
//! ([`crate::seed`] or [`crate::jcs`]) followed by SHA-256.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::json::Value;

/// Longest number lexeme quoted verbatim in an error message.
const MAX_QUOTED_LEXEME: usize = 64;

/// Why a value has no canonical encoding, or a scheme name is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CanonicalError {
    /// An integer that no IEEE 754 double equals, so JCS would silently change it.
    #[error("integer {lexeme} is not exactly representable as an ieee 754 double")]
    IntegerNotExact {
        /// The integer lexeme, shortened to 64 characters.
        lexeme: String,
    },
    /// A number whose value is not a finite double.
    #[error("number {lexeme} is out of range for an ieee 754 double")]
    NumberOutOfRange {
        /// The number lexeme, shortened to 64 characters.
        lexeme: String,
    },
    /// A hash scheme name that is neither `seed-sha256` nor `jcs-sha256`.
    #[error("unknown hash scheme {name:?}, expected \"seed-sha256\" or \"jcs-sha256\"")]
    UnknownScheme {
        /// The name that was given.
        name: String,
    },
}

/// Shortens a lexeme for an error message, since integers have no size limit.
pub(crate) fn quote_lexeme(lexeme: &str) -> String {
    if lexeme.len() <= MAX_QUOTED_LEXEME {
        lexeme.to_owned()
    } else {
        // Lexemes are ASCII, so any byte index is a char boundary.
        format!("{}...", &lexeme[..MAX_QUOTED_LEXEME])
    }
}

/// How a state value is turned into a 32-byte digest.
///
/// The serde form and [`fmt::Display`] are the scheme names `seed-sha256` and
/// `jcs-sha256`, which are stored next to every hash so that it can be
/// recomputed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashScheme {
    /// Python `json.dumps(value, sort_keys=True)` then SHA-256 (the seed's scheme).
    #[serde(rename = "seed-sha256")]
    SeedSha256,
    /// RFC 8785 JSON Canonicalization Scheme then SHA-256.
    #[serde(rename = "jcs-sha256")]
    JcsSha256,
}

impl HashScheme {
    /// Every scheme, in a stable order.
    pub const ALL: [HashScheme; 2] = [HashScheme::SeedSha256, HashScheme::JcsSha256];

    /// The scheme's name: `seed-sha256` or `jcs-sha256`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HashScheme::SeedSha256 => "seed-sha256",
            HashScheme::JcsSha256 => "jcs-sha256",
        }
    }

    /// The canonical text that is hashed; only JCS can fail (inexact integers).
    pub fn canonicalize(self, value: &Value) -> Result<String, CanonicalError> {
        match self {
            HashScheme::SeedSha256 => Ok(crate::seed::seed_json(value)),
            HashScheme::JcsSha256 => crate::jcs::jcs_json(value),
        }
    }

    /// SHA-256 of the canonical text.
    pub fn hash(self, value: &Value) -> Result<[u8; 32], CanonicalError> {
        Ok(sha256(self.canonicalize(value)?.as_bytes()))
    }

    /// SHA-256 of the canonical text as 64 lowercase hex digits.
    pub fn hash_hex(self, value: &Value) -> Result<String, CanonicalError> {
        Ok(hex::encode(self.hash(value)?))
    }
}

impl fmt::Display for HashScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HashScheme {
    type Err = CanonicalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HashScheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| CanonicalError::UnknownScheme { name: s.to_owned() })
    }
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Shortest round-trip decimal digits of a finite, non-zero `x`, ignoring its
/// sign, with `decpt` such that `|x| = 0.DIGITS × 10^decpt`.
///
/// Python's `repr` and ECMAScript both take the fewest digits that read back
/// as `x`, and among those the closest to `x`, the even one on an exact tie.
/// Rust's `{:e}` finds the same length but breaks exact ties upward (it
/// prints 1424953923781206.25 as ...206.3 where both print ...206.2), so the
/// last digit is redone with Rust's correctly rounded, ties-to-even, fixed
/// precision formatting whenever that still reads back as `x`.
pub(crate) fn shortest_digits(x: f64) -> (String, i32) {
    let x = x.abs();
    // Ryu finds the same shortest digits as `{:e}` without formatting machinery or a temporary
    // string: most of hashing a state of measurements was spent here.
    let (digits, decpt) = if x.is_finite() && x != 0.0 {
        split_decimal(ryu::Buffer::new().format_finite(x))
    } else {
        split_scientific(&format!("{x:e}"))
    };
    // Decimals of up to 15 significant digits are further apart than the doubles near them,
    // so at most one of that length reads back as `x`: the shortest is then unique and there
    // is no nearer one to look for.
    if digits.len() <= 15 {
        return (digits, decpt);
    }
    let (digits, decpt) = split_scientific(&format!("{x:e}"));
    let precision = digits.len().saturating_sub(1);
    let nearest = format!("{x:.precision$e}");
    if nearest.parse::<f64>() == Ok(x) {
        split_scientific(&nearest)
    } else {
        // Near a power of two the interval below `x` is narrower, so the
        // nearest digits may miss `x` while Rust's choice does not.
        (digits, decpt)
    }
}

/// Splits Ryu's text (`25.3`, `0.001`, `1e16`, `1.5e-7`) into its significant digits and
/// `decpt`, as [`split_scientific`] does Rust's `{:e}`.
fn split_decimal(text: &str) -> (String, i32) {
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = String::with_capacity(whole.len() + fraction.len());
    let mut decpt = i32::try_from(whole.len())
        .unwrap_or(0)
        .saturating_add(exponent);
    for b in whole.bytes().chain(fraction.bytes()) {
        if digits.is_empty() && b == b'0' {
            decpt -= 1;
        } else {
            digits.push(char::from(b));
        }
    }
    let significant = digits.trim_end_matches('0').len();
    digits.truncate(significant);
    (digits, decpt)
}

/// Splits Rust's `{:e}` output `d.ddde[-]x` into its digits and `decpt`.
fn split_scientific(sci: &str) -> (String, i32) {
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let (negative, magnitude) = match exponent.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, exponent),
    };
    let magnitude = magnitude
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0i32, |acc, b| {
            acc.saturating_mul(10).saturating_add(i32::from(b - b'0'))
        });
    let exp10 = if negative { -magnitude } else { magnitude };
    (digits, exp10 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Limits, parse};

    #[test]
    fn scheme_names_round_trip() {
        for scheme in HashScheme::ALL {
            assert_eq!(scheme.as_str().parse::<HashScheme>(), Ok(scheme));
            assert_eq!(scheme.to_string(), scheme.as_str());
        }
        let e = "sha256".parse::<HashScheme>().expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "unknown hash scheme \"sha256\", expected \"seed-sha256\" or \"jcs-sha256\""
        );
    }

    #[test]
    fn scheme_serde_uses_names() {
        let json = serde_json::to_string(&HashScheme::JcsSha256).expect("serialize");
        assert_eq!(json, "\"jcs-sha256\"");
        let back: HashScheme = serde_json::from_str("\"seed-sha256\"").expect("deserialize");
        assert_eq!(back, HashScheme::SeedSha256);
        assert!(serde_json::from_str::<HashScheme>("\"SeedSha256\"").is_err());
    }

    #[test]
    fn hashes_the_seed_example() {
        let v = parse(
            br#"{"temperature": 25.3, "status": "operational"}"#,
            &Limits::default(),
        )
        .expect("valid");
        assert_eq!(
            HashScheme::SeedSha256.canonicalize(&v).expect("seed"),
            r#"{"status": "operational", "temperature": 25.3}"#
        );
        assert_eq!(
            HashScheme::JcsSha256.canonicalize(&v).expect("jcs"),
            r#"{"status":"operational","temperature":25.3}"#
        );
        let hex = HashScheme::SeedSha256.hash_hex(&v).expect("hash");
        assert_eq!(hex.len(), 64);
        assert_eq!(
            hex::decode(&hex).expect("hex"),
            HashScheme::SeedSha256.hash(&v).expect("hash")
        );
    }

    #[test]
    fn short_digits_are_the_nearest_too() {
        // The fast path of shortest_digits: with 15 digits or fewer, Rust's shortest digits
        // are those its correctly rounded formatting at that precision gives.
        let mut bits: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut checked = 0;
        for i in 0..200_000u64 {
            bits = bits
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Every other value a short decimal, as measurements are.
            let x = if i % 2 == 0 {
                f64::from_bits(bits >> 1)
            } else {
                (bits % 100_000_000) as f64 / 10f64.powi((bits >> 60) as i32)
            };
            if !x.is_finite() {
                continue;
            }
            let (digits, decpt) = split_scientific(&format!("{x:e}"));
            if digits.len() > 15 {
                continue;
            }
            let precision = digits.len() - 1;
            let nearest = split_scientific(&format!("{x:.precision$e}"));
            assert_eq!(nearest, (digits, decpt), "{x:e}");
            checked += 1;
        }
        assert!(
            checked > 50_000,
            "only {checked} values had 15 digits or fewer"
        );
    }

    #[test]
    fn ryu_splits_as_rust_does() {
        let mut bits: u64 = 0x2545_f491_4f6c_dd1d;
        let mut values = vec![
            1.0,
            0.5,
            25.3,
            0.001,
            1e16,
            1e21,
            1e-7,
            123_456.0,
            5e-324,
            f64::MAX,
        ];
        for i in 0..200_000u64 {
            bits = bits
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            values.push(if i % 2 == 0 {
                f64::from_bits(bits >> 1)
            } else {
                (bits % 100_000_000) as f64 / 10f64.powi((bits >> 60) as i32)
            });
        }
        // Up to 15 digits the shortest are unique and must be equal; longer ones may break a
        // tie the other way, and shortest_digits takes Rust's slow path for them.
        for x in values.into_iter().filter(|x| x.is_finite() && *x != 0.0) {
            let ryu = split_decimal(ryu::Buffer::new().format_finite(x));
            let rust = split_scientific(&format!("{x:e}"));
            if rust.0.len() <= 15 {
                assert_eq!(ryu, rust, "{x:e}");
            } else {
                assert_eq!(ryu.0.len(), rust.0.len(), "{x:e}");
            }
        }
    }

    #[test]
    fn shortest_digits_layout() {
        assert_eq!(shortest_digits(25.3), ("253".into(), 2));
        assert_eq!(shortest_digits(-0.001), ("1".into(), -2));
        assert_eq!(shortest_digits(5e-324), ("5".into(), -323));
        assert_eq!(
            shortest_digits(1.7976931348623157e308),
            ("17976931348623157".into(), 309)
        );
        // An exact tie at the 17th digit: Python and ECMAScript take the even digit.
        assert_eq!(
            shortest_digits(f64::from_bits(0x4314_3ff3_c1cb_0959)), // 1424953923781206.25
            ("14249539237812062".into(), 16)
        );
        assert_eq!(
            shortest_digits(2f64.powi(50) + 0.75), // 1125899906842624.75
            ("11258999068426248".into(), 16)
        );
    }

    #[test]
    fn quoted_lexemes_are_shortened() {
        assert_eq!(quote_lexeme("123"), "123");
        let long = "1".repeat(100);
        assert_eq!(quote_lexeme(&long).len(), MAX_QUOTED_LEXEME + 3);
    }
}
