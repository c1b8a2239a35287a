//! `twinledger update`: records a state through the running service.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use twinledger_core::TwinId;
use twinledger_core::json::{self, Limits};

use crate::settings::Settings;

/// Options of `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The twin.
    pub twin_id: String,
    /// The new state: a JSON object.
    pub json: String,
    /// Base URL of the running service (default: http://<listen address>).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

impl UpdateArgs {
    /// Posts to `/update_twin_on_blockchain/` and prints the answer.
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let twin_id = TwinId::new(self.twin_id).context("invalid TWIN_ID")?;
        // Checked here too, so that bad input is refused before any request is made.
        let state =
            json::parse(self.json.as_bytes(), &Limits::default()).context("invalid JSON")?;
        if state.as_object().is_none() {
            bail!("the state must be a JSON object");
        }
        let base = self
            .server
            .unwrap_or_else(|| format!("http://{}", settings.listen));
        let url = format!("{}/update_twin_on_blockchain/", base.trim_end_matches('/'));
        // The state is forwarded as given (not re-serialized), so the service sees exactly it.
        let body = format!(
            "{{\"twin_id\": {}, \"data\": {}}}",
            serde_json::to_string(twin_id.as_str())?,
            self.json
        );
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| {
                format!("cannot reach the service at {base} (is `twinledger serve` running?)")
            })?;
        let status = response.status();
        let answer: serde_json::Value = response
            .json()
            .await
            .unwrap_or_else(|e| json!({ "error": format!("unreadable answer: {e}") }));
        if status.is_success() {
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        } else {
            let msg = answer
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("unknown error");
            bail!("the service answered {status}: {msg}")
        }
    }
}
