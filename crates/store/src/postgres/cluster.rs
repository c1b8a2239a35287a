//! A PostgreSQL cluster of its own in a temporary directory, on a free loopback port: what the
//! tests and `twinledger bench --database postgres` run against, the way the embedded chain is
//! an Anvil the program starts. Operators run their own PostgreSQL; nothing here is for them.
//!
//! `initdb` refuses to run as root, and CI runs as root: as root, every PostgreSQL program runs
//! as the `postgres` user that Debian's package creates (with `runuser`), in a directory handed
//! to that user.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No PostgreSQL server programs were found.
    #[error(
        "PostgreSQL's programs (initdb, pg_ctl) were not found in {searched}: install Debian's \
         `postgresql` package (scripts/setup.sh does) or set TWINLEDGER_PG_BINDIR"
    )]
    NotInstalled {
        /// Where they were looked for.
        searched: String,
    },
    /// Running as root, but there is no `postgres` user to run the server as.
    #[error("running as root needs the `postgres` user to own the cluster: {0}")]
    NoUser(String),
    /// A program failed.
    #[error("{program} failed: {detail}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status and output.
        detail: String,
    },
    /// A file or directory could not be made.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The role the cluster is made with, and its password.
pub const ROLE: &str = "twinledger";

/// A running PostgreSQL cluster, stopped (immediately) and deleted when dropped.
#[derive(Debug)]
pub struct LocalCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<String>,
}

impl LocalCluster {
    /// Makes a cluster with `initdb` (role [`ROLE`], password authentication) and starts it
    /// with `pg_ctl` on a free loopback port.
    pub fn start() -> Result<Self, ClusterError> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with extra server settings (`name=value`, as `postgres -c`).
    pub fn start_with(settings: &[&str]) -> Result<Self, ClusterError> {
        let bin = bindir()?;
        let run_as = if nix::unistd::geteuid().is_root() {
            Some("postgres".to_owned())
        } else {
            None
        };
        let dir = owned_tempdir(run_as.as_deref())?;
        let password = format!("pw-{:016x}", rand::random::<u64>());
        let pwfile = dir.path().join("password");
        std::fs::write(&pwfile, &password)?;
        let cluster = Self {
            port: free_port()?,
            dir,
            bin,
            password,
            run_as,
        };
        let data = cluster.data_dir();
        cluster.pg(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                ROLE,
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        cluster.launch(settings)?;
        Ok(cluster)
    }

    /// Starts the server of the data directory with `settings` (`name=value`).
    fn launch(&self, settings: &[&str]) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        for s in settings {
            options.push_str(" -c ");
            options.push_str(s);
        }
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &self.dir.path().join("server.log").display().to_string(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        Ok(())
    }

    /// A streaming standby of this cluster on a port of its own: a base backup taken with
    /// `pg_basebackup`, started in recovery and following this cluster's write-ahead log. It
    /// counts as synchronous once this cluster lists it in `synchronous_standby_names`.
    pub fn standby(&self) -> Result<Self, ClusterError> {
        let standby = Self {
            port: free_port()?,
            dir: owned_tempdir(self.run_as.as_deref())?,
            bin: self.bin.clone(),
            password: self.password.clone(),
            run_as: self.run_as.clone(),
        };
        let source = format!(
            "host=127.0.0.1 port={} user={ROLE} password={} application_name=standby",
            self.port, self.password
        );
        standby.pg(
            "pg_basebackup",
            &[
                "-D",
                &standby.data_dir().display().to_string(),
                "-d",
                &source,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        )?;
        standby.launch(&[])?;
        Ok(standby)
    }

    /// Ends recovery on a standby: it becomes a primary that takes writes.
    pub fn promote(&self) -> Result<(), ClusterError> {
        let data = self.data_dir().display().to_string();
        self.pg("pg_ctl", &["-D", &data, "-w", "promote"])?;
        Ok(())
    }

    /// Stops the server the way a crash does: no checkpoint, connections cut.
    pub fn crash(&self) -> Result<(), ClusterError> {
        let data = self.data_dir().display().to_string();
        self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])?;
        Ok(())
    }

    /// The password of the cluster's role.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` as [`ROLE`] with its password.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs PostgreSQL program `name` from the cluster's installation (as its owner).
    pub fn pg(&self, name: &str, args: &[&str]) -> Result<Output, ClusterError> {
        let program = self.bin.join(name).display().to_string();
        match &self.run_as {
            Some(user) => {
                let mut all = vec!["-u", user, "--", program.as_str()];
                all.extend_from_slice(args);
                self.run("runuser", &all)
            }
            None => self.run(&program, args),
        }
    }

    /// Makes sure the cluster is stopped and its directory deleted when this process exits,
    /// however it exits, even if the value is never dropped (a cluster a whole test binary
    /// shares lives in a static, and statics are not dropped).
    ///
    /// A watcher shell waits for the end of a pipe that only this process holds; the kernel
    /// closes it when the process exits, and the watcher then stops the server. It runs in its
    /// own process group, so a Ctrl-C to the tests does not kill it first.
    pub fn stop_when_process_exits(&self) -> Result<(), ClusterError> {
        use std::os::unix::process::CommandExt;
        let data = self.data_dir().display().to_string();
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let mut stop: Vec<&str> = Vec::new();
        if let Some(user) = &self.run_as {
            stop.extend(["runuser", "-u", user, "--"]);
        }
        stop.extend([
            pg_ctl.as_str(),
            "-D",
            &data,
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
        let mut watcher = Command::new("sh")
            .arg("-c")
            .arg(r#"cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf "$CLUSTER_DIR""#)
            .arg("twinledger-pg-watcher")
            .args(&stop)
            .env("CLUSTER_DIR", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()?;
        // Kept open, never written, until the process exits.
        std::mem::forget(watcher.stdin.take());
        Ok(())
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, ClusterError> {
        let out = Command::new(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| ClusterError::Failed {
                program: program.to_owned(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(ClusterError::Failed {
                program: format!("{program} {}", args.join(" ")),
                detail: format!(
                    "{}: {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(out)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let data = self.data_dir().display().to_string();
        let _ = self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// Where the server programs are: `TWINLEDGER_PG_BINDIR`, else Debian's
/// `/usr/lib/postgresql/<newest>/bin` (not on `PATH`), else `PATH`.
/// A temporary directory for a cluster, owned by `run_as` when the server runs as that user.
fn owned_tempdir(run_as: Option<&str>) -> Result<tempfile::TempDir, ClusterError> {
    let dir = tempfile::Builder::new()
        .prefix("twinledger-pg-")
        .tempdir()?;
    if let Some(name) = run_as {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| ClusterError::NoUser(e.to_string()))?
            .ok_or_else(|| ClusterError::NoUser("no such user".into()))?;
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))
            .map_err(|e| ClusterError::NoUser(format!("chown: {e}")))?;
    }
    Ok(dir)
}

fn bindir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os("TWINLEDGER_PG_BINDIR") {
        return has_initdb(PathBuf::from(dir));
    }
    let debian = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return has_initdb(dir);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").is_file())
        .ok_or_else(|| ClusterError::NotInstalled {
            searched: "/usr/lib/postgresql/*/bin and PATH".into(),
        })
}

fn has_initdb(dir: PathBuf) -> Result<PathBuf, ClusterError> {
    if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
        Ok(dir)
    } else {
        Err(ClusterError::NotInstalled {
            searched: dir.display().to_string(),
        })
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_the_programs_says_how_to_get_them() {
        let empty = tempfile::tempdir().expect("dir");
        let err = has_initdb(empty.path().to_path_buf()).expect_err("no initdb there");
        let text = err.to_string();
        assert!(
            text.contains(&empty.path().display().to_string())
                && text.contains("scripts/setup.sh")
                && text.contains("TWINLEDGER_PG_BINDIR"),
            "{text}"
        );
    }
}
