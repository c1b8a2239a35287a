//! Hostile input on every endpoint: each gets a 4xx with a clear {"error"}, writes nothing, and
//! the service stays healthy.

use serde_json::Value;

use crate::support::*;

async fn send(
    app: &twinledger_testkit::App,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = http()
        .request(method.parse().expect("method"), app.url(path))
        .body(body);
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text:?}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_is_a_4xx_json_error_and_writes_nothing() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let json = Some("application/json");
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let long_string = format!("{{\"s\": \"{}\"}}", "x".repeat(70 * 1024));
    let long_key = format!("{{\"{}\": 1}}", "k".repeat(300));
    let many_keys = format!(
        "{{{}}}",
        (0..10_001)
            .map(|i| format!("\"k{i}\": 1"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let long_array = format!("{{\"a\": [{}]}}", vec!["0"; 100_001].join(","));
    type Case<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "nesting depth",
            "/v1/twins/t/states".into(),
            json,
            format!("{{\"d\": {deep}}}").into_bytes(),
            "nesting",
        ),
        (
            "string length",
            "/v1/twins/t/states".into(),
            json,
            long_string.into_bytes(),
            "string",
        ),
        (
            "key length",
            "/v1/twins/t/states".into(),
            json,
            long_key.into_bytes(),
            "key",
        ),
        (
            "number of keys",
            "/v1/twins/t/states".into(),
            json,
            many_keys.into_bytes(),
            "members",
        ),
        (
            "array length",
            "/v1/twins/t/states".into(),
            json,
            long_array.into_bytes(),
            "array",
        ),
        (
            "malformed utf-8",
            "/v1/twins/t/states".into(),
            json,
            b"{\"a\": \"\xff\xfe\"}".to_vec(),
            "utf-8",
        ),
        (
            "duplicate keys",
            "/v1/twins/t/states".into(),
            json,
            br#"{"a": 1, "a": 2}"#.to_vec(),
            "duplicate",
        ),
        (
            "NaN",
            "/v1/twins/t/states".into(),
            json,
            br#"{"a": NaN}"#.to_vec(),
            "invalid JSON",
        ),
        (
            "Infinity",
            "/v1/twins/t/states".into(),
            json,
            br#"{"a": -Infinity}"#.to_vec(),
            "invalid JSON",
        ),
        (
            "number out of range",
            "/v1/twins/t/states".into(),
            json,
            br#"{"a": 1e999}"#.to_vec(),
            "out of range",
        ),
        (
            "not an object",
            "/v1/twins/t/states".into(),
            json,
            b"[1]".to_vec(),
            "object",
        ),
        (
            "wrong content type",
            "/v1/twins/t/states".into(),
            Some("text/csv"),
            br#"{"a": 1}"#.to_vec(),
            "content type",
        ),
        (
            "unknown query parameter",
            "/v1/twins/t/states?force=1".into(),
            json,
            b"{}".to_vec(),
            "unknown query parameter",
        ),
        (
            "unknown field (seed)",
            "/update_twin_on_blockchain/".into(),
            json,
            br#"{"twin_id": "t", "data": {}, "x": 1}"#.to_vec(),
            "unknown field",
        ),
        (
            "control character in id",
            "/v1/twins/a%01b/states".into(),
            json,
            b"{}".to_vec(),
            "control",
        ),
        (
            "separator in id",
            "/v1/twins/a%2Fb/states".into(),
            json,
            b"{}".to_vec(),
            "'/'",
        ),
        (
            "path traversal id",
            "/v1/twins/..%2F..%2Fetc/states".into(),
            json,
            b"{}".to_vec(),
            "'/'",
        ),
        (
            "dot-dot id",
            "/update_twin_on_blockchain/".into(),
            json,
            br#"{"twin_id": "..", "data": {}}"#.to_vec(),
            "\"..\"",
        ),
        (
            "space in id",
            "/v1/twins/a%20b/states".into(),
            json,
            b"{}".to_vec(),
            "whitespace",
        ),
        (
            "overlong id",
            format!("/v1/twins/{}/states", "x".repeat(129)),
            json,
            b"{}".to_vec(),
            "129 characters",
        ),
    ];
    for (what, path, ctype, body, expected) in cases {
        let (status, answer) = send(&app, "POST", &path, ctype, body).await;
        assert!((400..500).contains(&status), "{what}: {status} {answer}");
        let msg = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {answer}"));
        assert!(msg.contains(expected), "{what}: {msg:?} lacks {expected:?}");
    }
    let long_prefix = format!("/v1/twins?prefix={}", "p".repeat(129));
    for (what, path) in [
        ("huge limit", "/v1/twins?limit=99999999999999999999"),
        ("negative limit", "/v1/twins?limit=-5"),
        ("NUL in a prefix", "/v1/twins?prefix=a%00b"),
        ("space in a prefix", "/v1/twins?prefix=a%20b"),
        ("a prefix longer than any id", &long_prefix),
        ("an after that is no id", "/v1/twins?after=a%2Fb"),
        ("NUL in the fleet's prefix", "/dashboard?prefix=%00"),
        ("zero limit", "/v1/twins/t/history?limit=0"),
        ("negative cursor", "/v1/twins/t/history?cursor=-1"),
        ("garbage cursor", "/v1/twins/t/history?cursor=%FF%FE"),
        ("negative tree size", "/v1/tree-heads?from=-1"),
        ("bad version", "/v1/twins/t/versions/18446744073709551616"),
    ] {
        let (status, answer) = send(&app, "GET", path, None, Vec::new()).await;
        assert!((400..500).contains(&status), "{what}: {status} {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
    }
    assert_eq!(record_count(dir.path()), 0, "nothing was written");
    let (status, health) = get(&app, "/health").await;
    assert_eq!(status, 200, "still healthy: {health}");
}
