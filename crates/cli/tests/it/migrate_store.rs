//! `twinledger migrate-store`: a ledger the SQLite service made and anchored moves to
//! PostgreSQL with its history and its proofs, and a target that holds a ledger is refused.
//!
//! `TWINLEDGER_MIGRATE_RECORDS` sets how many records the ledger holds (default 3000, for CI;
//! `scripts/migrate-suite.sh` runs it with 100000).

use std::time::Instant;

use serde_json::{Value, json};
use twinledger_core::Bands;
use twinledger_store::{PostgresStore, Table, TableStore};
use twinledger_testkit::App;

use crate::support::*;

const TWINS: usize = 20;
const WRITERS: usize = 32;

fn records_wanted() -> usize {
    std::env::var("TWINLEDGER_MIGRATE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Posts `total` reports spread over the twins, `WRITERS` at a time.
async fn load(base: &str, total: usize) {
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let base = base.to_owned();
        writers.push(tokio::spawn(async move {
            let client = http();
            for i in (w..total).step_by(WRITERS) {
                let r = client
                    .post(format!("{base}/v1/twins/t{}/states", i % TWINS))
                    .json(&json!({"t": 18 + (i % 5), "seq": i}))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status().as_u16(), 201, "record {i}");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
}

async fn row_counts(url: &str) -> Vec<(Table, u64)> {
    PostgresStore::connect(url, Bands::default())
        .await
        .expect("connect")
        .row_counts()
        .await
        .expect("counts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_ledger_moves_to_postgres_with_its_proofs_and_a_used_target_is_refused() {
    let total = records_wanted();
    let dir = data_dir();
    let data = dir.path().to_str().expect("path").to_owned();
    let app = embedded_app(dir.path());
    // Desired states for a few twins, so that reports are scored and shift events derived.
    for t in 0..5 {
        let (status, body) = put_json(
            &app,
            &format!("/v1/twins/t{t}/desired"),
            json!({"state": {"t": 20}, "tolerances": {"/t": {"absolute": 1}}}),
        )
        .await;
        assert!(status < 300, "{body}");
    }
    let started = Instant::now();
    load(&app.base_url, total).await;
    let loaded = started.elapsed();
    let health = poll_until(&app, "/health", 600, |h| {
        h["anchoring"]["anchored_size"] == h["database"]["records"]
    })
    .await;
    let size = health["database"]["records"].as_u64().expect("records");
    assert!(
        size as usize > total + 5,
        "shift events were derived: {size}"
    );
    let mut bundles = Vec::new();
    for t in 0..5 {
        let (_, twin) = get(&app, &format!("/v1/twins/t{t}")).await;
        let latest = twin["latest_version"].as_u64().expect("latest version");
        for v in [1, 2, latest / 2, latest] {
            let (bytes, _) = anchored_bundle(&app, &format!("t{t}"), v).await;
            bundles.push((t, v, bytes));
        }
    }
    let mut app = app;
    app.terminate();

    let cluster = postgres().await;
    let url = cluster.url("postgres");
    let db = format!("{data}/twinledger.db");
    let started = Instant::now();
    let out = run(&["migrate-store", "--from", &db, "--to", &url]);
    let migrated = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{size} records")),
        "the summary counts every record: {stdout}"
    );
    eprintln!(
        "migrate-store timing: {total} records posted in {:.1} s, migrated in {:.1} s",
        loaded.as_secs_f64(),
        migrated.as_secs_f64()
    );

    // The service on the copy: the same chain state (the data directory's embedded Anvil), the
    // contract found in the copied facts, and the start's reconciliation with the chain's head.
    let app = App::spawn(&bin(), dir.path(), &["--database", &url]);
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"]["records"], size, "{health}");
    for (t, v, before) in &bundles {
        let path = format!("/v1/twins/t{t}/versions/{v}/proof");
        let after = http()
            .get(app.url(&path))
            .send()
            .await
            .expect("proof")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&after[..], &before[..], "{path}: the same bundle");
    }
    for t in 0..TWINS {
        let (status, verdict) = get(&app, &format!("/v1/twins/t{t}/verify")).await;
        assert_eq!(status, 200, "{verdict}");
        assert_eq!(verdict["integrity"], "Valid", "t{t}: {verdict}");
    }
    let out = run(&["audit", "--json", "--database", &url, "--data-dir", &data]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no audit report: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["records"], size, "{report}");
    assert_eq!(report["divergence"], Value::Null, "{report}");
    let mut app = app;
    app.terminate();

    // Negative control: the same command again finds the target holding a ledger, says so,
    // and writes nothing.
    let before = row_counts(&url).await;
    let out = run(&["migrate-store", "--from", &data, "--to", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a used target is refused");
    assert!(
        stderr.contains("the target already holds a ledger")
            && stderr.contains(&format!("{size} records")),
        "{stderr}"
    );
    assert_eq!(row_counts(&url).await, before, "the target is unchanged");
    // A source that does not exist is not created empty.
    let missing = format!("{data}/missing.db");
    let out = run(&["migrate-store", "--from", &missing, "--to", &url]);
    assert!(!out.status.success());
    assert!(!std::path::Path::new(&missing).exists());
}
