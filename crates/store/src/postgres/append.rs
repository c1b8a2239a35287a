//! The append transaction on PostgreSQL, in two round trips: `BEGIN`, the lock on `log_head`
//! and every read the batch's planner may ask about go out together; then, planned, every
//! write (one statement) and the `COMMIT` go out together. The lock is held for the second
//! round trip, the planning and the commit's flush, and every other append on the database
//! waits for it, so the time a round trip takes is the log's limit:
//! - the writes are array statements (`INSERT … SELECT FROM unnest`), which pipeline, rather
//!   than `COPY`, which takes round trips of its own;
//! - appends go through one connection driven by a thread of its own (`twinledger-writer`,
//!   with a runtime of its own), so that the answer that ends a round trip is read at once,
//!   not after the HTTP tasks queued on the service's runtime;
//! - when other nodes append too, the lock is taken before the batch is cut (the turn), so
//!   that each hold of the lock carries all the node's waiting writers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Config, NoTls, Statement};
use twinledger_core::{Bands, RecordKind};

use super::{Param, frontier_of};
use crate::batch::{self, BatchContext, Desired, Lookup, Plan, TwinState};
use crate::model::{AppendOutcome, NewRecord};
use crate::{Result, StoreError};

/// The channel each committed batch is announced on, with the log's new size.
pub const LOG_CHANNEL: &str = "twinledger_log";

/// What the database held before the batch, for everything the batch names.
struct Prefetched {
    twins: HashMap<String, TwinState>,
    keys: HashMap<String, (u64, Vec<u8>)>,
    device_keys: HashMap<String, (String, bool)>,
    desired: HashMap<u64, Arc<Desired>>,
}

impl Lookup for Prefetched {
    fn twin(&mut self, twin_id: &str) -> Result<Option<TwinState>> {
        Ok(self.twins.get(twin_id).cloned())
    }

    fn idempotency_key(&mut self, key: &str) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self.keys.get(key).cloned())
    }

    fn device_key(&mut self, twin_id: &str) -> Result<Option<(String, bool)>> {
        Ok(self.device_keys.get(twin_id).cloned())
    }

    fn desired(&mut self, index: u64) -> Result<Arc<Desired>> {
        self.desired.get(&index).cloned().ok_or_else(|| {
            StoreError::Inconsistent(format!("desired state at log index {index} is missing"))
        })
    }
}

/// What the append thread is asked to do.
enum Request {
    /// Take the lock now if other nodes are appending (see [`Appender::await_turn`]).
    Turn(oneshot::Sender<()>),
    /// Append a batch, and say how it went.
    Batch(Vec<NewRecord>, oneshot::Sender<Result<AppendOutcome>>),
}

/// The append thread's door: batches go in, outcomes come back. The thread ends when the last
/// clone of the store is dropped.
#[derive(Debug, Clone)]
pub(super) struct Appender {
    requests: mpsc::UnboundedSender<Request>,
    /// Whether the last batch found batches of other nodes since this node's previous one.
    contended: Arc<AtomicBool>,
}

impl Appender {
    /// Starts the thread; it connects at its first batch (and again after a failed one).
    pub(super) fn start(config: Config, target: Arc<str>, bands: Bands) -> Result<Self> {
        let (requests, queue) = mpsc::unbounded_channel();
        let contended = Arc::new(AtomicBool::new(false));
        let flag = contended.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Pool(format!("cannot start the append runtime: {e}")))?;
        std::thread::Builder::new()
            .name("twinledger-writer".into())
            .spawn(move || runtime.block_on(serve(config, target, bands, queue, flag)))
            .map_err(|e| StoreError::Pool(format!("cannot start the append thread: {e}")))?;
        Ok(Self {
            requests,
            contended,
        })
    }

    /// Appends `batch` on the append thread.
    pub(super) async fn append(&self, batch: Vec<NewRecord>) -> Result<AppendOutcome> {
        let (reply, outcome) = oneshot::channel();
        let stopped = || StoreError::Pool("the append thread has stopped".into());
        self.requests
            .send(Request::Batch(batch, reply))
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Returns once the next batch may be cut. When the last batch found that other nodes had
    /// appended since this one's previous batch, the lock is contended: it is taken now, before
    /// the batch is cut, so that the batch carries every submission that arrived while the
    /// lock was held elsewhere (a batch cut first would carry about half of this node's
    /// writers, the other half having been answered just before). Uncontended, it returns at
    /// once and the lock is taken with the batch's reads, one round trip fewer.
    pub(super) async fn await_turn(&self) {
        if !self.contended.load(Ordering::Relaxed) {
            return;
        }
        let (reply, turn) = oneshot::channel();
        if self.requests.send(Request::Turn(reply)).is_ok() {
            let _ = turn.await;
        }
    }
}

/// The append connection and its statements, prepared once.
struct Connection {
    client: Client,
    statements: Statements,
    /// The log's size after this connection's last batch.
    size: u64,
    /// The log's size when this connection's plans were last discarded.
    planned_at: u64,
    /// Whether the last batch found batches of other nodes since this connection's previous one.
    contended: bool,
    /// The ledger's mode once it is set (it never changes after).
    mode: Option<String>,
    /// The `log_head` row, when this connection's transaction holds its lock for the next
    /// batch, and when the lock was granted.
    locked: Option<(tokio_postgres::Row, std::time::Instant)>,
}

struct Statements {
    lock_head: Statement,
    read_mode: Statement,
    read_twins: Statement,
    read_keys: Statement,
    read_device_keys: Statement,
    /// Every write of a batch, in one statement.
    write: Statement,
}

async fn serve(
    config: Config,
    target: Arc<str>,
    bands: Bands,
    mut queue: mpsc::UnboundedReceiver<Request>,
    contended: Arc<AtomicBool>,
) {
    let mut connection: Option<Connection> = None;
    while let Some(request) = queue.recv().await {
        let (batch, reply) = match request {
            Request::Turn(reply) => {
                if let Some(mut conn) = connection.take() {
                    // A failed lock leaves the connection to be replaced; the batch that
                    // follows connects again and reports what fails.
                    if !conn.contended || conn.locked.is_some() || conn.lock().await.is_ok() {
                        connection = Some(conn);
                    }
                }
                let _ = reply.send(());
                continue;
            }
            Request::Batch(batch, reply) => (batch, reply),
        };
        let mut conn = match connection.take().filter(|c| !c.client.is_closed()) {
            Some(c) => c,
            None => match connect(&config, &target).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    continue;
                }
            },
        };
        let outcome = append_on(&mut conn, batch, &bands).await;
        contended.store(conn.contended, Ordering::Relaxed);
        // A connection whose append failed may be inside a failed transaction: the next batch
        // gets a new one.
        if outcome.is_ok() {
            connection = Some(conn);
        }
        let _ = reply.send(outcome);
    }
}

async fn connect(config: &Config, target: &str) -> Result<Connection> {
    let (client, driver) = config
        .connect(NoTls)
        .await
        .map_err(|e| super::connect_error(target, e))?;
    tokio::spawn(driver);
    let (lock_head, read_mode, read_twins, read_keys, read_device_keys) = tokio::try_join!(
        client.prepare("SELECT size, peaks FROM log_head FOR UPDATE"),
        client.prepare("SELECT value FROM meta WHERE key = 'mode'"),
        client.prepare(
            "SELECT t.twin_id, t.latest_version, t.latest_leaf_hash, t.desired_idx, t.band, \
             d.version, d.state, d.annex \
             FROM twins t LEFT JOIN records d ON d.idx = t.desired_idx \
             WHERE t.twin_id = ANY($1)"
        ),
        client.prepare("SELECT key, idx, request FROM idempotency_keys WHERE key = ANY($1)"),
        client.prepare(
            "SELECT twin_id, public_key, require_signature FROM device_keys \
             WHERE twin_id = ANY($1)"
        ),
    )?;
    // One statement for every write of a batch: each statement in a pipeline is answered
    // (and its answer sent) on its own, so five statements cost the server and this thread
    // five times the messages of one. Each part sees the same snapshot, and none reads what
    // another writes.
    let write = client
        .prepare(
            "WITH \
             r AS (INSERT INTO records (idx, twin_id, version, kind, state, hash_scheme, \
               state_hash, prev_leaf_hash, recorded_at_ms, salt, leaf_hash, status, annex) \
               SELECT i, t, v, k, s, h, sh, p, r, salt, l, $12, a FROM unnest($1::bigint[], \
               $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bytea[], \
               $8::bytea[], $9::bigint[], $10::bytea[], $11::bytea[], $13::text[]) \
               AS u(i, t, v, k, s, h, sh, p, r, salt, l, a)), \
             n AS (INSERT INTO tree_nodes (key, hash) \
               SELECT * FROM unnest($14::bigint[], $15::bytea[])), \
             t AS (INSERT INTO twins (twin_id, latest_version, latest_idx, latest_leaf_hash, \
               created_at_ms, updated_at_ms, desired_idx, band) \
               SELECT * FROM unnest($16::text[], $17::bigint[], $18::bigint[], $19::bytea[], \
               $20::bigint[], $21::bigint[], $22::bigint[], $23::text[]) \
               ON CONFLICT (twin_id) DO UPDATE SET latest_version = excluded.latest_version, \
               latest_idx = excluded.latest_idx, latest_leaf_hash = excluded.latest_leaf_hash, \
               updated_at_ms = excluded.updated_at_ms, desired_idx = excluded.desired_idx, \
               band = excluded.band), \
             k AS (INSERT INTO idempotency_keys (key, request, idx, created_at_ms) \
               SELECT * FROM unnest($24::text[], $25::bytea[], $26::bigint[], $27::bigint[])), \
             h AS (UPDATE log_head SET size = $28, peaks = $29) \
             SELECT pg_notify($30, $31)",
        )
        .await?;
    Ok(Connection {
        size: 0,
        planned_at: 0,
        contended: false,
        mode: None,
        locked: None,
        client,
        statements: Statements {
            lock_head,
            read_mode,
            read_twins,
            read_keys,
            read_device_keys,
            write,
        },
    })
}

impl Connection {
    /// `BEGIN`, after `DISCARD PLANS` when they are due. PostgreSQL keeps a statement's generic
    /// plan until the next ANALYZE, and one made while the tables were nearly empty joins the
    /// twins to their desired records by scanning every record: on a new ledger the batch's
    /// read grew with the log, under the lock (10 ms at 50,000 records). The plans are made
    /// again each time the log has grown fourfold.
    fn begin(&mut self) -> &'static str {
        if self.size >= (self.planned_at * 4).max(1024) {
            self.planned_at = self.size;
            "DISCARD PLANS; BEGIN ISOLATION LEVEL READ COMMITTED"
        } else {
            "BEGIN ISOLATION LEVEL READ COMMITTED"
        }
    }

    /// Begins the next batch's transaction and takes the lock, in one round trip.
    async fn lock(&mut self) -> Result<()> {
        let begin = self.begin();
        let (client, st) = (&self.client, &self.statements);
        let ((), head) = tokio::try_join!(
            async { Ok::<_, StoreError>(client.batch_execute(begin).await?) },
            async { Ok(client.query_one(&st.lock_head, &[]).await?) },
        )?;
        self.locked = Some((head, std::time::Instant::now()));
        Ok(())
    }
}

async fn append_on(
    conn: &mut Connection,
    batch: Vec<NewRecord>,
    bands: &Bands,
) -> Result<AppendOutcome> {
    let twin_ids = distinct(batch.iter().map(|n| n.twin_id.as_str()));
    let keys = distinct(
        batch
            .iter()
            .filter_map(|n| n.idempotency.as_ref().map(|(k, _)| k.as_str())),
    );
    let reporting = distinct(
        batch
            .iter()
            .filter(|n| n.kind == RecordKind::Reported)
            .map(|n| n.twin_id.as_str()),
    );
    let twin_ids: [&Param<'_>; 1] = [&twin_ids];
    let keys: [&Param<'_>; 1] = [&keys];
    let reporting: [&Param<'_>; 1] = [&reporting];
    // Pipelined, in this order (the order the futures are first polled): the transaction
    // begins, the lock is taken (unless the turn took it already), and the reads after it wait
    // for it, so they see every batch committed before this one. READ COMMITTED: each
    // statement after the lock sees every batch committed before it, on any node, which is
    // what keeps versions and idempotency keys right. Device keys are read for the batch's
    // reporting twins whether or not any exist: in the same round trip, that costs less than
    // asking first.
    // Either the turn holds the lock already, or the batch begins and takes it.
    let lock = match conn.locked.take() {
        Some(held) => Ok(held),
        None => Err(conn.begin()),
    };
    let cached_mode = conn.mode.take();
    let (client, st) = (&conn.client, &conn.statements);
    let (head, mode, twin_rows, key_rows, device_rows) = tokio::try_join!(
        async {
            Ok::<_, StoreError>(match lock {
                Ok(held) => held,
                Err(begin) => {
                    let (_, head) = tokio::try_join!(
                        client.batch_execute(begin),
                        client.query_one(&st.lock_head, &[]),
                    )?;
                    (head, std::time::Instant::now())
                }
            })
        },
        async {
            Ok(match cached_mode {
                Some(mode) => Some(mode),
                None => client
                    .query_opt(&st.read_mode, &[])
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?,
            })
        },
        async { Ok(client.query(&st.read_twins, &twin_ids).await?) },
        async { Ok(client.query(&st.read_keys, &keys).await?) },
        async { Ok(client.query(&st.read_device_keys, &reporting).await?) },
    )?;
    let (head, locked) = head;
    let frontier = frontier_of(&head)?;
    // Batches of other nodes landed since this connection's last one.
    conn.contended = frontier.size() != conn.size;
    conn.mode.clone_from(&mode);
    let mut lookup = prefetched(&twin_rows, &key_rows, &device_rows)?;
    let context = BatchContext {
        log_mode: mode.as_deref() == Some("log"),
        any_device_key: true,
    };
    let plan = batch::plan(batch, &frontier, bands, context, &mut lookup)?;
    write_and_commit(conn, &plan).await?;
    let mut outcome = plan.outcome;
    outcome.held = locked.elapsed();
    conn.size = outcome.frontier.size();
    Ok(outcome)
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(*i)).collect()
}

fn prefetched(
    twins: &[tokio_postgres::Row],
    keys: &[tokio_postgres::Row],
    device_keys: &[tokio_postgres::Row],
) -> Result<Prefetched> {
    let mut out = Prefetched {
        twins: HashMap::with_capacity(twins.len()),
        keys: HashMap::with_capacity(keys.len()),
        device_keys: HashMap::with_capacity(device_keys.len()),
        desired: HashMap::new(),
    };
    for row in twins {
        let twin_id: String = row.try_get(0)?;
        let desired_idx: Option<i64> = row.try_get(3)?;
        let state = TwinState::from_row(
            &twin_id,
            row.try_get(1)?,
            row.try_get(2)?,
            desired_idx,
            row.try_get(4)?,
        )?;
        if let Some(index) = desired_idx {
            let version: Option<i64> = row.try_get(5)?;
            let text: Option<&str> = row.try_get(6)?;
            // A twin pointing at a record that is not there is left out here, and its next
            // report fails the batch as inconsistent.
            if let (Some(version), Some(text)) = (version, text) {
                let index = index as u64;
                let desired = Desired::from_row(index, version, text, row.try_get(7)?)?;
                out.desired.insert(index, Arc::new(desired));
            }
        }
        out.twins.insert(twin_id, state);
    }
    for row in keys {
        out.keys.insert(
            row.try_get(0)?,
            (row.try_get::<_, i64>(1)? as u64, row.try_get(2)?),
        );
    }
    for row in device_keys {
        out.device_keys
            .insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    Ok(out)
}

/// Every write of `plan` and the `COMMIT`, in one round trip. A statement that fails aborts
/// the transaction, and the `COMMIT` sent behind it then rolls it back: nothing of the batch
/// stays, and its error is returned.
async fn write_and_commit(conn: &Connection, plan: &Plan) -> Result<()> {
    let (client, st) = (&conn.client, &conn.statements);
    let r = &plan.records;
    let indexes: Vec<i64> = r.iter().map(|r| r.index).collect();
    let twins_of: Vec<&str> = r.iter().map(|r| r.twin_id.as_str()).collect();
    let versions_of: Vec<i64> = r.iter().map(|r| r.version).collect();
    let kinds: Vec<&str> = r.iter().map(|r| r.kind).collect();
    let states: Vec<&str> = r.iter().map(|r| r.state.as_str()).collect();
    let schemes: Vec<&str> = r.iter().map(|r| r.scheme).collect();
    let state_hashes: Vec<&[u8]> = r.iter().map(|r| r.state_hash.0.as_slice()).collect();
    let prevs: Vec<Option<&[u8]>> = r
        .iter()
        .map(|r| r.prev_leaf_hash.as_ref().map(|h| h.0.as_slice()))
        .collect();
    let recorded: Vec<i64> = r.iter().map(|r| r.recorded_at_ms).collect();
    let salts: Vec<&[u8]> = r.iter().map(|r| r.salt.as_slice()).collect();
    let leaves_of: Vec<&[u8]> = r.iter().map(|r| r.leaf_hash.0.as_slice()).collect();
    let annexes: Vec<Option<&str>> = r.iter().map(|r| r.annex.as_deref()).collect();
    let node_keys: Vec<i64> = plan.nodes.iter().map(|(k, _)| *k).collect();
    let node_hashes: Vec<&[u8]> = plan.nodes.iter().map(|(_, h)| h.0.as_slice()).collect();
    let t = &plan.twins;
    let twin_ids: Vec<&str> = t.iter().map(|t| t.twin_id.as_str()).collect();
    let versions: Vec<i64> = t.iter().map(|t| t.latest_version).collect();
    let latest: Vec<i64> = t.iter().map(|t| t.latest_idx).collect();
    let leaves: Vec<&[u8]> = t.iter().map(|t| t.latest_leaf_hash.0.as_slice()).collect();
    let created: Vec<i64> = t.iter().map(|t| t.created_at_ms).collect();
    let updated: Vec<i64> = t.iter().map(|t| t.updated_at_ms).collect();
    let desired: Vec<Option<i64>> = t.iter().map(|t| t.desired_idx).collect();
    let bands: Vec<Option<&str>> = t.iter().map(|t| t.band.as_deref()).collect();
    let k = &plan.keys;
    let key_names: Vec<&str> = k.iter().map(|k| k.key.as_str()).collect();
    let requests: Vec<&[u8]> = k.iter().map(|k| k.request.0.as_slice()).collect();
    let key_indexes: Vec<i64> = k.iter().map(|k| k.index).collect();
    let key_created: Vec<i64> = k.iter().map(|k| k.created_at_ms).collect();
    let frontier = &plan.outcome.frontier;
    let size = frontier.size() as i64;
    let peaks: Vec<u8> = frontier.peaks().iter().flat_map(|p| p.0).collect();
    let announced = size.to_string();
    // In the order of the statement's parameters: $1-$13 the records, $14-$15 the tree nodes,
    // $16-$23 the twins, $24-$27 the idempotency keys, $28-$29 the head, $30-$31 the notice.
    let params: [&Param<'_>; 31] = [
        &indexes,
        &twins_of,
        &versions_of,
        &kinds,
        &states,
        &schemes,
        &state_hashes,
        &prevs,
        &recorded,
        &salts,
        &leaves_of,
        &plan.status,
        &annexes,
        &node_keys,
        &node_hashes,
        &twin_ids,
        &versions,
        &latest,
        &leaves,
        &created,
        &updated,
        &desired,
        &bands,
        &key_names,
        &requests,
        &key_indexes,
        &key_created,
        &size,
        &peaks,
        &LOG_CHANNEL,
        &announced,
    ];
    // A batch of replays only writes nothing. Joined, not tried: the COMMIT must go out behind
    // the writes whatever they answer, and every answer must be read before the connection is
    // used again. The notification is delivered on commit, once per batch that wrote: other
    // nodes learn of its records.
    let wrote = !(plan.records.is_empty() && plan.keys.is_empty());
    let (written, commit) = tokio::join!(
        async {
            if wrote {
                client.execute(&st.write, &params[..]).await?;
            }
            Ok::<_, StoreError>(())
        },
        async { Ok::<_, StoreError>(client.batch_execute("COMMIT").await?) },
    );
    written?;
    commit
}
