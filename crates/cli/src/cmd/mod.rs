//! One module per subcommand.

pub mod audit;
pub mod bench;
pub mod deploy;
pub mod device_key;
pub mod keys;
pub mod migrate_store;
pub mod openapi;
pub mod serve;
pub mod simulate;
pub mod update;
pub mod verify;
pub mod verify_proof;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
use twinledger_store::Store;

use crate::cli::{Cli, Command, merge};
use crate::settings::Settings;

/// Loads settings with the flags of `cli` on top and runs its subcommand.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let mut flags = json!({});
    if let Some(d) = &cli.data_dir {
        flags = merge(flags, json!({ "data_dir": d }));
    }
    if let Some(url) = &cli.database {
        flags = merge(flags, json!({ "store": { "url": url } }));
    }
    let layer = match &cli.command {
        Command::Serve(a) => a.layer(),
        Command::Deploy(a) => a.layer(),
        Command::Update(_) => json!({}),
        Command::Verify(a) => a.chain.layer(),
        Command::VerifyProof(_) => json!({}),
        Command::Audit(a) => a.chain.layer(),
        Command::Keys(_) => json!({}),
        Command::Bench(_) | Command::Openapi(_) | Command::MigrateStore(_) => json!({}),
        Command::DeviceKey(_) | Command::Simulate(_) => json!({}),
    };
    let settings = Settings::load(cli.config.as_deref(), merge(flags, layer))?;
    match cli.command {
        Command::Serve(a) => a.run(settings).await,
        Command::Deploy(a) => a.run(settings).await,
        Command::Update(a) => a.run(settings).await,
        Command::Verify(a) => a.run(settings).await,
        Command::VerifyProof(a) => a.run(settings).await,
        Command::Audit(a) => a.run(settings).await,
        Command::Keys(a) => a.run(settings).await,
        Command::Bench(a) => a.run(settings).await,
        Command::DeviceKey(a) => a.run(settings).await,
        Command::Simulate(a) => a.run(settings).await,
        Command::Openapi(a) => a.run(settings).await,
        Command::MigrateStore(a) => a.run(settings).await,
    }
}

/// Creates the data directory and opens the database: the configured PostgreSQL, else SQLite
/// in the data directory.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    use anyhow::Context;
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            settings.data_dir.display()
        )
    })?;
    let bands = settings.congruence.bands()?;
    Ok(match &settings.store.url {
        Some(url) => Arc::new(twinledger_store::PostgresStore::connect(url, bands).await?),
        None => Arc::new(twinledger_store::SqliteStore::open_with(
            settings.database_path(),
            bands,
        )?),
    })
}

/// An existing ledger opened for checking, not serving: its database (which must exist) and
/// the contract it anchors with, on the configured chain or the running embedded node.
pub async fn open_existing(
    settings: &Settings,
) -> Result<(Arc<dyn Store>, twinledger_ledger::Anchoring)> {
    anyhow::ensure!(
        settings.store.url.is_some() || settings.database_path().is_file(),
        "no database at {}",
        settings.database_path().display()
    );
    let store = open_store(settings).await?;
    let chain = crate::chain::Chain::connect(settings, false).await?;
    let anchoring = crate::chain::contract(settings, &chain.client, store.as_ref(), false).await?;
    Ok((store, anchoring))
}
