//! Hard kills: SIGKILL of the whole process group of the embedded default (the service, its
//! Anvil and its Mosquitto die at once, as in a crash, an OOM kill, `docker kill` or a reboot),
//! then a restart with the same arguments and no repair.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::*;
use crate::support::data_dir;

/// Random kills under concurrent HTTP and MQTT writers, `TWINLEDGER_CRASH_CYCLES` times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_kills_of_the_process_group_under_load_lose_no_acknowledged_record() {
    let _serial = SERIAL.lock().await;
    let cycles = env_count("TWINLEDGER_CRASH_CYCLES", 4);
    let mut rng = Rng::from_env("kill");
    let dir = data_dir();
    let acks = Arc::new(Acks::default());
    let started = Instant::now();
    let mut app = spawn(dir.path(), &[]).unwrap_or_else(|out| panic!("serve: {out}"));
    let mut after_anchor = 0;
    let mut slowest_restart = Duration::ZERO;
    for cycle in 0..cycles {
        let load = Load::start(&app, cycle, &acks, &LoadSpec::default()).await;
        let cycle_started = Instant::now();
        tokio::time::sleep(rng.millis(200, 2000)).await;
        // A kill just after an anchor is mined is the worst moment for the embedded chain:
        // its last snapshot cannot hold that anchor yet.
        let mut moment = "at random";
        if rng.below(4) == 0 {
            let anchored = anchored_size(&app).await;
            if wait_for_anchor_past(&app, anchored, Duration::from_secs(5)).await {
                after_anchor += 1;
                moment = "right after an anchor";
            }
        }
        app.kill_group();
        let killed_after = cycle_started.elapsed();
        load.stop().await;
        let before = app.output();
        let restarting = Instant::now();
        app = spawn(dir.path(), &[]).unwrap_or_else(|out| {
            panic!(
                "kill {}: serve did not come back after a hard kill, unattended:\n{out}\n\
                 the killed service's last lines:\n{}",
                cycle + 1,
                tail(&before, 40)
            )
        });
        let restart = restarting.elapsed();
        slowest_restart = slowest_restart.max(restart);
        let findings = check(dir.path(), Some(&app), &acks).await;
        findings.assert_clean(&format!("after kill {}", cycle + 1), Some(&app));
        println!(
            "kill {}/{cycles}: {moment} after {:.2} s; back in {:.2} s; {} acknowledged, {} \
             stored",
            cycle + 1,
            killed_after.as_secs_f64(),
            restart.as_secs_f64(),
            findings.acked,
            findings.records
        );
    }
    let fin = final_checks(&app, dir.path()).await;
    let (http, mqtt, indeterminate) = acks.counts();
    // A run that acknowledged nearly nothing proves nothing.
    assert!(
        http >= 20 * cycles as u64,
        "too few HTTP writes acknowledged: {http}"
    );
    assert!(mqtt > 0, "no MQTT report was acknowledged");
    let (lost_events, lost_heads) = chain_losses(dir.path());
    println!(
        "kill: {cycles} cycles ({after_anchor} right after an anchor) in {:.0} s, each restart \
         ready within {:.2} s; {} records \
         acknowledged ({http} HTTP, {mqtt} MQTT), {indeterminate} indeterminate; {} records \
         found, all anchored; {} twins Valid; audit clean; the embedded chain lost anchors in \
         {lost_events} restarts ({lost_heads} heads), all anchored again",
        started.elapsed().as_secs_f64(),
        slowest_restart.as_secs_f64(),
        acks.len(),
        fin.records,
        fin.twins
    );
    app.terminate();
}

/// The scenario of issue 16: 200 records, the group killed at once, a restart without flags.
/// The anchors were mined after the chain's only snapshot, so the chain loses them; the
/// service must anchor them again and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_kill_right_after_200_anchored_records_restarts_and_reanchors_them() {
    let _serial = SERIAL.lock().await;
    let dir = data_dir();
    // No snapshot after the first can hold the anchors of the 200 records.
    std::fs::write(
        dir.path().join("twinledger.toml"),
        "[chain]\nsnapshot_interval_ms = 60000\n",
    )
    .expect("config");
    let mut app = spawn(dir.path(), &[]).unwrap_or_else(|out| panic!("serve: {out}"));
    let acks = Arc::new(Acks::default());
    let client = crate::support::http();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, base, acks) = (client.clone(), app.base_url.clone(), acks.clone());
            tokio::spawn(async move {
                for i in 0..50 {
                    let twin = format!("machine-{}", (w * 50 + i) % 10);
                    let state = json!({"writer": w, "i": i});
                    let r = client
                        .post(format!("{base}/v1/twins/{twin}/states?wait=anchored"))
                        .json(&state)
                        .send()
                        .await
                        .expect("the service answers");
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.expect("JSON answer");
                    assert_eq!(status, 201, "{body}");
                    let version = body["version"].as_u64().expect("version");
                    acks.ack(&twin, version, state, Source::Http);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(acks.len(), 200);
    let anchored_before = anchors(&app).await;
    app.kill_group();

    let mut app = spawn(dir.path(), &[]).unwrap_or_else(|out| {
        panic!("the restart without flags after a hard kill was refused:\n{out}")
    });
    check(dir.path(), Some(&app), &acks)
        .await
        .assert_clean("after the kill", Some(&app));
    let fin = final_checks(&app, dir.path()).await;

    // The loss is recorded in the log, as an event of the reserved chain twin.
    let (status, history) = get_json(&app, &format!("/v1/twins/{CHAIN_TWIN}/history")).await;
    assert_eq!(
        status,
        200,
        "no {CHAIN_TWIN} history after the chain lost anchors: {history}\n{}",
        tail(&app.output(), 40)
    );
    let losses: Vec<&Value> = history["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["kind"] == "event" && r["state"]["type"] == "chain_state_lost")
        .collect();
    assert_eq!(
        losses.len(),
        1,
        "one chain_state_lost event expected: {history}"
    );
    let lost = losses[0]["state"]["lost"].as_array().expect("lost heads");
    assert!(
        !lost.is_empty(),
        "the event names no lost head: {}",
        losses[0]
    );
    for head in lost {
        for field in ["size", "root", "tx_hash", "block_number"] {
            assert!(!head[field].is_null(), "lost head without {field}: {head}");
        }
        // A lost head is one this run had anchored before the kill.
        assert!(
            anchored_before
                .iter()
                .any(|a| a["size"] == head["size"] && a["root"] == head["root"]),
            "{head} was not among the heads anchored before the kill"
        );
    }
    let (_, health) = get_json(&app, "/health").await;
    let counted = health["anchoring"]["chain_state_losses"].as_u64();
    assert_eq!(counted, Some(1), "/health: {health}");
    println!(
        "scenario: 200 records acknowledged with wait=anchored, group killed at once; after the \
         restart {} records found, {} anchored heads lost and anchored again, {} twins Valid",
        fin.records,
        lost.len(),
        fin.twins
    );
    app.terminate();
}
