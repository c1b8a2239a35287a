//! A Mosquitto broker run as a child process on loopback: the development setup and tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::MqttError;

/// A running Mosquitto; dropping it kills it.
#[derive(Debug)]
pub struct LocalBroker {
    child: Child,
    port: u16,
}

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where Debian installs the broker (`/usr/sbin` is not on every user's `PATH`).
fn program() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}

impl LocalBroker {
    /// Starts Mosquitto on `127.0.0.1:port` (0: a free port) with its configuration in `dir`:
    /// anonymous clients, no persistence, up to 1,000 unacknowledged messages per client in
    /// flight (the default 20 would cap the ingestion's throughput).
    pub async fn start(dir: &Path, port: u16) -> Result<Self, MqttError> {
        let port = match port {
            0 => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| MqttError::Broker(format!("no free port: {e}")))?,
            p => p,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| MqttError::Broker(format!("{}: {e}", dir.display())))?;
        let conf = dir.join("mosquitto.conf");
        let pid_file = dir.join("mosquitto.pid");
        stop_stale(&pid_file, &conf).await;
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n\
                 max_inflight_messages 1000\nmax_queued_messages 100000\n"
            ),
        )
        .map_err(|e| MqttError::Broker(format!("{}: {e}", conf.display())))?;
        let program = program();
        let child = Command::new(&program)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                MqttError::Broker(format!(
                    "cannot start {} ({e}); install it with `apt-get install mosquitto` \
                     (scripts/setup.sh does)",
                    program.display()
                ))
            })?;
        if let Some(pid) = child.id() {
            // A `serve` killed outright leaves its broker running: the next start stops it.
            let _ = std::fs::write(&pid_file, pid.to_string());
        }
        let mut broker = Self { child, port };
        let started = tokio::time::Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(broker);
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(MqttError::Broker(format!(
                    "exited at start ({status}); is port {port} taken?"
                )));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(MqttError::Broker("did not listen within 20 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it (SIGTERM) and waits.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Stops a broker an earlier, killed run started on the same configuration file.
async fn stop_stale(pid_file: &Path, conf: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    // After a reboot the pid may belong to another program: only our mosquitto is stopped.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if pid <= 0 || !cmdline.contains("mosquitto") || !cmdline.contains(&*conf.to_string_lossy()) {
        return;
    }
    tracing::warn!(target: "twinledger::mqtt", pid, "stopping a broker left by an earlier run");
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    for _ in 0..100 {
        if kill(pid, None).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = kill(pid, Signal::SIGKILL);
}
