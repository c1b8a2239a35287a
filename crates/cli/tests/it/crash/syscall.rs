//! Per-syscall faults: strace, attached to the service's writer thread, makes one file-system
//! call of an append batch fail with EIO, or kills the service in it, for every such call
//! (`TWINLEDGER_SYSCALL_FULL=1`) or the first of each kind (the default).
//!
//! strace counts a syscall's invocations per traced thread from the moment it attaches, and
//! with `-P` only those on the given paths: attached to the writer thread alone and filtered to
//! the database files, `when=N` is the N-th such call from the next batch on. The indexes tried
//! are those counted in a few traced batches of one record (the most of each call); the run
//! checks that the call strace failed or killed is indeed the N-th it traced.
//!
//! After each run the service is stopped (SIGTERM if the fault left it running; its group is
//! SIGKILLed if the fault killed it), started again without strace, and the ledger and `audit`
//! checked.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use twinledger_testkit::App;

use super::harness::*;
use crate::support::data_dir;

/// The thread that appends batches; the kernel keeps 15 bytes of a thread's name.
const WRITER_THREAD: &str = "twinledger-wri";

/// The calls after which a failure means the data may not be on the device.
const SYNC_CALLS: [&str; 2] = ["fdatasync", "fsync"];

/// The service's writer thread.
fn writer_tid(app: &App) -> u32 {
    let tasks = format!("/proc/{}/task", app.pid());
    for entry in std::fs::read_dir(&tasks).expect("task list") {
        let entry = entry.expect("task");
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(WRITER_THREAD) {
            return entry
                .file_name()
                .to_string_lossy()
                .parse()
                .expect("thread id");
        }
    }
    panic!("no thread named twinledger-writer in {tasks}");
}

/// The database files, as the kernel names them in /proc (strace's `-P` compares with that).
fn database_paths(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().expect("data directory");
    ["twinledger.db", "twinledger.db-wal", "twinledger.db-shm"]
        .iter()
        .map(|f| dir.join(f).to_string_lossy().into_owned())
        .collect()
}

/// strace attached to one thread, writing to a file.
struct Strace {
    child: Child,
    out: PathBuf,
}

impl Strace {
    /// Attaches to `tid`, tracing only calls on `paths`, with `args` (`-e ...`); returns once
    /// strace says it is attached.
    fn attach(tid: u32, paths: &[String], args: &[String], out: PathBuf) -> Self {
        let mut cmd = Command::new("strace");
        cmd.args(["-y", "-o"])
            .arg(&out)
            .arg("-p")
            .arg(tid.to_string());
        for p in paths {
            cmd.args(["-P", p]);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run strace");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                said.push_str(&line);
                said.push('\n');
                if line.contains("attached") {
                    let _ = tx.send(Ok(()));
                }
            }
            let _ = tx.send(Err(said));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => Self { child, out },
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("strace did not attach to thread {tid}: {other:?}");
            }
        }
    }

    /// Detaches (strace lets the thread go on) and returns what it wrote.
    fn detach(mut self) -> String {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
            let _ = self.child.wait();
        }
    }
}

/// The syscall names in strace output, in order.
fn calls(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|l| !l.starts_with("+++") && !l.starts_with("---") && !l.contains("resumed>"))
        .filter_map(|l| l.split_once('(').map(|(name, _)| name.trim().to_owned()))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Eio,
    Kill,
}

impl Fault {
    fn inject(self) -> &'static str {
        match self {
            Self::Eio => "error=EIO",
            Self::Kill => "signal=KILL",
        }
    }
}

/// One injection point: the `n`-th call of `syscall` in a batch.
#[derive(Debug, Clone)]
struct Point {
    syscall: String,
    n: usize,
    fault: Fault,
}

/// POSTs `state` with `wait=stored`; the status and body, or `None` if no answer came.
async fn post(
    client: &reqwest::Client,
    app: &App,
    twin: &str,
    state: &Value,
) -> Option<(u16, Value)> {
    let r = client
        .post(app.url(&format!("/v1/twins/{twin}/states")))
        .json(state)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Whether `state` is stored as a version of `twin`.
fn is_stored(dir: &Path, twin: &str, state: &Value) -> bool {
    let db = crate::support::db(dir);
    let mut stmt = db
        .prepare("SELECT state FROM records WHERE twin_id = ?1")
        .expect("query");
    let states: Vec<String> = stmt
        .query_map([twin], |r| r.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("states");
    states
        .iter()
        .any(|s| serde_json::from_str::<Value>(s).is_ok_and(|s| s == *state))
}

/// Whether a write's answer is one the service may give under a storage fault: stored (201
/// with a version), or refused cleanly (503 with a JSON error).
fn clean_answer(status: u16, body: &Value) -> bool {
    (status == 201 && body["version"].is_u64()) || (status == 503 && body["error"].is_string())
}

/// Counts the file-system calls one append batch of one record makes on the writer thread;
/// also returns them in order.
async fn count_batch(
    app: &App,
    scratch: &Path,
    round: usize,
) -> (Vec<(String, usize)>, Vec<String>) {
    let paths = database_paths(&app.data_dir);
    let strace = Strace::attach(
        writer_tid(app),
        &paths,
        &[],
        scratch.join(format!("count-{round}.txt")),
    );
    let (status, body) = post(
        &crate::support::http(),
        app,
        "counted",
        &json!({"round": round}),
    )
    .await
    .expect("answer");
    assert_eq!(status, 201, "{body}");
    let trace = strace.detach();
    let sequence = calls(&trace);
    let mut counts: Vec<(String, usize)> = Vec::new();
    for name in &sequence {
        match counts.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name.clone(), 1)),
        }
    }
    assert!(
        !counts.is_empty(),
        "strace saw no file-system call of a batch on the writer thread:\n{trace}"
    );
    (counts, sequence)
}

/// What one injection run saw.
struct Outcome {
    injected: bool,
    answers: BTreeMap<u16, usize>,
    no_answer: usize,
    /// Writes answered with an error: (twin, state, the error).
    refused: Vec<(String, Value, String)>,
}

/// Runs one injection point against `app` (which it may kill); returns what happened, after
/// asserting what the service must do.
async fn inject(
    app: &mut App,
    point: &Point,
    acks: &Arc<Acks>,
    scratch: &Path,
    run: usize,
) -> Outcome {
    let paths = database_paths(&app.data_dir);
    let Point { syscall, n, fault } = point;
    let strace = Strace::attach(
        writer_tid(app),
        &paths,
        &[
            "-e".into(),
            format!("trace={syscall}"),
            "-e".into(),
            format!("inject={syscall}:{}:when={n}", fault.inject()),
        ],
        scratch.join(format!("inject-{run}.txt")),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    // A few writers with a few records each: several batches, of which the first meets the
    // fault.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (client, base, acks) = (client.clone(), app.base_url.clone(), acks.clone());
            let app_url = move |p: &str| format!("{base}{p}");
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for i in 0..4 {
                    let twin = format!("sys-{w}");
                    let state = json!({"run": run, "writer": w, "i": i});
                    let sent = client
                        .post(app_url(&format!("/v1/twins/{twin}/states")))
                        .json(&state)
                        .send()
                        .await;
                    let Ok(r) = sent else {
                        acks.indeterminate();
                        seen.push(None);
                        break;
                    };
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    match body["version"].as_u64() {
                        Some(v) if status == 201 => acks.ack(&twin, v, state.clone(), Source::Http),
                        _ => acks.indeterminate(),
                    }
                    seen.push(Some((twin, state, status, body)));
                }
                seen
            })
        })
        .collect();
    let mut answers = BTreeMap::new();
    let mut no_answer = 0;
    let mut refused = Vec::new();
    for w in writers {
        for seen in w.await.expect("writer") {
            match seen {
                Some((twin, state, status, body)) => {
                    if status != 201 {
                        let error = body["error"].as_str().unwrap_or_default().to_owned();
                        refused.push((twin, state, error));
                    }
                    assert!(
                        fault == &Fault::Kill || clean_answer(status, &body),
                        "{point:?}: the write was answered {status} {body}, neither stored nor \
                         refused cleanly\n{}",
                        tail(&app.output(), 30)
                    );
                    *answers.entry(status).or_insert(0) += 1;
                }
                None => no_answer += 1,
            }
        }
    }
    // A service killed in a syscall is dead before strace is told to let go: strace may
    // otherwise detach before it reports the death.
    let died = fault == &Fault::Kill && {
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.try_wait().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.try_wait().is_some()
    };
    let trace = strace.detach();
    if std::env::var_os("TWINLEDGER_SYSCALL_TRACE").is_some() {
        println!("syscall: strace output of {point:?}:\n{trace}");
    }
    // The n-th traced call must be the one that failed or never returned: strace counted
    // what the batch count did.
    let traced: Vec<&str> = trace
        .lines()
        .filter(|l| l.starts_with(&format!("{syscall}(")))
        .collect();
    let hit = traced.iter().position(|l| match fault {
        Fault::Eio => l.contains("(INJECTED)"),
        Fault::Kill => l.trim_end().ends_with("= ?"),
    });
    let injected = hit.is_some();
    if injected {
        assert_eq!(hit, Some(n - 1), "{point:?}: injected elsewhere:\n{trace}");
    }
    match fault {
        Fault::Kill if injected => {
            assert!(died, "{point:?}: the service survived SIGKILL\n{trace}");
        }
        Fault::Eio if injected => {
            let probe = json!({"run": run, "probe": true});
            let (status, body) = post(&client, app, "sys-probe", &probe)
                .await
                .unwrap_or_else(|| panic!("{point:?}: no answer after the fault"));
            if SYNC_CALLS.contains(&syscall.as_str()) {
                // Retrying after a failed sync could acknowledge data the kernel has dropped:
                // the writer must refuse until a restart has checked the log.
                assert_eq!(
                    (status, body["error"].is_string()),
                    (503, true),
                    "{point:?}: a write after a failed {syscall} was not refused: {body}\n{}",
                    tail(&app.output(), 30)
                );
                let (status, health) = get_json(app, "/health").await;
                let write_error = if health["database"]["write_error"].is_null() {
                    &health["write_error"]
                } else {
                    &health["database"]["write_error"]
                };
                assert!(
                    status == 503 && !write_error.is_null(),
                    "{point:?}: /health after a failed {syscall}: {status} {health}"
                );
            } else {
                assert!(
                    clean_answer(status, &body),
                    "{point:?}: after the fault a write was answered {status} {body}"
                );
                if status == 201 {
                    let v = body["version"].as_u64().expect("version");
                    acks.ack("sys-probe", v, probe, Source::Http);
                }
                let (status, _) = get_json(app, "/health").await;
                assert!(
                    status == 200 || status == 503,
                    "{point:?}: /health answered {status}"
                );
            }
        }
        _ => {}
    }
    Outcome {
        injected,
        answers,
        no_answer,
        refused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_system_call_of_a_batch_can_fail_or_crash_without_losing_an_ack() {
    let _serial = SERIAL.lock().await;
    require_root("per-syscall fault");
    require_tool("strace", "-V", "strace");
    let full = std::env::var("TWINLEDGER_SYSCALL_FULL").is_ok_and(|v| v == "1");
    let started = Instant::now();
    let dir = data_dir();
    let scratch = tempfile::tempdir().expect("scratch");
    let acks = Arc::new(Acks::default());
    let mut app = spawn(dir.path(), &[]).unwrap_or_else(|out| panic!("serve: {out}"));
    // The first batches create the twin and warm the caches; count a steady one.
    for i in 0..3 {
        let (status, body) =
            crate::support::post_state(&app, "counted", "?wait=anchored", json!({"warm": i})).await;
        assert_eq!(status, 201, "{body}");
    }
    // A batch's calls vary a little (how many pages a commit writes), so the most seen in a
    // few batches bounds the call indexes to try; the writers of a run make several batches,
    // so a later index is still reached if the first batch has fewer calls.
    let mut counts: Vec<(String, usize)> = Vec::new();
    for round in 0..3 {
        let (seen, sequence) = count_batch(&app, scratch.path(), round).await;
        println!(
            "syscall: batch {round} on the writer thread: {}",
            sequence.join(" ")
        );
        for (name, c) in seen {
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, most)) => *most = (*most).max(c),
                None => counts.push((name, c)),
            }
        }
    }
    println!("syscall: file-system calls of one append batch, at most: {counts:?}");
    let mut points = Vec::new();
    for (syscall, count) in &counts {
        let last = if full { *count } else { 1 };
        for n in 1..=last {
            for fault in [Fault::Eio, Fault::Kill] {
                points.push(Point {
                    syscall: syscall.clone(),
                    n,
                    fault,
                });
            }
        }
    }
    let mut covered = 0;
    let mut refused_but_stored = Vec::new();
    for (run, point) in points.iter().enumerate() {
        let outcome = inject(&mut app, point, &acks, scratch.path(), run).await;
        covered += usize::from(outcome.injected);
        println!(
            "syscall: {} #{} {:?}: {}; answers {:?}, {} without answer",
            point.syscall,
            point.n,
            point.fault,
            if outcome.injected {
                "injected"
            } else {
                "NOT REACHED"
            },
            outcome.answers,
            outcome.no_answer
        );
        // A service the fault left running stops as an operator would stop it: whether it
        // restarts after a crash is the kill suite's question.
        if app.try_wait().is_none() {
            app.terminate();
        }
        // Its Anvil and Mosquitto outlive a service killed in a syscall.
        app.kill_group();
        app = spawn(dir.path(), &[]).unwrap_or_else(|out| {
            panic!("{point:?}: serve did not start again after the fault:\n{out}")
        });
        check(dir.path(), Some(&app), &acks)
            .await
            .assert_clean(&format!("after {point:?}"), Some(&app));
        // An error answer leaves a write indeterminate; which of them were stored after all
        // is reported, since an answer that says "nothing was written" should be true.
        for (twin, state, error) in &outcome.refused {
            if is_stored(dir.path(), twin, state) {
                refused_but_stored.push(format!("{point:?}: {twin} {state} ({error})"));
            }
        }
        let out = crate::support::run(&["audit", "--data-dir", dir.path().to_str().expect("path")]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "audit after {point:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !refused_but_stored.is_empty() {
        println!(
            "syscall: {} writes answered with an error were stored after all (allowed: an \
             error is indeterminate), e.g. {:?}",
            refused_but_stored.len(),
            refused_but_stored.first()
        );
    }
    let fin = final_checks(&app, dir.path()).await;
    let (http, _, indeterminate) = acks.counts();
    println!(
        "syscall: {covered} of {} injection points covered ({} syscalls, {}) in {:.0} s; {} \
         records acknowledged, {indeterminate} indeterminate; {} records found, all anchored; \
         {} twins Valid; audit clean after every run",
        points.len(),
        counts.len(),
        if full {
            "every call index"
        } else {
            "first call of each"
        },
        started.elapsed().as_secs_f64(),
        http,
        fin.records,
        fin.twins
    );
    assert_eq!(
        covered,
        points.len(),
        "some injection points were never reached"
    );
    app.terminate();
}
