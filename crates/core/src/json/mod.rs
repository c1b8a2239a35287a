//! Strict RFC 8259 JSON parser and a lossless value type.
//!
//! Hashes of twin states must not depend on how a generic JSON library
//! happens to round numbers or merge duplicate keys, so this parser keeps
//! number lexemes verbatim, keeps object members in input order and refuses
//! everything RFC 8259 does not allow.

use std::collections::HashSet;
use std::fmt;

use thiserror::Error;

/// Nesting depth that is never exceeded, whatever [`Limits`] say, so that the
/// recursive parser cannot overflow the stack.
pub const HARD_MAX_DEPTH: usize = 512;

/// Objects at least this large switch duplicate detection from a linear scan
/// to a hash set.
const LINEAR_SCAN_MEMBERS: usize = 16;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// The literal `null`.
    Null,
    /// The literals `true` and `false`.
    Bool(bool),
    /// A number, kept as its source lexeme.
    Number(Number),
    /// A string, already unescaped.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object with members in input order.
    Object(Object),
}

impl Value {
    /// Compact JSON text that preserves member order and number lexemes.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        write_compact(self, &mut out);
        out
    }

    /// The object behind this value, if it is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The elements of this value, if it is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The string content of this value, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean of this value, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number of this value, if it is one.
    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// Whether this value is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// A JSON number stored as its validated RFC 8259 lexeme.
///
/// Equality is lexical: `1.0` and `1.00` are different numbers, because the
/// canonical encodings may treat them differently (integers vs floats).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number {
    lexeme: String,
}

impl Number {
    /// Validates `text` as one RFC 8259 number token with a finite value.
    pub fn parse(text: &str) -> Result<Number, JsonError> {
        let bytes = text.as_bytes();
        let end = scan_number(bytes, 0)?;
        if end != bytes.len() {
            return Err(JsonError::TrailingCharacters { offset: end });
        }
        check_number_range(text, 0)?;
        Ok(Number {
            lexeme: text.to_owned(),
        })
    }

    /// The number of a signed integer.
    pub fn from_i64(n: i64) -> Number {
        Number {
            lexeme: n.to_string(),
        }
    }

    /// The number of an unsigned integer.
    pub fn from_u64(n: u64) -> Number {
        Number {
            lexeme: n.to_string(),
        }
    }

    /// The number of a finite double, as a float lexeme (`1.0` becomes `1e0`); `None` for NaN or infinity.
    pub fn from_f64(x: f64) -> Option<Number> {
        // `{:e}` always has an exponent, so the lexeme stays a float lexeme
        // and the seed encoding prints it as a Python float.
        x.is_finite().then(|| Number {
            lexeme: format!("{x:e}"),
        })
    }

    /// The exact source text of the number.
    pub fn as_lexeme(&self) -> &str {
        &self.lexeme
    }

    /// Whether the lexeme has neither a fraction nor an exponent.
    pub fn is_integer(&self) -> bool {
        !self.lexeme.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
    }

    /// The nearest double, or `None` when the value overflows to infinity.
    pub fn to_f64(&self) -> Option<f64> {
        self.lexeme.parse::<f64>().ok().filter(|x| x.is_finite())
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lexeme)
    }
}

/// A JSON object whose members keep their input order and have unique keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object {
    members: Vec<(String, Value)>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    /// The value of member `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets member `key`, keeping its position if it exists; returns the old value.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        let key = key.into();
        match self.members.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.members.push((key, value));
                None
            }
        }
    }

    /// The members in input order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the object has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members as a slice of key/value pairs, in input order.
    pub fn members(&self) -> &[(String, Value)] {
        &self.members
    }

    /// The members, by value, in input order.
    pub fn into_members(self) -> Vec<(String, Value)> {
        self.members
    }
}

/// Resource bounds applied while parsing untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting of arrays and objects (capped at [`HARD_MAX_DEPTH`]).
    pub max_depth: usize,
    /// Maximum length of a string value in bytes, after unescaping.
    pub max_string_bytes: usize,
    /// Maximum length of an object key in bytes, after unescaping.
    pub max_key_bytes: usize,
    /// Maximum number of members in one object.
    pub max_object_members: usize,
    /// Maximum number of elements in one array.
    pub max_array_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_string_bytes: 64 * 1024,
            max_key_bytes: 256,
            max_object_members: 10_000,
            max_array_len: 100_000,
        }
    }
}

impl Limits {
    /// No limits except the stack-protecting [`HARD_MAX_DEPTH`].
    pub fn unbounded() -> Self {
        Limits {
            max_depth: usize::MAX,
            max_string_bytes: usize::MAX,
            max_key_bytes: usize::MAX,
            max_object_members: usize::MAX,
            max_array_len: usize::MAX,
        }
    }
}

/// Why a byte string is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonError {
    /// The input is not valid UTF-8.
    #[error("invalid utf-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first byte of the invalid sequence.
        offset: usize,
    },
    /// The input ended in the middle of a value.
    #[error("unexpected end of input at byte {offset}, expected {expected}")]
    UnexpectedEnd {
        /// Length of the input.
        offset: usize,
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// A character that cannot appear here.
    #[error("expected {expected}, found {found:?} at byte {offset}")]
    UnexpectedCharacter {
        /// The offending character.
        found: char,
        /// What the parser was looking for.
        expected: &'static str,
        /// Offset of the character.
        offset: usize,
    },
    /// Something follows the single top-level value.
    #[error("trailing characters after the json value at byte {offset}")]
    TrailingCharacters {
        /// Offset of the first extra character.
        offset: usize,
    },
    /// A comma directly before `]` or `}`.
    #[error("trailing comma at byte {offset}")]
    TrailingComma {
        /// Offset of the comma.
        offset: usize,
    },
    /// A `//` or `/*` comment.
    #[error("comments are not allowed in json (byte {offset})")]
    Comment {
        /// Offset of the slash.
        offset: usize,
    },
    /// A misspelled `true`, `false` or `null`.
    #[error("invalid literal at byte {offset}")]
    InvalidLiteral {
        /// Offset of the literal.
        offset: usize,
    },
    /// `NaN`, `Infinity` or `-Infinity`.
    #[error("non-finite number literal at byte {offset} is not json")]
    NonFiniteNumber {
        /// Offset of the literal.
        offset: usize,
    },
    /// A malformed number token.
    #[error("invalid number at byte {offset}: {reason}")]
    InvalidNumber {
        /// Offset where the number goes wrong.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A float or exponent number whose value overflows a double.
    #[error("number out of range at byte {offset}")]
    NumberOutOfRange {
        /// Offset of the number.
        offset: usize,
    },
    /// An unknown escape or malformed `\u` escape.
    #[error("invalid escape sequence at byte {offset}")]
    InvalidEscape {
        /// Offset of the backslash.
        offset: usize,
    },
    /// A `\u` escape of a surrogate that is not part of a valid pair.
    #[error("unpaired surrogate \\u{code:04x} at byte {offset}")]
    LoneSurrogate {
        /// The surrogate code unit.
        code: u16,
        /// Offset of the backslash.
        offset: usize,
    },
    /// A raw byte below 0x20 inside a string.
    #[error("unescaped control character 0x{byte:02x} in string at byte {offset}")]
    ControlCharacter {
        /// The control byte.
        byte: u8,
        /// Offset of the byte.
        offset: usize,
    },
    /// A key that already occurs earlier in the same object.
    #[error("duplicate key {key:?} at byte {offset}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Offset of the second occurrence.
        offset: usize,
    },
    /// Nesting beyond `max_depth` (or [`HARD_MAX_DEPTH`]).
    #[error("nesting deeper than {limit} levels (max_depth) at byte {offset}")]
    DepthLimit {
        /// The depth that was exceeded.
        limit: usize,
        /// Offset of the container that was too deep.
        offset: usize,
    },
    /// A string value longer than `max_string_bytes`.
    #[error("string longer than {limit} bytes (max_string_bytes) at byte {offset}")]
    StringTooLong {
        /// The limit in bytes.
        limit: usize,
        /// Offset of the string.
        offset: usize,
    },
    /// An object key longer than `max_key_bytes`.
    #[error("key longer than {limit} bytes (max_key_bytes) at byte {offset}")]
    KeyTooLong {
        /// The limit in bytes.
        limit: usize,
        /// Offset of the key.
        offset: usize,
    },
    /// An object with more than `max_object_members` members.
    #[error("object has more than {limit} members (max_object_members) at byte {offset}")]
    TooManyMembers {
        /// The limit.
        limit: usize,
        /// Offset of the first member over the limit.
        offset: usize,
    },
    /// An array with more than `max_array_len` elements.
    #[error("array has more than {limit} elements (max_array_len) at byte {offset}")]
    ArrayTooLong {
        /// The limit.
        limit: usize,
        /// Offset of the first element over the limit.
        offset: usize,
    },
}

/// Parses exactly one JSON value, with optional surrounding whitespace.
pub fn parse(input: &[u8], limits: &Limits) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(input).map_err(|e| JsonError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut parser = Parser {
        text,
        bytes: input,
        pos: 0,
        limits: *limits,
        max_depth: limits.max_depth.min(HARD_MAX_DEPTH),
    };
    parser.skip_ws()?;
    let value = parser.parse_value(0)?;
    parser.skip_ws()?;
    if parser.pos < parser.bytes.len() {
        return Err(JsonError::TrailingCharacters { offset: parser.pos });
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    limits: Limits,
    max_depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<(), JsonError> {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'/' => return Err(JsonError::Comment { offset: self.pos }),
                _ => break,
            }
        }
        Ok(())
    }

    /// The error for an unexpected byte (or end of input) at `self.pos`.
    fn unexpected(&self, expected: &'static str) -> JsonError {
        match self
            .text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(found) => JsonError::UnexpectedCharacter {
                found,
                expected,
                offset: self.pos,
            },
            None => JsonError::UnexpectedEnd {
                offset: self.pos,
                expected,
            },
        }
    }

    fn parse_value(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.peek() {
            Some(b'{') => self.parse_object(depth + 1),
            Some(b'[') => self.parse_array(depth + 1),
            Some(b'"') => {
                let start = self.pos;
                let s = self.parse_string()?;
                if s.len() > self.limits.max_string_bytes {
                    return Err(JsonError::StringTooLong {
                        limit: self.limits.max_string_bytes,
                        offset: start,
                    });
                }
                Ok(Value::String(s))
            }
            Some(b't') => self.parse_literal("true", Value::Bool(true)),
            Some(b'f') => self.parse_literal("false", Value::Bool(false)),
            Some(b'n') => self.parse_literal("null", Value::Null),
            Some(b'N' | b'I') => self.parse_non_finite(self.pos),
            Some(b'-') if self.bytes.get(self.pos + 1) == Some(&b'I') => {
                self.parse_non_finite(self.pos)
            }
            Some(b'-' | b'0'..=b'9' | b'+') => self.parse_number(),
            Some(b'.') => Err(JsonError::InvalidNumber {
                offset: self.pos,
                reason: "missing integer part",
            }),
            _ => Err(self.unexpected("a json value")),
        }
    }

    fn parse_literal(&mut self, word: &'static str, value: Value) -> Result<Value, JsonError> {
        let end = self.pos + word.len();
        match self.bytes.get(self.pos..end) {
            Some(found) if found == word.as_bytes() => {
                self.pos = end;
                Ok(value)
            }
            // A strict prefix at the end of input is a truncation, not a typo.
            None if word.as_bytes().starts_with(&self.bytes[self.pos..]) => {
                Err(JsonError::UnexpectedEnd {
                    offset: self.bytes.len(),
                    expected: word,
                })
            }
            _ => Err(JsonError::InvalidLiteral { offset: self.pos }),
        }
    }

    fn parse_non_finite(&self, start: usize) -> Result<Value, JsonError> {
        let rest = &self.bytes[start..];
        let named = [&b"NaN"[..], b"Infinity", b"-Infinity"]
            .iter()
            .any(|w| rest.starts_with(w));
        if named {
            Err(JsonError::NonFiniteNumber { offset: start })
        } else {
            Err(self.unexpected("a json value"))
        }
    }

    fn parse_number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        let end = scan_number(self.bytes, start)?;
        let lexeme = &self.text[start..end];
        check_number_range(lexeme, start)?;
        self.pos = end;
        Ok(Value::Number(Number {
            lexeme: lexeme.to_owned(),
        }))
    }

    /// After an element: consumes `,` (refusing a trailing one before `close`) and returns
    /// false, or consumes `close` and returns true.
    fn close_or_comma(&mut self, close: u8, expected: &'static str) -> Result<bool, JsonError> {
        self.skip_ws()?;
        match self.peek() {
            Some(b',') => {
                let comma = self.pos;
                self.pos += 1;
                self.skip_ws()?;
                if self.peek() == Some(close) {
                    return Err(JsonError::TrailingComma { offset: comma });
                }
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    fn parse_array(&mut self, depth: usize) -> Result<Value, JsonError> {
        let open = self.pos;
        if depth > self.max_depth {
            return Err(JsonError::DepthLimit {
                limit: self.max_depth,
                offset: open,
            });
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            if items.len() >= self.limits.max_array_len {
                return Err(JsonError::ArrayTooLong {
                    limit: self.limits.max_array_len,
                    offset: self.pos,
                });
            }
            items.push(self.parse_value(depth)?);
            if self.close_or_comma(b']', "',' or ']'")? {
                return Ok(Value::Array(items));
            }
        }
    }

    fn parse_object(&mut self, depth: usize) -> Result<Value, JsonError> {
        let open = self.pos;
        if depth > self.max_depth {
            return Err(JsonError::DepthLimit {
                limit: self.max_depth,
                offset: open,
            });
        }
        self.pos += 1;
        let mut members: Vec<(String, Value)> = Vec::new();
        let mut seen: Option<HashSet<String>> = None;
        self.skip_ws()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Object { members }));
        }
        loop {
            let key_at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a string key"));
            }
            if members.len() >= self.limits.max_object_members {
                return Err(JsonError::TooManyMembers {
                    limit: self.limits.max_object_members,
                    offset: key_at,
                });
            }
            let key = self.parse_string()?;
            if key.len() > self.limits.max_key_bytes {
                return Err(JsonError::KeyTooLong {
                    limit: self.limits.max_key_bytes,
                    offset: key_at,
                });
            }
            let duplicate = match &mut seen {
                Some(set) => !set.insert(key.clone()),
                None => members.iter().any(|(k, _)| *k == key),
            };
            if duplicate {
                return Err(JsonError::DuplicateKey {
                    key,
                    offset: key_at,
                });
            }
            self.skip_ws()?;
            if self.peek() != Some(b':') {
                return Err(self.unexpected("':'"));
            }
            self.pos += 1;
            self.skip_ws()?;
            let value = self.parse_value(depth)?;
            members.push((key, value));
            if seen.is_none() && members.len() >= LINEAR_SCAN_MEMBERS {
                seen = Some(members.iter().map(|(k, _)| k.clone()).collect());
            }
            if self.close_or_comma(b'}', "',' or '}'")? {
                return Ok(Value::Object(Object { members }));
            }
        }
    }

    /// Parses a string starting at the opening quote at `self.pos`.
    fn parse_string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Stops are ASCII bytes, so the run ends on a char boundary.
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                None => {
                    return Err(JsonError::UnexpectedEnd {
                        offset: self.pos,
                        expected: "'\"'",
                    });
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => self.parse_escape(&mut out)?,
                Some(byte) => {
                    return Err(JsonError::ControlCharacter {
                        byte,
                        offset: self.pos,
                    });
                }
            }
        }
    }

    /// Decodes the escape at `self.pos` (a backslash) into `out`.
    fn parse_escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let at = self.pos;
        let Some(kind) = self.bytes.get(at + 1).copied() else {
            return Err(JsonError::UnexpectedEnd {
                offset: self.bytes.len(),
                expected: "an escape sequence",
            });
        };
        self.pos = at + 2;
        let simple = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let c = self.parse_unicode_escape(at)?;
                out.push(c);
                return Ok(());
            }
            _ => return Err(JsonError::InvalidEscape { offset: at }),
        };
        out.push(simple);
        Ok(())
    }

    /// Decodes `\uXXXX` (and its low-surrogate partner) whose backslash is at `at`.
    fn parse_unicode_escape(&mut self, at: usize) -> Result<char, JsonError> {
        let high = self.hex4(at)?;
        if (0xDC00..=0xDFFF).contains(&high) {
            return Err(JsonError::LoneSurrogate {
                code: high,
                offset: at,
            });
        }
        if !(0xD800..=0xDBFF).contains(&high) {
            return char::from_u32(u32::from(high)).ok_or(JsonError::InvalidEscape { offset: at });
        }
        let low_at = self.pos;
        if self.bytes.get(low_at..low_at + 2) != Some(&b"\\u"[..]) {
            return Err(JsonError::LoneSurrogate {
                code: high,
                offset: at,
            });
        }
        self.pos = low_at + 2;
        let low = self.hex4(low_at)?;
        if !(0xDC00..=0xDFFF).contains(&low) {
            return Err(JsonError::LoneSurrogate {
                code: high,
                offset: at,
            });
        }
        let code = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
        char::from_u32(code).ok_or(JsonError::InvalidEscape { offset: at })
    }

    /// Reads four hex digits at `self.pos` for the escape starting at `at`.
    fn hex4(&mut self, at: usize) -> Result<u16, JsonError> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            return Err(JsonError::UnexpectedEnd {
                offset: self.bytes.len(),
                expected: "four hex digits",
            });
        };
        let mut code: u16 = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(JsonError::InvalidEscape { offset: at }),
            };
            code = (code << 4) | u16::from(v);
        }
        self.pos += 4;
        Ok(code)
    }
}

/// Scans an RFC 8259 number token at `start`; returns its end offset.
fn scan_number(bytes: &[u8], start: usize) -> Result<usize, JsonError> {
    let at = |i: usize| bytes.get(i).copied();
    let digits_from = |mut i: usize| {
        while matches!(at(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        i
    };
    let invalid = |offset, reason| JsonError::InvalidNumber { offset, reason };
    let mut i = start;
    match at(i) {
        Some(b'+') => return Err(invalid(i, "leading plus sign")),
        Some(b'-') => i += 1,
        _ => {}
    }
    match at(i) {
        Some(b'0') => {
            i += 1;
            if matches!(at(i), Some(b'0'..=b'9')) {
                return Err(invalid(start, "leading zero"));
            }
        }
        Some(b'1'..=b'9') => i = digits_from(i),
        Some(_) => return Err(invalid(i, "expected a digit")),
        None => {
            return Err(JsonError::UnexpectedEnd {
                offset: i,
                expected: "a digit",
            });
        }
    }
    if at(i) == Some(b'.') {
        i += 1;
        let end = digits_from(i);
        if end == i {
            return Err(invalid(i, "expected a digit after the decimal point"));
        }
        i = end;
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits_from(i);
        if end == i {
            return Err(invalid(i, "expected a digit in the exponent"));
        }
        i = end;
    }
    Ok(i)
}

/// Rejects float lexemes whose value overflows a double; integers are exact
/// lexemes and have no range.
fn check_number_range(lexeme: &str, offset: usize) -> Result<(), JsonError> {
    let is_float = lexeme.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if is_float && !lexeme.parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(JsonError::NumberOutOfRange { offset });
    }
    Ok(())
}

fn write_compact(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(n.as_lexeme()),
        Value::String(s) => write_minimal_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(item, out);
            }
            out.push(']');
        }
        Value::Object(obj) => {
            out.push('{');
            for (i, (k, v)) in obj.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_minimal_string(k, out);
                out.push(':');
                write_compact(v, out);
            }
            out.push('}');
        }
    }
}

/// Writes `s` as a JSON string escaping only what JSON requires; this is also
/// exactly the RFC 8785 string form.
pub(crate) fn write_minimal_string(s: &str, out: &mut String) {
    out.push('"');
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run_start..i]);
        if escape.is_empty() {
            push_u_escape(u16::from(b), out);
        } else {
            out.push_str(escape);
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

/// Writes `\uXXXX` with lowercase hex.
pub(crate) fn push_u_escape(unit: u16, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[usize::from((unit >> shift) & 0xf)]));
    }
}

#[cfg(test)]
mod tests;
