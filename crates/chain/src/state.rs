//! The embedded Anvil's state file: atomic, consistent snapshots of a running node, and the
//! trimming that keeps its history to a window.

use std::path::PathBuf;

use crate::node::{local_client, quantity, resume_mining, rpc_call};
use crate::{ChainError, Result};

/// Saves the state of the Anvil at `url` to `path` atomically; see [`crate::LocalNode::snapshot`].
///
/// The answer (hex of a gzip of the state JSON) is decoded chunk by chunk straight into the
/// file, and kept gzipped as Anvil sent it: the state grows with the chain's history (the
/// contract's storage holds every anchored head), and holding it in memory made the service's
/// memory grow with it; unzipping it made every snapshot write and sync three to four times the
/// bytes. [`load_file`] unzips it once, when the node starts.
///
/// Anvil reads the chain's state and its blocks one after the other, so a block mined between
/// the two reads leaves a snapshot whose state holds a transaction its blocks do not (seen in
/// the crash suite: a head in the contract's storage, anchored in a block the restored chain
/// never had). An automining node therefore mines nothing while it serialises: automine is off
/// from before the request until its answer starts, and what arrived meanwhile is mined then.
/// A node that is not automining (interval mining, or paused by [`crate::LocalNode::compact`]) is
/// left as it is.
pub async fn anvil_snapshot(url: &str, path: &std::path::Path) -> Result<()> {
    let automine = rpc_call(url, "anvil_getAutomine", serde_json::json!([])).await? == true;
    if automine {
        rpc_call(url, "anvil_setAutomine", serde_json::json!([false])).await?;
    }
    let body =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "anvil_dumpState", "params": []});
    // The answer starts once the dump is taken; it is then only sent.
    let sent = local_client().post(url).json(&body).send().await;
    if automine {
        resume_mining(url).await?;
    }
    let mut answer =
        sent.map_err(|e| ChainError::Unreachable(crate::error::redact_urls(&e.to_string())))?;
    let rpc = |e: String| ChainError::Rpc(format!("anvil_dumpState: {e}"));
    let tmp = beside(path, "tmp");
    let mut file = SnapshotFile::create(&tmp)?;
    let fed = async {
        while let Some(chunk) = answer.chunk().await.map_err(|e| rpc(e.to_string()))? {
            if file.feed(&chunk)? {
                break;
            }
        }
        Ok::<_, ChainError>(())
    }
    .await;
    if let Err(e) = fed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || file.finish(&path))
        .await
        .map_err(|e| ChainError::Node(format!("snapshot task: {e}")))?
}

/// Where an `anvil_dumpState` answer is in its decoding.
enum AnswerPart {
    /// Before the result string: the bytes seen so far (a short JSON prefix).
    Head(Vec<u8>),
    /// Inside the hex string; an odd digit (as sent) left over from the last chunk.
    Hex(Option<u8>),
    /// After the closing quote.
    Done,
}

/// A snapshot being written: the hex digits of the answer are decoded into a temporary file.
struct SnapshotFile {
    tmp: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    part: AnswerPart,
}

/// The longest JSON the node sends before the result string, or its whole error answer.
const MAX_ANSWER_HEAD: usize = 64 * 1024;

impl SnapshotFile {
    fn create(tmp: &std::path::Path) -> Result<Self> {
        let file = std::fs::File::create(tmp).map_err(|e| snapshot_io(tmp, e))?;
        Ok(Self {
            tmp: tmp.to_path_buf(),
            out: std::io::BufWriter::new(file),
            part: AnswerPart::Head(Vec::new()),
        })
    }

    /// Takes the next chunk of the answer; true once the result string has ended.
    fn feed(&mut self, chunk: &[u8]) -> Result<bool> {
        match &mut self.part {
            AnswerPart::Done => Ok(true),
            AnswerPart::Hex(_) => self.feed_hex(chunk),
            AnswerPart::Head(seen) => {
                seen.extend_from_slice(chunk);
                const MARK: &[u8] = b"\"result\":\"0x";
                match seen.windows(MARK.len()).position(|w| w == MARK) {
                    Some(at) => {
                        let rest = seen.split_off(at + MARK.len());
                        self.part = AnswerPart::Hex(None);
                        self.feed_hex(&rest)
                    }
                    None if seen.len() > MAX_ANSWER_HEAD => {
                        Err(ChainError::Rpc("anvil_dumpState: no result".into()))
                    }
                    None => Ok(false),
                }
            }
        }
    }

    fn feed_hex(&mut self, chunk: &[u8]) -> Result<bool> {
        use std::io::Write;
        let AnswerPart::Hex(odd) = &mut self.part else {
            return Ok(matches!(self.part, AnswerPart::Done));
        };
        let (digits, done) = match chunk.iter().position(|&b| b == b'"') {
            Some(end) => (&chunk[..end], true),
            None => (chunk, false),
        };
        // Decoded with the hex crate's vectorised decoder: a snapshot carries megabytes of hex,
        // and a digit-by-digit loop dominated its cost in debug builds.
        let mut bytes = Vec::with_capacity(digits.len() / 2 + 1);
        let mut rest = digits;
        if let (Some(high), Some((&low, tail))) = (*odd, rest.split_first()) {
            bytes.push(decode_hex(&[high, low])?[0]);
            *odd = None;
            rest = tail;
        }
        let even = rest.len() & !1;
        bytes.extend_from_slice(&decode_hex(&rest[..even])?);
        if even < rest.len() {
            *odd = Some(rest[even]);
        }
        self.out
            .write_all(&bytes)
            .map_err(|e| snapshot_io(&self.tmp, e))?;
        if done {
            if odd.is_some() {
                return Err(ChainError::Rpc(
                    "anvil_dumpState: odd number of hex digits".into(),
                ));
            }
            self.part = AnswerPart::Done;
        }
        Ok(done)
    }

    /// Checks that the answer was whole, syncs and renames the file to `path`.
    fn finish(self, path: &std::path::Path) -> Result<()> {
        if let AnswerPart::Head(seen) = &self.part {
            let text = String::from_utf8_lossy(&seen[..seen.len().min(500)]).into_owned();
            let _ = std::fs::remove_file(&self.tmp);
            return Err(ChainError::Rpc(format!("anvil_dumpState answered {text}")));
        }
        if !matches!(self.part, AnswerPart::Done) {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(ChainError::Rpc(
                "anvil_dumpState: the answer ended early".into(),
            ));
        }
        let io = |e| snapshot_io(path, e);
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        replace_synced(file, &self.tmp, path).map_err(io)
    }
}

/// Makes `tmp` (open as `file`) the file at `path` durably: syncs it, renames it over `path`
/// and syncs the directory, so that after a power cut `path` is the old file or the new one.
fn replace_synced(
    file: std::fs::File,
    tmp: &std::path::Path,
    path: &std::path::Path,
) -> std::io::Result<()> {
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ok(())
}

/// What [`trim_state_file`] kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimmedState {
    /// Blocks kept, the newest ones.
    pub blocks: usize,
    /// Transactions kept: those of the kept blocks.
    pub transactions: usize,
    /// The oldest block kept.
    pub oldest_block: u64,
}

/// Drops from an Anvil state file every block but the newest `keep_blocks`, and the
/// transactions of the dropped blocks, atomically. The accounts and their storage (the
/// contract's anchored heads among them) are kept whole, and so is the chain's head: Anvil
/// loads the file and goes on from the same block.
pub fn trim_state_file(path: &std::path::Path, keep_blocks: u64) -> Result<TrimmedState> {
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;
    let io = |e| snapshot_io(path, e);
    let text = read_state_file(path)?;
    let bad = |what: String| ChainError::Node(format!("{}: {what}", path.display()));
    let mut state: BTreeMap<&str, &RawValue> =
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let list = |key: &str| -> Result<Vec<&RawValue>> {
        match state.get(key) {
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| bad(format!("{key}: {e}"))),
            None => Ok(Vec::new()),
        }
    };
    let blocks = list("blocks")?;
    let transactions = list("transactions")?;
    let block_number = |raw: &RawValue| -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Header {
            number: serde_json::Value,
        }
        #[derive(serde::Deserialize)]
        struct Block {
            header: Header,
        }
        let b: Block = serde_json::from_str(raw.get()).map_err(|e| bad(format!("block: {e}")))?;
        quantity(&b.header.number).ok_or_else(|| bad(format!("block number {}", b.header.number)))
    };
    let mut numbered = blocks
        .into_iter()
        .map(|b| Ok((block_number(b)?, b)))
        .collect::<Result<Vec<_>>>()?;
    numbered.sort_by_key(|(n, _)| *n);
    let newest = numbered.last().map_or(0, |(n, _)| *n);
    let oldest_kept = newest.saturating_sub(keep_blocks.saturating_sub(1));
    numbered.retain(|(n, _)| *n >= oldest_kept);
    let kept_transactions = transactions
        .into_iter()
        .map(|t| {
            #[derive(serde::Deserialize)]
            struct Mined {
                block_number: serde_json::Value,
            }
            let m: Mined =
                serde_json::from_str(t.get()).map_err(|e| bad(format!("transaction: {e}")))?;
            Ok((quantity(&m.block_number).unwrap_or(0) >= oldest_kept).then_some(t))
        })
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>>>()?;
    let kept_blocks: Vec<&RawValue> = numbered.iter().map(|(_, b)| *b).collect();
    let blocks_json = serde_json::to_string(&kept_blocks).map_err(|e| bad(e.to_string()))?;
    let transactions_json =
        serde_json::to_string(&kept_transactions).map_err(|e| bad(e.to_string()))?;
    let blocks_raw = RawValue::from_string(blocks_json).map_err(|e| bad(e.to_string()))?;
    let transactions_raw =
        RawValue::from_string(transactions_json).map_err(|e| bad(e.to_string()))?;
    state.insert("blocks", &blocks_raw);
    state.insert("transactions", &transactions_raw);
    let tmp = beside(path, "trim");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    {
        use std::io::Write;
        let mut out = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(&mut file),
            flate2::Compression::fast(),
        );
        serde_json::to_writer(&mut out, &state).map_err(|e| bad(e.to_string()))?;
        out.finish().map_err(io)?.flush().map_err(io)?;
    }
    replace_synced(file, &tmp, path).map_err(io)?;
    Ok(TrimmedState {
        blocks: kept_blocks.len(),
        transactions: kept_transactions.len(),
        oldest_block: oldest_kept,
    })
}

/// The JSON of a state file, gzipped (as snapshots write it) or not (as Anvil itself and
/// earlier versions wrote it).
pub fn read_state_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| snapshot_io(path, e))?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut json = Vec::with_capacity(bytes.len() * 4);
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut json)
        .map_err(|e| ChainError::Node(format!("{}: {e}", path.display())))?;
    Ok(json)
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The file to hand to Anvil's `--load-state` for the state file at `path`: Anvil reads only
/// plain JSON, so a gzipped snapshot is unzipped beside it (to `<path>.load`, replaced on every
/// start; Anvil reads it before it listens, so it can be removed once the node is up).
pub fn load_file(path: &std::path::Path) -> Result<PathBuf> {
    let mut head = [0u8; 2];
    let gzipped = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head == GZIP_MAGIC;
    if !gzipped {
        return Ok(path.to_path_buf());
    }
    let json = read_state_file(path)?;
    let load = beside(path, "load");
    std::fs::write(&load, json).map_err(|e| snapshot_io(&load, e))?;
    Ok(load)
}

/// Writes the plain JSON state file `from` gzipped to `to`, atomically, and removes `from`:
/// a data directory of an earlier version kept the state unzipped.
pub fn gzip_state_file(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let io = |e| snapshot_io(to, e);
    let json = std::fs::read(from).map_err(|e| snapshot_io(from, e))?;
    let tmp = beside(to, "tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    {
        let mut out = flate2::write::GzEncoder::new(&mut file, flate2::Compression::fast());
        out.write_all(&json).map_err(io)?;
        out.finish().map_err(io)?;
    }
    replace_synced(file, &tmp, to).map_err(io)?;
    std::fs::remove_file(from).map_err(|e| snapshot_io(from, e))
}

/// `path` with `.suffix` appended (`anvil-state.json.gz` → `anvil-state.json.gz.tmp`).
fn beside(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn decode_hex(digits: &[u8]) -> Result<Vec<u8>> {
    alloy::primitives::hex::decode(digits)
        .map_err(|e| ChainError::Rpc(format!("anvil_dumpState: the hex result: {e}")))
}

fn snapshot_io(path: &std::path::Path, e: std::io::Error) -> ChainError {
    ChainError::Node(format!("snapshot to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{SnapshotFile, read_state_file};

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    #[test]
    fn snapshot_answers_decode_in_any_chunking() {
        let state: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":"0x{}"}}"#,
            alloy::primitives::hex::encode(gzip(&state))
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for size in [1, 2, 3, 7, 64, 4096, answer.len()] {
            let path = dir.path().join(format!("state-{size}.json.gz"));
            let mut file = SnapshotFile::create(&path.with_extension("tmp")).expect("create");
            for chunk in answer.as_bytes().chunks(size) {
                if file.feed(chunk).expect("feed") {
                    break;
                }
            }
            file.finish(&path).expect("finish");
            // Kept as sent, gzipped.
            assert_eq!(std::fs::read(&path).expect("read"), gzip(&state));
            assert_eq!(
                read_state_file(&path).expect("read"),
                state,
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn trimming_keeps_the_newest_blocks_their_transactions_and_everything_else() {
        use super::trim_state_file;
        let block = |n: u64| serde_json::json!({"header": {"number": format!("0x{n:x}")}, "transactions": []});
        let tx = |n: u64| serde_json::json!({"info": {}, "block_number": n});
        let state = serde_json::json!({
            "block": {"number": "0x9"},
            "accounts": {"0x01": {"storage": {"0x0": "0x5"}}},
            "best_block_number": 9,
            // Anvil writes its blocks in no particular order.
            "blocks": [block(3), block(9), block(0), block(7), block(8), block(1)],
            "transactions": [tx(1), tx(7), tx(9), tx(3)],
            "historical_states": null,
            "a_field_of_a_later_anvil": [1, 2],
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json.gz");
        std::fs::write(&path, gzip(state.to_string().as_bytes())).expect("write");
        let kept = trim_state_file(&path, 3).expect("trim");
        assert_eq!(
            (kept.blocks, kept.transactions, kept.oldest_block),
            (3, 2, 7)
        );
        let trimmed: serde_json::Value =
            serde_json::from_slice(&read_state_file(&path).expect("read")).expect("json");
        assert_eq!(
            trimmed["blocks"],
            serde_json::json!([block(7), block(8), block(9)])
        );
        assert_eq!(trimmed["transactions"], serde_json::json!([tx(7), tx(9)]));
        for key in [
            "block",
            "accounts",
            "best_block_number",
            "historical_states",
            "a_field_of_a_later_anvil",
        ] {
            assert_eq!(trimmed[key], state[key], "{key}");
        }
    }

    #[test]
    fn snapshot_error_answers_are_errors_and_leave_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        for answer in [
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no such method"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":"0x1f8"#,
            r#"{"jsonrpc":"2.0","id":1,"result":"0x1g"}"#,
        ] {
            let tmp = path.with_extension("tmp");
            let mut file = SnapshotFile::create(&tmp).expect("create");
            let fed = file.feed(answer.as_bytes());
            let err = match fed {
                Err(e) => e,
                Ok(_) => file.finish(&path).expect_err(answer),
            };
            assert!(err.to_string().contains("anvil_dumpState"), "{err}");
            assert!(!path.exists());
        }
    }
}
