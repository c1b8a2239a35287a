//! API keys: required for writes away from the embedded dev mode, scoped, prefix-limited,
//! revocable, stored hashed and never logged.

use serde_json::json;
use twinledger_chain::NodeKind;
use twinledger_testkit::App;

use crate::support::*;

async fn post(app: &App, twin: &str, token: Option<&str>) -> u16 {
    let mut r = http()
        .post(app.url(&format!("/v1/twins/{twin}/states")))
        .json(&json!({"v": 1}));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("post").status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_gate_writes_by_scope_and_prefix_and_revocation_takes_effect() {
    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    deploy_in(dir.path(), node.url(), "log");
    std::fs::write(dir.path().join("twinledger.toml"), "[auth]\nreads = true\n").expect("config");
    let app = App::spawn(&bin(), dir.path(), &["--rpc", node.url()]);
    let writer = key(
        dir.path(),
        &["--scope", "write", "--prefix", "plant-a-", "--label", "plc"],
    );
    let reader = key(dir.path(), &["--scope", "read"]);
    assert!(writer.starts_with("tl_") && writer != reader);

    let r = http()
        .post(app.url("/v1/twins/plant-a-1/states"))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body["error"].as_str().expect("error").contains("API key"));
    let seed = http()
        .post(app.url("/update_twin_on_blockchain/"))
        .json(&json!({"twin_id": "plant-a-1", "data": {}}))
        .send()
        .await
        .expect("post");
    assert_eq!(seed.status().as_u16(), 401);
    assert_eq!(post(&app, "plant-a-1", Some("tl_nope_nope")).await, 401);
    assert_eq!(
        post(&app, "plant-a-1", Some(&reader)).await,
        403,
        "a read key cannot write"
    );
    assert_eq!(
        post(&app, "plant-b-1", Some(&writer)).await,
        403,
        "outside the key's prefix"
    );
    assert_eq!(post(&app, "plant-a-1", Some(&writer)).await, 201);
    assert_eq!(
        record_count(dir.path()),
        1,
        "only the authorised write was stored"
    );

    // Reads are configured to need a key too.
    let r = http()
        .get(app.url("/v1/twins/plant-a-1"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);
    let r = http()
        .get(app.url("/v1/twins/plant-a-1"))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let r = http()
        .get(app.url("/v1/twins"))
        .bearer_auth(&writer)
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status().as_u16(),
        403,
        "a prefix-limited key cannot list every twin"
    );
    let (status, _) = get(&app, "/health").await;
    assert_eq!(status, 200, "health needs no key");

    let id = writer.split('_').nth(1).expect("id");
    let out = run(&[
        "keys",
        "revoke",
        id,
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert!(out.status.success());
    assert_eq!(post(&app, "plant-a-2", Some(&writer)).await, 401, "revoked");
    let out = run(&[
        "keys",
        "list",
        "--json",
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains(id) && listed.contains("revoked_at_ms"),
        "{listed}"
    );

    // Secrets appear nowhere: not in the logs, the key list or the database.
    let secret_of = |t: &str| t.rsplit('_').next().expect("secret").to_owned();
    let logs = app.output();
    assert!(logs.contains(id), "attempts are logged with the key id");
    let mut db_dump: Vec<u8> = std::fs::read(dir.path().join("twinledger.db")).expect("db");
    db_dump.extend(std::fs::read(dir.path().join("twinledger.db-wal")).unwrap_or_default());
    for t in [&writer, &reader] {
        let s = secret_of(t);
        assert!(!logs.contains(&s) && !listed.contains(&s), "secret leaked");
        assert!(
            !db_dump.windows(s.len()).any(|w| w == s.as_bytes()),
            "secret stored in clear"
        );
    }
}
