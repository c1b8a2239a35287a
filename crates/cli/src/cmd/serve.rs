//! `twinledger serve`: the HTTP service.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use serde_json::json;
use twinledger_ledger::{AnchorConfig, Ledger, LedgerConfig, LedgerMetrics};
use twinledger_mqtt::{Ingestion, LocalBroker, MqttConfig};
use twinledger_server::{AuthPolicy, HttpConfig};

use crate::chain::{self, Chain};
use crate::cli::{ChainArgs, SignerArgs, merge};
use crate::settings::Settings;

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8000).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Chain and contract.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Who signs anchors.
    #[command(flatten)]
    pub signer: SignerArgs,
    /// Serve `POST /bench/noop` (for `twinledger bench`'s HTTP ceiling).
    #[arg(long, hide = true)]
    pub bench_noop: bool,
}

impl ServeArgs {
    /// The options given, as a settings layer.
    pub fn layer(&self) -> serde_json::Value {
        let mut layer = merge(self.chain.layer(), self.signer.layer());
        if let Some(l) = &self.listen {
            layer = merge(layer, json!({ "listen": l }));
        }
        layer
    }

    /// Runs the service until SIGINT or SIGTERM.
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        // Settings the service needs later are checked before anything starts.
        let broker_addr = settings.mqtt.broker_addr()?;
        let store = super::open_store(&settings).await?;
        let _lock = lock_data_dir(&settings.data_dir)?;
        let known = known_chain(store.as_ref()).await?;
        let mut chain = Chain::connect_or_assume(&settings, true, known).await?;
        // One ledger, one chain: its anchors are on the chain it was started on.
        if let Some((id, _)) = known
            && id != chain.client.chain_id()
        {
            let here = chain.client.chain_id();
            chain.stop().await;
            anyhow::bail!(
                "{} holds a ledger anchored on chain {id}, not on chain {here}: point --rpc at \
                 chain {id}, or use another database",
                settings.database_name()
            );
        }
        // What a later start needs if the node is down then.
        store
            .set_meta("chain_id", &chain.client.chain_id().to_string())
            .await?;
        store
            .set_meta("chain_from", &chain.client.from().to_string())
            .await?;
        // Only the embedded chain gets a contract deployed automatically; on any other chain that
        // costs real gas and is an explicit `twinledger deploy`.
        let embedded = chain.node.is_some();
        let contract =
            match chain::contract(&settings, &chain.client, store.as_ref(), embedded).await {
                Ok(c) => c,
                Err(e) => {
                    chain.stop().await;
                    return Err(e);
                }
            };
        chain.snapshot_now().await;
        let listener = match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(l) => l,
            Err(e) => {
                chain.stop().await;
                return Err(e).with_context(|| format!("cannot listen on {}", settings.listen));
            }
        };
        let metrics_listener = match settings.metrics.listen {
            None => None,
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    chain.stop().await;
                    return Err(e)
                        .with_context(|| format!("cannot listen on {addr} (metrics.listen)"));
                }
            },
        };
        // One registry per service, filled by each part with its own instruments.
        let mut registry = Registry::with_prefix("twinledger");
        registry.register(
            "build",
            "The running program's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let ledger_metrics = LedgerMetrics::register(&mut registry);
        let cursor_key = cursor_key(store.as_ref()).await?;
        let a = &settings.anchor;
        let (address, mode) = (contract.address(), contract.mode());
        let ledger = match Ledger::start(
            store,
            contract,
            LedgerConfig {
                batch_max: settings.ledger.batch_max,
                anchor: AnchorConfig {
                    batch_max: a.batch_max,
                    min_interval: Duration::from_millis(a.min_interval_ms),
                    busy_interval: Duration::from_millis(a.busy_interval_ms),
                    in_flight: a.in_flight,
                    confirmations: a.confirmations,
                    receipt_timeout: Duration::from_secs(settings.chain.receipt_timeout_secs),
                    replace_after: Duration::from_millis(a.replace_after_ms),
                    max_fee_per_gas: a.max_fee_gwei.map(|g| u128::from(g) * 1_000_000_000),
                    crash_before_noting_mined: a.crash_before_noting_mined,
                },
                idempotency_retention: match settings.idempotency.retention_secs {
                    0 => None,
                    secs => Some(Duration::from_secs(secs)),
                },
                embedded_chain: embedded,
                metrics: ledger_metrics,
                node: twinledger_ledger::node_name(),
            },
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                chain.stop().await;
                return Err(e.into());
            }
        };
        let local = listener.local_addr()?;
        tracing::info!(
            target: "twinledger",
            listen = %local,
            chain_id = chain.client.chain_id(),
            rpc = %chain.client.rpc_url_redacted(),
            contract = %address,
            mode,
            data_dir = %settings.data_dir.display(),
            "twinledger serving"
        );
        let (closing_tx, closing) = tokio::sync::watch::channel(false);
        twinledger_mqtt::register_metrics(&mut registry, ledger.ingestion().clone());
        let (broker, ingestion) =
            start_mqtt(&settings, broker_addr, embedded, &ledger, closing.clone()).await;
        let http_config = HttpConfig {
            body_limit: settings.http.body_limit,
            anchor_wait: Duration::from_secs(settings.http.anchor_wait_secs),
            auth: AuthPolicy {
                // The embedded dev mode on loopback is for one developer's machine.
                writes: settings
                    .auth
                    .writes
                    .unwrap_or(!(embedded && local.ip().is_loopback())),
                reads: settings.auth.reads,
            },
            cursor_key,
            noop_route: self.bench_noop,
            metrics: twinledger_server::Metrics::new(registry),
            metrics_route: metrics_listener.is_none(),
            ..HttpConfig::default()
        };
        let metrics_server = match metrics_listener {
            None => None,
            Some(listener) => {
                let addr = listener.local_addr()?;
                let router = twinledger_server::metrics_router(
                    ledger.clone(),
                    http_config.clone(),
                    closing.clone(),
                );
                let mut closing = closing.clone();
                let stop = async move {
                    let _ = closing.wait_for(|c| *c).await;
                };
                println!("metrics on http://{addr}/metrics");
                Some(tokio::spawn(twinledger_server::serve(
                    listener, router, stop,
                )))
            }
        };
        // Tests and scripts read this line to learn the port when listening on port 0; by
        // then the broker (if any) and the metrics listener run too.
        println!("listening on http://{local}");
        let router = twinledger_server::router(ledger.clone(), http_config, closing);
        // Legacy verification reads each record's own transaction: its node keeps them all.
        let history = (mode == "log").then_some(settings.chain.history_blocks);
        chain.supervise(
            Duration::from_millis(settings.chain.snapshot_interval_ms),
            history,
            {
                let ledger = ledger.clone();
                move |event| match event {
                    chain::NodeEvent::Stopping => ledger.chain_stopping(),
                    chain::NodeEvent::Restarted => ledger.chain_restarted(),
                }
            },
        );
        let stop = async move {
            shutdown_signal().await;
            let _ = closing_tx.send(true);
        };
        let served = twinledger_server::serve(listener, router, stop).await;
        if let Some(m) = metrics_server
            && let Ok(Err(e)) = m.await
        {
            tracing::warn!(target: "twinledger", error = %e, "metrics listener failed");
        }
        if let Some(i) = ingestion {
            i.join().await;
        }
        if let Some(b) = broker {
            b.stop().await;
            let _ = std::fs::remove_file(settings.data_dir.join("mqtt.json"));
        }
        ledger.shutdown();
        chain.stop().await;
        served.context("HTTP server failed")?;
        tracing::info!(target: "twinledger", "stopped");
        Ok(ExitCode::SUCCESS)
    }
}

/// Starts the MQTT ingestion: from `mqtt.broker` if set, else (embedded dev mode) from a local
/// Mosquitto started here. A broker that cannot start leaves HTTP working and says why.
async fn start_mqtt(
    settings: &Settings,
    broker_addr: Option<(String, u16)>,
    embedded: bool,
    ledger: &Ledger,
    closing: tokio::sync::watch::Receiver<bool>,
) -> (Option<LocalBroker>, Option<Ingestion>) {
    let m = &settings.mqtt;
    let (host, port, broker) = match broker_addr {
        Some((host, port)) => (host, port, None),
        None if embedded && m.embedded => {
            match LocalBroker::start(&settings.data_dir.join("mosquitto"), m.embedded_port).await {
                Ok(b) => ("127.0.0.1".to_owned(), b.port(), Some(b)),
                Err(e) => {
                    tracing::warn!(target: "twinledger::mqtt", error = %e, "MQTT ingestion is off");
                    return (None, None);
                }
            }
        }
        None => return (None, None),
    };
    // Scripts and `twinledger simulate` read where the broker is.
    println!("mqtt broker on mqtt://{host}:{port}");
    let _ = std::fs::write(
        settings.data_dir.join("mqtt.json"),
        json!({ "host": host, "port": port }).to_string(),
    );
    let diverged = settings
        .congruence
        .bands()
        .map(|b| b.diverged().name.clone())
        .unwrap_or_else(|_| "diverged".into());
    let ingestion = Ingestion::spawn(
        ledger.clone(),
        MqttConfig {
            host,
            port,
            client_id: m.client_id.clone(),
            max_payload: m.max_payload,
            auto_create: m.auto_create,
            corrections: m.corrections,
            diverged_band: diverged,
            share_group: m.share_group.clone(),
            ..MqttConfig::default()
        },
        closing,
    );
    (broker, Some(ingestion))
}

/// Holds an exclusive lock on the data directory for the life of `serve`: two services on one
/// database and one signing key would interleave their anchors and nonces.
fn lock_data_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0)?;
            lock.rewind()?;
            write!(lock, "{}", std::process::id())?;
            Ok(lock)
        }
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            anyhow::bail!(
                "another twinledger serve (pid {}) already uses the data directory {}",
                pid.trim(),
                dir.display()
            )
        }
    }
}

/// The chain id and sending account recorded by an earlier run, if any.
async fn known_chain(
    store: &dyn twinledger_store::Store,
) -> Result<Option<(u64, twinledger_chain::Address)>> {
    let id = store.meta("chain_id").await?.and_then(|v| v.parse().ok());
    let from = store.meta("chain_from").await?.and_then(|v| v.parse().ok());
    Ok(id.zip(from))
}

/// The ledger's key for pagination cursors, made on first use; every node sharing the
/// database uses the one stored first, so a cursor from one node pages on another.
async fn cursor_key(store: &dyn twinledger_store::Store) -> Result<[u8; 32]> {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let stored = store
        .set_meta_once("cursor_key", &twinledger_core::Hash(key).to_hex())
        .await?;
    Ok(twinledger_core::Hash::from_hex(&stored)
        .context("corrupt cursor key in the database")?
        .0)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!(target: "twinledger", "shutting down");
}
