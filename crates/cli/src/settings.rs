//! Configuration: defaults, then `twinledger.toml`, then `TWINLEDGER_*` environment variables
//! (`__` separates nested keys), then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything the program can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Where the database and the embedded chain's state live.
    pub data_dir: PathBuf,
    /// The database, when it is not SQLite in the data directory.
    #[serde(default)]
    pub store: StoreSettings,
    /// How records are anchored; unset: the mode the data directory was created in, else `log`.
    pub mode: Option<Mode>,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Chain access.
    pub chain: ChainSettings,
    /// HTTP limits.
    pub http: HttpSettings,
    /// Group commit.
    pub ledger: LedgerSettings,
    /// Log-mode anchoring.
    pub anchor: AnchorSettings,
    /// API keys.
    pub auth: AuthSettings,
    /// Idempotency keys.
    pub idempotency: IdempotencySettings,
    /// Prometheus metrics.
    pub metrics: MetricsSettings,
    /// Device ingestion over MQTT.
    pub mqtt: MqttSettings,
    /// Congruence bands, best first.
    pub congruence: CongruenceSettings,
    /// Logs.
    #[serde(default)]
    pub log: LogSettings,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreSettings {
    /// A PostgreSQL URL (`postgres://user:password@host:port/db`, several hosts separated by
    /// commas); unset: SQLite in the data directory.
    pub url: Option<String>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogSettings {
    /// How log lines are written to stderr.
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text for people: coloured on a terminal, plain into a file or a pipe.
    #[default]
    Text,
    /// One JSON object per line, for log shippers (Loki, Elasticsearch).
    Json,
}

/// `[mqtt]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MqttSettings {
    /// Broker `host:port` to ingest from; unset, the embedded dev mode starts its own.
    pub broker: Option<String>,
    /// With the embedded chain and no `broker`: start a local Mosquitto (on `embedded_port`,
    /// 0 = a free port) and ingest from it.
    pub embedded: bool,
    /// Port of the embedded broker (0: a free one).
    pub embedded_port: u16,
    /// MQTT client id (stable: the broker keeps the session across restarts).
    pub client_id: String,
    /// Largest payload recorded, in bytes.
    pub max_payload: usize,
    /// Record reports of twins that have no record yet.
    pub auto_create: bool,
    /// Publish the desired state to `twins/{id}/desired` when a twin diverges.
    pub corrections: bool,
    /// Several nodes on one broker: the group of their shared subscription, so that each
    /// device message is recorded by one node (give each node its own `client_id`).
    #[serde(default)]
    pub share_group: Option<String>,
}

impl MqttSettings {
    /// `broker` as host and port, if set; checks `share_group` on the way, since both are
    /// read before anything starts.
    pub fn broker_addr(&self) -> Result<Option<(String, u16)>> {
        if let Some(group) = &self.share_group {
            anyhow::ensure!(
                !group.is_empty() && !group.contains(['/', '+', '#']),
                "invalid mqtt.share_group {group:?}: a name without '/', '+' or '#'"
            );
        }
        let Some(addr) = &self.broker else {
            return Ok(None);
        };
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .with_context(|| format!("invalid mqtt.broker {addr:?}: expected host:port"))?;
        Ok(Some((host.to_owned(), port)))
    }
}

/// `[congruence]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CongruenceSettings {
    /// `[{name, min_score}]`, best first; the last starts at 0 and is the diverged band.
    pub bands: Vec<BandSetting>,
}

/// One band.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BandSetting {
    pub name: String,
    pub min_score: f64,
}

impl CongruenceSettings {
    /// The bands, checked.
    pub fn bands(&self) -> Result<twinledger_core::Bands> {
        twinledger_core::Bands::new(
            self.bands
                .iter()
                .map(|b| twinledger_core::Band {
                    name: b.name.clone(),
                    min_score: b.min_score,
                })
                .collect(),
        )
        .context("invalid [congruence] bands")
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricsSettings {
    /// Serve `/metrics` on this address instead of with the API (unset: with the API).
    pub listen: Option<SocketAddr>,
}

/// How long idempotency keys are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotencySettings {
    /// Seconds a key is remembered; a retry after that is a new request (0: forever).
    pub retention_secs: u64,
}

/// When API keys are required.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthSettings {
    /// Writes need a key; unset: yes, except in the embedded dev mode (embedded chain, loopback
    /// address).
    pub writes: Option<bool>,
    /// Reads need a key too.
    pub reads: bool,
}

/// How records are anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The Merkle log: tree heads on the TwinLedger contract, many records per transaction.
    Log,
    /// The seed's DigitalTwinStorage contract: one transaction per record.
    Legacy,
}

impl Mode {
    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Legacy => "legacy",
        }
    }
}

/// Log-mode anchoring (group commit on chain).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnchorSettings {
    /// Most records one anchor covers.
    pub batch_max: u64,
    /// Least time between two anchors, in milliseconds.
    pub min_interval_ms: u64,
    /// Least time between two anchors while records keep arriving, in milliseconds.
    pub busy_interval_ms: u64,
    /// Anchors in flight (sent, not yet mined) at most.
    pub in_flight: usize,
    /// Blocks (the anchor's own included) before a record counts as confirmed.
    pub confirmations: u64,
    /// How long an anchor may wait unmined before it is sent again with higher fees, in ms.
    pub replace_after_ms: u64,
    /// The highest fee per gas a replacement may offer, in gwei (unset: no limit).
    pub max_fee_gwei: Option<u64>,
    /// Fault injection for the crash tests, never for use: the process aborts after an anchor
    /// is mined and before the database notes it.
    pub crash_before_noting_mined: bool,
}

/// Chain access. With no `rpc`, `serve` runs an embedded Anvil.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChainSettings {
    /// JSON-RPC URLs of an existing chain: the first that answers is used, the others are
    /// fallbacks (one URL, a list, or URLs separated by commas). Empty: the embedded Anvil.
    #[serde(deserialize_with = "one_or_many")]
    pub rpc: Vec<String>,
    /// Address of an already deployed `DigitalTwinStorage`.
    pub contract: Option<String>,
    /// The embedded node's executable; found in `node_modules` or on `PATH` when unset.
    pub anvil: Option<PathBuf>,
    /// Account to send from when the node signs (unlocked accounts); its first account if unset.
    pub from: Option<String>,
    /// File holding a hex private key to sign with locally.
    pub private_key_file: Option<PathBuf>,
    /// Encrypted JSON keystore to sign with locally.
    pub keystore: Option<PathBuf>,
    /// File holding the keystore's password.
    pub password_file: Option<PathBuf>,
    /// Seconds to wait for a receipt.
    pub receipt_timeout_secs: u64,
    /// Least milliseconds between two atomic snapshots of the embedded Anvil's state, taken
    /// while its chain grows (0: only at exit). A hard kill loses at most about this much of
    /// the embedded chain, which is then anchored again.
    pub snapshot_interval_ms: u64,
    /// Log mode: the embedded Anvil keeps at least this many recent blocks with their
    /// transactions, and drops older ones once it holds twice as many, so that its snapshots
    /// stay small (0: it keeps everything).
    pub history_blocks: u64,
}

/// HTTP limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSettings {
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Seconds a write waits for its anchor before answering 503.
    pub anchor_wait_secs: u64,
}

/// Group commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerSettings {
    /// Most records committed in one transaction.
    pub batch_max: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            store: StoreSettings::default(),
            mode: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            chain: ChainSettings {
                receipt_timeout_secs: 60,
                snapshot_interval_ms: 1000,
                history_blocks: 512,
                ..ChainSettings::default()
            },
            http: HttpSettings {
                body_limit: 1024 * 1024,
                anchor_wait_secs: 60,
            },
            ledger: LedgerSettings { batch_max: 1024 },
            anchor: AnchorSettings {
                batch_max: 100_000,
                min_interval_ms: 0,
                busy_interval_ms: 250,
                in_flight: 4,
                confirmations: 1,
                replace_after_ms: 30_000,
                max_fee_gwei: None,
                crash_before_noting_mined: false,
            },
            auth: AuthSettings::default(),
            idempotency: IdempotencySettings {
                retention_secs: 24 * 60 * 60,
            },
            metrics: MetricsSettings::default(),
            mqtt: MqttSettings {
                broker: None,
                embedded: true,
                embedded_port: 0,
                client_id: "twinledger-ingest".into(),
                max_payload: 64 * 1024,
                auto_create: true,
                corrections: true,
                share_group: None,
            },
            congruence: CongruenceSettings {
                bands: twinledger_core::Bands::default()
                    .all()
                    .iter()
                    .map(|b| BandSetting {
                        name: b.name.clone(),
                        min_score: b.min_score,
                    })
                    .collect(),
            },
            log: LogSettings::default(),
        }
    }
}

/// `$XDG_DATA_HOME/twinledger`, else `~/.local/share/twinledger`, else `./twinledger-data`.
fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("twinledger");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".local/share/twinledger");
    }
    PathBuf::from("twinledger-data")
}

/// A list given as a list, or as one string of items separated by commas (environment
/// variables can only give strings).
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

impl Settings {
    /// Loads the layers. `config` names the TOML file; without it `./twinledger.toml` is read if
    /// present. `flags` holds only the options given on the command line.
    pub fn load(config: Option<&Path>, flags: serde_json::Value) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config {
            Some(path) => {
                anyhow::ensure!(path.is_file(), "config file {} not found", path.display());
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("twinledger.toml")),
        }
        figment = figment
            .merge(Env::prefixed("TWINLEDGER_").split("__").ignore(&["config"]))
            .merge(Serialized::globals(flags));
        figment.extract().context("invalid configuration")
    }

    /// The log format alone, read before anything else so that the command's own errors are
    /// logged in it; a configuration that does not load gives text (the command reports why).
    pub fn log_format(config: Option<&Path>) -> LogFormat {
        let file = config.unwrap_or(Path::new("twinledger.toml"));
        Figment::from(Toml::file(file))
            .merge(Env::prefixed("TWINLEDGER_").split("__").ignore(&["config"]))
            .extract_inner::<LogFormat>("log.format")
            .unwrap_or_default()
    }

    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("twinledger.db")
    }

    /// The database, as messages name it: the PostgreSQL URL without its password, or the
    /// SQLite file.
    pub fn database_name(&self) -> String {
        match &self.store.url {
            Some(url) => without_password(url),
            None => self.database_path().display().to_string(),
        }
    }
}

/// `scheme://user@hosts/db` of `scheme://user:password@hosts/db`.
fn without_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((credentials, place)) = rest.rsplit_once('@')
    {
        let user = credentials.split(':').next().unwrap_or_default();
        return format!("{scheme}://{user}@{place}");
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[chain]\nrpc = \"http://file\"\n",
        )
        .expect("write");
        let s = Settings::load(Some(&file), serde_json::json!({})).expect("load");
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.chain.rpc, ["http://file"]);
        assert_eq!(s.http.body_limit, 1024 * 1024);
        let s = Settings::load(
            Some(&file),
            serde_json::json!({"chain": {"rpc": "http://flag"}}),
        )
        .expect("load");
        assert_eq!(s.chain.rpc, ["http://flag"]);
        assert_eq!(s.listen.port(), 9000);
    }

    #[test]
    fn rpc_urls_come_as_a_list_or_separated_by_commas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "[chain]\nrpc = [\"http://a\", \"http://b\"]\n").expect("write");
        let s = Settings::load(Some(&file), serde_json::json!({})).expect("load");
        assert_eq!(s.chain.rpc, ["http://a", "http://b"]);
        let s = Settings::load(
            Some(&file),
            serde_json::json!({"chain": {"rpc": "http://c, http://d"}}),
        )
        .expect("load");
        assert_eq!(s.chain.rpc, ["http://c", "http://d"]);
        let s = Settings::load(None, serde_json::json!({})).expect("load");
        assert!(s.chain.rpc.is_empty());
    }

    #[test]
    fn a_database_is_named_without_its_password() {
        let mut s = Settings::default();
        assert!(s.database_name().ends_with("twinledger.db"));
        s.store.url = Some("postgres://ledger:s3cret@db1:5432,db2:5432/twins".into());
        assert_eq!(
            s.database_name(),
            "postgres://ledger@db1:5432,db2:5432/twins"
        );
        s.store.url = Some("postgres://db1/twins".into());
        assert_eq!(s.database_name(), "postgres://db1/twins");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        assert!(
            Settings::load(
                Some(Path::new("/nonexistent/x.toml")),
                serde_json::json!({})
            )
            .is_err()
        );
    }
}
