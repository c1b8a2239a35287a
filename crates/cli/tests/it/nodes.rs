//! Many nodes, one ledger: three `serve` processes on one PostgreSQL, one chain and one MQTT
//! broker, with writers over HTTP and MQTT spread over all of them; one node and then the
//! anchoring node are SIGKILLed under load.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_chain::NodeKind;
use twinledger_core::TwinId;
use twinledger_core::json::{Limits, parse};
use twinledger_mqtt::{Device, LocalBroker};
use twinledger_store::postgres::LocalCluster;
use twinledger_testkit::App;

use crate::support::*;

/// A lease runs 10 s and nodes try to take it every 3 s: the takeover comes within about
/// 15 s (and the slack of a loaded machine).
const TAKEOVER_LIMIT: Duration = Duration::from_secs(20);

/// The nodes, and everything they share (dropped after them, in this order).
struct Fleet {
    nodes: Vec<Option<App>>,
    dirs: Vec<tempfile::TempDir>,
    url: String,
    rpc: String,
    /// The MQTT broker the nodes share, if they ingest.
    broker_port: Option<u16>,
    _databases: Vec<LocalCluster>,
}

impl Fleet {
    /// Starts node `n` (again) on its own data directory.
    fn start(&mut self, n: usize) {
        let dir = self.dirs[n].path();
        let mqtt = match self.broker_port {
            Some(port) => format!(
                "[mqtt]\nbroker = \"127.0.0.1:{port}\"\nclient_id = \"ingest-{n}\"\nshare_group = \"ledger\"\n"
            ),
            None => String::new(),
        };
        std::fs::write(
            dir.join("twinledger.toml"),
            format!("[auth]\nwrites = false\n{mqtt}"),
        )
        .expect("config");
        self.nodes[n] = Some(App::spawn(
            &bin(),
            dir,
            &["--rpc", &self.rpc, "--database", &self.url],
        ));
    }

    /// Deploys the contract of `mode` on `rpc`, recorded in the database at `url`, and starts
    /// `size` nodes on that database.
    fn launch(
        size: usize,
        url: String,
        rpc: String,
        mode: &str,
        broker_port: Option<u16>,
        databases: Vec<LocalCluster>,
    ) -> Self {
        let dirs: Vec<_> = (0..size).map(|_| data_dir()).collect();
        let deploy = run(&[
            "deploy",
            "--mode",
            mode,
            "--rpc",
            &rpc,
            "--database",
            &url,
            "--data-dir",
            dirs[0].path().to_str().expect("path"),
        ]);
        assert!(
            deploy.status.success(),
            "{}",
            String::from_utf8_lossy(&deploy.stderr)
        );
        let mut fleet = Self {
            nodes: (0..size).map(|_| None).collect(),
            dirs,
            url,
            rpc,
            broker_port,
            _databases: databases,
        };
        for n in 0..size {
            fleet.start(n);
        }
        fleet
    }

    fn live(&self) -> Vec<&App> {
        self.nodes.iter().flatten().collect()
    }

    /// The node holding the anchoring lease, by `/health`.
    async fn anchoring(&self) -> Option<usize> {
        for (n, app) in self.nodes.iter().enumerate() {
            if let Some(app) = app
                && get(app, "/health").await.1["anchoring"]["this_node_anchors"] == true
            {
                return Some(n);
            }
        }
        None
    }
}

/// Acknowledged HTTP writes: (twin, version) → the write's sequence number.
type Acked = Arc<Mutex<BTreeMap<(String, u64), u64>>>;

/// Writes `twin` states 0, 1, 2, … until `stop`, each with its own idempotency key, trying the
/// nodes in turn (a killed node's request goes to the next) until one acknowledges it.
async fn http_writer(
    urls: Arc<Mutex<Vec<Option<String>>>>,
    twin: String,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let client = http();
    let mut seq = 0u64;
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{twin}-{seq}");
        loop {
            let candidates: Vec<String> = urls
                .lock()
                .expect("urls")
                .iter()
                .flatten()
                .cloned()
                .collect();
            let base = &candidates[turn % candidates.len()];
            turn += 1;
            let answer = client
                .post(format!("{base}/v1/twins/{twin}/states"))
                .header("idempotency-key", &key)
                .timeout(Duration::from_secs(10))
                .json(&json!({"seq": seq}))
                .send()
                .await;
            if let Ok(r) = answer
                && r.status().is_success()
                && let Ok(body) = r.json::<Value>().await
            {
                let version = body["version"].as_u64().expect("version");
                assert_eq!(
                    body["state"]["seq"], seq,
                    "{twin} v{version} answers another write"
                );
                acked
                    .lock()
                    .expect("acked")
                    .insert((twin.clone(), version), seq);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seq += 1;
        // Paced: the test is about what survives, and it shares CI's two cores with others.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes `twin` states 0, 1, 2, … until `stop`; returns how many the broker took.
async fn mqtt_writer(port: u16, twin: String, stop: Arc<AtomicBool>) -> u64 {
    let device = Device::connect("127.0.0.1", port, TwinId::new(twin).expect("id"), None)
        .await
        .expect("device connects");
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let state = parse(
            json!({"seq": seq}).to_string().as_bytes(),
            &Limits::default(),
        )
        .expect("json");
        device.report(&state).await.expect("the broker takes it");
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    device.disconnect().await;
    seq
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_on_one_database_lose_nothing_when_a_node_and_then_the_anchoring_node_die() {
    let pg = postgres().await;
    let url = pg.url("postgres");
    let chain = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = chain.url().to_owned();
    let broker_dir = data_dir();
    let broker = LocalBroker::start(broker_dir.path(), 0)
        .await
        .expect("mosquitto");
    let mut fleet = Fleet::launch(3, url, rpc, "log", Some(broker.port()), vec![pg]);
    for app in fleet.live() {
        poll_until(app, "/health", 30, |h| h["mqtt"]["connected"] == true).await;
    }
    let urls: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(
        fleet
            .nodes
            .iter()
            .map(|a| a.as_ref().map(|a| a.url("")))
            .collect(),
    ));
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        writers.push(tokio::spawn(http_writer(
            urls.clone(),
            format!("http-{w}"),
            acked.clone(),
            stop.clone(),
        )));
    }
    let mut devices = Vec::new();
    for d in 0..3 {
        devices.push((
            format!("mqtt-{d}"),
            tokio::spawn(mqtt_writer(
                broker.port(),
                format!("mqtt-{d}"),
                stop.clone(),
            )),
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A node that does not anchor dies.
    let anchoring = fleet.anchoring().await.expect("one node anchors");
    let victim = (anchoring + 1) % 3;
    fleet.nodes[victim].as_mut().expect("live").kill();
    fleet.nodes[victim] = None;
    urls.lock().expect("urls")[victim] = None;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Then the anchoring node dies; another takes over within the lease time.
    fleet.nodes[anchoring].as_mut().expect("live").kill();
    fleet.nodes[anchoring] = None;
    urls.lock().expect("urls")[anchoring] = None;
    let killed_at = Instant::now();
    let survivor = 3 - anchoring - victim;
    let before = get(fleet.nodes[survivor].as_ref().expect("live"), "/health")
        .await
        .1["anchoring"]["anchored_size"]
        .as_u64()
        .unwrap_or(0);
    let took_over = loop {
        let h = get(fleet.nodes[survivor].as_ref().expect("live"), "/health")
            .await
            .1;
        if h["anchoring"]["this_node_anchors"] == true
            && h["anchoring"]["anchored_size"].as_u64().unwrap_or(0) > before
        {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < TAKEOVER_LIMIT,
            "no node took over anchoring: {h}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let mut published = HashMap::new();
    for (twin, d) in devices {
        published.insert(twin, d.await.expect("device"));
    }
    // The killed nodes come back (their MQTT sessions hold messages the broker gave them).
    fleet.start(victim);
    fleet.start(anchoring);
    let app = fleet.nodes[survivor].as_ref().expect("live");
    let records = wait_for_mqtt(app, &published).await;

    let acked = acked.lock().expect("acked").clone();
    let size = check_ledger(&fleet, &acked, &published).await;
    assert_eq!(records, size);
    eprintln!(
        "anchoring taken over {:.1} s after the anchoring node died; {size} records ({} acknowledged over HTTP)",
        took_over.as_secs_f64(),
        acked.len()
    );
    drop(fleet);
    broker.stop().await;
}

/// The checks after a fault: every acknowledged HTTP write and every published MQTT message is
/// in the log once, log indexes and twin versions are dense, every node has anchored the whole
/// log and verifies every twin `Valid`, and `audit` is clean. Returns the log size.
async fn check_ledger(
    fleet: &Fleet,
    acked: &BTreeMap<(String, u64), u64>,
    published: &HashMap<String, u64>,
) -> u64 {
    let db = connect_pg(&fleet.url).await;
    let rows = db
        .query(
            "SELECT idx, twin_id, version, state FROM records ORDER BY idx",
            &[],
        )
        .await
        .expect("records");
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut seen: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let (idx, twin, version, state): (i64, String, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(idx as usize, i, "log indexes are dense");
        let last = versions.entry(twin.clone()).or_insert(0);
        assert_eq!(version as u64, *last + 1, "{twin}'s versions are dense");
        *last += 1;
        let state: Value = serde_json::from_str(&state).expect("state");
        if let Some(seq) = state["seq"].as_u64() {
            assert!(
                seen.insert((twin.clone(), seq), version as u64).is_none(),
                "{twin} seq {seq} recorded twice"
            );
        }
    }
    assert!(acked.len() > 50, "the writers got through: {}", acked.len());
    for ((twin, version), seq) in acked {
        assert_eq!(
            seen.get(&(twin.clone(), *seq)),
            Some(version),
            "acknowledged {twin} v{version} (seq {seq})"
        );
    }
    for (twin, n) in published {
        for seq in 0..*n {
            assert!(
                seen.contains_key(&(twin.clone(), seq)),
                "{twin} seq {seq} published, not recorded"
            );
        }
    }
    let size = rows.len() as u64;
    for app in fleet.live() {
        poll_until(app, "/health", 60, |h| {
            h["anchoring"]["anchored_size"].as_u64() == Some(size)
        })
        .await;
        for twin in versions.keys() {
            assert_eq!(
                get(app, &format!("/v1/twins/{twin}/verify")).await.1["integrity"],
                "Valid",
                "{twin}"
            );
        }
    }
    let audit = run(&[
        "audit",
        "--rpc",
        &fleet.rpc,
        "--database",
        &fleet.url,
        "--data-dir",
        fleet.dirs[0].path().to_str().expect("path"),
    ]);
    assert_eq!(
        audit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    size
}

/// Waits until every published MQTT message is recorded; returns the log size then.
async fn wait_for_mqtt(app: &App, published: &HashMap<String, u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = true;
        for (twin, n) in published {
            let v = get(app, &format!("/v1/twins/{twin}")).await.1["latest_version"]
                .as_u64()
                .unwrap_or(0);
            all &= v >= *n;
        }
        let size = get(app, "/health").await.1["database"]["records"]
            .as_u64()
            .unwrap_or(0);
        if all {
            return size;
        }
        assert!(Instant::now() < deadline, "MQTT messages missing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn connect_pg(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_to_the_synchronous_standby_loses_no_acknowledged_write() {
    let primary = postgres().await;
    let standby = tokio::task::block_in_place(|| primary.standby()).expect("the standby starts");
    let admin = connect_pg(&primary.url("postgres")).await;
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "SELECT pg_reload_conf()",
    ] {
        admin
            .batch_execute(sql)
            .await
            .expect("the standby made synchronous");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin
        .query(
            "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'",
            &[],
        )
        .await
        .expect("replication")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the standby never became synchronous"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nodes find whichever of the two takes writes.
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        twinledger_store::postgres::ROLE,
        primary.password(),
        primary.port(),
        standby.port()
    );
    let chain = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = chain.url().to_owned();
    let fleet = Fleet::launch(2, url, rpc, "log", None, vec![primary, standby]);
    let urls: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(
        fleet
            .nodes
            .iter()
            .map(|a| a.as_ref().map(|a| a.url("")))
            .collect(),
    ));
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            tokio::spawn(http_writer(
                urls.clone(),
                format!("http-{w}"),
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let anchored_before = anchored_size(&fleet).await;
    // The primary dies under load; the standby is promoted.
    fleet._databases[0].crash().expect("the primary stops");
    drop(admin);
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet._databases[1]
        .promote()
        .expect("the standby is promoted");
    let promoted = Instant::now();
    // Writes resume, and so does anchoring.
    let acked_at_promotion = acked.lock().expect("acked").len();
    loop {
        let now_acked = acked.lock().expect("acked").len();
        if now_acked > acked_at_promotion + 100 && anchored_size(&fleet).await > anchored_before {
            break;
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(60),
            "writes or anchoring did not resume on the new primary"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resumed = promoted.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("acked").clone();
    let size = check_ledger(&fleet, &acked, &HashMap::new()).await;
    eprintln!(
        "writes and anchoring resumed {:.1} s after the promotion; {size} records ({} acknowledged)",
        resumed.as_secs_f64(),
        acked.len()
    );
}

/// The largest anchored size any live node reports.
async fn anchored_size(fleet: &Fleet) -> u64 {
    let mut most = 0;
    for app in fleet.live() {
        let h = get(app, "/health").await.1;
        most = most.max(h["anchoring"]["anchored_size"].as_u64().unwrap_or(0));
    }
    most
}

#[tokio::test(flavor = "multi_thread")]
async fn in_legacy_mode_every_node_answers_the_seed_endpoint_with_the_transaction() {
    let pg = postgres().await;
    let url = pg.url("postgres");
    let chain = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = chain.url().to_owned();
    let fleet = Fleet::launch(2, url, rpc, "legacy", None, vec![pg]);
    let anchoring = fleet.anchoring().await.expect("one node anchors");
    // Each node answers with the transaction that anchored its record, the one that sent it
    // and the one that learnt of it from the database alike.
    for (n, app) in fleet.live().into_iter().enumerate() {
        let (status, body) = post_update(app, &format!("seed-{n}"), json!({"t": n})).await;
        assert_eq!(status, 200, "node {n} (node {anchoring} anchors): {body}");
        let tx = body["tx_hash"].as_str().expect("tx_hash");
        assert!(tx.starts_with("0x") && tx.len() == 66, "{body}");
        let (status, twin) = get(app, &format!("/get_twin_from_blockchain/seed-{n}")).await;
        assert_eq!(
            (status, &twin["integrity"]),
            (200, &json!("Valid")),
            "{twin}"
        );
    }
}
