//! `twinledger simulate`: devices publishing telemetry over MQTT, drifting away from their
//! desired state now and then and recovering (at once when the ledger sends a correction).
//! For demos, and to measure MQTT ingestion end to end.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use twinledger_core::json::{Limits, parse};
use twinledger_core::{DeviceSigner, TwinId};
use twinledger_mqtt::Device;

use crate::settings::Settings;

/// Options of `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Broker `host:port` (default: the one `serve` started, from the data directory).
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,
    /// Number of devices; device `i` reports for twin `{prefix}{i}`.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Twin id prefix.
    #[arg(long, default_value = "sim-")]
    pub prefix: String,
    /// Reports per second per device.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Reports per device, then stop (default: run until interrupted).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Chance per report that a device starts drifting.
    #[arg(long, default_value_t = 0.02)]
    pub drift: f64,
    /// The service's URL: set each twin's desired state (and, with --sign, register its key
    /// as required) before publishing, and at the end wait until every report is recorded
    /// and anchored, and print the end-to-end rate.
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// API key for --api (if writes need one).
    #[arg(long, env = "TWINLEDGER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Sign reports with a per-device Ed25519 key (derived from the twin id).
    #[arg(long)]
    pub sign: bool,
}

/// What a healthy device reports, and the tolerances it is held to.
fn nominal() -> (Value, Value) {
    (
        json!({"temperature_c": 70.0, "pressure_bar": 2.5, "rpm": 1500, "mode": "auto"}),
        json!({
            "/temperature_c": {"absolute": 2.0},
            "/pressure_bar": {"relative": 0.05},
            "/rpm": {"relative": 0.02}
        }),
    )
}

/// A device's key: derived from its twin id, so a rerun signs with the same key.
fn signer(twin: &str) -> DeviceSigner {
    DeviceSigner::from_seed(
        &twinledger_core::Hash::digest(format!("twinledger simulate {twin}").as_bytes()).0,
    )
}

/// One simulated machine: noise around the nominal state, and drift episodes.
struct Machine {
    /// Reports left in the current drift (0: healthy).
    drifting: u32,
    /// How far the drift has gone, in units of tolerance.
    offset: f64,
}

impl Machine {
    fn next(&mut self, rng: &mut impl Rng, drift: f64) -> Value {
        if self.drifting == 0 && rng.gen_bool(drift.clamp(0.0, 1.0)) {
            self.drifting = rng.gen_range(5..30);
        }
        if self.drifting > 0 {
            self.drifting -= 1;
            self.offset += 0.6;
        } else {
            self.offset = 0.0;
        }
        let noise = |rng: &mut dyn rand::RngCore, x: f64| {
            x * (1.0 + (rng.next_u32() as f64 / u32::MAX as f64 - 0.5) * 0.002)
        };
        let temperature = noise(rng, 70.0) + self.offset * 2.0;
        let pressure = noise(rng, 2.5) * (1.0 + self.offset * 0.04);
        let rpm = (noise(rng, 1500.0) * (1.0 - self.offset * 0.015)).round();
        let mode = if self.offset > 4.0 { "manual" } else { "auto" };
        json!({
            "temperature_c": (temperature * 100.0).round() / 100.0,
            "pressure_bar": (pressure * 1000.0).round() / 1000.0,
            "rpm": rpm,
            "mode": mode,
        })
    }
}

impl SimulateArgs {
    /// Runs the devices.
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        if self.devices == 0 || self.rate.is_nan() || self.rate <= 0.0 {
            bail!("--devices and --rate must be positive");
        }
        let (host, port) = self.broker(&settings)?;
        let client = reqwest::Client::new();
        if let Some(api) = &self.api {
            self.prepare(&client, api).await?;
        }
        let baseline = match &self.api {
            Some(api) => Some(self.handled(&client, api).await?.0),
            None => None,
        };
        let mut tasks = Vec::new();
        let started = Instant::now();
        for i in 0..self.devices {
            let twin = format!("{}{i}", self.prefix);
            let id = TwinId::new(twin.clone()).context("invalid --prefix")?;
            let device = Device::connect(&host, port, id, self.sign.then(|| signer(&twin)))
                .await
                .with_context(|| format!("device {twin} cannot connect to {host}:{port}"))?;
            let (rate, messages, drift) = (self.rate, self.messages, self.drift);
            tasks.push(tokio::spawn(run_device(device, rate, messages, drift)));
        }
        eprintln!(
            "simulate: {} devices publishing to {host}:{port} at {} reports/s each{}",
            self.devices,
            self.rate,
            if self.messages.is_none() {
                " (Ctrl-C stops)"
            } else {
                ""
            }
        );
        let mut published = 0u64;
        let mut corrections = 0u64;
        let all = futures_join(tasks);
        tokio::select! {
            r = all => for (p, c) in r? { published += p; corrections += c; },
            _ = tokio::signal::ctrl_c() => {}
        }
        let publishing = started.elapsed();
        println!(
            "published {published} reports in {:.2} s ({:.0}/s); {corrections} corrections received",
            publishing.as_secs_f64(),
            published as f64 / publishing.as_secs_f64()
        );
        if let (Some(api), Some(_), Some(before)) = (&self.api, self.messages, baseline) {
            let done = self.wait_anchored(&client, api, before + published).await?;
            let total = started.elapsed();
            println!(
                "recorded and anchored {published} reports {:.2} s after the first was published: {:.0} reports/s end to end{}",
                total.as_secs_f64(),
                published as f64 / total.as_secs_f64(),
                done
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn broker(&self, settings: &Settings) -> Result<(String, u16)> {
        if let Some(b) = &self.broker {
            let (h, p) = b.rsplit_once(':').context("--broker must be host:port")?;
            return Ok((h.to_owned(), p.parse().context("--broker port")?));
        }
        let path = settings.data_dir.join("mqtt.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no --broker given and {} not found: is `twinledger serve` running with its embedded broker?",
                path.display()
            )
        })?;
        let v: Value = serde_json::from_str(&text)?;
        Ok((
            v["host"].as_str().unwrap_or("127.0.0.1").to_owned(),
            v["port"].as_u64().context("mqtt.json without a port")? as u16,
        ))
    }

    fn request(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => b.bearer_auth(k),
            None => b,
        }
    }

    /// Sets each twin's desired state (and device key) through the API.
    async fn prepare(&self, client: &reqwest::Client, api: &str) -> Result<()> {
        let (state, tolerances) = nominal();
        for i in 0..self.devices {
            let twin = format!("{}{i}", self.prefix);
            let r = self
                .request(client.put(format!("{api}/v1/twins/{twin}/desired")))
                .json(&json!({"state": state, "tolerances": tolerances}))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!(
                    "setting the desired state of {twin}: {} {}",
                    r.status(),
                    r.text().await?
                );
            }
            if self.sign {
                let r = self
                    .request(client.put(format!("{api}/v1/twins/{twin}/device-key")))
                    .json(&json!({"public_key": signer(&twin).public_key().to_hex(), "require_signature": true}))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!(
                        "registering the key of {twin}: {} {}",
                        r.status(),
                        r.text().await?
                    );
                }
            }
        }
        Ok(())
    }

    /// Device messages the service has recorded or refused so far, and the whole health.
    async fn handled(&self, client: &reqwest::Client, api: &str) -> Result<(u64, Value)> {
        let h: Value = self
            .request(client.get(format!("{api}/health")))
            .send()
            .await?
            .json()
            .await?;
        let handled = h["mqtt"]["recorded"].as_u64().unwrap_or(0)
            + h["mqtt"]["rejected"]["total"].as_u64().unwrap_or(0);
        Ok((handled, h))
    }

    /// Waits until the service has handled `published` device messages in all (counting
    /// those of earlier runs) and anchored the whole log.
    async fn wait_anchored(
        &self,
        client: &reqwest::Client,
        api: &str,
        published: u64,
    ) -> Result<&'static str> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (handled, h) = self.handled(client, api).await?;
            let records = h["database"]["records"].as_u64().unwrap_or(0);
            let anchored = h["anchoring"]["anchored_size"].as_u64().unwrap_or(0);
            if handled >= published && anchored >= records {
                let rejected = h["mqtt"]["rejected"]["total"].as_u64().unwrap_or(0);
                return Ok(if rejected > 0 {
                    " (some were refused: see /health)"
                } else {
                    ""
                });
            }
            if Instant::now() > deadline {
                bail!("not all reports were recorded and anchored within 120 s: {h}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn futures_join(
    tasks: Vec<tokio::task::JoinHandle<Result<(u64, u64)>>>,
) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.context("device task")??);
    }
    Ok(out)
}

/// Publishes reports until `messages` (or forever); returns (published, corrections).
async fn run_device(
    mut device: Device,
    rate: f64,
    messages: Option<u64>,
    drift: f64,
) -> Result<(u64, u64)> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut machine = Machine {
        drifting: 0,
        offset: 0.0,
    };
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut published, mut corrections) = (0u64, 0u64);
    while messages.is_none_or(|m| published < m) {
        tick.tick().await;
        let state = machine.next(&mut rng, drift);
        let state = parse(state.to_string().as_bytes(), &Limits::default())?;
        device.report(&state).await?;
        published += 1;
        // A correction from the ledger: the machine is set back to its desired state.
        if device.next_desired(Duration::ZERO).await.is_some() {
            corrections += 1;
            machine.drifting = 0;
            machine.offset = 0.0;
        }
    }
    device.disconnect().await;
    Ok((published, corrections))
}
