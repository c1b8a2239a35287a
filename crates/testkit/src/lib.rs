//! Test support for twinledger, used only by tests: where the pinned Anvil and Ganache are,
//! free loopback ports, [`FlakyRpc`] (a misbehaving RPC provider in front of a real node), and
//! [`App`], which runs the real `twinledger serve` binary on a fresh data directory and stops it
//! afterwards. [`App::spawn_env`] runs it in a process group of its
//! own, so that a crash test can kill the service and the nodes it started at once.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod flaky_rpc;

pub use flaky_rpc::{Faults, FlakyRpc, Injected};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn node_bin(name: &str) -> PathBuf {
    let p = workspace_root().join("node_modules/.bin").join(name);
    assert!(
        p.exists(),
        "{} not found: run scripts/setup.sh (npm ci) first",
        p.display()
    );
    p
}

/// The pinned Anvil from `node_modules`.
pub fn anvil_bin() -> PathBuf {
    node_bin("anvil")
}

/// The pinned Ganache from `node_modules`.
pub fn ganache_bin() -> PathBuf {
    node_bin("ganache")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A running `twinledger serve`.
pub struct App {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The data directory it runs on.
    pub data_dir: PathBuf,
    output: Arc<Mutex<String>>,
    /// Started by [`App::spawn_env`]: the service leads a process group of its own, which its
    /// Anvil and Mosquitto join.
    own_group: bool,
    /// The group got SIGKILL already: nothing of it can be left to stop.
    group_killed: bool,
}

impl App {
    /// Starts `bin serve --listen 127.0.0.1:0 --data-dir DATA_DIR ARGS...` and waits until it
    /// prints the address it listens on.
    pub fn spawn(bin: &Path, data_dir: &Path, args: &[&str]) -> App {
        Self::start(bin, data_dir, args, &[], false).unwrap_or_else(|output| {
            panic!("twinledger serve did not start:\n{output}");
        })
    }

    /// Like [`App::spawn`], with `envs` added to the environment, and the service in a new
    /// process group: a crash, the OOM killer or a power cut takes the service, its embedded
    /// Anvil and its Mosquitto down together, which [`App::kill_group`] reproduces.
    pub fn spawn_env(bin: &Path, data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> App {
        Self::try_spawn_env(bin, data_dir, args, envs).unwrap_or_else(|output| {
            panic!("twinledger serve did not start:\n{output}");
        })
    }

    /// Like [`App::spawn_env`]; a service that does not start is an `Err` with everything it
    /// printed, for tests in which a refusal to start is an outcome to look at.
    pub fn try_spawn_env(
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<App, String> {
        Self::start(bin, data_dir, args, envs, true)
    }

    fn start(
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        own_group: bool,
    ) -> Result<App, String> {
        let mut command = Command::new(bin);
        command.arg("serve");
        // A free port unless the test asks for one (to come back on the same after a restart).
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info,twinledger::node=warn")
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if own_group {
            command.process_group(0);
        }
        let mut child = command.spawn().expect("cannot start twinledger");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let out = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_owned());
                }
                if let Ok(mut o) = out.lock() {
                    o.push_str(&line);
                    o.push('\n');
                }
            }
        });
        let out = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut o) = out.lock() {
                    o.push_str(&line);
                    o.push('\n');
                }
            }
        });
        let base_url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => url,
            Err(_) => {
                if own_group {
                    // The nodes it may have started go too, or they outlive the test.
                    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(output.lock().map(|o| o.clone()).unwrap_or_default());
            }
        };
        Ok(App {
            child,
            base_url,
            data_dir: data_dir.to_path_buf(),
            output,
            own_group,
            group_killed: false,
        })
    }

    /// The service's process id (with [`App::spawn_env`], also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the service process has exited (and then how), without waiting.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The service URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL to the whole process group of a service started by [`App::spawn_env`]: the
    /// service, its Anvil and its Mosquitto die at the same instant, as in a crash or a power
    /// cut; then reaps the service. (The nodes are the service's children, so init reaps them.)
    pub fn kill_group(&mut self) {
        assert!(self.own_group, "kill_group needs an App from spawn_env");
        if !self.group_killed {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            self.group_killed = true;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit (the embedded node saves its state).
    pub fn terminate(&mut self) {
        assert!(
            self.stop_gracefully(Duration::from_secs(60)),
            "twinledger did not exit after SIGTERM"
        );
    }

    /// SIGTERM and up to `grace` to exit, then SIGKILL; whether it exited by itself.
    fn stop_gracefully(&mut self, grace: Duration) -> bool {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if self.group_killed {
            return;
        }
        if let Ok(None) = self.child.try_wait() {
            // Graceful, so that an embedded Anvil is stopped too rather than orphaned.
            self.stop_gracefully(Duration::from_secs(30));
        }
        if self.own_group {
            // A service that died by itself (a fault injected into it) leaves its nodes
            // running; they are still in its group.
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        }
    }
}
