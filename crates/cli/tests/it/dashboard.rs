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

#[tokio::test]
async fn with_reads_needing_a_key_the_dashboard_asks_once_and_refuses_cross_site_writes() {
    let dir = data_dir();
    let app = embedded_app_with(dir.path(), "[auth]\nreads = true\n");
    let read = key(dir.path(), &["--scope", "read"]);
    let write = key(dir.path(), &["--scope", "write"]);
    let report = http()
        .post(app.url("/v1/twins/press-1/states"))
        .bearer_auth(&write)
        .json(&json!({"force": 9}))
        .send()
        .await
        .expect("post");
    assert_eq!(report.status().as_u16(), 201);
    scenario(&app, "session", &[&read, &write]);

    // The cookie goes with requests other sites make too: it writes only from the service's
    // own pages, and a script asking for a fragment gets JSON, not the prompt.
    let desired = |origin: &str, session: &str| {
        http()
            .put(app.url("/v1/twins/press-1/desired"))
            .header("cookie", format!("twinledger_key={session}"))
            .header("origin", origin)
            .json(&json!({"state": {"force": 11}}))
            .send()
    };
    let host = app.base_url.trim_start_matches("http://").to_owned();
    let foreign = desired("http://evil.example", &write).await.expect("put");
    assert_eq!(foreign.status().as_u16(), 403);
    let body: serde_json::Value = foreign.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("own pages"),
        "{body}"
    );
    let versions = || -> i64 {
        db(dir.path())
            .query_row(
                "SELECT COUNT(*) FROM records WHERE twin_id = 'press-1'",
                [],
                |r| r.get(0),
            )
            .expect("count")
    };
    assert_eq!(versions(), 3, "the refused write left nothing");
    let own = desired(&format!("http://{host}"), &write)
        .await
        .expect("put");
    assert_eq!(own.status().as_u16(), 201);
    assert_eq!(versions(), 4);
    let by_reader = desired(&format!("http://{host}"), &read)
        .await
        .expect("put");
    assert_eq!(by_reader.status().as_u16(), 403);
    let fragment = http()
        .get(app.url("/dashboard/fleet/rows?id=press-1"))
        .send()
        .await
        .expect("get");
    assert_eq!(fragment.status().as_u16(), 401);
    assert!(fragment.text().await.expect("body").contains("\"error\""));
    // Signing in from another site is refused too.
    let login = http()
        .post(app.url("/dashboard/session"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={read}&next=%2Fdashboard"))
        .send()
        .await
        .expect("post");
    assert_eq!(login.status().as_u16(), 403);
    assert!(login.headers().get("set-cookie").is_none());

    // A revoked key ends its session: the prompt again, and the cookie is forgotten.
    let id = read.split('_').nth(1).expect("id");
    let data = dir.path().to_str().expect("path");
    assert!(
        run(&["keys", "revoke", id, "--data-dir", data])
            .status
            .success()
    );
    let page = http()
        .get(app.url("/dashboard"))
        .header("cookie", format!("twinledger_key={read}"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("get");
    assert_eq!(page.status().as_u16(), 401);
    let forget = page.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        forget.starts_with("twinledger_key=;") && forget.contains("Max-Age=0"),
        "{forget}"
    );
    assert!(page.text().await.expect("body").contains("was revoked"));
}
