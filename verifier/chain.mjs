// Step 5: the chain checks, over plain JSON-RPC with a fetch the caller may inject. The node and
// the contract address are the verifier's own; the bundle's claims are only compared with them.
// Order and messages follow `twinledger verify-proof` (crates/cli/src/cmd/verify_proof.rs).

import { keccak_256 } from '@noble/hashes/sha3.js';
import { NotProven } from './bundle.mjs';
import { equalBytes, fromHex, toHex } from './hash.mjs';

/** The chain could not be asked, or answered something unreadable: no verdict, never a pass. */
export class ChainUnavailable extends Error {
  constructor(step, message) {
    super(message);
    this.name = 'ChainUnavailable';
    this.step = step;
  }
}

export const ANCHORED_ROOT_SELECTOR = '0xc539e14c'; // anchoredRoot(uint64)
export const VERIFY_INCLUSION_SELECTOR = '0xbca46017'; // verifyInclusion(uint64,uint64,bytes32,bytes32[])
/** topic0 of `Anchored(uint64 indexed size, bytes32 root, uint64 previousSize)`. */
export const ANCHORED_TOPIC = '0x8a625ff6b600489e76c9caf3b3e78a6b1cf48af724479bd7bdca61de573a6412';

const utf8 = new TextEncoder();
const U64_MAX = (1n << 64n) - 1n;

/** 20 address bytes from `0x` + 40 hex digits (either case, checksum not required), else null. */
export function parseAddress(s) {
  if (typeof s !== 'string') return null;
  return fromHex(/^0[xX]/.test(s) ? s.slice(2) : s, 20);
}

/** EIP-55 mixed-case form, as twinledger prints addresses. */
export function checksumAddress(bytes) {
  const hex = toHex(bytes);
  const hash = toHex(keccak_256(utf8.encode(hex)));
  let out = '0x';
  for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? hex[i].toUpperCase() : hex[i];
  return out;
}

/** A transaction hash as the Rust client parses it: optional `0x`, 64 hex digits; else null. */
export function parseTxHash(s) {
  if (typeof s !== 'string') return null;
  return fromHex(/^0[xX]/.test(s) ? s.slice(2) : s, 32);
}

// One ABI word: a u64 right-aligned in 32 bytes.
function word(n) {
  if (n < 0n || n > U64_MAX) throw new RangeError('not a u64');
  return n.toString(16).padStart(64, '0');
}

/** Calldata of `anchoredRoot(uint64 size)`. */
export function encodeAnchoredRoot(size) {
  return ANCHORED_ROOT_SELECTOR + word(size);
}

/**
 * Calldata of `verifyInclusion(uint64 index, uint64 size, bytes32 leafHash, bytes32[] proof)`:
 * three static words, the array's offset (0x80, after the four head words), its length, its
 * elements.
 */
export function encodeVerifyInclusion(index, size, leafHash, path) {
  return VERIFY_INCLUSION_SELECTOR + word(index) + word(size) + toHex(leafHash) + word(0x80n) + word(BigInt(path.length)) + path.map(toHex).join('');
}

function data(hex) {
  if (typeof hex !== 'string' || !/^0x/i.test(hex)) return null;
  return fromHex(hex.slice(2));
}

// A uint64 ABI word; null if its upper 24 bytes are not zero.
function u64Word(w) {
  if (w.subarray(0, 24).some((b) => b !== 0)) return null;
  return BigInt('0x' + toHex(w.subarray(24)));
}

/** `(bytes32 root, uint64 timestamp, uint64 blockNumber)`, or null if that is not what it is. */
export function decodeAnchoredRoot(hex) {
  const b = data(hex);
  if (!b || b.length < 96) return null;
  const timestamp = u64Word(b.subarray(32, 64));
  const blockNumber = u64Word(b.subarray(64, 96));
  if (timestamp === null || blockNumber === null) return null;
  return { root: b.slice(0, 32), timestamp, blockNumber };
}

/** An ABI `bool`, or null. */
export function decodeBool(hex) {
  const b = data(hex);
  if (!b || b.length < 32 || b.subarray(0, 31).some((x) => x !== 0) || b[31] > 1) return null;
  return b[31] === 1;
}

function quantity(v) {
  return typeof v === 'string' && /^0x[0-9a-fA-F]{1,64}$/.test(v) ? BigInt(v) : null;
}

/**
 * The head that a receipt shows `contract` anchoring, and its block: the first log of that
 * contract that is an Anchored event. Null if there is none (or no receipt).
 */
export function headAnchoredBy(receipt, contract) {
  if (receipt === null) return null;
  if (typeof receipt !== 'object' || !Array.isArray(receipt.logs)) throw new TypeError('malformed receipt');
  const block = receipt.blockNumber == null ? 0n : quantity(receipt.blockNumber);
  if (block === null) throw new TypeError('malformed receipt');
  for (const log of receipt.logs) {
    const address = parseAddress(log?.address);
    if (!address || !equalBytes(address, contract)) continue;
    const topics = log.topics;
    if (!Array.isArray(topics) || topics.length !== 2 || String(topics[0]).toLowerCase() !== ANCHORED_TOPIC) continue;
    const sizeWord = data(topics[1]);
    const body = data(log.data);
    if (!sizeWord || sizeWord.length !== 32 || !body || body.length < 64) continue;
    const size = u64Word(sizeWord);
    if (size === null) continue;
    return { size, root: body.slice(0, 32), block };
  }
  return null;
}

function describe(e) {
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return 'no answer in time';
  const cause = e?.cause ? `: ${e.cause.message || e.cause.code || e.cause}` : '';
  return `${e?.message ?? e}${cause}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A JSON-RPC caller over `fetch` (globalThis.fetch unless given). A node that refuses a call for
 * its rate limit (HTTP 429 or 503) is asked again after a pause, a few times, as twinledger's
 * client does.
 */
export function rpcClient(url, { fetch: fetchFn = globalThis.fetch, timeoutMs = 30_000, retryDelaysMs = [250, 500, 1000] } = {}) {
  let id = 0;
  const once = async (method, params) => {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller && timeoutMs > 0 ? setTimeout(() => controller.abort(), timeoutMs) : null;
    try {
      let res;
      try {
        res = await fetchFn(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }),
          signal: controller?.signal,
        });
      } catch (e) {
        throw new Error(`chain node unreachable: ${describe(e)}`);
      }
      if (!res.ok) return { status: res.status };
      let body;
      try {
        body = await res.json();
      } catch (e) {
        throw new Error(`${method}: the node's answer is not JSON (${describe(e)})`);
      }
      if (body?.error) throw new Error(`${method}: ${body.error.message ?? JSON.stringify(body.error)}`);
      if (body === null || typeof body !== 'object' || !('result' in body)) throw new Error(`${method}: no result in the node's answer`);
      return { result: body.result };
    } finally {
      if (timer) clearTimeout(timer);
    }
  };
  return async (method, params) => {
    if (typeof fetchFn !== 'function') throw new Error('no fetch function to reach the chain with');
    for (let attempt = 0; ; attempt++) {
      const answer = await once(method, params);
      if ('result' in answer) return answer.result;
      const limited = answer.status === 429 || answer.status === 503;
      if (!limited || attempt >= retryDelaysMs.length) throw new Error(`${method}: HTTP status ${answer.status}`);
      await sleep(retryDelaysMs[attempt]);
    }
  };
}

/**
 * Step 5 for a bundle whose hash math holds. `trusted` is the verifier's contract (20 bytes),
 * `expectedChain` its chain id (BigInt) or null, `leafHash` the recomputed leaf hash. Returns
 * `{ chainId, contract, transaction }` where transaction is "checked", or "pruned" when the node
 * no longer holds the anchor's block and the contract's record stands for it. Throws NotProven
 * or ChainUnavailable.
 */
export async function checkChain(bundle, leafHash, { rpc, trusted, expectedChain = null, fetch, timeoutMs }) {
  let url;
  try {
    url = new URL(rpc);
  } catch {
    throw new ChainUnavailable('chain_id', `cannot reach the chain: ${JSON.stringify(String(rpc))} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ChainUnavailable('chain_id', 'cannot reach the chain: expected an http:// or https:// URL');
  }
  const call = rpcClient(rpc, { fetch, timeoutMs });
  // Each question to the node, with what to say when it gets no usable answer.
  const ask = async (step, context, method, params, read = (v) => v) => {
    let answer;
    try {
      answer = read(await call(method, params));
    } catch (e) {
      throw new ChainUnavailable(step, `${context}: ${e.message}`);
    }
    if (answer === null || answer === undefined) throw new ChainUnavailable(step, `${context}: unreadable answer to ${method}`);
    return answer;
  };

  const chainId = await ask('chain_id', 'cannot reach the chain', 'eth_chainId', [], quantity);
  if (expectedChain !== null && expectedChain !== chainId) {
    throw new NotProven('chain_id', `the node is on chain ${chainId}, not the expected chain ${expectedChain}`);
  }
  if (bundle.anchor.chainId !== chainId) {
    throw new NotProven('chain_id', `the bundle claims chain ${bundle.anchor.chainId}, the node is on chain ${chainId}`);
  }
  const contract = checksumAddress(trusted);
  const named = parseAddress(bundle.anchor.contract);
  if (!named || !equalBytes(named, trusted)) {
    throw new NotProven('contract', `the bundle names contract ${bundle.anchor.contract}, not the trusted contract ${contract}`);
  }
  const to = '0x' + toHex(trusted);
  const code = await ask('contract', 'cannot read the contract', 'eth_getCode', [to, 'latest'], data);
  if (code.length === 0) throw new NotProven('contract', `there is no contract at ${contract} on chain ${chainId}`);

  const head = bundle.treeHead;
  const anchored = await ask(
    'anchor',
    'cannot read the anchored root',
    'eth_call',
    [{ to, data: encodeAnchoredRoot(head.size) }, 'latest'],
    decodeAnchoredRoot,
  );
  if (anchored.root.every((b) => b === 0)) throw new NotProven('anchor', `no tree of size ${head.size} is anchored on this contract`);
  if (!equalBytes(anchored.root, head.root)) {
    throw new NotProven('anchor', `the root anchored for size ${head.size} is ${toHex(anchored.root)}, the bundle's is ${toHex(head.root)}`);
  }
  const a = bundle.anchor;
  if (anchored.blockNumber !== a.blockNumber || anchored.timestamp !== a.blockTimestamp) {
    throw new NotProven(
      'anchor',
      `the head was anchored at block ${anchored.blockNumber} (timestamp ${anchored.timestamp}), the bundle says block ${a.blockNumber} (timestamp ${a.blockTimestamp})`,
    );
  }

  // The transaction the bundle names must be the one that anchored this head.
  const tx = parseTxHash(a.txHash);
  let byTx = null;
  if (tx) {
    const receipt = await ask('anchor', 'cannot read the anchoring transaction', 'eth_getTransactionReceipt', ['0x' + toHex(tx)], (r) => ({ r }));
    try {
      byTx = headAnchoredBy(receipt.r, trusted);
    } catch (e) {
      throw new ChainUnavailable('anchor', `cannot read the anchoring transaction: ${e.message}`);
    }
  }
  let transaction;
  if (byTx && byTx.size === head.size && equalBytes(byTx.root, head.root) && byTx.block === anchored.blockNumber) {
    transaction = 'checked';
  } else if (
    !byTx &&
    !(await ask('anchor', "cannot read the anchor's block", 'eth_getBlockByNumber', ['0x' + anchored.blockNumber.toString(16), false], (b) => ({
      held: b !== null,
    }))).held
  ) {
    // A node that prunes its history no longer has the block: the contract's record stands.
    transaction = 'pruned';
  } else {
    throw new NotProven('anchor', `transaction ${a.txHash} did not anchor the tree of size ${head.size} on this contract`);
  }

  const p = bundle.inclusionProof;
  const included = await ask(
    'inclusion',
    'cannot call verifyInclusion',
    'eth_call',
    [{ to, data: encodeVerifyInclusion(p.leafIndex, p.treeSize, leafHash, p.path) }, 'latest'],
    decodeBool,
  );
  if (!included) throw new NotProven('inclusion', "the contract's verifyInclusion rejects the proof");
  return { chainId, contract, transaction };
}
