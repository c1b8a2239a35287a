//! The dashboard in a real browser: Debian's Chromium driven by playwright-core, one scenario
//! script per page under `browser/`, each run against a service started here.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::*;

/// Runs `browser/<scenario>.mjs` against `app`; fails with what the browser saw.
fn scenario(app: &twinledger_testkit::App, name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/it/browser/{name}.mjs"));
    let out = Command::new("node")
        .arg(&script)
        .arg(&app.base_url)
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
async fn the_fleet_shows_each_twin_and_follows_a_report_without_a_reload() {
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
    scenario(&app, "fleet");
}
