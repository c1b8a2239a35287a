//! `twinledger keys`: create, list and revoke API keys in the data directory's database.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use twinledger_ledger::{Scope, issue_key};

use crate::settings::Settings;

/// Options of `keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KeysAction,
}

/// Key actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it once (only its hash is stored).
    Create {
        /// What the key may do.
        #[arg(long, value_enum)]
        scope: KeyScope,
        /// Limit the key to twins whose id starts with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// What the key is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List keys (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id.
    Revoke {
        /// The key's id (the part after `tl_`).
        id: String,
    },
}

/// A key's scope on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyScope {
    /// Read records, proofs and verdicts.
    Read,
    /// Also record states.
    Write,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl KeysArgs {
    /// Runs the action on the database of the data directory.
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let store = super::open_store(&settings).await?;
        match self.action {
            KeysAction::Create {
                scope,
                prefix,
                label,
            } => {
                let scope = match scope {
                    KeyScope::Read => Scope::Read,
                    KeyScope::Write => Scope::Write,
                };
                let issued = issue_key(scope, prefix.filter(|p| !p.is_empty()), label, now_ms());
                store.put_api_key(&issued.key).await?;
                eprintln!(
                    "created key {} ({}); it is shown only now: keep it",
                    issued.key.id,
                    scope.as_str()
                );
                println!("{}", issued.token);
            }
            KeysAction::List { json } => {
                let keys = store.api_keys().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&keys)?);
                } else {
                    for k in keys {
                        println!(
                            "{}  {:5}  prefix={}  {}  {}",
                            k.id,
                            k.scope,
                            k.twin_prefix.as_deref().unwrap_or("*"),
                            if k.revoked_at_ms.is_some() {
                                "revoked"
                            } else {
                                "active"
                            },
                            k.label
                        );
                    }
                }
            }
            KeysAction::Revoke { id } => {
                if !store.revoke_api_key(&id, now_ms()).await? {
                    bail!("no active key with id {id:?}");
                }
                eprintln!("revoked key {id}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
