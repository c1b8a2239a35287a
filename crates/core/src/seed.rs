//! The seed's canonical form: Python's `json.dumps(value, sort_keys=True)`.
//!
//! The prototype hashed `hashlib.sha256(json.dumps(data, sort_keys=True)
//! .encode()).hexdigest()`, so records it anchored can only be verified by
//! reproducing CPython's output exactly: `", "` and `": "` separators,
//! `ensure_ascii` escapes, Python `int` and `float.__repr__` number forms.

use crate::canonical::{sha256, shortest_digits};
use crate::json::{Number, Value, push_u_escape};

/// The exact text of Python's `json.dumps(value, sort_keys=True)`.
pub fn seed_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

/// SHA-256 of [`seed_json`] as 64 lowercase hex digits.
pub fn seed_sha256(value: &Value) -> String {
    hex::encode(sha256(seed_json(value).as_bytes()))
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(obj) => {
            // Python compares str by code point, which is UTF-8 byte order.
            let mut members: Vec<(&str, &Value)> = obj.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(k, out);
                out.push_str(": ");
                write_value(v, out);
            }
            out.push('}');
        }
    }
}

/// Python's `json` reads integer lexemes as `int` and the rest as `float`.
fn write_number(n: &Number, out: &mut String) {
    let lexeme = n.as_lexeme();
    if n.is_integer() {
        // Lexemes have no leading zeros or '+', so only "-0" differs from
        // what `int.__repr__` prints.
        out.push_str(if lexeme == "-0" { "0" } else { lexeme });
        return;
    }
    match lexeme.parse::<f64>() {
        Ok(x) => write_python_float(x, out),
        // Unreachable for validated lexemes; NaN is what Python would have.
        Err(_) => out.push_str("NaN"),
    }
}

/// Writes `float.__repr__(x)` as `json.dumps` uses it.
fn write_python_float(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push_str("0.0");
        return;
    }
    let (digits, decpt) = shortest_digits(x);
    let len = digits.len() as i32;
    // CPython's float_repr_style 'short' switches to exponent notation
    // exactly when decpt <= -4 or decpt > 16 (Python/pystrtod.c).
    if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let exp = decpt - 1;
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if decpt <= 0 {
        out.push_str("0.");
        push_zeros(out, -decpt);
        out.push_str(&digits);
    } else if decpt >= len {
        out.push_str(&digits);
        push_zeros(out, decpt - len);
        out.push_str(".0");
    } else {
        let (int_part, frac_part) = digits.split_at(decpt as usize);
        out.push_str(int_part);
        out.push('.');
        out.push_str(frac_part);
    }
}

fn push_zeros(out: &mut String, count: i32) {
    for _ in 0..count {
        out.push('0');
    }
}

/// Writes a string the way `json.dumps(..., ensure_ascii=True)` does.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_u_escape(*unit, out);
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Limits, parse};

    fn seed(text: &str) -> String {
        seed_json(&parse(text.as_bytes(), &Limits::default()).expect(text))
    }

    fn float(text: &str) -> String {
        let mut out = String::new();
        write_python_float(text.parse().expect(text), &mut out);
        out
    }

    #[test]
    fn python_float_repr() {
        let cases = [
            ("25.3", "25.3"),
            ("0.1", "0.1"),
            ("1e-7", "1e-07"),
            ("1e16", "1e+16"),
            ("1e15", "1000000000000000.0"),
            ("9999999999999998", "9999999999999998.0"),
            ("1.5e300", "1.5e+300"),
            ("-0.0", "-0.0"),
            ("0.0", "0.0"),
            ("1.0", "1.0"),
            ("5e-324", "5e-324"),
            ("123456789012345680.0", "1.2345678901234568e+17"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("0.00012", "0.00012"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("-2.5e-5", "-2.5e-05"),
            ("1e100", "1e+100"),
            ("123.456", "123.456"),
        ];
        for (input, want) in cases {
            assert_eq!(float(input), want, "{input}");
        }
    }

    #[test]
    fn seed_document_forms() {
        assert_eq!(
            seed(r#"{"temperature": 25.3, "status": "operational"}"#),
            r#"{"status": "operational", "temperature": 25.3}"#
        );
        assert_eq!(
            seed(r#"{"b":[1,[2,3],{}],"a":[],"c":{"y":null,"x":true,"z":false}}"#),
            r#"{"a": [], "b": [1, [2, 3], {}], "c": {"x": true, "y": null, "z": false}}"#
        );
        assert_eq!(
            seed("[-0, -0.0, 1E5, 0.1e1, 10000000000000000000000]"),
            "[0, -0.0, 100000.0, 1.0, 10000000000000000000000]"
        );
        assert_eq!(seed("{}"), "{}");
    }

    #[test]
    fn seed_string_escapes() {
        assert_eq!(
            seed(r#""q\"b\\/\n\r\t\b\f\u0000\u001f\u007f é ü 中 😀 \udbff\udfff""#),
            r#""q\"b\\/\n\r\t\b\f\u0000\u001f\u007f \u00e9 \u00fc \u4e2d \ud83d\ude00 \udbff\udfff""#
        );
    }

    #[test]
    fn seed_keys_sort_by_code_point() {
        assert_eq!(
            seed(r#"{"b": 1, "B": 2, "a1": 3, "a10": 4, "a2": 5, "é": 6, "😀": 7, "\ue000": 8}"#),
            r#"{"B": 2, "a1": 3, "a10": 4, "a2": 5, "b": 1, "\u00e9": 6, "\ue000": 8, "\ud83d\ude00": 7}"#
        );
    }

    #[test]
    fn seed_hash_of_the_seed_example() {
        let v = parse(
            br#"{"temperature": 25.3, "status": "operational"}"#,
            &Limits::default(),
        )
        .expect("valid");
        // python3 -c 'import hashlib,json; print(hashlib.sha256(json.dumps(
        //   {"temperature": 25.3, "status": "operational"}, sort_keys=True).encode()).hexdigest())'
        assert_eq!(
            seed_sha256(&v),
            "6ada4e3759a423670e7c9258ac92f55600ce57c3dd08bedea3b24d6ce1e4942b"
        );
    }
}
