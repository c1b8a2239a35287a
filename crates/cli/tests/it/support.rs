//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use twinledger_chain::{LocalNode, LocalNodeConfig, NodeKind};
use twinledger_testkit::{App, anvil_bin, ganache_bin};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_twinledger"))
}

/// Runs `program args` (a system tool: mkfs, mount, sync…), panicking with its output unless it
/// succeeds; its standard output, trimmed.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Asserts that every acknowledged `(twin, version)` is stored with its state.
pub fn assert_stored(dir: &Path, acked: &std::collections::BTreeMap<(String, u64), Value>) {
    let db = db(dir);
    for ((twin, version), state) in acked {
        let stored: String = db
            .query_row(
                "SELECT state FROM records WHERE twin_id = ?1 AND version = ?2",
                rusqlite::params![twin, *version as i64],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("acknowledged {twin} v{version} is missing: {e}"));
        let stored: Value = serde_json::from_str(&stored).expect("json");
        assert_eq!(&stored, state, "{twin} v{version}");
    }
}

/// Runs the binary with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("twinledger runs")
}

/// A new API key made by `twinledger keys create ARGS` in `dir`'s database.
pub fn key(dir: &Path, args: &[&str]) -> String {
    let mut full = vec!["keys", "create", "--data-dir", dir.to_str().expect("path")];
    full.extend(args);
    let out = run(&full);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A fresh data directory.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Starts the service on the embedded Anvil, in the default (log) mode.
pub fn embedded_app(dir: &Path) -> App {
    App::spawn(&bin(), dir, &[])
}

/// Starts the service on the embedded Anvil with `settings` as its `twinledger.toml`.
pub fn embedded_app_with(dir: &Path, settings: &str) -> App {
    std::fs::write(dir.join("twinledger.toml"), settings).expect("config");
    embedded_app(dir)
}

/// Starts the service on an existing chain (`args` hold `--rpc`), with API keys off for writes:
/// the tests of other features do not carry keys; `access.rs` tests keys with the defaults.
pub fn external_app(dir: &Path, args: &[&str]) -> App {
    std::fs::write(dir.join("twinledger.toml"), "[auth]\nwrites = false\n").expect("config");
    App::spawn(&bin(), dir, args)
}

/// Like [`external_app`], with more settings appended to `twinledger.toml`.
pub fn external_app_with(dir: &Path, args: &[&str], settings: &str) -> App {
    std::fs::write(
        dir.join("twinledger.toml"),
        format!("[auth]\nwrites = false\n{settings}"),
    )
    .expect("config");
    App::spawn(&bin(), dir, args)
}

/// A JSON-RPC call to a node; the `result`, or panics with the node's error.
pub async fn node_rpc(url: &str, method: &str, params: Value) -> Value {
    let body: Value = http()
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("node answers")
        .json()
        .await
        .expect("JSON-RPC answer");
    assert!(body.get("error").is_none(), "{method}: {body}");
    body["result"].clone()
}

/// Polls `GET path` until `done` holds for its JSON answer, for at most `secs` seconds.
pub async fn poll_until(app: &App, path: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, body) = get(app, path).await;
        if done(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} did not reach the expected state in {secs} s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the service on the embedded Anvil in `mode` (`log` or `legacy`).
pub fn embedded_app_in(dir: &Path, mode: &str) -> App {
    App::spawn(&bin(), dir, &["--mode", mode])
}

/// `twinledger deploy --mode MODE --rpc URL` into `dir`; returns the printed address.
pub fn deploy_in(dir: &Path, rpc: &str, mode: &str) -> String {
    let d = dir.to_str().expect("utf-8 path");
    let out = run(&["deploy", "--mode", mode, "--rpc", rpc, "--data-dir", d]);
    assert!(
        out.status.success(),
        "deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Starts a node of `kind` on a free port, with state in `state` if given.
pub async fn start_node(kind: NodeKind, port: u16, state: Option<PathBuf>) -> LocalNode {
    start_node_with(kind, port, state, None, &[]).await
}

/// Starts a node of `kind` on a free port with extra arguments (a block time, say).
pub async fn start_node_args(kind: NodeKind, args: &[&str]) -> LocalNode {
    start_node_with(kind, 0, None, None, args).await
}

/// Starts an Anvil on a free port that keeps `depth` states, so that `anvil_reorg` and
/// `anvil_rollback` can go back that far.
pub async fn start_reorg_node(depth: u32) -> LocalNode {
    start_node_with(NodeKind::Anvil, 0, None, Some(depth), &[]).await
}

async fn start_node_with(
    kind: NodeKind,
    port: u16,
    state: Option<PathBuf>,
    reorg_depth: Option<u32>,
    args: &[&str],
) -> LocalNode {
    let program = match kind {
        NodeKind::Anvil => anvil_bin(),
        NodeKind::Ganache => ganache_bin(),
    };
    LocalNode::start(&LocalNodeConfig {
        kind,
        program,
        port,
        state_path: state,
        reorg_depth,
        extra_args: args.iter().map(|a| a.to_string()).collect(),
    })
    .await
    .expect("node starts")
}

/// An HTTP client.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// POSTs the seed's update body; returns status and JSON answer.
pub async fn post_update(app: &App, twin_id: &str, data: Value) -> (u16, Value) {
    post_raw(
        app,
        &json!({ "twin_id": twin_id, "data": data }).to_string(),
    )
    .await
}

/// POSTs raw bytes as JSON to the seed's update endpoint.
pub async fn post_raw(app: &App, body: &str) -> (u16, Value) {
    let r = http()
        .post(app.url("/update_twin_on_blockchain/"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON answer"))
}

/// POSTs a state to `/v1/twins/{twin}/states{query}`; returns status and JSON answer.
pub async fn post_state(app: &App, twin: &str, query: &str, body: Value) -> (u16, Value) {
    let url = app.url(&format!("/v1/twins/{twin}/states{query}"));
    json_answer(http().post(url).json(&body)).await
}

/// PUTs a JSON body to a path; returns status and JSON answer.
pub async fn put_json(app: &App, path: &str, body: Value) -> (u16, Value) {
    json_answer(http().put(app.url(path)).json(&body)).await
}

async fn json_answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let r = request.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

/// Waits until version `v` of `twin` is anchored; returns its proof bundle, as served and read.
pub async fn anchored_bundle(
    app: &App,
    twin: &str,
    v: u64,
) -> (Vec<u8>, twinledger_core::ProofBundle) {
    let path = format!("/v1/twins/{twin}/versions/{v}");
    poll_until(app, &path, 30, |r| r["status"] != "pending").await;
    let bytes = http()
        .get(app.url(&format!("{path}/proof")))
        .send()
        .await
        .expect("proof")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    let bundle = twinledger_core::ProofBundle::from_json(&bytes).expect("bundle");
    (bytes, bundle)
}

/// GETs a path; returns status and JSON answer.
pub async fn get(app: &App, path: &str) -> (u16, Value) {
    let r = http().get(app.url(path)).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON answer"))
}

/// The seed's integrity check of a twin.
pub async fn integrity(app: &App, twin_id: &str) -> String {
    let (status, body) = get(app, &format!("/get_twin_from_blockchain/{twin_id}")).await;
    assert_eq!(status, 200, "{body}");
    body["integrity"].as_str().expect("integrity").to_owned()
}

/// Opens the service's database directly, as an attacker or an operator with sqlite3 would.
pub fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("twinledger.db")).expect("open db")
}

/// Number of records stored.
pub fn record_count(dir: &Path) -> i64 {
    db(dir)
        .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
        .expect("count")
}

/// `twinledger audit --rpc RPC --data-dir DIR` exits 0 (clean).
pub fn audit_clean(dir: &std::path::Path, rpc: &str) {
    let out = run(&[
        "audit",
        "--rpc",
        rpc,
        "--data-dir",
        dir.to_str().expect("path"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A JSON-RPC quantity (`"0x…"`) as a number.
pub fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("quantity").trim_start_matches("0x"), 16).expect("hex")
}

/// The value of the series `series` (name and labels exactly as the page writes them) in a
/// Prometheus text page.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// The value of `series` on the service's `/metrics` page (scraped without a key).
pub async fn metric(app: &App, series: &str) -> Option<f64> {
    let r = http()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status().as_u16(), 200, "/metrics");
    sample(&r.text().await.expect("page"), series)
}

/// A throwaway PostgreSQL (initdb and pg_ctl on a free port), started off the async workers.
pub async fn postgres() -> twinledger_store::postgres::LocalCluster {
    tokio::task::spawn_blocking(twinledger_store::postgres::LocalCluster::start)
        .await
        .expect("task")
        .expect("PostgreSQL starts")
}
