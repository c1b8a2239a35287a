//! Checks the canonical encodings against vectors recorded from outside
//! oracles: CPython's `json.dumps` (seed-sha256) and the `rfc8785` package
//! (jcs-sha256). See `testdata/*/README.md` for how they were produced.

use std::path::Path;

use sha2::{Digest, Sha256};
use twinledger_core::{
    CanonicalError, HashScheme, Limits, jcs_json, jcs_sha256, parse, seed_json, seed_sha256,
};

struct Vector {
    line: usize,
    desc: String,
    input: String,
    canonical: String,
    sha256: String,
}

fn load(scheme_dir: &str) -> Vec<Vector> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(scheme_dir)
        .join("vectors.jsonl");
    let text = std::fs::read_to_string(&path).expect("read vectors.jsonl");
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line).expect("vector line is json");
            let field = |name: &str| {
                v[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("line {}: missing {name}", i + 1))
                    .to_owned()
            };
            Vector {
                line: i + 1,
                desc: field("desc"),
                input: field("input"),
                canonical: field("canonical"),
                sha256: field("sha256"),
            }
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn seed_sha256_vectors_match_cpython() {
    let vectors = load("seed-sha256");
    assert!(vectors.len() >= 300, "only {} seed vectors", vectors.len());
    for v in &vectors {
        let ctx = format!("seed vector line {} ({})", v.line, v.desc);
        assert_eq!(
            sha256_hex(v.canonical.as_bytes()),
            v.sha256,
            "{ctx}: file is inconsistent"
        );
        let value = parse(v.input.as_bytes(), &Limits::default())
            .unwrap_or_else(|e| panic!("{ctx}: parse failed: {e}"));
        assert_eq!(seed_json(&value), v.canonical, "{ctx}");
        assert_eq!(seed_sha256(&value), v.sha256, "{ctx}");
        assert_eq!(
            HashScheme::SeedSha256.hash_hex(&value).as_ref(),
            Ok(&v.sha256),
            "{ctx}"
        );
        // The canonical text is itself JSON with the same meaning.
        let again = parse(v.canonical.as_bytes(), &Limits::default()).expect("canonical parses");
        assert_eq!(seed_json(&again), v.canonical, "{ctx}: not idempotent");
        let round = parse(value.to_json().as_bytes(), &Limits::default()).expect("to_json parses");
        assert_eq!(round, value, "{ctx}: to_json does not round-trip");
    }
}

#[test]
fn jcs_sha256_vectors_match_rfc8785_package() {
    let vectors = load("jcs-sha256");
    assert!(vectors.len() >= 200, "only {} jcs vectors", vectors.len());
    for v in &vectors {
        let ctx = format!("jcs vector line {} ({})", v.line, v.desc);
        assert_eq!(
            sha256_hex(v.canonical.as_bytes()),
            v.sha256,
            "{ctx}: file is inconsistent"
        );
        let value = parse(v.input.as_bytes(), &Limits::default())
            .unwrap_or_else(|e| panic!("{ctx}: parse failed: {e}"));
        assert_eq!(jcs_json(&value).as_ref(), Ok(&v.canonical), "{ctx}");
        assert_eq!(jcs_sha256(&value).as_ref(), Ok(&v.sha256), "{ctx}");
        assert_eq!(
            HashScheme::JcsSha256.hash_hex(&value).as_ref(),
            Ok(&v.sha256),
            "{ctx}"
        );
        let again = parse(v.canonical.as_bytes(), &Limits::default()).expect("canonical parses");
        match jcs_json(&again) {
            Ok(text) => assert_eq!(text, v.canonical, "{ctx}: not idempotent"),
            // ECMAScript prints doubles up to 1e21 without an exponent, e.g.
            // 2^68 as 295147905179352830000, which is not exact as an integer
            // lexeme and so is refused on the way back in.
            Err(CanonicalError::IntegerNotExact { .. }) => {}
            Err(e) => panic!("{ctx}: canonical text fails: {e}"),
        }
    }
}

#[test]
fn vector_descriptions_are_unique() {
    for dir in ["seed-sha256", "jcs-sha256"] {
        let vectors = load(dir);
        let mut descs: Vec<&str> = vectors.iter().map(|v| v.desc.as_str()).collect();
        descs.sort_unstable();
        let before = descs.len();
        descs.dedup();
        assert_eq!(descs.len(), before, "{dir}: duplicate descriptions");
    }
}
