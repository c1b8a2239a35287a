//! Concurrent clients: the seed's shared SQLite connection crashed, and its sends collided on
//! nonces, under this load.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_on_distinct_twins_and_one_shared_twin_in_log_mode() {
    thirty_two_clients("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_on_distinct_twins_and_one_shared_twin_in_legacy_mode() {
    thirty_two_clients("legacy").await;
}

async fn thirty_two_clients(mode: &str) {
    let dir = data_dir();
    let app = std::sync::Arc::new(embedded_app_in(dir.path(), mode));
    const CLIENTS: usize = 32;
    const ROUNDS: usize = 3;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for r in 0..ROUNDS {
                let (s, b) =
                    post_update(&app, &format!("own-{c}"), json!({"client": c, "round": r})).await;
                statuses.push((s, b));
                let (s, b) = post_update(&app, "shared", json!({"client": c, "round": r})).await;
                statuses.push((s, b));
            }
            statuses
        }));
    }
    for t in tasks {
        for (status, body) in t.await.expect("task") {
            assert_eq!(status, 200, "{body}");
        }
    }
    for c in 0..CLIENTS {
        assert_eq!(integrity(&app, &format!("own-{c}")).await, "Valid");
    }
    assert_eq!(integrity(&app, "shared").await, "Valid");
    let (count, max, distinct): (i64, i64, i64) = db(dir.path())
        .query_row(
            "SELECT COUNT(*), MAX(version), COUNT(DISTINCT version) FROM records WHERE twin_id = 'shared'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("versions");
    let n = (CLIENTS * ROUNDS) as i64;
    assert_eq!(
        (count, max, distinct),
        (n, n, n),
        "versions dense, no gaps or duplicates"
    );
    let out = run(&[
        "verify",
        "shared",
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
