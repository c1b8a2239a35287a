//! The dashboard in a real browser: Debian's Chromium driven by playwright-core, one scenario
//! script per page under `browser/`, each run against a service started here.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::*;

/// Runs `browser/<scenario>.mjs` against `app` with `args`; fails with what the browser saw.
fn scenario(app: &twinledger_testkit::App, name: &str, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/it/browser/{name}.mjs"));
    let out = Command::new("node")
        .arg(&script)
        .arg(&app.base_url)
        .args(args)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "browser scenario {name} failed:\n{}{}\nservice log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        app.output()
    );
}

#[tokio::test]
async fn the_fleet_and_the_twin_page_follow_reports_without_a_reload() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let (status, body) = put_json(
        &app,
        "/v1/twins/pump-1/desired",
        json!({"state": {"rpm": 1500, "mode": "auto"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for (twin, state) in [
        ("pump-1", json!({"rpm": 1400, "mode": "auto"})),
        ("valve-1", json!({"open": true})),
        ("valve-2", json!({"open": false})),
        ("meter-1", json!({"kwh": 12})),
    ] {
        let (status, body) = post_state(&app, twin, "", state).await;
        assert_eq!(status, 201, "{body}");
    }
    scenario(&app, "fleet", &[]);
    scenario(&app, "twin", &[]);
}

#[tokio::test]
async fn the_verify_page_checks_a_bundle_in_the_browser_and_names_a_tampered_version() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    for rpm in [1000, 1001, 1002] {
        let (status, body) = post_state(&app, "fan-1", "", json!({"rpm": rpm})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (bytes, _) = anchored_bundle(&app, "fan-1", 3).await;
    poll_until(&app, "/v1/twins/fan-1/versions/1", 30, |r| {
        r["status"] != "pending"
    })
    .await;
    let files = data_dir();
    let valid = files.path().join("fan-1-v3.json");
    std::fs::write(&valid, &bytes).expect("bundle");
    let edited = files.path().join("edited.json");
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(text.contains("\"rpm\":1002"));
    std::fs::write(&edited, text.replace("\"rpm\":1002", "\"rpm\":1003")).expect("edited");
    let node: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("node.json")).expect("node.json"))
            .expect("json");
    let rpc = node["url"].as_str().expect("url").to_owned();
    let contract: String = db(dir.path())
        .query_row(
            "SELECT value FROM meta WHERE key LIKE 'log_contract.%'",
            [],
            |r| r.get(0),
        )
        .expect("contract");
    let path = |p: &std::path::Path| p.to_str().expect("path").to_owned();
    let (valid, edited) = (path(&valid), path(&edited));
    scenario(&app, "verify", &[&rpc, &contract, &valid, &edited, "fan-1"]);

    // An edit in the database, as an attacker with sqlite3 would make it.
    db(dir.path())
        .execute(
            "UPDATE records SET state = '{\"rpm\":1500}' WHERE twin_id = 'fan-1' AND version = 2",
            [],
        )
        .expect("edit");
    scenario(
        &app,
        "verify",
        &[&rpc, &contract, &valid, &edited, "fan-1", "2"],
    );
}

#[tokio::test]
async fn the_events_page_resumes_after_the_service_restarts_without_losing_or_repeating() {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    let dir = data_dir();
    let mut app = embedded_app(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/browser/events.mjs");
    let mut browser = Command::new("node")
        .arg(&script)
        .arg(&app.base_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let stdout = browser.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let asked = lines.by_ref().map_while(Result::ok).any(|l| l == "restart");
    if !asked {
        let out = browser.wait_with_output().expect("scenario ends");
        panic!(
            "the scenario failed before the restart: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listen = app.base_url.trim_start_matches("http://").to_owned();
    app.terminate();
    drop(app);
    let app = twinledger_testkit::App::spawn(&bin(), dir.path(), &["--listen", &listen]);
    // The line, then the end of its input: the scenario goes on.
    let mut stdin = browser.stdin.take().expect("stdin");
    writeln!(stdin, "go").expect("tell the scenario");
    drop(stdin);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = browser.wait_with_output().expect("scenario ends");
    assert!(
        out.status.success(),
        "browser scenario events failed after the restart:\n{}\n{}\nservice log:\n{}",
        rest.join("\n"),
        String::from_utf8_lossy(&out.stderr),
        app.output()
    );
}
