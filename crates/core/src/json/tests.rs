//! Tests of the parent module.

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
