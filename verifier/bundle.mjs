// Reading a `twinledger-proof-v1` bundle and checking its hash math (docs/proof-format.md,
// steps 1 to 4, and the device signature). The checks, their order and their messages follow
// twinledger's own reader and `verify-proof` (crates/core/src/bundle.rs), so that both refuse
// the same bundles for the same reason.

import { ed25519 } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { JsonError, JsonNumber, BUNDLE_LIMITS, canonicalBytes, jcsJson, parseJson } from './json.mjs';
import { concat, equalBytes, fromHex, leafHash, rootFromInclusion, sha256, toHex } from './hash.mjs';

export const BUNDLE_FORMAT = 'twinledger-proof-v1';

/** The steps a verification can fail at, in the order they run. */
export const STEPS = Object.freeze(['format', 'state_hash', 'leaf', 'inclusion', 'signature', 'chain_id', 'contract', 'anchor']);

/** The bundle is not proven: `step` says which check failed, `reason` why. */
export class NotProven extends Error {
  constructor(step, reason) {
    super(reason);
    this.name = 'NotProven';
    this.step = step;
    this.reason = reason;
  }
}

const KINDS = ['reported', 'desired', 'event'];
const SCHEMES = ['seed-sha256', 'jcs-sha256'];
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const utf8 = new TextEncoder();
const q = (s) => JSON.stringify(s);

const malformed = (msg) => new NotProven('format', `malformed proof bundle: ${msg}`);

function field(o, key) {
  if (!o.has(key)) throw malformed(`missing field ${q(key)}`);
  return o.get(key);
}

function object(o, key) {
  const v = field(o, key);
  if (!(v instanceof Map)) throw malformed(`${q(key)} must be an object`);
  return v;
}

function string(o, key) {
  const v = field(o, key);
  if (typeof v !== 'string') throw malformed(`${q(key)} must be a string`);
  return v;
}

// Integers are read from their lexemes, so no u64 passes through a double.
function u64(o, key) {
  const v = field(o, key);
  if (v instanceof JsonNumber && /^[0-9]{1,20}$/.test(v.lexeme) && BigInt(v.lexeme) <= U64_MAX) return BigInt(v.lexeme);
  throw malformed(`${q(key)} must be a non-negative integer`);
}

function i64(o, key) {
  const v = field(o, key);
  if (v instanceof JsonNumber && /^-?[0-9]{1,19}$/.test(v.lexeme)) {
    const n = BigInt(v.lexeme);
    if (n >= I64_MIN && n <= I64_MAX) return n;
  }
  throw malformed(`${q(key)} must be an integer`);
}

/** 64 hex digits of either case, with or without `0x`, as twinledger's reader takes hashes. */
export function parseHash(s) {
  if (typeof s !== 'string') return null;
  return fromHex(s.startsWith('0x') ? s.slice(2) : s, 32);
}

function hashField(o, key) {
  const s = string(o, key);
  const h = parseHash(s);
  if (!h) throw malformed(`${q(key)}: expected 64 hexadecimal digits, got ${q(s)}`);
  return h;
}

function onlyFields(o, allowed, what) {
  for (const k of o.keys()) if (!allowed.includes(k)) throw malformed(`unknown field ${q(k)} in ${what}`);
}

/** The twin id rules of crates/core/src/twin.rs; returns the id or throws. */
export function checkTwinId(id) {
  const bad = (m) => malformed(m);
  if (id === '') throw bad('twin_id must not be empty');
  const chars = [...id];
  if (chars.length > 128) throw bad(`twin_id is ${chars.length} characters long; at most 128 are allowed`);
  for (const c of chars) {
    // Rust's char::is_whitespace is White_Space; char::is_control is Cc.
    if (/\p{White_Space}/u.test(c)) throw bad('twin_id must not contain whitespace');
    if (/\p{Cc}/u.test(c)) throw bad('twin_id must not contain control characters');
    if ('/\\+#'.includes(c)) throw bad("twin_id must not contain '/', '\\', '+' or '#'");
  }
  if (id === '.' || id === '..') throw bad('twin_id must not be "." or ".."');
  return id;
}

/**
 * Reads a bundle (a string, or bytes that must be UTF-8). Checks its shape only: every field
 * present and of its type, no unknown field at any level, no duplicate key. Throws NotProven
 * (step "format").
 */
export function parseBundle(text) {
  let top;
  try {
    top = parseJson(text, BUNDLE_LIMITS);
  } catch (e) {
    if (e instanceof JsonError) throw malformed(e.message);
    throw e;
  }
  if (!(top instanceof Map)) throw malformed('a bundle is a JSON object');
  onlyFields(top, ['format', 'record', 'leaf', 'leaf_hash', 'inclusion_proof', 'tree_head', 'anchor'], 'the bundle');
  const format = string(top, 'format');
  if (format !== BUNDLE_FORMAT) throw malformed(`unknown format ${q(format)}; this program reads ${q(BUNDLE_FORMAT)}`);

  const r = object(top, 'record');
  onlyFields(
    r,
    ['index', 'twin_id', 'version', 'kind', 'state', 'hash_scheme', 'state_hash', 'prev_leaf_hash', 'recorded_at_ms', 'salt', 'annex'],
    'record',
  );
  const state = field(r, 'state');
  if (!(state instanceof Map)) throw malformed('record.state must be an object');
  const prevLeafHash = field(r, 'prev_leaf_hash') === null ? null : hashField(r, 'prev_leaf_hash');
  const salt = fromHex(string(r, 'salt'), 32);
  if (!salt) throw malformed('record.salt must be 64 hex digits');
  const index = u64(r, 'index');
  const twinId = checkTwinId(string(r, 'twin_id'));
  const version = u64(r, 'version');
  const kind = string(r, 'kind');
  if (!KINDS.includes(kind)) throw malformed(`unknown record kind ${q(kind)}`);
  const hashScheme = string(r, 'hash_scheme');
  if (!SCHEMES.includes(hashScheme)) {
    throw malformed(`unknown hash scheme ${q(hashScheme)}, expected "seed-sha256" or "jcs-sha256"`);
  }
  const stateHash = hashField(r, 'state_hash');
  const recordedAtMs = i64(r, 'recorded_at_ms');
  let annex = null;
  let annexHash = null;
  if (r.has('annex')) {
    annex = r.get('annex');
    if (!(annex instanceof Map)) throw malformed('record.annex must be an object');
    try {
      annexHash = sha256(utf8.encode(jcsJson(annex)));
    } catch (e) {
      if (e instanceof JsonError) throw malformed(`record.annex: ${e.message}`);
      throw e;
    }
  }

  const p = object(top, 'inclusion_proof');
  onlyFields(p, ['leaf_index', 'tree_size', 'path'], 'inclusion_proof');
  const pathValue = field(p, 'path');
  if (!Array.isArray(pathValue)) throw malformed('inclusion_proof.path must be an array');
  const path = pathValue.map((h) => {
    const b = parseHash(h);
    if (!b) throw malformed('inclusion_proof.path holds 64-hex-digit hashes');
    return b;
  });
  // A tree of at most 2^64 leaves needs at most 64 hashes.
  if (path.length > 64) throw malformed('inclusion_proof.path is longer than any tree needs');
  const h = object(top, 'tree_head');
  onlyFields(h, ['size', 'root'], 'tree_head');
  const a = object(top, 'anchor');
  onlyFields(a, ['chain_id', 'contract', 'tx_hash', 'block_number', 'block_timestamp'], 'anchor');
  const leaf = fromHex(string(top, 'leaf'));
  if (!leaf) throw malformed('leaf must be hex');

  return {
    record: { index, twinId, version, kind, state, hashScheme, stateHash, prevLeafHash, recordedAtMs, salt, annex, annexHash },
    leaf,
    leafHash: hashField(top, 'leaf_hash'),
    inclusionProof: { leafIndex: u64(p, 'leaf_index'), treeSize: u64(p, 'tree_size'), path },
    treeHead: { size: u64(h, 'size'), root: hashField(h, 'root') },
    anchor: {
      chainId: u64(a, 'chain_id'),
      contract: string(a, 'contract'),
      txHash: string(a, 'tx_hash'),
      blockNumber: u64(a, 'block_number'),
      blockTimestamp: u64(a, 'block_timestamp'),
    },
  };
}

/** The leaf bytes of a record (format v1, or v2 with the annex's hash), integers big-endian. */
export function leafBytes(r) {
  const id = utf8.encode(r.twinId);
  const scheme = utf8.encode(r.hashScheme);
  const head = new Uint8Array(1 + 8 + 1 + 2);
  const dv = new DataView(head.buffer);
  dv.setUint8(0, r.annexHash ? 2 : 1);
  dv.setBigUint64(1, r.index);
  dv.setUint8(9, KINDS.indexOf(r.kind));
  dv.setUint16(10, id.length);
  const mid = new Uint8Array(8 + 8 + 1);
  const dm = new DataView(mid.buffer);
  dm.setBigUint64(0, r.version);
  dm.setBigInt64(8, r.recordedAtMs);
  dm.setUint8(16, scheme.length);
  return concat(head, id, mid, scheme, r.stateHash, r.prevLeafHash ?? new Uint8Array(32), r.salt, r.annexHash ?? new Uint8Array(0));
}

/** A u64 for a result object: a number while it is exact, else its decimal string. */
export function jsonInt(n) {
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : String(n);
}

/**
 * Steps 1 to 4 and the device signature, with no chain. Returns what was shown; throws
 * NotProven with the failing step.
 */
export function checkHashMath(bundle) {
  const r = bundle.record;
  let canonical;
  try {
    canonical = canonicalBytes(r.state, r.hashScheme);
  } catch (e) {
    // A jcs-sha256 state holding an integer no double equals: it has no state hash.
    if (e instanceof JsonError) throw new NotProven('state_hash', `malformed proof bundle: ${e.message}`);
    throw e;
  }
  const stateHash = sha256(canonical);
  if (!equalBytes(stateHash, r.stateHash)) {
    throw new NotProven('state_hash', `the state does not match its hash: expected ${toHex(r.stateHash)}, got ${toHex(stateHash)}`);
  }
  const leaf = leafBytes(r);
  const lh = leafHash(leaf);
  if (!equalBytes(lh, bundle.leafHash)) {
    throw new NotProven('leaf', `the record does not match its leaf hash: expected ${toHex(bundle.leafHash)}, got ${toHex(lh)}`);
  }
  if (!equalBytes(leaf, bundle.leaf)) throw new NotProven('leaf', 'malformed proof bundle: the leaf bytes do not encode the record');
  const p = bundle.inclusionProof;
  const head = bundle.treeHead;
  if (p.leafIndex !== r.index || p.treeSize !== head.size) {
    throw new NotProven(
      'inclusion',
      `the inclusion proof is for leaf ${p.leafIndex} of ${p.treeSize}, the record is leaf ${r.index} of ${head.size}`,
    );
  }
  const root = rootFromInclusion(p.leafIndex, p.treeSize, lh, p.path);
  if (typeof root === 'string') throw new NotProven('inclusion', `the inclusion proof fails: ${root}`);
  if (!equalBytes(root, head.root)) {
    throw new NotProven('inclusion', `the inclusion proof fails: root mismatch: expected ${toHex(head.root)}, got ${toHex(root)}`);
  }
  const member = r.annex?.get('signature');
  const deviceKey = member === undefined ? null : checkSignature(member, r.state);
  return {
    twinId: r.twinId,
    version: jsonInt(r.version),
    index: jsonInt(r.index),
    kind: r.kind,
    hashScheme: r.hashScheme,
    size: jsonInt(head.size),
    root: toHex(head.root),
    leafHash: toHex(lh),
    deviceKey,
  };
}

/**
 * The annex's `signature` member: `{"algorithm": "ed25519", "public_key", "value"}` over the
 * JCS text of the state. Returns the public key's hex; throws NotProven (step "signature").
 */
export function checkSignature(member, state) {
  const fail = (m) => new NotProven('signature', `the device signature fails: ${m}`);
  const bad = (m) => fail(`malformed signature: ${m}`);
  if (!(member instanceof Map)) throw bad('not an object');
  if (member.size !== 3) throw bad('expected algorithm, public_key and value');
  const text = (k) => {
    const v = member.get(k);
    if (typeof v !== 'string') throw bad(`${k} must be a string`);
    return v;
  };
  if (text('algorithm') !== 'ed25519') throw bad('the algorithm must be ed25519');
  const key = fromHex(text('public_key'), 32);
  if (!key || !isPoint(key)) throw fail('a device public key is 64 hex digits of an Ed25519 key');
  const signature = fromHex(text('value'), 64);
  if (!signature) throw fail('a signature is 128 hex digits (64 bytes of Ed25519)');
  let message;
  try {
    message = utf8.encode(jcsJson(state));
  } catch (e) {
    if (e instanceof JsonError) throw fail(`the state cannot be signed: ${e.message}`);
    throw e;
  }
  if (!verifyStrict(signature, message, key)) throw fail("the signature does not match the state and the twin's key");
  return toHex(key);
}

// Whether 32 bytes decode to a curve point at all (ed25519-dalek's VerifyingKey::from_bytes).
function isPoint(key) {
  try {
    ed25519.Point.fromBytes(key, true);
    return true;
  } catch {
    return false;
  }
}

function numberLE(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/**
 * Strict Ed25519 (RFC 8032): noble's verification with zip215 off (canonical encodings, s < L,
 * no small-order key), and also ed25519-dalek's verify_strict, which twinledger uses: a
 * small-order R is refused too, and the equation is the cofactorless R = [s]B - [k]A, so a
 * signature with a torsion component that a cofactored check would let through is refused here
 * as it is there.
 */
export function verifyStrict(signature, message, publicKey) {
  if (!ed25519.verify(signature, message, publicKey, { zip215: false })) return false;
  const P = ed25519.Point;
  const rBytes = signature.subarray(0, 32);
  let A;
  let R;
  try {
    A = P.fromBytes(publicKey, false);
    R = P.fromBytes(rBytes, false);
  } catch {
    return false;
  }
  if (A.isSmallOrder() || R.isSmallOrder()) return false;
  const L = P.Fn.ORDER;
  const s = numberLE(signature.subarray(32));
  if (s >= L) return false;
  const k = numberLE(sha512(concat(rBytes, publicKey, message))) % L;
  const expected = P.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k));
  return equalBytes(expected.toBytes(), rBytes);
}
