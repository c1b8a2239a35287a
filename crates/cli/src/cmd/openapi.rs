//! `twinledger openapi`: prints the OpenAPI document that `serve` answers at `/openapi.json`,
//! for generating clients without a running service.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::settings::Settings;

/// Arguments of `openapi`.
#[derive(Debug, Args)]
pub struct OpenapiArgs {}

impl OpenapiArgs {
    /// Writes the document to stdout.
    pub async fn run(self, _settings: Settings) -> Result<ExitCode> {
        let text = twinledger_server::document_json().context("cannot serialize the document")?;
        std::io::stdout()
            .write_all(text.as_bytes())
            .context("cannot write the document")?;
        Ok(ExitCode::SUCCESS)
    }
}
