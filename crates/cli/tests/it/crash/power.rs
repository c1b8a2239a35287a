//! Power cuts: the data directory lives on an ext4 file system in a loop device. Under load, the
//! file system is shut down with `EXT4_IOC_SHUTDOWN` and `EXT4_GOING_FLAGS_NOLOGFLUSH`, which
//! drops everything not yet on the device (unsynced page cache and the uncommitted journal), as
//! a power cut does; the process group is SIGKILLed, the file system unmounted and mounted
//! again (the journal is replayed), and the service restarted.
//!
//! The negative control runs the same cycles with fsync turned into a no-op (Debian's
//! eatmydata) and must see acknowledged records lost: a harness that cannot see a loss proves
//! nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twinledger_testkit::App;

use super::harness::*;
use crate::support::sh;

/// `_IOR('X', 125, __u32)`.
const EXT4_IOC_SHUTDOWN: &str = "0x8004587d";
/// Drop the journal's uncommitted transactions too, not only the page cache.
const EXT4_GOING_FLAGS_NOLOGFLUSH: &str = "2";

/// An ext4 file system on a loop device over a sparse image. Dropped (on a panic too), it is
/// unmounted and the loop device detached.
struct LoopFs {
    /// Holds the image and the mount point; not on the file system under test.
    dir: tempfile::TempDir,
    device: String,
    mounted: bool,
}

impl LoopFs {
    fn create() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(1 << 30))
            .expect("sparse image");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .expect("cannot run losetup");
        assert!(
            out.status.success(),
            "the power-loss suite needs root and a free loop device (losetup --find --show): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut fs = Self {
            device: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            dir,
            mounted: false,
        };
        sh("mkfs.ext4", &["-q", &fs.device]);
        std::fs::create_dir(fs.mount_point()).expect("mount point");
        fs.mount();
        std::fs::create_dir(fs.data_dir()).expect("data directory");
        fs
    }

    fn mount_point(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// A directory of the file system rather than its root, which holds `lost+found`.
    fn data_dir(&self) -> PathBuf {
        self.mount_point().join("data")
    }

    fn mount(&mut self) {
        sh(
            "mount",
            &[&self.device, self.mount_point().to_str().expect("path")],
        );
        self.mounted = true;
    }

    /// The power cut.
    fn cut_power(&self) {
        sh(
            "python3",
            &[
                "-c",
                "import fcntl,os,struct,sys; fd=os.open(sys.argv[1], os.O_RDONLY); \
                 fcntl.ioctl(fd, int(sys.argv[2], 16), struct.pack('I', int(sys.argv[3])))",
                self.mount_point().to_str().expect("path"),
                EXT4_IOC_SHUTDOWN,
                EXT4_GOING_FLAGS_NOLOGFLUSH,
            ],
        );
    }

    /// Unmounts; the killed processes release their files within moments of dying.
    fn unmount(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("umount")
                .arg(self.mount_point())
                .output()
                .expect("cannot run umount");
            if out.status.success() {
                self.mounted = false;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cannot unmount the test file system: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the operator does after the power comes back: mount again, replaying the journal.
    fn remount(&mut self) {
        self.unmount();
        self.mount();
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let busy = !Command::new("umount")
                .arg(self.mount_point())
                .status()
                .is_ok_and(|s| s.success());
            if busy {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(self.mount_point())
                    .status();
            }
        }
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// The loop file system and the service on it. Fields drop in order: the service stops before
/// its file system is unmounted.
struct Rig {
    app: Option<App>,
    fs: LoopFs,
    envs: Vec<(String, String)>,
    acks: Arc<Acks>,
}

impl Rig {
    /// A service on a fresh loop file system, with a few records made durable by a clean stop
    /// and a `sync`: a cut then loses records, not the whole database or its contract.
    async fn new(envs: Vec<(String, String)>) -> Self {
        require_root("power-loss");
        require_tool("losetup", "--version", "mount");
        require_tool("mkfs.ext4", "-V", "e2fsprogs");
        require_tool("python3", "--version", "python3");
        let fs = LoopFs::create();
        let mut rig = Self {
            app: None,
            fs,
            envs,
            acks: Arc::default(),
        };
        let mut app = rig.spawn().unwrap_or_else(|out| panic!("serve: {out}"));
        for i in 0..5 {
            let twin = format!("baseline-{}", i % 2);
            let state = json!({"baseline": i});
            let (status, body) =
                crate::support::post_state(&app, &twin, "?wait=anchored", state.clone()).await;
            assert_eq!(status, 201, "{body}");
            let version = body["version"].as_u64().expect("version");
            rig.acks.ack(&twin, version, state, Source::Http);
        }
        app.terminate();
        sh("sync", &["-f", rig.fs.data_dir().to_str().expect("path")]);
        rig.app = Some(rig.spawn().unwrap_or_else(|out| panic!("serve: {out}")));
        rig
    }

    fn spawn(&self) -> Result<App, String> {
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        spawn(&self.fs.data_dir(), &envs)
    }

    fn data_dir(&self) -> PathBuf {
        self.fs.data_dir()
    }

    /// One cycle: load, a power cut at a random moment, the group killed, the file system
    /// mounted again, the service restarted (`Err` with its output if it would not start),
    /// and the database checked against the acknowledgements.
    async fn cycle(&mut self, cycle: usize, rng: &mut Rng) -> (Result<(), String>, Findings) {
        let mut app = self.app.take().expect("a running service");
        let load = Load::start(&app, cycle, &self.acks, &LoadSpec::default()).await;
        tokio::time::sleep(rng.millis(200, 2000)).await;
        self.fs.cut_power();
        app.kill_group();
        load.stop().await;
        let before = app.output();
        drop(app);
        self.fs.remount();
        let restarted = self.spawn().map(|app| self.app = Some(app)).map_err(|out| {
            format!(
                "{out}\nthe service's last lines before the cut:\n{}",
                tail(&before, 40)
            )
        });
        let findings = check(&self.data_dir(), self.app.as_ref(), &self.acks).await;
        (restarted, findings)
    }
}

/// Power cuts at random moments under load, `TWINLEDGER_POWER_CYCLES` times: the service comes
/// back by itself and every acknowledged record is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_under_load_lose_no_acknowledged_record() {
    let _serial = SERIAL.lock().await;
    let cycles = env_count("TWINLEDGER_POWER_CYCLES", 3);
    let mut rng = Rng::from_env("power");
    let started = Instant::now();
    let mut rig = Rig::new(Vec::new()).await;
    for cycle in 0..cycles {
        let (restarted, findings) = rig.cycle(cycle, &mut rng).await;
        if let Err(out) = restarted {
            // What the database held is still worth knowing when the service refused it.
            panic!(
                "power cut {}: serve did not come back by itself:\n{out}\nthe database, read \
                 directly: {} of {} acknowledged records lost, {} stored, problems: {:?}",
                cycle + 1,
                findings.lost.len(),
                findings.acked,
                findings.records,
                findings.problems
            );
        }
        findings.assert_clean(&format!("after power cut {}", cycle + 1), rig.app.as_ref());
        println!(
            "power {}/{cycles}: {} acknowledged, {} stored",
            cycle + 1,
            findings.acked,
            findings.records
        );
    }
    let app = rig.app.as_ref().expect("service");
    let fin = final_checks(app, &rig.data_dir()).await;
    let (http, mqtt, indeterminate) = rig.acks.counts();
    let (lost_events, lost_heads) = chain_losses(&rig.data_dir());
    assert!(
        http >= 20 * cycles as u64,
        "too few HTTP writes acknowledged: {http}"
    );
    println!(
        "power: {cycles} power cuts in {:.0} s; {} records acknowledged ({http} HTTP, {mqtt} \
         MQTT), {indeterminate} indeterminate; {} records found, all anchored; {} twins Valid; \
         audit clean; the embedded chain lost anchors in {lost_events} restarts ({lost_heads} \
         heads), all anchored again",
        started.elapsed().as_secs_f64(),
        rig.acks.len(),
        fin.records,
        fin.twins
    );
    if let Some(mut app) = rig.app.take() {
        app.terminate();
    }
}

/// The most power cuts the control may need to see a loss. A cut lands within about two
/// seconds of the last durable point here, and with fsync a no-op nothing written since
/// reaches the device before the kernel's periodic writeback (every 5 s, for data older than
/// 30 s): so the first cut already loses, and more than a few would mean the harness is blind.
const CONTROL_MAX_CYCLES: usize = 5;

/// The negative control: the same harness with fsync and fdatasync turned into no-ops must
/// report acknowledged records lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_power_cut_harness_sees_the_losses_of_a_service_without_fsync() {
    let _serial = SERIAL.lock().await;
    let lib = eatmydata_library();
    let mut rng = Rng::from_env("power control");
    let mut rig = Rig::new(vec![("LD_PRELOAD".into(), lib)]).await;
    for cycle in 0..CONTROL_MAX_CYCLES {
        let (restarted, findings) = rig.cycle(cycle, &mut rng).await;
        if !findings.lost.is_empty() {
            println!(
                "power control (eatmydata): after {} power cut(s), {} of {} acknowledged \
                 records lost ({} stored); first: {}",
                cycle + 1,
                findings.lost.len(),
                findings.acked,
                findings.records,
                findings.lost[0]
            );
            if let Some(mut app) = rig.app.take() {
                app.kill_group();
            }
            return;
        }
        if let Err(out) = restarted {
            panic!(
                "power cut {} without fsync: no acknowledged record lost, but serve did not \
                 start again, so the control cannot go on:\n{out}",
                cycle + 1
            );
        }
    }
    panic!(
        "{CONTROL_MAX_CYCLES} power cuts with fsync turned off lost no acknowledged record: the \
         harness cannot see a loss ({} acknowledged)",
        rig.acks.len()
    );
}

/// The path of Debian's libeatmydata, which turns fsync, fdatasync, sync and O_SYNC into
/// no-ops for the processes it is preloaded into.
fn eatmydata_library() -> String {
    let out = Command::new("dpkg")
        .args(["-L", "libeatmydata1"])
        .output()
        .expect("cannot run dpkg");
    let listed = String::from_utf8_lossy(&out.stdout);
    let lib = listed
        .lines()
        .find(|l| l.ends_with("/libeatmydata.so") || l.ends_with("/libeatmydata.so.1"))
        .filter(|l| Path::new(l).exists())
        .unwrap_or_else(|| {
            panic!(
                "libeatmydata.so not found: install the Debian package eatmydata \
                 (scripts/setup.sh does)"
            )
        });
    lib.to_owned()
}
