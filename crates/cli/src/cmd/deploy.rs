//! `twinledger deploy`: deploys the seed's contract and records its address.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::chain::Chain;
use crate::cli::{ChainArgs, SignerArgs, merge};
use crate::settings::Settings;

/// Options of `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Chain.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Who signs the deployment.
    #[command(flatten)]
    pub signer: SignerArgs,
}

impl DeployArgs {
    /// The options given, as a settings layer.
    pub fn layer(&self) -> serde_json::Value {
        merge(self.chain.layer(), self.signer.layer())
    }
}

impl DeployArgs {
    /// Deploys, prints the address on stdout and records it for this chain in the data
    /// directory, where `serve` finds it.
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let store = super::open_store(&settings).await?;
        let chain = Chain::connect(&settings, true).await?;
        let stored = store.meta("mode").await?;
        let mode = crate::chain::resolve_mode(&settings, stored.as_deref());
        if let Some(m) = stored.as_deref().filter(|m| *m != mode.as_str()) {
            chain.stop().await;
            anyhow::bail!(
                "the data directory {} holds a ledger in {m} mode, not {}",
                settings.data_dir.display(),
                mode.as_str()
            );
        }
        let deployed = crate::chain::deploy(mode, &chain.client).await;
        let chain_id = chain.client.chain_id();
        chain.stop().await;
        let address = deployed.context("deployment failed")?;
        store.set_meta("mode", mode.as_str()).await?;
        store
            .set_meta(
                &crate::chain::contract_key(mode, chain_id),
                &address.to_string(),
            )
            .await?;
        let name = match mode {
            crate::settings::Mode::Log => "TwinLedger",
            crate::settings::Mode::Legacy => "DigitalTwinStorage",
        };
        eprintln!(
            "deployed {name} on chain {chain_id}; recorded in {}",
            settings.database_name()
        );
        println!("{address}");
        Ok(ExitCode::SUCCESS)
    }
}
