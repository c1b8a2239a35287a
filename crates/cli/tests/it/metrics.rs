//! `/metrics`: the page a running service serves, checked by `promtool` and scraped by a real
//! Prometheus server; its access rules and separate listener; the alerting rules of
//! `docs/alerts.yml`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_core::TwinId;
use twinledger_mqtt::Device;
use twinledger_testkit::{App, free_port};

use crate::support::*;

/// Every twin id in these tests starts with this; none may show up in the page.
const TWIN_PREFIX: &str = "zq-secret";

async fn scrape(url: &str, token: Option<&str>) -> (u16, String) {
    let mut r = http().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.expect("scrape");
    let status = r.status().as_u16();
    (status, r.text().await.expect("page"))
}

fn must(page: &str, series: &str) -> f64 {
    sample(page, series).unwrap_or_else(|| panic!("no {series} in the page:\n{page}"))
}

/// `promtool`, which CI installs with Debian's `prometheus` package (scripts/setup.sh).
fn promtool() -> Command {
    Command::new("promtool")
}

fn promtool_check_metrics(page: &str) {
    use std::io::Write;
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus, or scripts/setup.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("page to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}",
        out.status
    );
}

async fn wait_for_anchored(app: &App, size: u64) {
    poll_until(app, "/health", 60, |h| {
        h["anchoring"]["anchored_size"] == size && h["database"]["records"] == size
    })
    .await;
}

/// The embedded broker's port, as `serve` wrote it.
fn broker_port(app: &App) -> u16 {
    let text = std::fs::read_to_string(app.data_dir.join("mqtt.json")).expect("mqtt.json");
    let v: Value = serde_json::from_str(&text).expect("json");
    u16::try_from(v["port"].as_u64().expect("port")).expect("a port")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_passes_promtool_and_counts_what_was_done_by_route_template_never_by_twin() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let a = format!("{TWIN_PREFIX}-a");
    let (status, body) = put_json(
        &app,
        &format!("/v1/twins/{a}/desired"),
        json!({"state": {"t": 20, "mode": "auto"}, "tolerances": {"/t": {"absolute": 1}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Within tolerance: a shift into `congruent`; one field off: a shift into `drifting`.
    for reported in [
        json!({"t": 20.5, "mode": "auto"}),
        json!({"t": 23, "mode": "auto"}),
    ] {
        let (status, body) = post_state(&app, &a, "", reported).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post_update(&app, &format!("{TWIN_PREFIX}-b"), json!({"k": 1})).await;
    assert_eq!(status, 200, "{body}");
    let c = TwinId::new(format!("{TWIN_PREFIX}-c")).expect("id");
    let device = Device::connect("127.0.0.1", broker_port(&app), c.clone(), None)
        .await
        .expect("device connects");
    device
        .publish(&format!("twins/{c}/reported"), b"not json".to_vec())
        .await
        .expect("publish");
    device
        .report(&twinledger_core::json::parse(b"{\"x\": 1}", &Default::default()).expect("json"))
        .await
        .expect("publish");
    // 1 desired, 4 reported (2 over HTTP, 1 seed, 1 MQTT), 2 shift events.
    wait_for_anchored(&app, 7).await;
    device.disconnect().await;

    let (status, _) = get(&app, &format!("/v1/twins/{TWIN_PREFIX}-missing")).await;
    assert_eq!(status, 404);
    let r = http()
        .get(app.url(&format!("/{TWIN_PREFIX}-nowhere/x")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 404);
    let (status, verdict) = get(&app, &format!("/v1/twins/{a}/verify")).await;
    assert_eq!((status, &verdict["integrity"]), (200, &json!("Valid")));
    let events = http()
        .get(app.url("/v1/events"))
        .send()
        .await
        .expect("event stream");
    assert_eq!(events.status().as_u16(), 200);

    let (status, page) = scrape(&app.url("/metrics"), None).await;
    assert_eq!(status, 200, "{page}");
    promtool_check_metrics(&page);
    assert!(
        !page.contains(TWIN_PREFIX),
        "a twin id is in the page:\n{page}"
    );
    let expect = [
        ("twinledger_records_appended_total{kind=\"reported\"}", 4.0),
        ("twinledger_records_appended_total{kind=\"desired\"}", 1.0),
        ("twinledger_records_appended_total{kind=\"event\"}", 2.0),
        ("twinledger_log_size", 7.0),
        ("twinledger_anchored_size", 7.0),
        ("twinledger_pending_records", 0.0),
        ("twinledger_anchoring_failing", 0.0),
        // Every record was acknowledged by this process, and each is observed once.
        ("twinledger_anchor_delay_seconds_count", 7.0),
        // Submissions, not records: the shift events are derived inside their batches.
        ("twinledger_write_batch_records_sum", 5.0),
        ("twinledger_write_failures_total", 0.0),
        (
            "twinledger_congruence_shifts_total{band=\"congruent\"}",
            1.0,
        ),
        ("twinledger_congruence_shifts_total{band=\"drifting\"}", 1.0),
        ("twinledger_verify_verdicts_total{verdict=\"valid\"}", 1.0),
        ("twinledger_mqtt_messages_received_total", 2.0),
        ("twinledger_mqtt_messages_recorded_total", 1.0),
        (
            "twinledger_mqtt_messages_refused_total{reason=\"not_json\"}",
            1.0,
        ),
        ("twinledger_sse_clients", 1.0),
        ("twinledger_build_info{version=\"0.1.0\"}", 1.0),
        (
            "twinledger_http_requests_total{method=\"POST\",route=\"/v1/twins/{id}/states\",status=\"201\"}",
            2.0,
        ),
        (
            "twinledger_http_requests_total{method=\"GET\",route=\"/v1/twins/{id}\",status=\"404\"}",
            1.0,
        ),
        (
            "twinledger_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}",
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(must(&page, series), value, "{series}");
    }
    let anchors = must(&page, "twinledger_anchors_mined_total");
    assert!(anchors >= 1.0, "{anchors} anchors for 7 records");
    assert_eq!(must(&page, "twinledger_anchor_gas_count"), anchors);
    assert!(must(&page, "twinledger_anchors_sent_total") >= anchors);
    assert!(must(&page, "twinledger_write_commit_seconds_count") >= 1.0);

    // The stream's client is counted until it goes: the record below wakes the stream, whose
    // write to the closed connection ends it.
    drop(events);
    let (status, body) = post_state(&app, &a, "", json!({"t": 20, "mode": "auto"})).await;
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = scrape(&app.url("/metrics"), None).await;
        if sample(&page, "twinledger_sse_clients") == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream is still counted:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Prometheus server on a loopback port, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) every second.
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: twinledger\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus runs (apt-get install prometheus, or scripts/setup.sh)");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector `query` evaluates to, once it is not empty (at most 60 s).
    async fn query(&self, query: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = reqwest::Url::parse_with_params(
                &format!("{}/api/v1/query", self.url),
                &[("query", query)],
            )
            .expect("query URL");
            let answer = http().get(url).send().await;
            if let Ok(r) = answer
                && let Ok(body) = r.json::<Value>().await
            {
                assert_eq!(body["status"], "success", "{query}: {body}");
                let result = body["data"]["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !result.is_empty() {
                    return result;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus has no answer to {query} after 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one value of an instant vector.
fn scalar(result: &[Value]) -> f64 {
    assert_eq!(result.len(), 1, "{result:?}");
    result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a sample: {result:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_the_service_and_answers_for_log_size_and_anchor_delay() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    for i in 0..3 {
        let (status, body) = post_state(
            &app,
            &format!("{TWIN_PREFIX}-{i}"),
            "?wait=anchored",
            json!({"i": i}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    wait_for_anchored(&app, 3).await;
    let target = app.base_url.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target);

    let up = prometheus.query("up{job=\"twinledger\"}").await;
    assert_eq!(scalar(&up), 1.0, "the scrape failed:\n{}", prometheus.log());
    assert_eq!(scalar(&prometheus.query("twinledger_log_size").await), 3.0);
    assert_eq!(
        scalar(
            &prometheus
                .query("twinledger_anchor_delay_seconds_count")
                .await
        ),
        3.0
    );
    // Each record waited for its anchor (the callers asked to): a real delay, under the
    // minute a write is allowed to wait.
    let p99 = scalar(
        &prometheus
            .query("histogram_quantile(0.99, twinledger_anchor_delay_seconds_bucket)")
            .await,
    );
    assert!(p99 > 0.0 && p99 < 60.0, "p99 anchor delay {p99} s");
    let by_route = prometheus
        .query("sum by (route) (twinledger_http_requests_total{method=\"POST\"})")
        .await;
    assert_eq!(by_route[0]["metric"]["route"], "/v1/twins/{id}/states");
    assert_eq!(scalar(&by_route), 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_on_their_own_address_follow_the_read_rules() {
    let dir = data_dir();
    let app = embedded_app_with(
        dir.path(),
        "[auth]\nreads = true\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let metrics_url = app
        .output()
        .lines()
        .find_map(|l| l.strip_prefix("metrics on ").map(str::to_owned))
        .unwrap_or_else(|| panic!("serve did not say where metrics are:\n{}", app.output()));
    let reader = key(dir.path(), &["--scope", "read"]);
    let limited = key(dir.path(), &["--scope", "read", "--prefix", "plant-a-"]);

    let (status, _) = scrape(&metrics_url, None).await;
    assert_eq!(status, 401, "reads need a key, and so does /metrics");
    let (status, _) = scrape(&metrics_url, Some("tl_not_a_key")).await;
    assert_eq!(status, 401);
    let (status, _) = scrape(&metrics_url, Some(&limited)).await;
    assert_eq!(
        status, 403,
        "the page covers every twin, beyond the key's prefix"
    );
    let (status, page) = scrape(&metrics_url, Some(&reader)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(must(&page, "twinledger_log_size"), 0.0);
    // Served there only, not with the API.
    let (status, _) = scrape(&app.url("/metrics"), Some(&reader)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_reads_open_the_api_serves_metrics_without_a_key_and_refuses_a_bad_one() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let (status, _) = scrape(&app.url("/metrics"), None).await;
    assert_eq!(status, 200);
    let (status, _) = scrape(&app.url("/metrics"), Some("tl_not_a_key")).await;
    assert_eq!(status, 401);
}

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

#[test]
fn the_alerting_rules_are_valid_and_fire_on_the_conditions_they_name() {
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts-test.yml"],
    ] {
        let out = promtool()
            .args(args)
            .current_dir(docs())
            .output()
            .expect("promtool runs (apt-get install prometheus, or scripts/setup.sh)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_legacy_mode_the_backlog_is_counted_in_the_database_and_each_record_is_an_anchor() {
    let dir = data_dir();
    let app = embedded_app_in(dir.path(), "legacy");
    for i in 0..2 {
        let (status, body) = post_state(
            &app,
            &format!("{TWIN_PREFIX}-{i}"),
            "?wait=anchored",
            json!({"i": i}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, page) = scrape(&app.url("/metrics"), None).await;
    assert_eq!(status, 200, "{page}");
    promtool_check_metrics(&page);
    assert!(!page.contains(TWIN_PREFIX), "{page}");
    for (series, value) in [
        ("twinledger_log_size", 2.0),
        ("twinledger_pending_records", 0.0),
        ("twinledger_anchors_sent_total", 2.0),
        ("twinledger_anchors_mined_total", 2.0),
        ("twinledger_anchor_delay_seconds_count", 2.0),
    ] {
        assert_eq!(must(&page, series), value, "{series}");
    }
    // The seed's contract has no tree: no anchored sizes to show.
    assert_eq!(sample(&page, "twinledger_anchored_size"), None, "{page}");
}
