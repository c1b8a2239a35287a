//! Devices over MQTT (a real Mosquitto, started by `serve` in the embedded dev mode),
//! congruence with the desired state, shift events, corrections, device signatures, and the
//! event stream.

use std::time::Duration;

use serde_json::{Value, json};
use twinledger_core::json::{Limits, parse};
use twinledger_core::{DeviceSigner, ProofBundle, TwinId};
use twinledger_mqtt::Device;
use twinledger_testkit::App;

use crate::support::*;

fn state(v: Value) -> twinledger_core::json::Value {
    parse(v.to_string().as_bytes(), &Limits::default()).expect("json")
}

/// The embedded broker's port, as `serve` wrote it.
fn broker_port(app: &App) -> u16 {
    let text = std::fs::read_to_string(app.data_dir.join("mqtt.json")).expect("mqtt.json");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["port"].as_u64().expect("port") as u16
}

async fn device(app: &App, twin: &str, signer: Option<DeviceSigner>) -> Device {
    Device::connect(
        "127.0.0.1",
        broker_port(app),
        TwinId::new(twin).expect("id"),
        signer,
    )
    .await
    .expect("device connects")
}

/// Every record of a twin, oldest first.
async fn history(app: &App, twin: &str) -> Vec<Value> {
    let (status, body) = get(app, &format!("/v1/twins/{twin}/history?limit=1000")).await;
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().expect("records").clone()
}

async fn wait_for_versions(app: &App, twin: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let h = history(app, twin).await;
        if h.len() >= n {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "twin {twin} did not reach {n} versions: {:?}\n{}",
        history(app, twin).await,
        app.output()
    );
}

fn event_type(r: &Value) -> Option<&str> {
    (r["kind"] == "event")
        .then(|| r["state"]["type"].as_str())
        .flatten()
}

#[tokio::test]
async fn device_reports_are_scored_shifts_are_logged_and_divergence_publishes_a_correction() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let desired = json!({"t": 20, "mode": "auto"});
    let (status, body) = put_json(
        &app,
        "/v1/twins/pump-1/desired",
        json!({"state": desired, "tolerances": {"/t": {"absolute": 1}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "desired");
    assert_eq!(body["annex"]["tolerances"]["/t"]["absolute"], 1);

    let mut dev = device(&app, "pump-1", None).await;
    // Within tolerance: congruent (score 1), first assessment: a shift from no band.
    dev.report(&state(json!({"t": 20.8, "mode": "auto"})))
        .await
        .expect("publish");
    let h = wait_for_versions(&app, "pump-1", 3).await;
    assert_eq!(h[1]["kind"], "reported");
    assert_eq!(h[1]["annex"]["source"], "mqtt");
    assert_eq!(h[1]["annex"]["congruence"]["score"], 1);
    assert_eq!(h[1]["annex"]["congruence"]["band"], "congruent");
    assert_eq!(event_type(&h[2]), Some("congruence_shift"));
    assert_eq!(h[2]["state"]["from"], Value::Null);
    assert_eq!(h[2]["state"]["to"], "congruent");

    // One field off: 0.5, drifting.
    dev.report(&state(json!({"t": 23, "mode": "auto"})))
        .await
        .expect("publish");
    let h = wait_for_versions(&app, "pump-1", 5).await;
    assert_eq!(h[3]["annex"]["congruence"]["score"], 0.5);
    assert_eq!(h[3]["annex"]["congruence"]["diverging"], json!(["/t"]));
    assert_eq!(h[4]["state"]["to"], "drifting");

    // Both off and one missing: diverged; the desired state goes back to the device.
    dev.report(&state(json!({"t": 30}))).await.expect("publish");
    let correction = dev
        .next_desired(Duration::from_secs(20))
        .await
        .expect("the desired state is published as a correction");
    assert_eq!(correction.to_json(), state(desired.clone()).to_json());
    let h = wait_for_versions(&app, "pump-1", 8).await;
    assert_eq!(h[5]["annex"]["congruence"]["score"], 0);
    // In the desired state's member order (serde_json sorted the test's keys).
    assert_eq!(
        h[5]["annex"]["congruence"]["diverging"],
        json!(["/mode", "/t"])
    );
    assert_eq!(h[6]["state"]["to"], "diverged");
    assert_eq!(event_type(&h[7]), Some("correction_published"));
    assert_eq!(h[7]["state"]["topic"], "twins/pump-1/desired");
    assert_eq!(h[7]["state"]["desired_version"], 1);
    assert_eq!(h[7]["state"]["shift_version"], 7);

    // The congruence endpoint: current score and the history, paged and by time.
    let (status, c) = get(&app, "/v1/twins/pump-1/congruence").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["band"], "diverged");
    assert_eq!(c["current"]["score"], 0);
    let scores: Vec<Value> = c["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|a| a["score"].clone())
        .collect();
    assert_eq!(scores, [json!(1), json!(0.5), json!(0)]);
    let (_, page) = get(&app, "/v1/twins/pump-1/congruence?limit=2").await;
    assert_eq!(page["history"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_after_version"], 4);
    let (_, rest) = get(&app, "/v1/twins/pump-1/congruence?after_version=4").await;
    assert_eq!(rest["history"][0]["version"], 6);
    let later = h[5]["recorded_at_ms"].as_i64().expect("ms");
    let (_, recent) = get(
        &app,
        &format!("/v1/twins/pump-1/congruence?from_ms={later}"),
    )
    .await;
    assert_eq!(recent["history"].as_array().map(Vec::len), Some(1));
    let (status, _) = get(&app, "/v1/twins/pump-1/congruence?from_ms=9&to_ms=1").await;
    assert_eq!(status, 400);

    // Anchored like any record; its bundle carries the congruence and verifies.
    let (_, bundle) = anchored_bundle(&app, "pump-1", 6).await;
    bundle.verify().expect("the bundle verifies");
    let congruence = bundle
        .record
        .annex
        .as_ref()
        .and_then(|a| a.get("congruence"));
    assert_eq!(
        congruence.and_then(|c| c.as_object()?.get("band")?.as_str()),
        Some("diverged")
    );
    assert_eq!(integrity_v1(&app, "pump-1").await, "Valid");
    dev.disconnect().await;
}

async fn integrity_v1(app: &App, twin: &str) -> String {
    let v = poll_until(app, &format!("/v1/twins/{twin}/verify"), 30, |v| {
        v["pending"].as_array().is_some_and(|p| p.is_empty())
    })
    .await;
    v["integrity"].as_str().expect("integrity").to_owned()
}

async fn health(app: &App) -> Value {
    get(app, "/health").await.1
}

#[tokio::test]
async fn signatures_are_required_checked_and_kept_in_the_proof_bundle() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let device_key = DeviceSigner::from_seed(&[11; 32]);
    let (status, body) = put_json(
        &app,
        "/v1/twins/valve-7/device-key",
        json!({"public_key": device_key.public_key().to_hex(), "require_signature": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["require_signature"], true);
    let (status, _) = put_json(
        &app,
        "/v1/twins/valve-7/device-key",
        json!({"public_key": "zz"}),
    )
    .await;
    assert_eq!(status, 422);

    let unsigned = device(&app, "valve-7", None).await;
    let impostor = device(&app, "valve-7", Some(DeviceSigner::from_seed(&[12; 32]))).await;
    let genuine = device(&app, "valve-7", Some(DeviceSigner::from_seed(&[11; 32]))).await;
    unsigned
        .report(&state(json!({"open": true})))
        .await
        .expect("publish");
    impostor
        .report(&state(json!({"open": false})))
        .await
        .expect("publish");
    genuine
        .report(&state(json!({"open": true, "pos": 0.25})))
        .await
        .expect("publish");
    let h = wait_for_versions(&app, "valve-7", 1).await;
    let m = poll_until(&app, "/health", 20, |h| {
        h["mqtt"]["rejected"]["total"].as_u64() >= Some(2)
    })
    .await["mqtt"]
        .clone();
    assert_eq!(m["rejected"]["unsigned"], 1, "{m}");
    assert_eq!(m["rejected"]["bad_signature"], 1, "{m}");
    assert_eq!(m["recorded"], 1, "{m}");
    assert_eq!(h.len(), 1, "only the genuine report is recorded: {h:?}");
    assert_eq!(h[0]["state"], json!({"open": true, "pos": 0.25}));
    assert_eq!(
        h[0]["annex"]["signature"]["public_key"],
        device_key.public_key().to_hex()
    );

    // Over HTTP too: unsigned is refused, a signature header is checked.
    let (status, body) = post_state(&app, "valve-7", "", json!({"open": false})).await;
    assert_eq!(status, 403, "{body}");
    let signature = device_key
        .sign(&state(json!({"open": false})))
        .expect("sign");
    let post_signed = |body: Value| {
        http()
            .post(app.url("/v1/twins/valve-7/states"))
            .header("twinledger-signature", signature.clone())
            .json(&body)
            .send()
    };
    let r = post_signed(json!({"open": false})).await.expect("request");
    assert_eq!(r.status().as_u16(), 201);
    let r = post_signed(json!({"open": true})).await.expect("request");
    assert_eq!(r.status().as_u16(), 403, "a signature of another state");

    // A third party checks the device's signature from the bundle alone.
    let (bytes, bundle) = anchored_bundle(&app, "valve-7", 1).await;
    bundle.verify().expect("verifies, signature included");
    let tampered = String::from_utf8(bytes)
        .expect("utf8")
        .replace("\"pos\":0.25", "\"pos\":0.26");
    assert!(
        ProofBundle::from_json(tampered.as_bytes())
            .expect("reads")
            .verify()
            .is_err()
    );
    for d in [unsigned, impostor, genuine] {
        d.disconnect().await;
    }
    let (status, _) = get(&app, "/v1/twins/valve-7/device-key").await;
    assert_eq!(status, 200);
    let r = http()
        .delete(app.url("/v1/twins/valve-7/device-key"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(integrity_v1(&app, "valve-7").await, "Valid");
}

#[tokio::test]
async fn bad_device_messages_are_counted_never_recorded_and_do_not_stop_ingestion() {
    let dir = data_dir();
    let app = embedded_app_with(
        dir.path(),
        "[mqtt]\nauto_create = false\nmax_payload = 1024\n",
    );
    let (status, _) = put_json(&app, "/v1/twins/known/desired", json!({"state": {}})).await;
    assert_eq!(status, 201);
    let dev = device(&app, "known", None).await;
    for (topic, payload) in [
        ("twins/known/reported", b"not json".to_vec()),
        ("twins/known/reported", b"[1, 2]".to_vec()),
        (
            "twins/known/reported",
            format!("{{\"x\":\"{}\"}}", "y".repeat(2000)).into_bytes(),
        ),
        (
            "twins/known/reported",
            br#"{"x": 1, "$signature": 5}"#.to_vec(),
        ),
        ("twins/unknown/reported", br#"{"x": 1}"#.to_vec()),
        ("twins/../reported", br#"{"x": 1}"#.to_vec()),
        ("twins/known/telemetry", br#"{"x": 1}"#.to_vec()),
        ("twins/known/reported", br#"{"a": 1, "a": 2}"#.to_vec()),
    ] {
        dev.publish(topic, payload).await.expect("publish");
    }
    dev.report(&state(json!({"x": 1}))).await.expect("publish");
    // The report and the shift its first assessment brings.
    let h = wait_for_versions(&app, "known", 3).await;
    let m = poll_until(&app, "/health", 20, |h| {
        h["mqtt"]["rejected"]["total"].as_u64() >= Some(8)
    })
    .await["mqtt"]
        .clone();
    let r = &m["rejected"];
    assert_eq!(
        (
            r["not_json"].as_u64(),
            r["not_object"].as_u64(),
            r["oversized"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{m}"
    );
    assert_eq!(r["bad_signature"], 1, "{m}");
    assert_eq!(r["unknown_twin"], 1, "{m}");
    assert_eq!(r["topic"], 2, "{m}");
    assert_eq!(m["received"], 9, "{m}");
    assert_eq!(m["recorded"], 1, "{m}");
    assert_eq!(m["connected"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(history(&app, "known").await.len(), 3, "{h:?}");
    assert_eq!(history(&app, "unknown").await.len(), 0);
    assert!(app.output().contains("message refused"));
    assert_eq!(health(&app).await["status"], "ok");
    dev.disconnect().await;
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

/// Reads events from `/v1/events{query}` until `done` holds for the list, within 30 s.
async fn read_events(
    app: &App,
    query: &str,
    last_event_id: Option<&str>,
    done: impl Fn(&[Sse]) -> bool,
) -> Vec<Sse> {
    let mut req = http().get(app.url(&format!("/v1/events{query}")));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let mut r = req.send().await.expect("stream");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().expect("type"),
        "text/event-stream"
    );
    let (mut buf, mut events) = (String::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&events) {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .unwrap_or_else(|_| panic!("stream stalled; got {events:?}"))
            .expect("chunk")
            .expect("the stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !event.is_empty() {
                events.push(Sse {
                    id,
                    event,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                });
            }
        }
    }
    events
}

fn is_record(e: &Sse) -> bool {
    matches!(e.event.as_str(), "record" | "shift" | "correction")
}

fn versions(events: &[Sse]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| is_record(e))
        .map(|e| e.data["version"].as_i64().expect("version"))
        .collect()
}

#[tokio::test]
async fn the_event_stream_carries_records_shifts_and_anchors_and_resumes_without_loss() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let (status, _) = put_json(
        &app,
        "/v1/twins/fan/desired",
        json!({"state": {"rpm": 900}}),
    )
    .await;
    assert_eq!(status, 201);
    post_state(&app, "other", "", json!({"x": 1})).await;
    let posted = async {
        for rpm in [900, 400, 900] {
            let (status, body) = post_state(&app, "fan", "", json!({"rpm": rpm})).await;
            assert_eq!(status, 201, "{body}");
        }
    };
    // From the start of the log, only the fan's records (and the log-wide anchors).
    let (events, ()) = tokio::join!(
        read_events(&app, "?twin=fan&from=0", None, |e| {
            e.iter().filter(|e| e.event == "shift").count() >= 3
                && e.iter().any(|e| e.event == "anchor")
                && e.iter().any(|e| e.event == "correction")
        }),
        posted
    );
    let seen = versions(&events);
    assert_eq!(
        seen,
        (1..=seen.len() as i64).collect::<Vec<_>>(),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .filter(|e| is_record(e))
            .all(|e| e.data["twin_id"] == "fan"),
        "{events:?}"
    );
    let shifts: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "shift")
        .map(|e| e.data["state"]["to"].as_str().expect("to"))
        .collect();
    assert_eq!(shifts, ["congruent", "diverged", "congruent"]);
    let anchor = events.iter().find(|e| e.event == "anchor").expect("anchor");
    assert!(anchor.data["size"].as_u64() >= Some(2), "{anchor:?}");
    assert!(
        anchor.data["tx_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("0x"))
    );

    // Resume after the third event: what follows is exactly what came after it.
    let cut = 2;
    let before = versions(&events[..=cut]).last().copied().unwrap_or(0);
    let newest = *seen.last().expect("records");
    let (resumed, ()) = tokio::join!(
        read_events(&app, "?twin=fan", Some(&events[cut].id), |e| {
            versions(e).last().is_some_and(|v| *v > newest)
        }),
        async {
            post_state(&app, "fan", "", json!({"rpm": 900})).await;
        }
    );
    let again = versions(&resumed);
    assert_eq!(
        again,
        (before + 1..=newest + 1).collect::<Vec<_>>(),
        "no loss, no duplicates"
    );
    let r = http()
        .get(app.url("/v1/events"))
        .header("last-event-id", "nonsense")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 400);
    // An open stream does not hold the service up when it is told to stop.
    let open = http()
        .get(app.url("/v1/events"))
        .send()
        .await
        .expect("stream");
    assert_eq!(open.status().as_u16(), 200);
    let mut app = app;
    app.terminate();
    drop(open);
}

#[tokio::test]
async fn the_simulator_drives_devices_end_to_end_and_device_keys_work_from_the_cli() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let data = dir.path().to_str().expect("utf8").to_owned();
    let api = app.base_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(&[
            "--data-dir",
            &data,
            "simulate",
            "--devices",
            "2",
            "--rate",
            "50",
            "--messages",
            "20",
            "--drift",
            "0.3",
            "--api",
            &api,
            "--sign",
        ])
    })
    .await
    .expect("simulate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("recorded and anchored 40 reports"), "{text}");
    for twin in ["sim-0", "sim-1"] {
        let (_, c) = get(&app, &format!("/v1/twins/{twin}/congruence")).await;
        assert_eq!(c["history"].as_array().map(Vec::len), Some(20), "{c}");
        let (_, key) = get(&app, &format!("/v1/twins/{twin}/device-key")).await;
        assert_eq!(key["require_signature"], true);
        let h = history(&app, twin).await;
        assert!(
            h.iter()
                .filter(|r| r["kind"] == "reported")
                .all(|r| r["annex"]["signature"].is_object())
        );
    }
    // The CLI works on the data directory's database, as the API does.
    let data = dir.path().to_str().expect("utf8");
    let key = DeviceSigner::from_seed(&[5; 32]).public_key().to_hex();
    let device_key_cli = |args: &[&str]| {
        let mut all = vec!["--data-dir", data, "device-key"];
        all.extend_from_slice(args);
        run(&all)
    };
    let out = device_key_cli(&["set", "tank", "--public-key", &key, "--require"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, shown) = get(&app, "/v1/twins/tank/device-key").await;
    assert_eq!(shown["public_key"], key.as_str());
    let (status, _) = post_state(&app, "tank", "", json!({"level": 3})).await;
    assert_eq!(status, 403, "the key set from the CLI is required");
    let out = device_key_cli(&["set", "tank", "--public-key", "00"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("public-key"));
    let out = device_key_cli(&["show", "tank"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&key));
    assert!(device_key_cli(&["remove", "tank"]).status.success());
    assert!(!device_key_cli(&["remove", "tank"]).status.success());
    let (status, _) = post_state(&app, "tank", "", json!({"level": 3})).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn ingestion_from_an_external_broker_survives_the_broker_restarting() {
    let dir = data_dir();
    let broker_dir = data_dir();
    let broker = twinledger_mqtt::LocalBroker::start(broker_dir.path(), 0)
        .await
        .expect("mosquitto");
    let port = broker.port();
    let app = embedded_app_with(
        dir.path(),
        &format!("[mqtt]\nbroker = \"127.0.0.1:{port}\"\n"),
    );
    poll_until(&app, "/health", 20, |h| h["mqtt"]["connected"] == true).await;
    let dev = Device::connect("127.0.0.1", port, TwinId::new("boiler").expect("id"), None)
        .await
        .expect("device");
    dev.report(&state(json!({"bar": 2.0})))
        .await
        .expect("publish");
    wait_for_versions(&app, "boiler", 1).await;
    dev.disconnect().await;

    broker.stop().await;
    poll_until(&app, "/health", 20, |h| h["mqtt"]["connected"] == false).await;
    // Writes over HTTP go on while the broker is away.
    let (status, _) = post_state(&app, "boiler", "", json!({"bar": 2.1})).await;
    assert_eq!(status, 201);
    let broker = twinledger_mqtt::LocalBroker::start(broker_dir.path(), port)
        .await
        .expect("mosquitto again");
    poll_until(&app, "/health", 30, |h| h["mqtt"]["connected"] == true).await;
    // A fresh broker has no session: the ingestion subscribes again.
    let dev = Device::connect("127.0.0.1", port, TwinId::new("boiler").expect("id"), None)
        .await
        .expect("device");
    dev.report(&state(json!({"bar": 2.2})))
        .await
        .expect("publish");
    let h = wait_for_versions(&app, "boiler", 3).await;
    let bars: Vec<&Value> = h.iter().map(|r| &r["state"]["bar"]).collect();
    assert_eq!(bars, [&json!(2.0), &json!(2.1), &json!(2.2)]);
    dev.disconnect().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_broker_left_by_a_killed_service_is_stopped_by_the_next_start() {
    let dir = data_dir();
    let mut app = embedded_app(dir.path());
    let pid_file = dir.path().join("mosquitto").join("mosquitto.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    app.kill();
    assert!(
        alive(pid),
        "SIGKILL gives serve no chance to stop its broker"
    );
    let app = embedded_app(dir.path());
    assert!(!alive(pid), "the next start stopped the old broker");
    poll_until(&app, "/health", 20, |h| h["mqtt"]["connected"] == true).await;
    let dev = device(&app, "after-restart", None).await;
    dev.report(&state(json!({"ok": true})))
        .await
        .expect("publish");
    wait_for_versions(&app, "after-restart", 1).await;
    dev.disconnect().await;
}
