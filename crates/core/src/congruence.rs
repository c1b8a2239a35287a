//! Congruence: how closely a twin's reported state matches its desired state.
//!
//! Every leaf field of the desired state (an object member whose value is not a non-empty
//! object, named by its JSON Pointer, RFC 6901) is compared with the same field of the
//! reported state. Numbers match within the field's tolerance (exactly when it has none);
//! other values match when equal; a field the report lacks diverges. The score is the
//! fraction of fields that match, 1 when the desired state has no fields. Fields the report
//! has and the desired state does not are not compared.

use std::collections::BTreeMap;

use crate::json::{Number, Object, Value};

/// Why tolerances or bands were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CongruenceError {
    /// A tolerance is not `{"absolute": x}` or `{"relative": x}` with x finite and ≥ 0.
    #[error("tolerance for {field:?}: {reason}")]
    Tolerance {
        /// The field (JSON Pointer).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The bands are not a valid ladder.
    #[error("congruence bands: {0}")]
    Bands(String),
}

/// How far a reported number may stray from the desired one and still match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// |reported − desired| ≤ x.
    Absolute(f64),
    /// |reported − desired| ≤ x·|desired|.
    Relative(f64),
}

impl Tolerance {
    fn admits(self, desired: f64, reported: f64) -> bool {
        let gap = (reported - desired).abs();
        match self {
            Self::Absolute(x) => gap <= x,
            Self::Relative(x) => gap <= x * desired.abs(),
        }
    }
}

/// Per-field tolerances of a desired state, keyed by JSON Pointer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tolerances(BTreeMap<String, Tolerance>);

impl Tolerances {
    /// Reads `{"/field": {"absolute": 0.5}, "/other/field": {"relative": 0.02}}`.
    pub fn from_json(value: &Value) -> Result<Self, CongruenceError> {
        let bad = |field: &str, reason: &str| CongruenceError::Tolerance {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let Some(members) = value.as_object() else {
            return Err(bad("", "tolerances must be an object of JSON Pointers"));
        };
        let mut out = BTreeMap::new();
        for (field, spec) in members.iter() {
            if !field.starts_with('/') {
                return Err(bad(
                    field,
                    "a field is a JSON Pointer such as \"/temperature\"",
                ));
            }
            let spec = spec
                .as_object()
                .filter(|o| o.len() == 1)
                .ok_or_else(|| bad(field, "expected {\"absolute\": x} or {\"relative\": x}"))?;
            let (kind, x) = spec.iter().next().ok_or_else(|| bad(field, "empty"))?;
            let x = x
                .as_number()
                .and_then(Number::to_f64)
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad(field, "the bound must be a finite number ≥ 0"))?;
            let tolerance = match kind {
                "absolute" => Tolerance::Absolute(x),
                "relative" => Tolerance::Relative(x),
                _ => return Err(bad(field, "expected \"absolute\" or \"relative\"")),
            };
            out.insert(field.to_owned(), tolerance);
        }
        Ok(Self(out))
    }

    /// The tolerance of one field.
    pub fn get(&self, field: &str) -> Option<Tolerance> {
        self.0.get(field).copied()
    }

    /// True when no field has a tolerance.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The outcome of comparing one reported state with the desired one.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Desired fields compared.
    pub fields: usize,
    /// Fields that match.
    pub matched: usize,
    /// The fields that do not match (JSON Pointers), in the desired state's order.
    pub diverging: Vec<String>,
}

impl Comparison {
    /// The fraction of fields that match, in [0, 1]; 1 when there are none.
    pub fn score(&self) -> f64 {
        if self.fields == 0 {
            1.0
        } else {
            self.matched as f64 / self.fields as f64
        }
    }
}

/// Compares `reported` with `desired` field by field.
pub fn compare(desired: &Value, tolerances: &Tolerances, reported: &Value) -> Comparison {
    let mut out = Comparison {
        fields: 0,
        matched: 0,
        diverging: Vec::new(),
    };
    if let Some(desired) = desired.as_object() {
        walk(
            desired,
            reported.as_object(),
            &mut String::new(),
            tolerances,
            &mut out,
        );
    }
    out
}

fn walk(
    desired: &Object,
    reported: Option<&Object>,
    path: &mut String,
    tolerances: &Tolerances,
    out: &mut Comparison,
) {
    for (key, want) in desired.iter() {
        let len = path.len();
        path.push('/');
        path.push_str(&key.replace('~', "~0").replace('/', "~1"));
        let got = reported.and_then(|r| r.get(key));
        match want.as_object() {
            Some(inner) if !inner.is_empty() => {
                walk(inner, got.and_then(Value::as_object), path, tolerances, out);
            }
            _ => {
                out.fields += 1;
                let ok = got.is_some_and(|got| match (want.as_number(), got.as_number()) {
                    (Some(w), Some(g)) => numbers_match(w, g, tolerances.get(path)),
                    _ => same(want, got),
                });
                if ok {
                    out.matched += 1;
                } else {
                    out.diverging.push(path.clone());
                }
            }
        }
        path.truncate(len);
    }
}

fn numbers_match(desired: &Number, reported: &Number, tolerance: Option<Tolerance>) -> bool {
    match (desired.to_f64(), reported.to_f64(), tolerance) {
        (Some(d), Some(r), Some(t)) => t.admits(d, r),
        (Some(d), Some(r), None) => d == r,
        // Beyond f64: only the same lexeme matches.
        _ => desired.as_lexeme() == reported.as_lexeme(),
    }
}

/// JSON equality: numbers by value, objects whatever their member order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_match(x, y, None),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The `congruence` member of a reported record's annex: what it was compared with and how
/// it came out, so that anyone holding both records can recompute it.
pub fn annex_member(desired_version: u64, comparison: &Comparison, band: &Band) -> Value {
    let mut o = Object::new();
    o.insert(
        "desired_version",
        Value::Number(Number::from_u64(desired_version)),
    );
    o.insert(
        "fields",
        Value::Number(Number::from_u64(comparison.fields as u64)),
    );
    o.insert(
        "matched",
        Value::Number(Number::from_u64(comparison.matched as u64)),
    );
    o.insert("score", score_value(comparison.score()));
    o.insert("band", Value::String(band.name.clone()));
    o.insert(
        "diverging",
        Value::Array(
            comparison
                .diverging
                .iter()
                .map(|f| Value::String(f.clone()))
                .collect(),
        ),
    );
    Value::Object(o)
}

/// The state of a shift event: the twin's congruence moved from one band to another.
pub fn shift_state(
    from: Option<&str>,
    to: &Band,
    score: f64,
    reported_version: u64,
    desired_version: u64,
) -> Value {
    let mut o = Object::new();
    o.insert("type", Value::String(SHIFT_EVENT.into()));
    o.insert(
        "from",
        from.map_or(Value::Null, |b| Value::String(b.to_owned())),
    );
    o.insert("to", Value::String(to.name.clone()));
    o.insert("score", score_value(score));
    o.insert(
        "reported_version",
        Value::Number(Number::from_u64(reported_version)),
    );
    o.insert(
        "desired_version",
        Value::Number(Number::from_u64(desired_version)),
    );
    Value::Object(o)
}

/// The `type` of a shift event's state.
pub const SHIFT_EVENT: &str = "congruence_shift";

/// The `type` of the event recorded when a twin's desired state was published to its device
/// as a correction.
pub const CORRECTION_EVENT: &str = "correction_published";

/// A score as JSON: Rust's shortest round-trip decimal (`1`, `0.5`, `0.6666666666666666`).
fn score_value(score: f64) -> Value {
    // Scores are ratios of counts, finite and in [0, 1], so the decimal always parses.
    Number::parse(&score.to_string()).map_or(Value::Null, Value::Number)
}

/// One band of the congruence ladder: scores at or above `min_score` (and below the band
/// above it) fall in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// The band's name, such as `congruent`.
    pub name: String,
    /// The lowest score in the band.
    pub min_score: f64,
}

/// The congruence bands, best first; the last one starts at 0 and is the diverged band,
/// whose entry triggers a correction.
#[derive(Debug, Clone, PartialEq)]
pub struct Bands(Vec<Band>);

impl Bands {
    /// Checks a ladder: names distinct and non-empty, scores strictly falling, the last 0.
    pub fn new(bands: Vec<Band>) -> Result<Self, CongruenceError> {
        let bad = |m: &str| Err(CongruenceError::Bands(m.to_owned()));
        if bands.len() < 2 {
            return bad("at least two bands are needed");
        }
        for (i, b) in bands.iter().enumerate() {
            let valid_name = !b.name.is_empty()
                && b.name.len() <= 32
                && b.name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
            if !valid_name {
                return bad("a band name is 1–32 of a-z, 0-9 and _");
            }
            if bands[..i].iter().any(|o| o.name == b.name) {
                return bad("band names must differ");
            }
            if !(0.0..=1.0).contains(&b.min_score) {
                return bad("a band's min_score is in [0, 1]");
            }
            if i > 0 && b.min_score >= bands[i - 1].min_score {
                return bad("bands are listed best first, with falling min_score");
            }
        }
        if bands.last().is_some_and(|b| b.min_score != 0.0) {
            return bad("the last band must start at 0");
        }
        Ok(Self(bands))
    }

    /// The band a score falls in.
    pub fn of(&self, score: f64) -> &Band {
        self.0
            .iter()
            .find(|b| score >= b.min_score)
            .unwrap_or_else(|| self.diverged())
    }

    /// The lowest band, entering which publishes a correction.
    pub fn diverged(&self) -> &Band {
        // `new` guarantees at least two bands.
        &self.0[self.0.len() - 1]
    }

    /// The bands, best first.
    pub fn all(&self) -> &[Band] {
        &self.0
    }
}

impl Default for Bands {
    /// `congruent` (every field matches), `drifting` (at least half), `diverged`.
    fn default() -> Self {
        let band = |name: &str, min_score| Band {
            name: name.into(),
            min_score,
        };
        Self(vec![
            band("congruent", 1.0),
            band("drifting", 0.5),
            band("diverged", 0.0),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Limits, parse};

    fn json(s: &str) -> Value {
        parse(s.as_bytes(), &Limits::default()).expect("json")
    }

    fn tol(s: &str) -> Tolerances {
        Tolerances::from_json(&json(s)).expect("tolerances")
    }

    #[test]
    fn exact_fields_match_by_value_and_missing_fields_diverge() {
        let c = compare(
            &json(r#"{"t": 20, "mode": "auto", "valve": {"open": true, "pos": [1, 2.0]}}"#),
            &Tolerances::default(),
            &json(r#"{"t": 20.0, "valve": {"pos": [1.0, 2], "open": true}, "extra": 1}"#),
        );
        assert_eq!(c.fields, 4);
        assert_eq!(c.matched, 3);
        assert_eq!(c.diverging, vec!["/mode"]);
        assert_eq!(c.score(), 0.75);
    }

    #[test]
    fn absolute_and_relative_tolerances_bound_numbers() {
        let desired = json(r#"{"t": 20, "p": 200, "rpm": 1500}"#);
        let t = tol(r#"{"/t": {"absolute": 0.5}, "/p": {"relative": 0.02}}"#);
        let ok = compare(&desired, &t, &json(r#"{"t": 20.5, "p": 196, "rpm": 1500}"#));
        assert_eq!((ok.matched, ok.score()), (3, 1.0));
        let off = compare(
            &desired,
            &t,
            &json(r#"{"t": 20.51, "p": 195.9, "rpm": 1501}"#),
        );
        assert_eq!(off.diverging, vec!["/t", "/p", "/rpm"]);
        assert_eq!(off.score(), 0.0);
        // A number against a string diverges whatever the tolerance.
        let typed = compare(&desired, &t, &json(r#"{"t": "20", "p": 200, "rpm": 1500}"#));
        assert_eq!(typed.diverging, vec!["/t"]);
    }

    #[test]
    fn nested_fields_are_json_pointers() {
        let c = compare(
            &json(r#"{"a/b": {"c~d": 1}, "e": {}}"#),
            &tol(r#"{"/a~1b/c~0d": {"absolute": 1}}"#),
            &json(r#"{"a/b": {"c~d": 2}, "e": {"x": 1}}"#),
        );
        // `e` desires an empty object: compared as a value, not descended into.
        assert_eq!(c.fields, 2);
        assert_eq!(c.diverging, vec!["/e"]);
    }

    #[test]
    fn an_empty_desired_state_is_fully_congruent() {
        let c = compare(&json("{}"), &Tolerances::default(), &json(r#"{"t": 1}"#));
        assert_eq!((c.fields, c.score()), (0, 1.0));
    }

    #[test]
    fn bad_tolerances_are_refused() {
        for bad in [
            r#"[]"#,
            r#"{"t": {"absolute": 1}}"#,
            r#"{"/t": {"absolute": -1}}"#,
            r#"{"/t": {"absolute": "1"}}"#,
            r#"{"/t": {"within": 1}}"#,
            r#"{"/t": {"absolute": 1, "relative": 1}}"#,
        ] {
            assert!(Tolerances::from_json(&json(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn bands_place_scores_and_refuse_bad_ladders() {
        let bands = Bands::default();
        assert_eq!(bands.of(1.0).name, "congruent");
        assert_eq!(bands.of(0.99).name, "drifting");
        assert_eq!(bands.of(0.5).name, "drifting");
        assert_eq!(bands.of(0.49).name, "diverged");
        assert_eq!(bands.diverged().name, "diverged");
        let b = |n: &str, s| Band {
            name: n.into(),
            min_score: s,
        };
        assert!(Bands::new(vec![b("ok", 1.0)]).is_err());
        assert!(Bands::new(vec![b("ok", 0.5), b("bad", 0.6)]).is_err());
        assert!(Bands::new(vec![b("ok", 0.5), b("bad", 0.1)]).is_err());
        assert!(Bands::new(vec![b("ok", 0.5), b("ok", 0.0)]).is_err());
        assert!(Bands::new(vec![b("Ok", 0.5), b("bad", 0.0)]).is_err());
        assert!(Bands::new(vec![b("ok", 0.8), b("bad", 0.0)]).is_ok());
    }
}
