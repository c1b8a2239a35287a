//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use crate::cmd;

/// twinledger: tamper-evident records of digital twins, anchored on an Ethereum chain.
#[derive(Debug, Parser)]
#[command(name = "twinledger", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (default: ./twinledger.toml if present).
    #[arg(long, global = true, env = "TWINLEDGER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the database and the embedded chain's state.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// A PostgreSQL database for the ledger (`postgres://user:password@host:port/db`, several
    /// hosts separated by commas) instead of SQLite in the data directory.
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (starts a local Anvil unless --rpc is given).
    Serve(cmd::serve::ServeArgs),
    /// Deploy the contract of the configured mode and record its address.
    Deploy(cmd::deploy::DeployArgs),
    /// Record a new state of a twin through the running service.
    Update(cmd::update::UpdateArgs),
    /// Verify every stored version of a twin against its hashes and the chain.
    Verify(cmd::verify::VerifyArgs),
    /// Recompute every record and the tree, and compare them with every anchored head.
    Audit(cmd::audit::AuditArgs),
    /// Create, list and revoke API keys.
    Keys(cmd::keys::KeysArgs),
    /// Verify a proof bundle with no database, against a chain and contract you name.
    VerifyProof(cmd::verify_proof::VerifyProofArgs),
    /// Measure throughput, latency, gas and memory on fresh data directories with a local Anvil.
    Bench(cmd::bench::BenchArgs),
    /// Register, show and remove the Ed25519 key a twin's device signs its reports with.
    DeviceKey(cmd::device_key::DeviceKeyArgs),
    /// Simulated devices publishing telemetry over MQTT, with drift and recovery.
    Simulate(cmd::simulate::SimulateArgs),
    /// Copy a ledger to another database (SQLite to PostgreSQL, or back) and prove the copy.
    MigrateStore(cmd::migrate_store::MigrateStoreArgs),
    /// Print the OpenAPI document of the HTTP API (what `serve` answers at /openapi.json).
    Openapi(cmd::openapi::OpenapiArgs),
}

/// Options that say which chain and which contract.
#[derive(Debug, Clone, Default, Args)]
pub struct ChainArgs {
    /// Anchoring mode: `log` (Merkle log, default) or `legacy` (the seed's contract).
    #[arg(long, value_enum)]
    pub mode: Option<crate::settings::Mode>,
    /// JSON-RPC URL of an existing node (default: the embedded Anvil). Give several (repeated
    /// or separated by commas) and the others are fallbacks when one does not answer.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub rpc: Vec<String>,
    /// Address of the deployed contract (TwinLedger in log mode, DigitalTwinStorage in legacy).
    #[arg(long, value_name = "ADDRESS")]
    pub contract: Option<String>,
}

impl ChainArgs {
    /// The options given, as a settings layer.
    pub fn layer(&self) -> Value {
        let mut chain = Map::new();
        if !self.rpc.is_empty() {
            chain.insert("rpc".into(), Value::from(self.rpc.clone()));
        }
        if let Some(c) = &self.contract {
            chain.insert("contract".into(), Value::from(c.clone()));
        }
        let mut layer = json!({ "chain": chain });
        if let Some(m) = self.mode {
            layer["mode"] = json!(m.as_str());
        }
        layer
    }
}

/// Options that say who signs the commands that send transactions (`serve`, `deploy`).
#[derive(Debug, Clone, Default, Args)]
pub struct SignerArgs {
    /// Send from this unlocked node account (default: the node's first account).
    #[arg(long, value_name = "ADDRESS")]
    pub from: Option<String>,
    /// Sign locally with the hex private key in this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keystore", "from"])]
    pub private_key_file: Option<PathBuf>,
    /// Sign locally with this encrypted JSON keystore.
    #[arg(
        long,
        value_name = "FILE",
        requires = "password_file",
        conflicts_with = "from"
    )]
    pub keystore: Option<PathBuf>,
    /// File holding the keystore's password.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

impl SignerArgs {
    /// The options given, as a settings layer.
    pub fn layer(&self) -> Value {
        let mut chain = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                chain.insert(k.into(), v);
            }
        };
        put("from", self.from.clone().map(Value::from));
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| json!(p));
        put("private_key_file", path(&self.private_key_file));
        put("keystore", path(&self.keystore));
        put("password_file", path(&self.password_file));
        json!({ "chain": chain })
    }
}

/// Merges settings layers: `b`'s keys win.
pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(am), Value::Object(bm)) = (a.as_object_mut(), b) {
        for (k, v) in bm {
            let merged = match am.remove(&k) {
                Some(old) if old.is_object() && v.is_object() => merge(old, v),
                _ => v,
            };
            am.insert(k, merged);
        }
    }
    a
}
