//! `twinledger device-key`: register, show and remove the Ed25519 key a twin's device signs
//! its reports with, in the data directory's database (the API does the same on a running
//! service: `PUT /v1/twins/{id}/device-key`).

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use twinledger_core::{DeviceKey, TwinId};
use twinledger_store::DeviceKeyRow;

use crate::settings::Settings;

/// Options of `device-key`.
#[derive(Debug, Args)]
pub struct DeviceKeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DeviceKeyAction,
}

/// Device key actions.
#[derive(Debug, Subcommand)]
pub enum DeviceKeyAction {
    /// Register (or replace) a twin's device key.
    Set {
        /// The twin.
        twin: String,
        /// The Ed25519 public key, 64 hex digits.
        #[arg(long)]
        public_key: String,
        /// Refuse the twin's unsigned reports.
        #[arg(long)]
        require: bool,
    },
    /// Print a twin's device key as JSON.
    Show {
        /// The twin.
        twin: String,
    },
    /// Remove a twin's device key.
    Remove {
        /// The twin.
        twin: String,
    },
}

impl DeviceKeyArgs {
    /// Runs the action.
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let store = super::open_store(&settings).await?;
        let twin = |id: &str| TwinId::new(id).context("invalid twin id");
        match self.action {
            DeviceKeyAction::Set {
                twin: id,
                public_key,
                require,
            } => {
                let id = twin(&id)?;
                let key = DeviceKey::from_hex(&public_key).context("invalid --public-key")?;
                let registered_at_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                store
                    .put_device_key(&DeviceKeyRow {
                        twin_id: id.to_string(),
                        public_key: key.to_hex(),
                        require_signature: require,
                        registered_at_ms,
                    })
                    .await?;
                println!(
                    "device key of {id} registered{}",
                    if require {
                        " (signatures required)"
                    } else {
                        ""
                    }
                );
            }
            DeviceKeyAction::Show { twin: id } => {
                match store.device_key(twin(&id)?.as_str()).await? {
                    Some(row) => println!("{}", serde_json::to_string(&row)?),
                    None => {
                        eprintln!("twin {id} has no device key");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            DeviceKeyAction::Remove { twin: id } => {
                if !store.delete_device_key(twin(&id)?.as_str()).await? {
                    eprintln!("twin {id} has no device key");
                    return Ok(ExitCode::FAILURE);
                }
                println!("device key of {id} removed");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
