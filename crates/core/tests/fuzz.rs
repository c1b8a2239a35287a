//! Property-based fuzzing (proptest; cargo-fuzz needs a nightly toolchain this project does not
//! use): the JSON parser, both canonical encoders and the proof-bundle reader must never panic,
//! and must agree with themselves on every input they accept.

use proptest::prelude::*;
use twinledger_core::json::{self, Limits, Number, Object, Value};
use twinledger_core::{HashScheme, ProofBundle, jcs_json, seed_json};

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| Value::Number(Number::from_i64(n))),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| Value::Number(Number::from_f64(x).expect("finite"))),
        "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
            .prop_filter_map("in range", |s| Number::parse(&s)
                .ok()
                .filter(|n| n.is_integer() || n.to_f64().is_some()))
            .prop_map(Value::Number),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8).prop_map(|m| {
                let mut o = Object::new();
                for (k, v) in m {
                    o.insert(k, v);
                }
                Value::Object(o)
            }),
        ]
    })
}

fn reversed(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        Value::Object(o) => {
            let mut r = Object::new();
            for (k, v) in o.iter().collect::<Vec<_>>().into_iter().rev() {
                r.insert(k, reversed(v));
            }
            Value::Object(r)
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_parse_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = json::parse(&bytes, &Limits::default());
        let _ = ProofBundle::from_json(&bytes);
    }

    #[test]
    fn serialized_values_parse_back_identically(v in value()) {
        let text = v.to_json();
        prop_assert_eq!(json::parse(text.as_bytes(), &Limits::unbounded()).expect("parses"), v);
    }

    #[test]
    fn canonical_forms_ignore_member_order_and_parse_as_json(v in value()) {
        let seed = seed_json(&v);
        prop_assert_eq!(&seed, &seed_json(&reversed(&v)));
        prop_assert!(json::parse(seed.as_bytes(), &Limits::unbounded()).is_ok(), "{}", seed);
        if let Ok(jcs) = jcs_json(&v) {
            prop_assert_eq!(Ok(jcs.clone()), jcs_json(&reversed(&v)));
            prop_assert!(json::parse(jcs.as_bytes(), &Limits::unbounded()).is_ok(), "{}", jcs);
        }
        for scheme in [HashScheme::SeedSha256, HashScheme::JcsSha256] {
            let _ = scheme.hash(&v);
        }
    }

    #[test]
    fn mutated_documents_never_panic(v in value(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut text = v.to_json().into_bytes();
        if !text.is_empty() {
            let i = cut.index(text.len());
            text[i] = byte;
            let _ = json::parse(&text, &Limits::default());
            text.truncate(i);
            let _ = json::parse(&text, &Limits::default());
        }
    }
}
