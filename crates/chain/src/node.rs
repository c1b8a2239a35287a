//! Local chain nodes (Anvil, Ganache) run as child processes: the embedded default and tests.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::state::{TrimmedState, anvil_snapshot, load_file, trim_state_file};
use crate::{ChainError, Result};

/// Which node program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Foundry's Anvil.
    Anvil,
    /// Ganache 7 (the seed's choice).
    Ganache,
}

/// How to start a local node.
#[derive(Debug, Clone)]
pub struct LocalNodeConfig {
    /// Which program.
    pub kind: NodeKind,
    /// Path of the executable.
    pub program: PathBuf,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// File the chain state is loaded from at start and saved to by [`LocalNode::snapshot`] and
    /// [`LocalNode::stop`] (Anvil), or the Ganache `--database.dbPath` directory. `None` keeps
    /// the chain in memory only.
    pub state_path: Option<PathBuf>,
    /// Anvil: recent states kept in memory so that `anvil_reorg` and `anvil_rollback` can go
    /// back that many blocks; `None` keeps none (the steady default, see [`ANVIL_STEADY_ARGS`]).
    pub reorg_depth: Option<u32>,
    /// Extra arguments passed through.
    pub extra_args: Vec<String>,
}

/// A running local node. Stop it with [`LocalNode::stop`] to let it save its state; dropping it
/// kills it outright.
#[derive(Debug)]
pub struct LocalNode {
    child: Child,
    url: String,
    /// How it was started, with the port it listens on: a restart uses the same URL.
    config: LocalNodeConfig,
}

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Anvil options that keep a long-running node from slowing down as its chain grows (with
/// `--prune-history`, added at start). Measured on Anvil 1.7.1: by default it keeps a full state
/// copy per block (and spills them to disk), and from Prague on every block adds a storage slot
/// to the EIP-2935 history contract, while the state root is recomputed over all slots for every
/// block; sequential legacy-mode POSTs fell from 140/s to 49/s over 5,000 with the default flags,
/// and stayed at 270-310/s with these. `--prune-history` drops the copies and the Cancun
/// hardfork (our contracts target Shanghai) stops the per-block slot, which keeps the rate flat
/// as long as the contracts' own storage does not grow per transaction.
const ANVIL_STEADY_ARGS: &[&str] = &["--hardfork", "cancun"];

impl LocalNode {
    /// Starts the node and waits until it listens.
    pub async fn start(config: &LocalNodeConfig) -> Result<Self> {
        let port = match (config.kind, config.port) {
            // Ganache refuses port 0, so pick a free port here.
            (NodeKind::Ganache, 0) => free_port()?,
            (_, p) => p,
        };
        let mut cmd = Command::new(&config.program);
        // The unzipped copy of the state file that Anvil loads, removed once it listens.
        let mut unzipped = None;
        match config.kind {
            NodeKind::Anvil => {
                cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
                cmd.args(ANVIL_STEADY_ARGS);
                cmd.arg("--prune-history");
                if let Some(depth) = config.reorg_depth {
                    cmd.arg(depth.to_string());
                }
                // Loaded only: Anvil's own saves (at exit and every `--state-interval`) rewrite
                // the file in place, and a kill during one leaves a truncated file that it then
                // refuses to load. Saves are [`LocalNode::snapshot`]'s, atomic.
                if let Some(state) = config.state_path.as_ref().filter(|p| p.is_file()) {
                    let load = load_file(state)?;
                    cmd.arg("--load-state").arg(&load);
                    unzipped = Some(load).filter(|l| l != state);
                }
            }
            NodeKind::Ganache => {
                cmd.args([
                    "--server.host",
                    "127.0.0.1",
                    "--server.port",
                    &port.to_string(),
                ]);
                cmd.args(["--logging.quiet", "false", "--miner.instamine", "eager"]);
                if let Some(state) = &config.state_path {
                    cmd.arg("--database.dbPath").arg(state);
                }
            }
        }
        cmd.args(&config.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            ChainError::Node(format!("cannot start {}: {e}", config.program.display()))
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ChainError::Node("no stdout".into()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| ChainError::Node("no stderr".into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<u16>();
        // The node logs every request to stdout; the pipe must be drained for its whole life or
        // the node blocks on a full pipe.
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(p) = listening_port(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(p);
                }
                tracing::trace!(target: "twinledger::node", "{line}");
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(target: "twinledger::node", "{line}");
            }
        });
        let listening = tokio::time::timeout(START_TIMEOUT, rx).await;
        if let Some(load) = unzipped {
            let _ = std::fs::remove_file(load);
        }
        let port = match listening {
            Ok(Ok(p)) if p != 0 => p,
            Ok(Ok(_)) => port,
            _ => {
                let status = child.try_wait().ok().flatten();
                let _ = child.start_kill();
                return Err(ChainError::Node(format!(
                    "{} did not start listening within {} s (exit status: {status:?})",
                    config.program.display(),
                    START_TIMEOUT.as_secs()
                )));
            }
        };
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            config: LocalNodeConfig {
                port,
                ..config.clone()
            },
        })
    }

    /// Starts the node again on the same port, from its state file: after it died, so that
    /// clients of its URL reach it again. A node still running is killed first.
    pub async fn restart(&mut self) -> Result<()> {
        let _ = self.child.kill().await;
        *self = Self::start(&self.config).await?;
        Ok(())
    }

    /// Drops all but the newest `keep_blocks` blocks of the node's history (Anvil only): stops
    /// mining, snapshots, trims the state file ([`trim_state_file`]) and starts the node again
    /// from it on the same port. Transactions sent meanwhile wait in the pool and are lost with
    /// it; nothing mined is. A node that keeps every block snapshots its whole history every
    /// time, a cost that grows without bound with the chain.
    pub async fn compact(&mut self, keep_blocks: u64) -> Result<TrimmedState> {
        let path = match (self.config.kind, &self.config.state_path) {
            (NodeKind::Anvil, Some(p)) => p.clone(),
            _ => {
                return Err(ChainError::Node(
                    "only Anvil with a state file compacts".into(),
                ));
            }
        };
        rpc_call(&self.url, "anvil_setAutomine", serde_json::json!([false])).await?;
        let trimmed = match self.snapshot(&path).await {
            Ok(()) => {
                let p = path.clone();
                tokio::task::spawn_blocking(move || trim_state_file(&p, keep_blocks))
                    .await
                    .map_err(|e| ChainError::Node(format!("trim task: {e}")))?
            }
            Err(e) => Err(e),
        };
        match trimmed {
            Ok(t) => {
                self.restart().await?;
                Ok(t)
            }
            Err(e) => {
                resume_mining(&self.url).await?;
                Err(e)
            }
        }
    }

    /// Whether the process has exited (it was killed, or crashed), with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The node's HTTP JSON-RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which program runs.
    pub fn kind(&self) -> NodeKind {
        self.config.kind
    }

    /// The file its state is loaded from and saved to, if any.
    pub fn state_path(&self) -> Option<&std::path::Path> {
        self.config.state_path.as_deref()
    }

    /// The process id, if still running.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Saves the node's state to `path` atomically (Anvil only): `anvil_dumpState`, unzip,
    /// write a temporary file, fsync, rename. Anvil's own periodic save rewrites the file in
    /// place, and a kill during that write leaves a truncated file it then refuses to load.
    pub async fn snapshot(&self, path: &std::path::Path) -> Result<()> {
        if self.config.kind != NodeKind::Anvil {
            return Err(ChainError::Node("only Anvil can take snapshots".into()));
        }
        anvil_snapshot(&self.url, path).await
    }

    /// Saves the node's state to its state file (Anvil: an atomic snapshot; Ganache saves its
    /// own database on SIGTERM), asks it to exit and waits; kills it if it has not exited after
    /// `grace`. A failed snapshot is returned after the node is stopped: the file then holds the
    /// last snapshot that succeeded.
    pub async fn stop(mut self, grace: Duration) -> Result<()> {
        let saved = match (self.config.kind, self.config.state_path.clone()) {
            (NodeKind::Anvil, Some(path)) if self.exited().is_none() => {
                anvil_snapshot(&self.url, &path).await
            }
            _ => Ok(()),
        };
        self.terminate(grace).await?;
        saved
    }

    async fn terminate(&mut self, grace: Duration) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return Ok(());
            }
            tracing::warn!(target: "twinledger::node", "node did not exit in time; killing it");
        }
        self.child
            .kill()
            .await
            .map_err(|e| ChainError::Node(format!("cannot kill node: {e}")))
    }

    /// Kills the node at once (SIGKILL): it saves nothing. For fault tests.
    pub async fn kill(mut self) -> Result<()> {
        self.child
            .kill()
            .await
            .map_err(|e| ChainError::Node(format!("cannot kill node: {e}")))
    }
}

/// The latest block number of the node at `url`.
pub async fn block_number(url: &str) -> Result<u64> {
    let result = rpc_call(url, "eth_blockNumber", serde_json::json!([])).await?;
    quantity(&result).ok_or_else(|| ChainError::Rpc(format!("eth_blockNumber answered {result}")))
}

/// Turns automining back on, and mines what arrived while it was off: Anvil mines a
/// transaction when it arrives, not those already waiting in its pool.
pub(crate) async fn resume_mining(url: &str) -> Result<()> {
    rpc_call(url, "anvil_setAutomine", serde_json::json!([true])).await?;
    let pool = rpc_call(url, "txpool_status", serde_json::json!([])).await?;
    if quantity(&pool["pending"]).is_some_and(|n| n > 0) {
        rpc_call(url, "evm_mine", serde_json::json!([])).await?;
    }
    Ok(())
}

/// The HTTP client for calls to a local node, made once: building one sets up TLS and reads
/// the system's certificates, which cost more than the call (tens of milliseconds each; a
/// snapshot makes five calls). It keeps no idle connections: a pooled connection belongs to the
/// runtime that opened it, and one client serves every runtime of the process (tests run many).
pub(crate) fn local_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default()
    })
}

/// One JSON-RPC call to a local node; its `result`.
pub(crate) async fn rpc_call(
    url: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut answer: serde_json::Value = local_client()
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| ChainError::Unreachable(crate::error::redact_urls(&e.to_string())))?
        .json()
        .await
        .map_err(|e| ChainError::Rpc(format!("{method}: {e}")))?;
    if answer.get("error").is_none()
        && let Some(r) = answer.get_mut("result")
    {
        return Ok(r.take());
    }
    Err(ChainError::Rpc(format!("{method} answered {answer}")))
}

/// A JSON-RPC quantity as Anvil writes it in state files: a number or a hex string.
pub(crate) fn quantity(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).ok(),
        _ => None,
    }
}

/// The port in a node's "Listening on 127.0.0.1:PORT" line (Anvil and Ganache both print it).
fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("Listening on ")? + "Listening on ".len()..];
    rest.trim().rsplit(':').next()?.trim().parse().ok()
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ChainError::Node(format!("cannot find a free port: {e}")))
}

#[cfg(test)]
mod tests {
    use super::listening_port;

    #[test]
    fn reads_the_port_from_both_nodes_banners() {
        assert_eq!(listening_port("Listening on 127.0.0.1:38123"), Some(38123));
        assert_eq!(
            listening_port("RPC Listening on 127.0.0.1:8545"),
            Some(8545)
        );
        assert_eq!(listening_port("Available Accounts"), None);
    }
}
