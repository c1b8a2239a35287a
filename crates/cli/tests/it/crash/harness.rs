//! What the crash suites share: the acknowledgement ledger, the load that feeds it, and the
//! checks of the database against it.
//!
//! The ledger's rule: a record is *acknowledged* only if the service said it was stored. A reply
//! that was an error, or that never came because the service died, is *indeterminate*: the
//! record may or may not be there afterwards, and either is correct. Only an acknowledged record
//! that is missing, or stored with another state, is *lost*.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_core::TwinId;
use twinledger_mqtt::Device;
use twinledger_testkit::App;

use crate::support::{bin, run};

/// The crash suites each run services, nodes, brokers and writers on a two-core machine. Run
/// one at a time, so that where a fault lands depends on the suite's own random draws rather
/// than on another suite's load.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The reserved twin the service records its own chain events in.
pub const CHAIN_TWIN: &str = "twinledger:chain";

/// Starts `serve` on the embedded default in its own process group, with `envs` added.
pub fn spawn(dir: &Path, envs: &[(&str, &str)]) -> Result<App, String> {
    App::try_spawn_env(&bin(), dir, &[], envs)
}

/// A count from the environment (the full runs raise it), else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

/// Fails with a clear message, rather than passing vacuously, where a suite cannot inject its
/// faults.
pub fn require_root(suite: &str) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "the {suite} suite needs root (it mounts file systems, sets up loop devices or traces \
         the service); run it as root, as CI does"
    );
}

/// Fails with a clear message if `program` is not installed.
pub fn require_tool(program: &str, version_flag: &str, package: &str) {
    let ok = std::process::Command::new(program)
        .arg(version_flag)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{program} is missing: install the Debian package {package} (scripts/setup.sh does)"
    );
}

/// A xorshift64 generator: the suites print their seed, so that `TWINLEDGER_CRASH_SEED`
/// replays a failing run's choices.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `TWINLEDGER_CRASH_SEED`, else from the clock; prints the seed.
    pub fn from_env(suite: &str) -> Self {
        let seed = match std::env::var("TWINLEDGER_CRASH_SEED") {
            Ok(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("TWINLEDGER_CRASH_SEED must be a u64, not {v:?}")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x2545_f491_4f6c_dd1d),
        };
        // Zero is xorshift's one fixed point.
        let seed = seed.max(1);
        println!("{suite}: seed {seed} (TWINLEDGER_CRASH_SEED={seed} repeats this run)");
        Self(seed)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration from `lo_ms` to `hi_ms`.
    pub fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(lo_ms + self.below(hi_ms - lo_ms + 1))
    }
}

/// Where an acknowledged record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A 201 to `POST /v1/twins/{id}/states`.
    Http,
    /// A device's report, seen through the API before the crash.
    Mqtt,
}

#[derive(Default)]
struct AckState {
    /// `(twin, version)` → the state first acknowledged for it.
    acked: BTreeMap<(String, u64), Value>,
    /// A `(twin, version)` acknowledged again with another state: the service handed out a
    /// version twice, so one of the two acknowledged records was lost in between.
    conflicts: Vec<String>,
    http: u64,
    mqtt: u64,
    indeterminate: u64,
}

/// The acknowledgement ledger.
#[derive(Default)]
pub struct Acks(Mutex<AckState>);

impl Acks {
    /// Records that the service acknowledged `state` as `version` of `twin`.
    pub fn ack(&self, twin: &str, version: u64, state: Value, source: Source) {
        let mut s = self.0.lock().expect("acks");
        match source {
            Source::Http => s.http += 1,
            Source::Mqtt => s.mqtt += 1,
        }
        let key = (twin.to_owned(), version);
        match s.acked.get(&key) {
            Some(first) if *first != state => {
                let conflict =
                    format!("{twin} v{version}: acknowledged as {first} and later as {state}");
                s.conflicts.push(conflict);
            }
            Some(_) => {}
            None => {
                s.acked.insert(key, state);
            }
        }
    }

    /// Records a write whose outcome is unknown (an error, or no answer).
    pub fn indeterminate(&self) {
        self.0.lock().expect("acks").indeterminate += 1;
    }

    /// How many records are acknowledged.
    pub fn len(&self) -> usize {
        self.0.lock().expect("acks").acked.len()
    }

    /// (acknowledged over HTTP, acknowledged over MQTT, indeterminate).
    pub fn counts(&self) -> (u64, u64, u64) {
        let s = self.0.lock().expect("acks");
        (s.http, s.mqtt, s.indeterminate)
    }

    fn snapshot(&self) -> (BTreeMap<(String, u64), Value>, Vec<String>) {
        let s = self.0.lock().expect("acks");
        (s.acked.clone(), s.conflicts.clone())
    }
}

/// What the writers do in a cycle.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Concurrent HTTP writers; the first waits for each anchor (`?wait=anchored`).
    pub http_writers: usize,
    /// MQTT devices, each reporting on a twin of its own.
    pub devices: usize,
    /// Pause between a device's reports.
    pub report_every: Duration,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            http_writers: 4,
            devices: 2,
            report_every: Duration::from_millis(25),
        }
    }
}

/// Writers running against a service until it dies or [`Load::stop`] is called.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // A runtime of the cycle's own: a killed broker leaves the MQTT client of a device
    // reconnecting forever, and dropping this runtime is what ends it.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Load {
    /// Starts `spec`'s writers against `app`, recording in `acks`.
    pub async fn start(app: &App, cycle: usize, acks: &Arc<Acks>, spec: &LoadSpec) -> Load {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("load runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        for w in 0..spec.http_writers {
            tasks.push(runtime.spawn(http_writer(
                client.clone(),
                app.base_url.clone(),
                cycle,
                w,
                acks.clone(),
                stop.clone(),
            )));
        }
        if spec.devices > 0 {
            let port = broker_port(app);
            for d in 0..spec.devices {
                let twin = format!("device-{d}");
                let from = latest_version(&app.data_dir, &twin) + 1;
                tasks.push(runtime.spawn(device(
                    port,
                    twin.clone(),
                    cycle,
                    spec.report_every,
                    stop.clone(),
                )));
                tasks.push(runtime.spawn(watcher(
                    client.clone(),
                    app.base_url.clone(),
                    twin,
                    from,
                    acks.clone(),
                    stop.clone(),
                )));
            }
        }
        Load {
            stop,
            tasks,
            runtime: Some(runtime),
        }
    }

    /// Stops the writers (after a crash they have mostly stopped by themselves) and waits
    /// for the answers still on their way.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn http_writer(
    client: reqwest::Client,
    base: String,
    cycle: usize,
    w: usize,
    acks: Arc<Acks>,
    stop: Arc<AtomicBool>,
) {
    // One writer waits for each anchor: answers then arrive right after anchors, which is when
    // the embedded chain holds state its last snapshot does not.
    let query = if w == 0 { "?wait=anchored" } else { "" };
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        // Shared twins make concurrent batches race for the same twin's next version.
        let twin = if i.is_multiple_of(3) {
            format!("shared-{}", i % 2)
        } else {
            format!("http-{w}")
        };
        let state = json!({"cycle": cycle, "writer": w, "i": i});
        i += 1;
        let sent = client
            .post(format!("{base}/v1/twins/{twin}/states{query}"))
            .json(&state)
            .send()
            .await;
        let Ok(reply) = sent else {
            // No answer: the service is gone.
            acks.indeterminate();
            return;
        };
        if reply.status().as_u16() != 201 {
            acks.indeterminate();
            continue;
        }
        match reply
            .json::<Value>()
            .await
            .ok()
            .and_then(|b| b["version"].as_u64())
        {
            Some(version) => acks.ack(&twin, version, state, Source::Http),
            // The body was cut off by the crash: the client never learned it was stored.
            None => acks.indeterminate(),
        }
    }
}

async fn device(port: u16, twin: String, cycle: usize, every: Duration, stop: Arc<AtomicBool>) {
    let Ok(device) = Device::connect(
        "127.0.0.1",
        port,
        TwinId::new(twin.clone()).expect("twin id"),
        None,
    )
    .await
    else {
        return;
    };
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let state = json!({"cycle": cycle, "device": twin, "n": n});
        n += 1;
        let state = twinledger_core::json::parse(
            state.to_string().as_bytes(),
            &twinledger_core::json::Limits::default(),
        )
        .expect("json");
        if device.report(&state).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// Follows a device's twin through the API. The broker's PUBACK only says that Mosquitto has
/// the message; the ledger has acknowledged a report only once the record can be read back
/// from the service, so only what this sees before the crash counts as acknowledged.
async fn watcher(
    client: reqwest::Client,
    base: String,
    twin: String,
    mut version: u64,
    acks: Arc<Acks>,
    stop: Arc<AtomicBool>,
) {
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let got = client
            .get(format!("{base}/v1/twins/{twin}/versions/{version}"))
            .send()
            .await;
        let Ok(reply) = got else { return };
        if reply.status().as_u16() == 200 {
            let Ok(record) = reply.json::<Value>().await else {
                return;
            };
            acks.ack(&twin, version, record["state"].clone(), Source::Mqtt);
            version += 1;
            continue;
        }
        if stopping {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The embedded broker's port, as `serve` wrote it before it said it was listening.
pub fn broker_port(app: &App) -> u16 {
    let text = std::fs::read_to_string(app.data_dir.join("mqtt.json")).expect("mqtt.json");
    let v: Value = serde_json::from_str(&text).expect("mqtt.json is JSON");
    v["port"].as_u64().expect("port") as u16
}

/// The latest stored version of `twin` (0: none).
fn latest_version(dir: &Path, twin: &str) -> u64 {
    let db = open_db(dir).expect("database");
    db.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM records WHERE twin_id = ?1",
        [twin],
        |r| r.get::<_, i64>(0),
    )
    .expect("latest version") as u64
}

fn open_db(dir: &Path) -> Result<rusqlite::Connection, String> {
    let path = dir.join("twinledger.db");
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    // No CREATE flag: a database lost with its directory entry must show as lost, not be
    // replaced by an empty one.
    let db = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    db.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(db)
}

/// What a check of the database against the acknowledgement ledger found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Records acknowledged so far.
    pub acked: usize,
    /// Records stored.
    pub records: u64,
    /// Acknowledged records that are missing or stored with another state.
    pub lost: Vec<String>,
    /// Anything else wrong: gaps in versions or log indexes, anchors that do not chain, an
    /// unreadable database.
    pub problems: Vec<String>,
}

impl Findings {
    /// Panics with everything found, and the tail of the service's output, unless clean.
    pub fn assert_clean(&self, when: &str, app: Option<&App>) {
        if self.lost.is_empty() && self.problems.is_empty() {
            return;
        }
        let shown = |v: &[String]| {
            v.iter()
                .take(20)
                .map(|s| format!("  {s}\n"))
                .collect::<String>()
        };
        panic!(
            "{when}: {} acknowledged records lost of {} ({} stored), {} other problems\n\
             lost (first 20):\n{}problems (first 20):\n{}service output (tail):\n{}",
            self.lost.len(),
            self.acked,
            self.records,
            self.problems.len(),
            shown(&self.lost),
            shown(&self.problems),
            app.map(|a| tail(&a.output(), 60)).unwrap_or_default()
        );
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Checks the database in `dir` against `acks`: every acknowledged record present with its
/// state, versions of each twin dense from 1, log indexes dense from 0, and (with a running
/// service) the anchored heads chaining without repeats. Returns what it found, so that the
/// negative control can require a loss where the real suites require none.
pub async fn check(dir: &Path, app: Option<&App>, acks: &Acks) -> Findings {
    let (acked, conflicts) = acks.snapshot();
    let mut f = Findings {
        acked: acked.len(),
        lost: conflicts,
        ..Findings::default()
    };
    let rows = match read_records(dir) {
        Ok(rows) => rows,
        Err(e) => {
            f.problems.push(format!("database unreadable: {e}"));
            f.lost.extend(
                acked
                    .keys()
                    .map(|(t, v)| format!("{t} v{v}: the database is gone")),
            );
            return f;
        }
    };
    f.records = rows.len() as u64;
    let mut stored: BTreeMap<(String, u64), &str> = BTreeMap::new();
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (pos, (idx, twin, version, state)) in rows.iter().enumerate() {
        if *idx != pos as u64 {
            f.problems.push(format!(
                "log index {idx} where {pos} was due: a gap or a repeat"
            ));
        }
        stored.insert((twin.clone(), *version), state.as_str());
        versions.entry(twin.as_str()).or_default().push(*version);
    }
    for (twin, vs) in &versions {
        let mut sorted = vs.clone();
        sorted.sort_unstable();
        if sorted.iter().enumerate().any(|(i, v)| *v != i as u64 + 1) {
            f.problems.push(format!(
                "versions of {twin} are not dense from 1: {}",
                summarise(&sorted)
            ));
        }
    }
    for ((twin, version), state) in &acked {
        match stored.get(&(twin.clone(), *version)) {
            None => f.lost.push(format!("{twin} v{version}: missing ({state})")),
            Some(text) => {
                let same = serde_json::from_str::<Value>(text).is_ok_and(|s| s == *state);
                if !same {
                    f.lost.push(format!(
                        "{twin} v{version}: acknowledged as {state}, stored as {text}"
                    ));
                }
            }
        }
    }
    if let Some(app) = app {
        f.problems.extend(anchor_chain_problems(app).await);
    }
    f
}

/// (log index, twin, version, state) of every record, in log order.
type Row = (u64, String, u64, String);

fn read_records(dir: &Path) -> Result<Vec<Row>, String> {
    let db = open_db(dir)?;
    let mut stmt = db
        .prepare("SELECT idx, twin_id, version, state FROM records ORDER BY idx")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get(3)?,
            ))
        })
        .map_err(|e| e.to_string())?
        .collect::<rusqlite::Result<Vec<Row>>>()
        .map_err(|e| e.to_string())?;
    Ok(rows)
}

/// `1..=5, 7, 9..=12` for a list of versions.
fn summarise(vs: &[u64]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < vs.len() {
        let start = vs[i];
        while i + 1 < vs.len() && vs[i + 1] == vs[i] + 1 {
            i += 1;
        }
        out.push(if vs[i] == start {
            start.to_string()
        } else {
            format!("{start}..={}", vs[i])
        });
        i += 1;
    }
    out.join(", ")
}

/// A GET that must answer JSON; status and body.
pub async fn get_json(app: &App, path: &str) -> (u16, Value) {
    let r = crate::support::http()
        .get(app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: no answer: {e}\n{}", tail(&app.output(), 40)));
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Every anchored head the service lists, in order of size.
pub async fn anchors(app: &App) -> Vec<Value> {
    let mut all = Vec::new();
    let mut from = 0u64;
    loop {
        let (status, body) = get_json(app, &format!("/v1/tree-heads?from={from}&limit=1000")).await;
        assert_eq!(status, 200, "tree heads: {body}");
        let page = body["anchors"].as_array().cloned().unwrap_or_default();
        let full = page.len() == 1000;
        if let Some(last) = page.last() {
            from = last["size"].as_u64().expect("size") + 1;
        }
        all.extend(page);
        if !full {
            return all;
        }
    }
}

/// Each anchored head extends the one before it (its `prev_size` is that head's size) and no
/// size comes twice: a head anchored twice, or a lost one skipped, would break this.
async fn anchor_chain_problems(app: &App) -> Vec<String> {
    let mut problems = Vec::new();
    let mut prev = 0u64;
    for a in anchors(app).await {
        let (size, prev_size) = (a["size"].as_u64(), a["prev_size"].as_u64());
        if prev_size != Some(prev) || size.is_none_or(|s| s <= prev) {
            problems.push(format!(
                "anchor {a} does not extend the head of size {prev} before it"
            ));
        }
        prev = size.unwrap_or(prev);
    }
    problems
}

/// What the final checks saw.
#[derive(Debug)]
pub struct Final {
    /// Records stored (and anchored).
    pub records: u64,
    /// Twins, all `Valid`.
    pub twins: usize,
}

/// After the last restart: everything gets anchored, `audit` is clean, every twin verifies
/// `Valid`.
pub async fn final_checks(app: &App, dir: &Path) -> Final {
    let deadline = Instant::now() + Duration::from_secs(180);
    let records = loop {
        let (_, h) = get_json(app, "/health").await;
        let records = h["database"]["records"].as_u64();
        if records.is_some() && h["anchoring"]["anchored_size"].as_u64() == records {
            break records.unwrap_or(0);
        }
        assert!(
            Instant::now() < deadline,
            "not everything was anchored within 180 s: {h}\n{}",
            tail(&app.output(), 60)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // With a `serve` running, audit finds its embedded node through node.json.
    let out = run(&["audit", "--data-dir", dir.to_str().expect("utf-8 path")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "audit is not clean:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let twins: Vec<String> = {
        let db = open_db(dir).expect("database");
        let mut stmt = db
            .prepare("SELECT twin_id FROM twins ORDER BY twin_id")
            .expect("twins");
        stmt.query_map([], |r| r.get(0))
            .expect("twins")
            .collect::<rusqlite::Result<_>>()
            .expect("twins")
    };
    for twin in &twins {
        let (status, verdict) = get_json(app, &format!("/v1/twins/{twin}/verify")).await;
        assert_eq!(
            (status, verdict["integrity"].as_str()),
            (200, Some("Valid")),
            "{twin} does not verify Valid: {verdict}"
        );
    }
    Final {
        records,
        twins: twins.len(),
    }
}

/// How many `chain_state_lost` events the chain twin holds, and how many heads they name:
/// how often a crash cost the embedded chain anchors.
pub fn chain_losses(dir: &Path) -> (u64, u64) {
    let db = open_db(dir).expect("database");
    let mut stmt = db
        .prepare("SELECT state FROM records WHERE twin_id = ?1")
        .expect("query");
    let states: Vec<String> = stmt
        .query_map([CHAIN_TWIN], |r| r.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("states");
    let mut events = 0;
    let mut heads = 0;
    for state in states {
        let state: Value = serde_json::from_str(&state).unwrap_or_default();
        if state["type"] == "chain_state_lost" {
            events += 1;
            heads += state["lost_heads"]
                .as_u64()
                .or_else(|| state["lost"].as_array().map(|l| l.len() as u64))
                .unwrap_or(0);
        }
    }
    (events, heads)
}

/// Polls `/health` until the anchored size grows past `from` (at most `within`); whether it
/// did.
pub async fn wait_for_anchor_past(app: &App, from: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if anchored_size(app).await > from {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// The anchored size `/health` reports (0 if none or no answer).
pub async fn anchored_size(app: &App) -> u64 {
    let Ok(r) = crate::support::http().get(app.url("/health")).send().await else {
        return 0;
    };
    let h: Value = r.json().await.unwrap_or(Value::Null);
    h["anchoring"]["anchored_size"].as_u64().unwrap_or(0)
}
