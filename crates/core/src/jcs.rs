//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! JCS defines numbers as IEEE 754 doubles printed by ECMAScript's
//! `Number.prototype.toString`, keys sorted by UTF-16 code units, and strings
//! escaped only where JSON requires it.

use crate::canonical::{CanonicalError, quote_lexeme, sha256, shortest_digits};
use crate::json::{Number, Value, write_minimal_string};

/// Integers with at most this many digits are below 2^53 and thus exact.
const ALWAYS_EXACT_DIGITS: usize = 15;

/// Integers with more digits than this exceed the largest finite double.
const MAX_DOUBLE_DIGITS: usize = 309;

/// The RFC 8785 canonical text of `value`.
///
/// Fails for integer lexemes that no double equals exactly (such as
/// `9007199254740993`), because JCS would map two different states to the
/// same text.
pub fn jcs_json(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

/// SHA-256 of [`jcs_json`] as 64 lowercase hex digits.
pub fn jcs_sha256(value: &Value) -> Result<String, CanonicalError> {
    Ok(hex::encode(sha256(jcs_json(value)?.as_bytes())))
}

fn write_value(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_es_number(number_value(n)?, out),
        Value::String(s) => write_minimal_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(obj) => {
            let mut members: Vec<(&str, &Value)> = obj.iter().collect();
            // RFC 8785 §3.2.3 orders by UTF-16 code units, which differs from
            // code point order for astral characters versus U+E000..U+FFFF.
            members.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_minimal_string(k, out);
                out.push(':');
                write_value(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The double a number stands for in JCS.
fn number_value(n: &Number) -> Result<f64, CanonicalError> {
    let lexeme = n.as_lexeme();
    let out_of_range = || CanonicalError::NumberOutOfRange {
        lexeme: quote_lexeme(lexeme),
    };
    if !n.is_integer() {
        return n.to_f64().ok_or_else(out_of_range);
    }
    let not_exact = || CanonicalError::IntegerNotExact {
        lexeme: quote_lexeme(lexeme),
    };
    let digits = lexeme.strip_prefix('-').unwrap_or(lexeme);
    if digits.len() > MAX_DOUBLE_DIGITS {
        return Err(not_exact());
    }
    let x = n.to_f64().ok_or_else(not_exact)?;
    if digits.len() > ALWAYS_EXACT_DIGITS && exact_integer_digits(x) != digits {
        return Err(not_exact());
    }
    Ok(x)
}

/// The exact decimal digits of the integral double `|x|`.
fn exact_integer_digits(x: f64) -> String {
    let bits = x.abs().to_bits();
    let biased = (bits >> 52) as i32;
    if biased == 0 {
        // Subnormals are below one; callers only pass integers >= 10^15.
        return "0".to_owned();
    }
    let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let shift = biased - 1075;
    if shift <= 0 {
        return (mantissa >> shift.unsigned_abs().min(63)).to_string();
    }
    // Base 10^9 limbs, least significant first.
    const BASE: u64 = 1_000_000_000;
    let mut limbs = vec![
        mantissa % BASE,
        (mantissa / BASE) % BASE,
        mantissa / (BASE * BASE),
    ];
    for _ in 0..shift {
        let mut carry = 0;
        for limb in &mut limbs {
            let v = *limb * 2 + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut text = String::new();
    for (i, limb) in limbs.iter().rev().enumerate() {
        if i == 0 {
            text.push_str(&limb.to_string());
        } else {
            text.push_str(&format!("{limb:09}"));
        }
    }
    text
}

/// Writes ECMAScript `Number.prototype.toString(x)` (ECMA-262 Number::toString).
fn write_es_number(x: f64, out: &mut String) {
    if x == 0.0 {
        // Covers -0, which ECMAScript prints as "0".
        out.push('0');
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    let (digits, n) = shortest_digits(x);
    let k = digits.len() as i32;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        push_zeros(out, n - k);
    } else if 0 < n && n <= 21 {
        let (int_part, frac_part) = digits.split_at(n as usize);
        out.push_str(int_part);
        out.push('.');
        out.push_str(frac_part);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        push_zeros(out, -n);
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let exp = n - 1;
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&exp.unsigned_abs().to_string());
    }
}

fn push_zeros(out: &mut String, count: i32) {
    for _ in 0..count {
        out.push('0');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Limits, parse};

    fn jcs(text: &str) -> Result<String, CanonicalError> {
        jcs_json(&parse(text.as_bytes(), &Limits::default()).expect(text))
    }

    /// RFC 8785 Appendix B, without the NaN and Infinity rows.
    #[test]
    fn rfc8785_appendix_b() {
        let table = [
            (0x0000000000000000u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in table {
            let mut out = String::new();
            write_es_number(f64::from_bits(bits), &mut out);
            assert_eq!(out, want, "{bits:016x}");
        }
    }

    #[test]
    fn rfc8785_section_3_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs(input).expect("jcs"),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
             \"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        let input = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let out = jcs(input).expect("jcs");
        let order: Vec<&str> = ["\\r", "1", "\u{80}", "ö", "€", "😀", "\u{fb33}"].to_vec();
        let mut last = 0;
        for key in order {
            let at = out.find(&format!("\"{key}\":")).expect(key);
            assert!(at >= last, "{key} out of order in {out}");
            last = at;
        }
    }

    #[test]
    fn integers() {
        assert_eq!(
            jcs("[0, -0, 1, -1, 9007199254740991, -9007199254740992]").expect("ok"),
            "[0,0,1,-1,9007199254740991,-9007199254740992]"
        );
        assert_eq!(
            jcs("[9007199254740994, 1180591620717411303424]").expect("ok"),
            "[9007199254740994,1.1805916207174113e+21]"
        );
        assert_eq!(
            jcs("[100000000000000000000]").expect("ok"),
            "[100000000000000000000]"
        );
        let e = jcs("[9007199254740993]").expect_err("inexact");
        assert_eq!(
            e.to_string(),
            "integer 9007199254740993 is not exactly representable as an ieee 754 double"
        );
        assert!(jcs("[-9007199254740993]").is_err());
        assert!(jcs("[10000000000000000000000000001]").is_err());
        assert!(jcs(&format!("[{}]", "9".repeat(400))).is_err());
        // 2^1023 is exact; 2^1024 overflows.
        let two_1023 = exact_integer_digits(2f64.powi(1023));
        assert_eq!(two_1023.len(), 308);
        assert_eq!(
            jcs(&format!("[{two_1023}]")).expect("ok"),
            "[8.98846567431158e+307]"
        );
        let max = exact_integer_digits(f64::MAX);
        assert_eq!(
            jcs(&format!("[{max}]")).expect("ok"),
            "[1.7976931348623157e+308]"
        );
    }

    #[test]
    fn floats_are_doubles() {
        assert_eq!(
            jcs("[1.0, 1.50, 1E5, -0.0, 0.1e1, 1e21, 1e-7, 0.000001]").expect("ok"),
            "[1,1.5,100000,0,1,1e+21,1e-7,0.000001]"
        );
        assert_eq!(
            jcs("[123456789012345680.0]").expect("ok"),
            "[123456789012345680]"
        );
    }

    #[test]
    fn strings_escape_minimally() {
        assert_eq!(
            jcs(r#"["\u0000\u0007\b\t\n\u000b\f\r\u001f\u007f\u2028é😀\/"]"#).expect("ok"),
            "[\"\\u0000\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f\u{7f}\u{2028}é😀/\"]"
        );
    }
}
