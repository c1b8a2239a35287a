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
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_ws()?;
                    if self.peek() == Some(b']') {
                        return Err(JsonError::TrailingComma { offset: comma });
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.unexpected("',' or ']'")),
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
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_ws()?;
                    if self.peek() == Some(b'}') {
                        return Err(JsonError::TrailingComma { offset: comma });
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(Object { members }));
                }
                _ => return Err(self.unexpected("',' or '}'")),
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
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Value, JsonError> {
        parse(s.as_bytes(), &Limits::default())
    }

    fn err(s: &str) -> JsonError {
        p(s).expect_err(s)
    }

    #[test]
    fn parses_scalars_and_containers() {
        assert_eq!(p("null"), Ok(Value::Null));
        assert_eq!(p(" true "), Ok(Value::Bool(true)));
        assert_eq!(p("false"), Ok(Value::Bool(false)));
        assert_eq!(
            p("\"a\\u00e9\\ud83d\\ude00\""),
            Ok(Value::String("aé😀".into()))
        );
        let v = p(r#"{"b": [1, 2.5, -0, 1e3], "a": {}}"#).expect("valid");
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 2);
        let keys: Vec<&str> = obj.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(obj.get("a"), Some(&Value::Object(Object::new())));
        let arr = obj.get("b").and_then(Value::as_array).expect("array");
        let lexemes: Vec<&str> = arr
            .iter()
            .filter_map(|v| v.as_number().map(Number::as_lexeme))
            .collect();
        assert_eq!(lexemes, ["1", "2.5", "-0", "1e3"]);
    }

    #[test]
    fn number_accessors() {
        let n = Number::parse("123456789012345678901234567890").expect("big int");
        assert!(n.is_integer());
        assert_eq!(n.to_f64(), Some(1.2345678901234568e29));
        let f = Number::parse("-1.5E+2").expect("float");
        assert!(!f.is_integer());
        assert_eq!(f.to_f64(), Some(-150.0));
        let huge = Number::parse(&"9".repeat(400)).expect("huge int is valid");
        assert_eq!(huge.to_f64(), None);
        assert!(Number::parse("1e400").is_err());
        assert!(Number::parse("01").is_err());
        assert!(Number::parse("1 ").is_err());
        assert_eq!(Number::from_f64(1.0).map(|n| n.is_integer()), Some(false));
        assert_eq!(Number::from_f64(f64::NAN), None);
        assert_eq!(Number::from_i64(-5).as_lexeme(), "-5");
    }

    #[test]
    fn object_insert_keeps_position() {
        let mut o = Object::new();
        assert_eq!(o.insert("x", Value::Null), None);
        assert_eq!(o.insert("y", Value::Bool(true)), None);
        assert_eq!(o.insert("x", Value::Bool(false)), Some(Value::Null));
        let keys: Vec<&str> = o.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["x", "y"]);
    }

    #[test]
    fn rejects_invalid_utf8_with_offset() {
        let e = parse(b"\"abc\xff\"", &Limits::default()).expect_err("bad utf8");
        assert_eq!(e, JsonError::InvalidUtf8 { offset: 4 });
        assert_eq!(e.to_string(), "invalid utf-8 at byte 4");
        // Overlong encoding and an encoded surrogate are invalid UTF-8 too.
        assert!(matches!(
            parse(b"\"\xc0\xaf\"", &Limits::default()),
            Err(JsonError::InvalidUtf8 { offset: 1 })
        ));
        assert!(matches!(
            parse(b"[\"\xed\xa0\x80\"]", &Limits::default()),
            Err(JsonError::InvalidUtf8 { offset: 2 })
        ));
    }

    #[test]
    fn rejects_lone_and_mismatched_surrogates() {
        assert_eq!(
            err(r#""\ud800""#),
            JsonError::LoneSurrogate {
                code: 0xd800,
                offset: 1
            }
        );
        assert_eq!(
            err(r#""\ud800""#).to_string(),
            "unpaired surrogate \\ud800 at byte 1"
        );
        assert!(matches!(
            err(r#""\udc00""#),
            JsonError::LoneSurrogate { code: 0xdc00, .. }
        ));
        assert!(matches!(
            err(r#""\ud800x""#),
            JsonError::LoneSurrogate { .. }
        ));
        assert!(matches!(
            err(r#""\ud800\u0041""#),
            JsonError::LoneSurrogate { .. }
        ));
        assert!(matches!(
            err(r#""\ud800\ud800""#),
            JsonError::LoneSurrogate { .. }
        ));
        assert!(matches!(
            err(r#""\ude00\ud83d""#),
            JsonError::LoneSurrogate { .. }
        ));
        assert!(matches!(
            err(r#""\ud800\n""#),
            JsonError::LoneSurrogate { .. }
        ));
    }

    #[test]
    fn rejects_bad_escapes() {
        assert_eq!(err(r#""\x""#), JsonError::InvalidEscape { offset: 1 });
        assert_eq!(err(r#""\u12g4""#), JsonError::InvalidEscape { offset: 1 });
        assert!(matches!(err(r#""\u12"#), JsonError::UnexpectedEnd { .. }));
        assert!(matches!(err("\"\\"), JsonError::UnexpectedEnd { .. }));
        assert_eq!(p(r#""\/""#), Ok(Value::String("/".into())));
    }

    #[test]
    fn rejects_unescaped_control_characters() {
        for b in 0u8..0x20 {
            let input = [b'"', b'a', b, b'"'];
            let e = parse(&input, &Limits::default()).expect_err("control");
            assert_eq!(e, JsonError::ControlCharacter { byte: b, offset: 2 });
        }
        assert_eq!(
            err("\"a\nb\"").to_string(),
            "unescaped control character 0x0a in string at byte 2"
        );
        // DEL is not a control character for JSON.
        assert_eq!(p("\"\u{7f}\""), Ok(Value::String("\u{7f}".into())));
    }

    #[test]
    fn rejects_non_finite_literals() {
        for s in [
            "NaN",
            "Infinity",
            "-Infinity",
            "[1, NaN]",
            "{\"a\": -Infinity}",
        ] {
            assert!(matches!(err(s), JsonError::NonFiniteNumber { .. }), "{s}");
        }
        assert!(matches!(err("Inf"), JsonError::UnexpectedCharacter { .. }));
        assert_eq!(
            err("-Infinity").to_string(),
            "non-finite number literal at byte 0 is not json"
        );
    }

    #[test]
    fn rejects_malformed_numbers() {
        let cases = [
            ("01", "leading zero"),
            ("-01", "leading zero"),
            ("00", "leading zero"),
            ("+1", "leading plus sign"),
            ("1.", "expected a digit after the decimal point"),
            ("1.e5", "expected a digit after the decimal point"),
            ("1e", "expected a digit in the exponent"),
            ("1e+", "expected a digit in the exponent"),
            ("-", "expected a digit"),
            ("-a", "expected a digit"),
            (".5", "missing integer part"),
        ];
        for (s, reason) in cases {
            match p(s) {
                Err(JsonError::InvalidNumber { reason: r, .. }) => assert_eq!(r, reason, "{s}"),
                Err(JsonError::UnexpectedEnd { .. }) if s == "-" => {}
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(
            err("[01]").to_string(),
            "invalid number at byte 1: leading zero"
        );
        assert!(matches!(
            err("1 2"),
            JsonError::TrailingCharacters { offset: 2 }
        ));
        assert!(matches!(
            err("0x10"),
            JsonError::TrailingCharacters { offset: 1 }
        ));
    }

    #[test]
    fn number_range() {
        assert_eq!(err("1e400"), JsonError::NumberOutOfRange { offset: 0 });
        assert_eq!(
            err("[-1.5e309]").to_string(),
            "number out of range at byte 1"
        );
        assert!(matches!(err("1.8e308"), JsonError::NumberOutOfRange { .. }));
        assert!(p("1.7976931348623157e308").is_ok());
        assert!(
            p("1e-400").is_ok(),
            "underflow rounds to zero like everywhere else"
        );
        let big = format!("-{}", "9".repeat(1000));
        assert!(p(&big).is_ok(), "integers are exact lexemes of any size");
    }

    #[test]
    fn rejects_trailing_commas_and_comments() {
        assert_eq!(err("[1,]"), JsonError::TrailingComma { offset: 2 });
        assert_eq!(err("{\"a\":1 , }"), JsonError::TrailingComma { offset: 7 });
        assert!(matches!(
            err("[,1]"),
            JsonError::UnexpectedCharacter { found: ',', .. }
        ));
        assert!(matches!(
            err("{,}"),
            JsonError::UnexpectedCharacter { found: ',', .. }
        ));
        assert!(matches!(
            err("[1,,2]"),
            JsonError::UnexpectedCharacter { found: ',', .. }
        ));
        assert_eq!(err("// c\n1"), JsonError::Comment { offset: 0 });
        assert_eq!(err("[1 /* c */]"), JsonError::Comment { offset: 3 });
        assert_eq!(err("1 // c"), JsonError::Comment { offset: 2 });
    }

    #[test]
    fn rejects_duplicate_keys() {
        let e = err(r#"{"a": 1, "b": 2, "a": 3}"#);
        assert_eq!(
            e,
            JsonError::DuplicateKey {
                key: "a".into(),
                offset: 17
            }
        );
        assert_eq!(e.to_string(), "duplicate key \"a\" at byte 17");
        // Escapes are decoded before comparing.
        assert!(matches!(
            err(r#"{"é": 1, "\u00e9": 2}"#),
            JsonError::DuplicateKey { .. }
        ));
        // Large objects use the hash-set path.
        let mut big: Vec<String> = (0..100).map(|i| format!("\"k{i}\": {i}")).collect();
        big.push("\"k42\": 0".into());
        let text = format!("{{{}}}", big.join(","));
        assert!(matches!(err(&text), JsonError::DuplicateKey { key, .. } if key == "k42"));
        // The same key in different objects is fine.
        assert!(p(r#"{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}"#).is_ok());
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(
            err(""),
            JsonError::UnexpectedEnd { offset: 0, .. }
        ));
        assert!(matches!(
            err("   "),
            JsonError::UnexpectedEnd { offset: 3, .. }
        ));
        assert!(matches!(err("[1"), JsonError::UnexpectedEnd { .. }));
        assert!(matches!(
            err("{\"a\" 1}"),
            JsonError::UnexpectedCharacter { found: '1', .. }
        ));
        assert!(matches!(
            err("{a:1}"),
            JsonError::UnexpectedCharacter { found: 'a', .. }
        ));
        assert!(matches!(
            err("{'a':1}"),
            JsonError::UnexpectedCharacter { found: '\'', .. }
        ));
        assert!(matches!(err("\"abc"), JsonError::UnexpectedEnd { .. }));
        assert!(matches!(err("tru"), JsonError::UnexpectedEnd { .. }));
        assert_eq!(err("trUe"), JsonError::InvalidLiteral { offset: 0 });
        assert_eq!(err("nul1"), JsonError::InvalidLiteral { offset: 0 });
        assert!(matches!(
            err("true false"),
            JsonError::TrailingCharacters { offset: 5 }
        ));
        assert!(matches!(
            err("{} {}"),
            JsonError::TrailingCharacters { offset: 3 }
        ));
        assert!(matches!(
            err("\u{feff}{}"),
            JsonError::UnexpectedCharacter {
                found: '\u{feff}',
                ..
            }
        ));
        assert!(matches!(
            err("\u{a0}1"),
            JsonError::UnexpectedCharacter { .. }
        ));
        assert!(p(" \t\r\n{ \"a\" : [ ] }\n").is_ok());
        assert_eq!(
            err("[1 2]").to_string(),
            "expected ',' or ']', found '2' at byte 3"
        );
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits {
            max_depth: 3,
            max_string_bytes: 4,
            max_key_bytes: 2,
            max_object_members: 2,
            max_array_len: 3,
        };
        let pl = |s: &str| parse(s.as_bytes(), &limits);
        assert!(pl("[[[1]]]").is_ok());
        assert_eq!(
            pl("[[[[1]]]]"),
            Err(JsonError::DepthLimit {
                limit: 3,
                offset: 3
            })
        );
        assert!(matches!(
            pl("[{\"a\":[{}]}]"),
            Err(JsonError::DepthLimit { .. })
        ));
        assert!(pl("\"abcd\"").is_ok());
        assert_eq!(
            pl("[\"abcde\"]"),
            Err(JsonError::StringTooLong {
                limit: 4,
                offset: 1
            })
        );
        assert!(
            matches!(pl("\"ééé\""), Err(JsonError::StringTooLong { .. })),
            "bytes, not chars"
        );
        assert!(pl("{\"ab\":1}").is_ok());
        assert_eq!(
            pl("{\"abc\":1}"),
            Err(JsonError::KeyTooLong {
                limit: 2,
                offset: 1
            })
        );
        assert!(pl("{\"a\":1,\"b\":2}").is_ok());
        assert_eq!(
            pl("{\"a\":1,\"b\":2,\"c\":3}"),
            Err(JsonError::TooManyMembers {
                limit: 2,
                offset: 13
            })
        );
        assert!(pl("[1,2,3]").is_ok());
        assert_eq!(
            pl("[1,2,3,4]"),
            Err(JsonError::ArrayTooLong {
                limit: 3,
                offset: 7
            })
        );
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(
            p(&deep).expect_err("too deep").to_string(),
            "nesting deeper than 64 levels (max_depth) at byte 64"
        );
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(p(&ok).is_ok());
        let defaults = Limits::default();
        assert_eq!(defaults.max_string_bytes, 65_536);
    }

    #[test]
    fn unbounded_limits_still_cap_depth() {
        let deep = "[".repeat(100_000);
        let e = parse(deep.as_bytes(), &Limits::unbounded()).expect_err("too deep");
        assert_eq!(
            e,
            JsonError::DepthLimit {
                limit: HARD_MAX_DEPTH,
                offset: HARD_MAX_DEPTH
            }
        );
        let objects = "{\"a\":".repeat(100_000);
        assert!(matches!(
            parse(objects.as_bytes(), &Limits::unbounded()),
            Err(JsonError::DepthLimit { .. })
        ));
        let ok = format!(
            "{}{}",
            "[".repeat(HARD_MAX_DEPTH),
            "]".repeat(HARD_MAX_DEPTH)
        );
        assert!(parse(ok.as_bytes(), &Limits::unbounded()).is_ok());
        let big = "9".repeat(1 << 20);
        assert!(parse(big.as_bytes(), &Limits::unbounded()).is_ok());
    }

    #[test]
    fn to_json_escapes_only_what_json_requires() {
        let v = Value::String("q\"b\\/\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é😀".into());
        assert_eq!(
            v.to_json(),
            "\"q\\\"b\\\\/\\n\\r\\t\\b\\f\\u0000\\u001f\u{7f}é😀\""
        );
        let text = r#"{"z": [1.50, -0, 1E+2, {}], "a": null, "é": true}"#;
        let v = p(text).expect("valid");
        assert_eq!(v.to_json(), r#"{"z":[1.50,-0,1E+2,{}],"a":null,"é":true}"#);
        assert_eq!(format!("{v}"), v.to_json());
    }

    #[test]
    fn to_json_round_trips() {
        let docs = [
            r#"{"a":"\u0000\u0001\u001f\"\\\/ \u2028\ud83d\ude00","b":[[],{},[{}]],"c":-0.0e-0}"#,
            r#"[1, -1, 0.5, 1e-7, 123456789012345678901234567890, true, false, null, "x"]"#,
            r#""just a string""#,
            "3",
        ];
        for d in docs {
            let v = p(d).expect(d);
            assert_eq!(p(&v.to_json()).as_ref(), Ok(&v), "{d}");
        }
    }

    /// Deterministic xorshift64* generator so failures are reproducible.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn never_panics_on_random_input() {
        const ALPHABET: &[u8] =
            b"{}[]\",:\\/ \t\n0123456789-+.eEtrufalsnNI\\u\"dD8a\xc3\xa9\xff\xed\x00\x1f";
        const SEEDS: &[&str] = &[
            r#"{"temperature": 25.3, "status": "operational", "tags": ["a", "\u00e9", "\ud83d\ude00"]}"#,
            r#"[1, -0.0, 1e-7, 12345678901234567890, true, false, null, {"a": {"b": []}}]"#,
            r#"{"s": "q\"\\\/\b\f\n\r\t", "n": -1.5E+300}"#,
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let limits = [Limits::default(), Limits::unbounded()];
        let mut accepted = 0usize;
        for round in 0..30_000 {
            let input: Vec<u8> = match round % 3 {
                0 => {
                    let len = rng.below(40);
                    (0..len)
                        .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                        .collect()
                }
                1 => {
                    let seed = SEEDS[rng.below(SEEDS.len())].as_bytes();
                    seed[..rng.below(seed.len() + 1)].to_vec()
                }
                _ => {
                    let mut bytes = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
                    for _ in 0..1 + rng.below(3) {
                        let i = rng.below(bytes.len());
                        match rng.below(3) {
                            0 => bytes[i] = ALPHABET[rng.below(ALPHABET.len())],
                            1 => bytes[i] = rng.next() as u8,
                            _ => {
                                bytes.remove(i);
                            }
                        }
                    }
                    bytes
                }
            };
            for l in &limits {
                if let Ok(v) = parse(&input, l) {
                    accepted += 1;
                    let again = parse(v.to_json().as_bytes(), &Limits::unbounded());
                    assert_eq!(again.as_ref(), Ok(&v), "round trip of {input:?}");
                }
            }
        }
        assert!(
            accepted > 100,
            "generator should produce some valid documents"
        );
    }
}
