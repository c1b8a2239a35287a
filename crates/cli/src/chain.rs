//! Connecting to the configured chain: an existing node, or the embedded Anvil; and finding or
//! deploying the contract.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use twinledger_chain::{
    Address, ChainClient, LegacyContract, LocalNode, LocalNodeConfig, LogContract, NodeKind,
    SignerConfig,
};
use twinledger_ledger::Anchoring;
use twinledger_store::Store;

use crate::settings::{Mode, Settings};

/// A chain connection, and the embedded node behind it if we started one.
pub struct Chain {
    /// The client.
    pub client: ChainClient,
    /// The embedded node, until [`Chain::supervise`] hands it to its watcher.
    pub node: Option<LocalNode>,
    /// The watcher of the embedded node, once started.
    watcher: Option<NodeWatcher>,
    /// Where the embedded node's URL and pid are written for other commands.
    node_file: Option<PathBuf>,
}

/// What the watcher of the embedded node tells the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEvent {
    /// The node is about to stop on purpose (its history is compacted).
    Stopping,
    /// The node was started again, from its last snapshot.
    Restarted,
}

/// The task that snapshots the embedded node and restarts it when it dies.
struct NodeWatcher {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// What `serve` writes about its embedded node, for `verify` and for cleanup after a crash.
#[derive(Debug, Serialize, Deserialize)]
struct NodeFile {
    url: String,
    pid: u32,
}

impl NodeFile {
    fn write(path: &Path, node: &LocalNode) -> Result<()> {
        let file = NodeFile {
            url: node.url().to_owned(),
            pid: node.pid().unwrap_or(0),
        };
        std::fs::write(path, serde_json::to_vec(&file)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Where the embedded Anvil keeps its state (gzipped, as Anvil's dumps come).
pub fn anvil_state_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join("anvil-state.json.gz")
}

/// A data directory of an earlier version keeps the state unzipped in `anvil-state.json`: it
/// is gzipped into the file used now, once, so that its anchors are not lost.
fn adopt_unzipped_state(settings: &Settings) -> Result<()> {
    let (old, new) = (
        settings.data_dir.join("anvil-state.json"),
        anvil_state_path(settings),
    );
    if old.is_file() && !new.exists() {
        tracing::info!(target: "twinledger::node", from = %old.display(), to = %new.display(), "gzipping the embedded Anvil's state file");
        twinledger_chain::gzip_state_file(&old, &new)?;
    }
    Ok(())
}

/// The signer the settings ask for.
pub fn signer(settings: &Settings) -> Result<SignerConfig> {
    let c = &settings.chain;
    Ok(match (&c.private_key_file, &c.keystore) {
        (Some(_), Some(_)) => bail!("give either a private key file or a keystore, not both"),
        (Some(file), None) => SignerConfig::from_private_key_file(file)?,
        (None, Some(keystore)) => {
            let password = c
                .password_file
                .as_ref()
                .context("a keystore needs a password file (--password-file)")?;
            SignerConfig::from_keystore(keystore, password)?
        }
        (None, None) => {
            let from = c
                .from
                .as_deref()
                .map(|a| {
                    a.parse::<Address>()
                        .with_context(|| format!("invalid --from address {a:?}"))
                })
                .transpose()?;
            SignerConfig::Unlocked(from)
        }
    })
}

/// The Anvil executable: configured, else `node_modules/.bin/anvil` in the working directory or
/// beside the binary's checkout, else `anvil` on `PATH`.
pub fn find_anvil(settings: &Settings) -> Result<PathBuf> {
    if let Some(p) = &settings.chain.anvil {
        return Ok(p.clone());
    }
    let mut candidates = vec![PathBuf::from("node_modules/.bin/anvil")];
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/twinledger -> the checkout's node_modules
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join("node_modules/.bin/anvil"));
        }
    }
    if let Some(p) = candidates.into_iter().find(|p| p.is_file()) {
        return Ok(p);
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join("anvil"))
            .find(|p| p.is_file())
    {
        return Ok(p);
    }
    bail!(
        "cannot find anvil: run `npm ci` in the twinledger checkout, set chain.anvil \
         (TWINLEDGER_CHAIN__ANVIL), or pass --rpc to use another node"
    )
}

impl Chain {
    /// Connects to `chain.rpc`, or starts the embedded Anvil with its state in the data
    /// directory when `embedded` is allowed and no RPC is configured.
    pub async fn connect(settings: &Settings, embedded: bool) -> Result<Self> {
        Self::connect_or_assume(settings, embedded, None).await
    }

    /// Like [`Chain::connect`]; an existing node that is down is assumed to be on the chain
    /// `known` names (chain id and sending account of an earlier run), so that `serve` starts
    /// and accepts writes while it is down.
    pub async fn connect_or_assume(
        settings: &Settings,
        embedded: bool,
        known: Option<(u64, Address)>,
    ) -> Result<Self> {
        let signer = signer(settings)?;
        if !settings.chain.rpc.is_empty() {
            let client = ChainClient::connect_urls(&settings.chain.rpc, signer, known)
                .await
                .context("cannot connect to the chain")?;
            return Ok(Self {
                client,
                node: None,
                watcher: None,
                node_file: None,
            });
        }
        let node_file = settings.data_dir.join("node.json");
        if !embedded {
            // Another command (verify) reads the node a running `serve` started.
            let text = std::fs::read_to_string(&node_file).with_context(|| {
                "no chain configured and no embedded node running: start `twinledger serve` \
                 or pass --rpc"
            })?;
            let file: NodeFile = serde_json::from_str(&text).context("unreadable node.json")?;
            // The node is away for about a second while `serve` compacts it or starts it again.
            let mut tries = 0;
            let client = loop {
                match ChainClient::connect(&file.url, signer.clone()).await {
                    Ok(c) => break c,
                    Err(e) if e.is_retryable() && tries < 20 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => {
                        return Err(e).context(
                            "cannot reach the embedded node of the running `twinledger serve`",
                        );
                    }
                }
            };
            return Ok(Self {
                client,
                node: None,
                watcher: None,
                node_file: None,
            });
        }
        adopt_unzipped_state(settings)?;
        stop_stale_node(&node_file, &anvil_state_path(settings)).await;
        let config = LocalNodeConfig {
            kind: NodeKind::Anvil,
            program: find_anvil(settings)?,
            port: 0,
            state_path: Some(anvil_state_path(settings)),
            reorg_depth: None,
            extra_args: Vec::new(),
        };
        let node = start_embedded(&config).await?;
        tracing::info!(target: "twinledger::node", url = node.url(), "embedded Anvil started");
        NodeFile::write(&node_file, &node)?;
        let client = match ChainClient::connect(node.url(), signer).await {
            Ok(c) => c,
            Err(e) => {
                let _ = node.stop(Duration::from_secs(10)).await;
                return Err(e).context("cannot connect to the embedded Anvil");
            }
        };
        Ok(Self {
            client,
            node: Some(node),
            watcher: None,
            node_file: Some(node_file),
        })
    }

    /// Snapshots the embedded node now, if there is one: at start, so that a contract just
    /// deployed is in the state file before anything is acknowledged on top of it.
    pub async fn snapshot_now(&self) {
        if let Some(node) = &self.node
            && let Some(path) = node.state_path()
            && let Err(e) = node.snapshot(path).await
        {
            tracing::warn!(target: "twinledger::node", error = %e, "snapshot of the embedded Anvil failed");
        }
    }

    /// Hands the embedded node (if any) to a watcher task that, while the service runs:
    /// - snapshots its state atomically whenever its chain has grown, at most once per
    ///   `interval` (a hard kill then loses at most about that much of the chain, which the
    ///   ledger anchors again);
    /// - starts it again on the same port from its last snapshot when it dies, and tells
    ///   `events` so that the ledger re-anchors what the node lost.
    /// - with `history_blocks` (log mode), keeps its history to between that many and twice
    ///   that many blocks ([`LocalNode::compact`]), so that a snapshot's cost stays bounded.
    pub fn supervise(
        &mut self,
        interval: Duration,
        history_blocks: Option<u64>,
        events: impl Fn(NodeEvent) + Send + 'static,
    ) {
        let Some(mut node) = self.node.take() else {
            return;
        };
        let node_file = self.node_file.clone();
        let (stop, mut stopping) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let path = node.state_path().map(Path::to_path_buf);
            let mut last_block = None;
            let mut last_snapshot: Option<std::time::Instant> = None;
            let mut last_cost = Duration::ZERO;
            // The oldest block the node may still hold: unknown (0) until the first compaction.
            let mut oldest = 0u64;
            let mut dirty = false;
            let mut retry = Duration::from_millis(200);
            loop {
                tokio::select! {
                    _ = &mut stopping => break,
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                }
                if let Some(status) = node.exited() {
                    tracing::warn!(target: "twinledger::node", %status, "the embedded Anvil died; starting it again from its last snapshot");
                    match node.restart().await {
                        Ok(()) => {
                            retry = Duration::from_millis(200);
                            if let Some(f) = &node_file
                                && let Err(e) = NodeFile::write(f, &node)
                            {
                                tracing::warn!(target: "twinledger::node", error = %e, "cannot note the restarted node");
                            }
                            last_block = None;
                            events(NodeEvent::Restarted);
                        }
                        Err(e) => {
                            tracing::error!(target: "twinledger::node", error = %e, "cannot start the embedded Anvil again");
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(Duration::from_secs(5));
                        }
                    }
                    continue;
                }
                if let Ok(block) = twinledger_chain::block_number(node.url()).await
                    && last_block != Some(block)
                {
                    dirty |= last_block.is_some() || last_snapshot.is_none();
                    last_block = Some(block);
                }
                // A snapshot costs time in proportion to the chain's history; spacing them by a
                // multiple of the last one's cost keeps the node from doing little else.
                let gap = interval.max(last_cost * 4);
                let due = last_snapshot.is_none_or(|t| t.elapsed() >= gap);
                if let (true, true, false, Some(path)) = (dirty, due, interval.is_zero(), &path) {
                    let started = std::time::Instant::now();
                    match node.snapshot(path).await {
                        Ok(()) => {
                            dirty = false;
                            last_cost = started.elapsed();
                            last_snapshot = Some(std::time::Instant::now());
                            tracing::debug!(target: "twinledger::node", block = ?last_block, ms = started.elapsed().as_millis() as u64, "snapshot of the embedded Anvil");
                        }
                        Err(e) => {
                            tracing::warn!(target: "twinledger::node", error = %e, "snapshot of the embedded Anvil failed")
                        }
                    }
                }
                if let (Some(keep), Some(block)) = (history_blocks.filter(|k| *k > 0), last_block)
                    && !dirty
                    && block.saturating_sub(oldest) >= keep.saturating_mul(2)
                {
                    let started = std::time::Instant::now();
                    events(NodeEvent::Stopping);
                    let compacted = node.compact(keep).await;
                    // Anchors sent while it stopped mining were lost with its pool; after a
                    // failure the anchorer looks again too.
                    events(NodeEvent::Restarted);
                    match compacted {
                        Ok(kept) => {
                            oldest = kept.oldest_block;
                            tracing::info!(target: "twinledger::node", block, kept_blocks = kept.blocks, kept_transactions = kept.transactions, ms = started.elapsed().as_millis() as u64, "compacted the embedded Anvil's history");
                            if let Some(f) = &node_file
                                && let Err(e) = NodeFile::write(f, &node)
                            {
                                tracing::warn!(target: "twinledger::node", error = %e, "cannot note the restarted node");
                            }
                        }
                        Err(e) => {
                            // Not again for as long: the history is kept whole meanwhile.
                            oldest = block;
                            tracing::warn!(target: "twinledger::node", error = %e, "cannot compact the embedded Anvil's history");
                        }
                    }
                }
            }
            if let Err(e) = node.stop(Duration::from_secs(30)).await {
                tracing::warn!(target: "twinledger::node", error = %e, "stopping the embedded Anvil");
            }
        });
        self.watcher = Some(NodeWatcher { stop, task });
    }

    /// Stops the embedded node, saving its state.
    pub async fn stop(self) {
        if let Some(w) = self.watcher {
            let _ = w.stop.send(());
            let _ = w.task.await;
        }
        if let Some(node) = self.node
            && let Err(e) = node.stop(Duration::from_secs(30)).await
        {
            tracing::warn!(target: "twinledger::node", error = %e, "stopping the embedded Anvil");
        }
        if let Some(f) = self.node_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// How often the watcher looks at the embedded node.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Starts the embedded Anvil. A state file it cannot load (written by something other than
/// our atomic snapshots, or damaged on disk) is moved aside and the node started empty: the
/// ledger then deploys the contract again and anchors the whole log again, and says so.
async fn start_embedded(config: &LocalNodeConfig) -> Result<LocalNode> {
    match LocalNode::start(config).await {
        Ok(node) => Ok(node),
        Err(e) => {
            let Some(state) = config.state_path.as_ref().filter(|p| p.is_file()) else {
                return Err(e).context("cannot start the embedded Anvil");
            };
            let name = state.file_name().map_or_else(
                || "anvil-state.json.gz".into(),
                |n| n.to_string_lossy().into_owned(),
            );
            let (stem, extension) = name.split_once('.').unwrap_or((&name, "json.gz"));
            let aside = state.with_file_name(format!(
                "{stem}.unloadable-{}.{extension}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ));
            tracing::error!(target: "twinledger::node", error = %e, state = %state.display(), moved_to = %aside.display(), "the embedded Anvil cannot load its state; starting it empty, the log will be anchored again");
            std::fs::rename(state, &aside)
                .with_context(|| format!("cannot move {} aside", state.display()))?;
            LocalNode::start(config)
                .await
                .context("cannot start the embedded Anvil")
        }
    }
}

/// An embedded node left running by a killed `serve` holds the newest chain state: snapshot it
/// and stop it before starting a new one on the same state file.
async fn stop_stale_node(node_file: &Path, state: &Path) {
    let Ok(text) = std::fs::read_to_string(node_file) else {
        return;
    };
    let Ok(file) = serde_json::from_str::<NodeFile>(&text) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(file.pid as i32);
    // After a reboot the pid may belong to another program: only an anvil is stopped.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", file.pid)).unwrap_or_default();
    if file.pid == 0 || !String::from_utf8_lossy(&cmdline).contains("anvil") {
        return;
    }
    tracing::warn!(target: "twinledger::node", pid = file.pid, "stopping an embedded node left by an earlier run");
    if let Err(e) = twinledger_chain::anvil_snapshot(&file.url, state).await {
        tracing::warn!(target: "twinledger::node", error = %e, "cannot snapshot the node left by an earlier run");
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..100 {
        if nix::sys::signal::kill(pid, None).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
}

/// The mode to run in: as configured, else as the data directory was created, else log.
pub fn resolve_mode(settings: &Settings, stored: Option<&str>) -> Mode {
    settings.mode.unwrap_or(match stored {
        Some("legacy") => Mode::Legacy,
        _ => Mode::Log,
    })
}

/// The meta key under which the contract of `mode` on chain `chain_id` is recorded.
pub fn contract_key(mode: Mode, chain_id: u64) -> String {
    match mode {
        Mode::Legacy => format!("legacy_contract.{chain_id}"),
        Mode::Log => format!("log_contract.{chain_id}"),
    }
}

/// Deploys the contract of `mode`: for the log, TwinLedger with the sender as admin and
/// anchorer.
pub async fn deploy(mode: Mode, client: &ChainClient) -> Result<Address> {
    Ok(match mode {
        Mode::Legacy => LegacyContract::deploy(client).await?,
        Mode::Log => LogContract::deploy(client, client.from(), client.from()).await?,
    })
}

/// Deploys the contract of `mode` and records its address under `key`.
async fn deploy_and_record(
    mode: Mode,
    client: &ChainClient,
    store: &dyn Store,
    key: &str,
) -> Result<Address> {
    let a = deploy(mode, client)
        .await
        .context("cannot deploy the contract")?;
    store.set_meta(key, &a.to_string()).await?;
    tracing::info!(target: "twinledger::chain", contract = %a, chain_id = client.chain_id(), mode = mode.as_str(), "deployed the contract");
    Ok(a)
}

/// The contract to use: `chain.contract`, else the one recorded for this chain. A data
/// directory keeps the mode it was first used in.
///
/// On a chain that is not `embedded`, a missing contract is an error (`twinledger deploy` costs
/// real gas), and so is a recorded contract whose code has vanished or a chain behind the
/// blocks records were anchored in: such a chain lost anchored history, which is an incident
/// for an operator, never repaired silently. The embedded node is this program's own and only
/// as durable as its last snapshot: in log mode, a contract it lost is deployed again and
/// recorded, and the ledger anchors again whatever the node lost (it records that it did).
/// Legacy mode keeps the refusal: its records are the node's own transactions.
pub async fn contract(
    settings: &Settings,
    client: &ChainClient,
    store: &dyn Store,
    embedded: bool,
) -> Result<Anchoring> {
    let stored = store.meta("mode").await?;
    let mode = resolve_mode(settings, stored.as_deref());
    match stored {
        Some(m) if m != mode.as_str() => bail!(
            "{} holds a ledger in {m} mode; it cannot be used in {} mode (use --mode {m}, or \
             another database)",
            settings.database_name(),
            mode.as_str()
        ),
        Some(_) => {}
        None => store.set_meta("mode", mode.as_str()).await?,
    }
    let key = contract_key(mode, client.chain_id());
    let configured = settings
        .chain
        .contract
        .as_deref()
        .map(|a| {
            a.parse::<Address>()
                .with_context(|| format!("invalid contract address {a:?}"))
        })
        .transpose()?;
    let recorded = store
        .meta(&key)
        .await?
        .map(|a| {
            a.parse::<Address>()
                .with_context(|| format!("corrupt recorded contract address {a:?}"))
        })
        .transpose()?;
    let address = match (configured, recorded) {
        // One ledger, one contract: its anchors are on the contract it was started with.
        (Some(a), Some(r))
            if a != r
                && (store.latest_anchor_block().await?.is_some()
                    || store.latest_mined_anchor().await?.is_some()) =>
        {
            bail!(
                "{} holds a ledger anchored with contract {r} on chain {}, not with {a}: drop \
                 --contract, or use another database",
                settings.database_name(),
                client.chain_id()
            )
        }
        (Some(a), _) => a,
        (None, Some(a)) => a,
        (None, None) if embedded => deploy_and_record(mode, client, store, &key).await?,
        (None, None) => bail!(
            "no contract for chain {}: run `twinledger deploy` or pass --contract",
            client.chain_id()
        ),
    };
    // A node that is down cannot be checked now; a contract recorded on an earlier run is bound
    // as is, and every later call reaches the chain (or fails as unavailable).
    let status = client.status().await;
    if let Err(e) = &status
        && e.is_retryable()
        && recorded == Some(address)
    {
        tracing::warn!(target: "twinledger::chain", error = %e, contract = %address, "chain unreachable; using the recorded contract");
        return Ok(match mode {
            Mode::Legacy => {
                Anchoring::Legacy(LegacyContract::bind_recorded(client.clone(), address))
            }
            Mode::Log => Anchoring::Log(LogContract::bind_recorded(client.clone(), address)),
        });
    }
    // A chain behind the blocks our records were anchored in has lost them (a dev node whose
    // state was not saved): its answers would read those records as Tampered, or worse.
    if let Some(anchored) = store.latest_anchor_block().await? {
        let mut head = status?.block_number;
        // A provider a block or two behind (load-balanced ones are, now and then) has not lost
        // the chain: the head is read again for a few seconds before the chain is refused.
        let mut tries = 0;
        while head < anchored && !(embedded && mode == Mode::Log) && tries < 5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(s) = client.status().await {
                head = head.max(s.block_number);
            }
            tries += 1;
        }
        if head < anchored && embedded && mode == Mode::Log {
            tracing::warn!(target: "twinledger::chain", anchored_up_to = anchored, chain_block = head, "the embedded chain lost blocks since its last snapshot; the ledger anchors their records again");
        } else if head < anchored {
            bail!(
                "the chain has lost its state: records in {} were anchored up to block {anchored} \
                 but chain {} is at block {head} (was the node's state file deleted, reset or not \
                 saved?). Restore the chain state or point --rpc at the right chain",
                settings.database_name(),
                client.chain_id()
            );
        }
    }
    let bound = match mode {
        Mode::Legacy => LegacyContract::at(client.clone(), address)
            .await
            .map(Anchoring::Legacy),
        Mode::Log => LogContract::at(client.clone(), address)
            .await
            .map(Anchoring::Log),
    };
    match bound {
        Ok(c) => {
            if configured.is_some() && recorded != Some(address) {
                store.set_meta(&key, &address.to_string()).await?;
            }
            Ok(c)
        }
        Err(twinledger_chain::ChainError::NoContract { .. })
            if embedded && mode == Mode::Log && configured.is_none() =>
        {
            tracing::warn!(target: "twinledger::chain", contract = %address, "the embedded chain lost the contract (no snapshot held it yet); deploying it again");
            let address = deploy_and_record(mode, client, store, &key).await?;
            Ok(Anchoring::Log(
                LogContract::at(client.clone(), address).await?,
            ))
        }
        Err(twinledger_chain::ChainError::NoContract { .. }) if recorded == Some(address) => bail!(
            "the chain has lost its state: contract {address} recorded in {} is not on chain {} \
             (was the node's state file deleted or reset?). Records anchored there can no longer \
             be verified; restore the chain state or point --rpc at the right chain",
            settings.database_name(),
            client.chain_id()
        ),
        Err(e) => Err(e).context("the configured contract is unusable"),
    }
}
