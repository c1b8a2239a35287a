//! Storage faults: a full disk, and a file system that turns read-only under the service. Writes
//! must fail with a clear 503 and leave nothing behind; reads go on; writes resume, with no gap
//! in the log, once the storage is fixed.
//!
//! These tests mount real file systems, so they need root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_chain::NodeKind;
use twinledger_testkit::{App, free_port};

use crate::support::*;

/// Unmounts `dir`; lazily if it is still busy, so that a failed test leaves no mount behind.
fn unmount(dir: &Path) {
    let ok = Command::new("umount")
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount").arg("-l").arg(dir).status();
    }
}

/// A small tmpfs, unmounted when dropped (on panic too).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on a fresh directory.
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "this test needs root to mount a tmpfs (mount -t tmpfs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(self.dir.path());
    }
}

/// An ext4 file system in an image file, loop-mounted with `errors=remount-ro`: on an error the
/// kernel makes it read-only under every open file, the way a failing disk does. Unmounted when
/// dropped (on panic too).
struct Ext4 {
    /// Holds the image; not on the file system under test.
    image_dir: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Ext4 {
    /// Creates a 32 MiB image and mounts it.
    fn mount() -> Self {
        let image_dir = tempfile::tempdir().expect("tempdir");
        let dir = tempfile::tempdir().expect("tempdir");
        let image = image_dir.path().join("fs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(32 << 20))
            .expect("image file");
        sh("mkfs.ext4", &["-q", image.to_str().expect("path")]);
        let fs = Self { image_dir, dir };
        fs.mount_image();
        fs
    }

    fn image(&self) -> PathBuf {
        self.image_dir.path().join("fs.img")
    }

    fn mount_image(&self) {
        let out = Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(self.image())
            .arg(self.dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "this test needs root and a loop device to mount an ext4 image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes the kernel record a file system error, as it does when the disk fails a write:
    /// with `errors=remount-ro`, every later write to the file system fails with EROFS.
    fn fail(&self) {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(self.dir.path())
            .output()
            .expect("cannot run findmnt");
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let device = Path::new(&source)
            .file_name()
            .unwrap_or_else(|| panic!("no loop device mounted on the test directory: {source:?}"))
            .to_string_lossy()
            .into_owned();
        std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1")
            .expect("trigger an ext4 error");
        let probe = std::fs::write(self.dir.path().join("probe"), "x");
        assert!(probe.is_err(), "the file system should be read-only now");
    }

    /// What an operator does after such an error: unmount, check, mount again. The kernel never
    /// makes a file system read-write again while it is mounted after an error.
    fn repair(&self) {
        unmount(self.dir.path());
        let status = Command::new("e2fsck")
            .arg("-fy")
            .arg(self.image())
            .output()
            .expect("cannot run e2fsck")
            .status;
        // 0: clean; 1: errors corrected (the recorded error itself).
        assert!(
            matches!(status.code(), Some(0 | 1)),
            "e2fsck could not repair the image: {status}"
        );
        self.mount_image();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        unmount(self.dir.path());
    }
}

/// Fills the file system holding `dir` with one file, writing until the kernel answers
/// ENOSPC; returns the file, whose removal gives the space back.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let zeros = vec![0u8; 1 << 16];
    // Smaller and smaller writes, so that not even a fraction of a page is left free.
    for size in [1 << 16, 4096, 512, 1] {
        loop {
            match file.write(&zeros[..size]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk failed otherwise: {e}"),
            }
        }
    }
    path
}

/// `POST /v1/twins/{twin}/states` with `state`; status and JSON answer.
async fn post_state(app: &App, twin: &str, state: Value) -> (u16, Value) {
    let r = http()
        .post(app.url(&format!("/v1/twins/{twin}/states")))
        .json(&state)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON answer"))
}

/// The versions of `twin` the service lists, in order.
async fn versions(app: &App, twin: &str) -> Vec<u64> {
    let (status, body) = get(app, &format!("/v1/twins/{twin}/history")).await;
    assert_eq!(status, 200, "{body}");
    body["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {body}"))
        .iter()
        .map(|r| r["version"].as_u64().expect("version"))
        .collect()
}

/// Polls `/health` until `done` holds, for at most 60 s; returns the last answer.
async fn health_until(app: &App, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, health) = get(app, "/health").await;
        if done(&health) {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "health never got there: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that a write was refused with 503 and a message naming the storage fault.
fn assert_refused(status: u16, body: &Value, fault: &str) {
    assert_refused_saying(status, body, fault, "nothing was written");
}

/// Asserts that a write was refused with 503, naming the storage fault and ending with `end`.
fn assert_refused_saying(status: u16, body: &Value, fault: &str, end: &str) {
    assert_eq!(status, 503, "{body}");
    let msg = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(
        msg.starts_with("storage unavailable: ") && msg.contains(fault),
        "{msg}"
    );
    assert!(msg.ends_with(end), "{msg}");
}

/// The log indexes stored, in order.
fn stored_indexes(dir: &Path) -> Vec<i64> {
    let db = db(dir);
    let mut stmt = db
        .prepare("SELECT idx FROM records ORDER BY idx")
        .expect("query");
    stmt.query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("indexes")
}

/// The status of the stored anchor of tree size `size`, if there is one.
fn anchor_status(dir: &Path, size: i64) -> Option<String> {
    db(dir)
        .query_row("SELECT status FROM anchors WHERE size = ?1", [size], |r| {
            r.get(0)
        })
        .ok()
}

/// `twinledger audit --json` on `dir`, alongside the running service: exit code and report.
fn audit(dir: &Path, rpc: &str) -> (Option<i32>, Value) {
    let out = run(&[
        "audit",
        "--json",
        "--rpc",
        rpc,
        "--data-dir",
        dir.to_str().expect("path"),
    ]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_answers_503_writes_nothing_and_recovers_when_space_returns() {
    // Declared first, so it is unmounted after the service has stopped.
    let fs = Tmpfs::mount("8m");
    let dir = fs.path();
    // The chain keeps its state off the tmpfs: only the service's own files fill it.
    let chain_dir = data_dir();
    let chain_state = chain_dir.path().join("anvil-state.json.gz");
    let port = free_port();
    let node = start_node(NodeKind::Anvil, port, Some(chain_state.clone())).await;
    let rpc = node.url().to_owned();
    deploy_in(dir, &rpc, "log");
    let app = external_app(dir, &["--rpc", &rpc]);
    for t in [1, 2] {
        let (status, body) = post_update(&app, "boiler", json!({"t": t})).await;
        assert_eq!(status, 200, "{body}");
    }
    // A record stored while the chain is down, so that its anchor has to be noted while the
    // disk is full.
    let (_, health) = get(&app, "/health").await;
    let blocks_before = health["chain"]["block_number"]
        .as_u64()
        .expect("block number");
    node.stop(Duration::from_secs(30)).await.expect("stop node");
    let (status, body) = post_state(&app, "boiler", json!({"t": 3})).await;
    assert_eq!((status, body["version"].as_u64()), (201, Some(3)), "{body}");

    let filler = fill(dir);
    let node = start_node(NodeKind::Anvil, port, Some(chain_state)).await;

    let full = "the disk holding the database is full (database or disk is full)";
    let (status, body) = post_state(&app, "boiler", json!({"t": 4})).await;
    assert_refused(status, &body, full);
    let (status, body) = post_update(&app, "kiln", json!({"t": 1})).await;
    assert_refused(status, &body, full);
    // Nothing partial: no version, no twin, no row; reads still answer.
    assert_eq!(versions(&app, "boiler").await, [1, 2, 3]);
    let (status, body) = get(&app, "/v1/twins/kiln").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(stored_indexes(dir), [0, 1, 2]);
    let (status, health) = get(&app, "/health").await;
    assert_eq!(
        (status, &health["status"]),
        (503, &json!("degraded")),
        "{health}"
    );
    assert_eq!(health["database"]["ok"], false, "{health}");
    assert_eq!(health["database"]["records"], 3, "{health}");
    let write_error = health["database"]["write_error"].as_str().unwrap_or("");
    assert!(write_error.contains(full), "{health}");
    assert_eq!(
        metric(&app, "twinledger_write_failures_total").await,
        Some(2.0),
        "one failed batch for each refused write"
    );

    // The pending record's anchor is noted before it is sent, and cannot be noted: nothing
    // goes on chain (Anvil mines a block only for a transaction), the anchorer says why.
    health_until(&app, |h| {
        h["anchoring"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(full))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, health) = get(&app, "/health").await;
    assert_eq!(
        health["chain"]["block_number"].as_u64(),
        Some(blocks_before),
        "an anchor went out that could not be noted: {health}"
    );
    assert_eq!(
        anchor_status(dir, 3),
        None,
        "noted although the disk is full"
    );

    std::fs::remove_file(filler).expect("free the space");
    // The anchorer resumes by itself: the pending record is anchored once space returns.
    let deadline = Instant::now() + Duration::from_secs(60);
    while anchor_status(dir, 3).is_none_or(|s| s == "sent") {
        assert!(
            Instant::now() < deadline,
            "the pending record was never anchored: {:?}",
            anchor_status(dir, 3)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = post_state(&app, "boiler", json!({"t": 4})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["version"].as_u64(), body["index"].as_u64()),
        (Some(4), Some(3)),
        "no gap where the failed writes were: {body}"
    );
    let (status, body) = post_update(&app, "kiln", json!({"t": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(versions(&app, "boiler").await, [1, 2, 3, 4]);
    assert_eq!(stored_indexes(dir), [0, 1, 2, 3, 4]);
    assert_eq!(integrity(&app, "boiler").await, "Valid");
    assert_eq!(integrity(&app, "kiln").await, "Valid");
    let health = health_until(&app, |h| {
        h["status"] == "ok" && h["anchoring"]["anchored_size"] == 5 && h["database"]["pending"] == 0
    })
    .await;
    assert!(health["database"].get("write_error").is_none(), "{health}");

    let (code, report) = audit(dir, &rpc);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["records"], 5, "{report}");
    drop(app);
    node.stop(Duration::from_secs(30)).await.expect("stop node");
}

/// Linux refuses `mount -o remount,ro` while files on the file system are open for writing, as
/// the service's database is; what makes a database read-only under a running service is the
/// kernel reacting to a disk error (`errors=remount-ro`), which this test provokes.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_system_turned_read_only_fails_writes_with_503_and_keeps_reads() {
    // Declared first, so it is unmounted after the service has stopped.
    let fs = Ext4::mount();
    let dir = fs.path();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = node.url().to_owned();
    deploy_in(dir, &rpc, "log");
    let mut app = external_app(dir, &["--rpc", &rpc]);
    for p in [1, 2] {
        let (status, body) = post_update(&app, "press", json!({"bar": p})).await;
        assert_eq!(status, 200, "{body}");
    }

    fs.fail();
    let failed = "the disk or file system failed (disk I/O error)";
    // The write that met the failure cannot know whether it reached the disk; every later one
    // is refused before it is tried, until a restart.
    let (status, body) = post_state(&app, "press", json!({"bar": 3})).await;
    assert_refused_saying(
        status,
        &body,
        failed,
        "(retry with the same Idempotency-Key to write it once)",
    );
    let (status, body) = post_update(&app, "press", json!({"bar": 3})).await;
    assert_refused(status, &body, failed);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("refused until the service is restarted")),
        "{body}"
    );
    // Reads, verification included, still work; nothing partial was written.
    assert_eq!(versions(&app, "press").await, [1, 2]);
    assert_eq!(integrity(&app, "press").await, "Valid");
    let (_, verdict) = get(&app, "/v1/twins/press/verify").await;
    assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    let (status, health) = get(&app, "/health").await;
    assert_eq!(status, 503, "{health}");
    let write_error = health["database"]["write_error"].as_str().unwrap_or("");
    assert!(write_error.contains(failed), "{health}");

    app.terminate();
    fs.repair();
    let app = external_app(dir, &["--rpc", &rpc]);
    let (status, body) = post_state(&app, "press", json!({"bar": 3})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["version"].as_u64(), body["index"].as_u64()),
        (Some(3), Some(2)),
        "no gap where the failed writes were: {body}"
    );
    let (status, body) = post_update(&app, "press", json!({"bar": 4})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(versions(&app, "press").await, [1, 2, 3, 4]);
    let (code, report) = audit(dir, &rpc);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["records"], 4, "{report}");
    drop(app);
    node.stop(Duration::from_secs(30)).await.expect("stop node");
}
