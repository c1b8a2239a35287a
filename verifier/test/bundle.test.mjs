// Steps 1 to 4 and the device signature, offline: the example of docs/proof-format.md, real
// bundles of the service (fixtures/), and bundles broken in each way.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ed25519, ED25519_TORSION_SUBGROUP } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';
import {
  JsonNumber,
  NotProven,
  checkHashMath,
  jcsJson,
  leafBytes,
  parseJson,
  leafHash,
  parseBundle,
  sha256,
  toHex,
  verifyBundle,
  verifyStrict,
} from '../index.mjs';

const fixture = (name) => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');
const EXAMPLE = fixture('boiler_1-v2.json');
const utf8 = new TextEncoder();

/** The step at which a bundle fails offline, or 'valid'. */
async function offline(text) {
  const r = await verifyBundle(text, { offline: true });
  return r.status === 'valid' ? 'valid' : `${r.status}:${r.step}`;
}

function edit(text, f) {
  const v = JSON.parse(text);
  f(v);
  return JSON.stringify(v);
}

test('the example bundle of docs/proof-format.md is the one in the fixture, and its hash math holds', async () => {
  const doc = readFileSync(new URL('../../docs/proof-format.md', import.meta.url), 'utf8');
  const shown = doc.match(/## An example[\s\S]*?```json\n([\s\S]*?)```/)[1];
  assert.deepEqual(JSON.parse(shown), JSON.parse(EXAMPLE));

  const math = checkHashMath(parseBundle(EXAMPLE));
  assert.deepEqual(math, {
    twinId: 'boiler_1',
    version: 2,
    index: 17,
    kind: 'reported',
    hashScheme: 'jcs-sha256',
    size: 18,
    root: '52812c95f0525edea874e3907ee0ba0ac594c81a969491247d4ec66c556a8473',
    leafHash: '6116fd3618f97d1c5be2ca40d95a31538928f8f8a5adfa9ed9f935183e71122d',
    deviceKey: null,
  });
  // The leaf the doc spells out, byte for byte: 143 bytes, format v1.
  const b = parseBundle(EXAMPLE);
  const leaf = leafBytes(b.record);
  assert.equal(leaf.length, 143);
  assert.equal(toHex(leaf), JSON.parse(EXAMPLE).leaf);
  const r = await verifyBundle(EXAMPLE, { offline: true });
  assert.equal(r.status, 'valid');
  assert.equal(r.step, null);
  assert.equal(r.offline, true);
  assert.equal(r.chainId, null, 'offline proves nothing about a chain');
});

test('the pretty-printed example and its bytes verify alike', async () => {
  assert.equal(await offline(JSON.stringify(JSON.parse(EXAMPLE), null, 2)), 'valid');
  assert.equal(await offline(utf8.encode(EXAMPLE)), 'valid');
});

test('real bundles of the service: seed-sha256, an annex (leaf v2), a device signature', async () => {
  for (const name of ['seed-scheme.json', 'desired-tolerances.json', 'signed-report.json']) {
    assert.equal(await offline(fixture(name)), 'valid', name);
  }
  const signed = checkHashMath(parseBundle(fixture('signed-report.json')));
  assert.equal(signed.deviceKey, JSON.parse(fixture('signed-report.json')).record.annex.signature.public_key);
  assert.equal(parseBundle(fixture('desired-tolerances.json')).leaf[0], 2);
  assert.equal(parseBundle(fixture('seed-scheme.json')).record.hashScheme, 'seed-sha256');
});

test('one-byte edits fail at the step that catches them', async () => {
  // The state: 2.6 -> 2.7.
  const state = EXAMPLE.replace('"pressure_bar":2.6', '"pressure_bar":2.7');
  assert.notEqual(state, EXAMPLE);
  assert.equal(await offline(state), 'not_proven:state_hash');
  const r = await verifyBundle(state, { offline: true });
  assert.equal(
    r.reason,
    'the state does not match its hash: expected be57bb2dabe6317d193316a10c327ec5ceb6e1d1827128f38f5b9c934869098c, got 755e11a75ba9674285c79e6a9de6318417d515643f4a7b9bb1f41b13f8794aff',
  );
  // The salt's first hex digit.
  assert.equal(await offline(EXAMPLE.replace('"salt":"b4e4', '"salt":"04e4')), 'not_proven:leaf');
  // The stated leaf hash, and the stated leaf bytes.
  assert.equal(await offline(EXAMPLE.replace('"leaf_hash":"6116', '"leaf_hash":"7116')), 'not_proven:leaf');
  assert.equal(await offline(EXAMPLE.replace('"leaf":"0100', '"leaf":"0200')), 'not_proven:leaf');
  // A path entry removed, or one added.
  assert.equal(await offline(edit(EXAMPLE, (v) => v.inclusion_proof.path.pop())), 'not_proven:inclusion');
  assert.equal(await offline(edit(EXAMPLE, (v) => v.inclusion_proof.path.shift())), 'not_proven:inclusion');
  assert.equal(await offline(edit(EXAMPLE, (v) => v.inclusion_proof.path.push(v.record.salt))), 'not_proven:inclusion');
  // tree_size alone: the proof is for another tree than the head (checked before the path).
  const size = edit(EXAMPLE, (v) => (v.inclusion_proof.tree_size = 19));
  assert.equal(await offline(size), 'not_proven:inclusion');
  assert.match((await verifyBundle(size, { offline: true })).reason, /^the inclusion proof is for leaf 17 of 19, the record is leaf 17 of 18$/);
  // Both sizes: the path no longer fits.
  assert.equal(
    await offline(edit(EXAMPLE, (v) => (v.inclusion_proof.tree_size = v.tree_head.size = 37))),
    'not_proven:inclusion',
  );
  assert.equal(await offline(edit(EXAMPLE, (v) => (v.inclusion_proof.leaf_index = 16))), 'not_proven:inclusion');
  // The root.
  assert.equal(await offline(EXAMPLE.replace('"root":"5281', '"root":"6281')), 'not_proven:inclusion');
  // A jcs-sha256 state with an integer that no double equals has no state hash.
  const inexact = await verifyBundle(EXAMPLE.replace('"pressure_bar":2.6', '"pressure_bar":9007199254740993'), { offline: true });
  assert.equal(`${inexact.status}:${inexact.step}`, 'not_proven:state_hash');
  assert.match(inexact.reason, /integer 9007199254740993 is not exactly representable as an ieee 754 double/);
  // The anchor's claims are for the chain to check: the hash math does not see them.
  assert.equal(await offline(edit(EXAMPLE, (v) => (v.anchor.block_number = 15))), 'valid');
});

test('every field is required and no unknown field is taken, at any level', async () => {
  const v = JSON.parse(EXAMPLE);
  const levels = { '': v, record: v.record, inclusion_proof: v.inclusion_proof, tree_head: v.tree_head, anchor: v.anchor };
  for (const [level, o] of Object.entries(levels)) {
    for (const key of Object.keys(o)) {
      const missing = edit(EXAMPLE, (b) => delete (level ? b[level] : b)[key]);
      assert.equal(await offline(missing), 'not_proven:format', `${level}.${key} missing`);
      assert.match((await verifyBundle(missing, { offline: true })).reason, /^malformed proof bundle: /);
    }
    assert.equal(await offline(edit(EXAMPLE, (b) => ((level ? b[level] : b).extra = 1))), 'not_proven:format', `extra in ${level}`);
  }
  // annex is the one optional member.
  assert.equal(await offline(edit(EXAMPLE, (b) => (b.record.annex = {}))), 'not_proven:leaf');
});

test('field types and values are checked as twinledger reads them', async () => {
  const fails = async (f, why) => {
    const r = await verifyBundle(edit(EXAMPLE, f), { offline: true });
    assert.equal(`${r.status}:${r.step}`, 'not_proven:format', why.source);
    assert.match(r.reason, why);
  };
  await fails((v) => (v.format = 'twinledger-proof-v2'), /unknown format/);
  await fails((v) => (v.record.index = -17), /"index" must be a non-negative integer/);
  await fails((v) => (v.record.version = '2'), /"version" must be a non-negative integer/);
  await fails((v) => (v.record.kind = 'observed'), /unknown record kind "observed"/);
  await fails((v) => (v.record.hash_scheme = 'sha256'), /unknown hash scheme "sha256"/);
  await fails((v) => (v.record.state = [1]), /record.state must be an object/);
  await fails((v) => (v.record.salt = '0x' + v.record.salt.slice(2)), /record.salt must be 64 hex digits/);
  await fails((v) => (v.record.state_hash = v.record.state_hash.slice(1)), /"state_hash": expected 64 hexadecimal digits/);
  await fails((v) => (v.record.prev_leaf_hash = 'zz'), /"prev_leaf_hash": expected 64 hexadecimal digits/);
  await fails((v) => (v.record.recorded_at_ms = 1.5), /"recorded_at_ms" must be an integer/);
  await fails((v) => (v.record.annex = []), /record.annex must be an object/);
  await fails((v) => (v.inclusion_proof.path = {}), /inclusion_proof.path must be an array/);
  await fails((v) => v.inclusion_proof.path.push('abc'), /inclusion_proof.path holds 64-hex-digit hashes/);
  await fails((v) => (v.inclusion_proof.path = Array(65).fill(v.record.salt)), /longer than any tree needs/);
  await fails((v) => (v.leaf = 'xyz'), /leaf must be hex/);
  await fails((v) => (v.anchor.chain_id = '31337'), /"chain_id" must be a non-negative integer/);
  await fails((v) => (v.anchor.contract = 5), /"contract" must be a string/);
  assert.equal(await offline(EXAMPLE.replace('"index":17', '"index":17.0')), 'not_proven:format');
  assert.equal(await offline(EXAMPLE.replace('"index":17', '"index":1.7e1')), 'not_proven:format');
  assert.equal(await offline(EXAMPLE.replace('"index":17', '"index":-0')), 'not_proven:format');
  const tooBig = EXAMPLE.replace('"block_number":14', '"block_number":18446744073709551616');
  assert.equal(await offline(tooBig), 'not_proven:format');
  assert.equal(await offline(EXAMPLE.replace('"block_number":14', '"block_number":18446744073709551615')), 'valid');
  assert.equal(await offline(EXAMPLE.replace('"recorded_at_ms":1795558461038', '"recorded_at_ms":9223372036854775808')), 'not_proven:format');
  for (const [id, why] of [
    ['', /must not be empty/],
    ['x'.repeat(129), /129 characters long/],
    ['boiler 1', /whitespace/],
    ['boiler\u00a01', /whitespace/],
    ['boiler\u00001', /control characters/],
    ['boiler\u007f1', /control characters/],
    ['boiler/1', /'\/', '\\', '\+' or '#'/],
    ['boiler#1', /'\/', '\\', '\+' or '#'/],
    ['..', /must not be "." or ".."/],
  ]) {
    await fails((v) => (v.record.twin_id = id), why);
  }
  // 128 characters, some of them beyond U+FFFF, are fine (the leaf changes, so the leaf step fails).
  assert.equal(await offline(edit(EXAMPLE, (v) => (v.record.twin_id = '😀'.repeat(128)))), 'not_proven:leaf');
});

test('upper case and 0x on hashes are read as twinledger reads them; not on the salt', async () => {
  assert.equal(await offline(edit(EXAMPLE, (v) => (v.record.state_hash = '0x' + v.record.state_hash.toUpperCase()))), 'valid');
  assert.equal(await offline(edit(EXAMPLE, (v) => (v.tree_head.root = v.tree_head.root.toUpperCase()))), 'valid');
  assert.equal(await offline(edit(EXAMPLE, (v) => (v.inclusion_proof.path = v.inclusion_proof.path.map((h) => '0x' + h)))), 'valid');
  assert.equal(await offline(edit(EXAMPLE, (v) => (v.record.salt = v.record.salt.toUpperCase()))), 'valid');
  assert.equal(await offline(edit(EXAMPLE, (v) => (v.record.state_hash = '0X' + v.record.state_hash))), 'not_proven:format');
});

test('duplicate keys are refused at every level, even with equal values', async () => {
  for (const [from, to] of [
    ['{"format":', '{"format":"twinledger-proof-v1","format":'],
    ['"index":17,', '"index":17,"index":17,'],
    ['"burner":"on"', '"burner":"on","burner":"on"'],
    ['"size":18,', '"size":18,"size":18,'],
  ]) {
    const text = EXAMPLE.replace(from, to);
    assert.notEqual(text, EXAMPLE);
    const r = await verifyBundle(text, { offline: true });
    assert.equal(`${r.status}:${r.step}`, 'not_proven:format', to);
    assert.match(r.reason, /duplicate key/);
  }
});

// Structural equality of two read bundles.
function dump(b) {
  return JSON.stringify(b, (_, v) => {
    if (typeof v === 'bigint') return `${v}n`;
    if (v instanceof Uint8Array) return toHex(v);
    if (v instanceof Map) return { map: [...v] };
    if (v instanceof JsonNumber) return { number: v.lexeme };
    return v;
  });
}

for (const name of ['boiler_1-v2.json', 'signed-report.json']) {
  test(`every single-bit change of ${name} before its anchor is caught, or reads as the same bundle`, () => {
    const bytes = utf8.encode(fixture(name));
    const original = dump(parseBundle(bytes));
    const anchorAt = fixture(name).indexOf('"anchor":');
    let caught = 0;
    const undetected = [];
    for (let i = 0; i < anchorAt; i++) {
      for (const flip of [0x01, 0x20]) {
        const t = bytes.slice();
        t[i] ^= flip;
        let b;
        try {
          b = parseBundle(t);
          checkHashMath(b);
        } catch (e) {
          assert.ok(e instanceof NotProven, e.stack);
          caught++;
          continue;
        }
        if (dump(b) !== original) undetected.push(i);
      }
    }
    assert.deepEqual(undetected, []);
    assert.ok(caught > anchorAt, `${caught} caught`);
  });
}

// ---------------------------------------------------------------------------------------------
// Signatures, on bundles made here: a one-leaf tree whose root is the leaf hash.

const SECRET = new Uint8Array(32).fill(11);
const PUBLIC = ed25519.getPublicKey(SECRET);

const sign = (stateText, secret = SECRET) => toHex(ed25519.sign(utf8.encode(jcsJson(parseJson(stateText))), secret));
const member = (value, publicKey = toHex(PUBLIC)) => ({ algorithm: 'ed25519', public_key: publicKey, value });

/** A bundle of a one-leaf tree whose record carries `signature` in its annex, every hash made to fit. */
function signedBundle(stateText, signature) {
  const v = {
    format: 'twinledger-proof-v1',
    record: {
      index: 0,
      twin_id: 'valve-7',
      version: 1,
      kind: 'reported',
      state: JSON.parse(stateText),
      hash_scheme: 'jcs-sha256',
      state_hash: toHex(sha256(utf8.encode(jcsJson(parseJson(stateText))))),
      prev_leaf_hash: null,
      recorded_at_ms: 1796670146560,
      salt: '11'.repeat(32),
      annex: { signature, source: 'mqtt' },
    },
    leaf: '',
    leaf_hash: '00'.repeat(32),
    inclusion_proof: { leaf_index: 0, tree_size: 1, path: [] },
    tree_head: { size: 1, root: '00'.repeat(32) },
    anchor: { chain_id: 31337, contract: '0x5FbDB2315678afecb367f032d93F642f64180aa3', tx_hash: '0x' + '00'.repeat(32), block_number: 1, block_timestamp: 1 },
  };
  const leaf = leafBytes(parseBundle(JSON.stringify(v)).record);
  v.leaf = toHex(leaf);
  v.leaf_hash = v.tree_head.root = toHex(leafHash(leaf));
  return JSON.stringify(v);
}

test('a device signature over the JCS text of the state is checked', async () => {
  const state = '{"pos": 0.250, "open": true}';
  const good = signedBundle(state, member(sign(state)));
  assert.equal(parseBundle(good).leaf[0], 2, 'a record with an annex has a v2 leaf');
  assert.equal(await offline(good), 'valid');
  assert.equal((await verifyBundle(good, { offline: true })).deviceKey, toHex(PUBLIC));
  // Member order and number spelling do not matter: the JCS text is what is signed.
  assert.equal(await offline(signedBundle('{"open": true, "pos": 2.5e-1}', member(sign(state)))), 'valid');

  const fails = async (text, reason) => {
    const r = await verifyBundle(text, { offline: true });
    assert.equal(`${r.status}:${r.step}`, 'not_proven:signature', reason);
    assert.equal(r.reason, `the device signature fails: ${reason}`);
  };
  // The same key's signature of another state, every hash made to fit: only the signature fails.
  await fails(signedBundle(state, member(sign('{"open": false}'))), "the signature does not match the state and the twin's key");
  await fails(signedBundle(state, member(sign(state, new Uint8Array(32).fill(12)))), "the signature does not match the state and the twin's key");
  await fails(signedBundle(state, { ...member(sign(state)), algorithm: 'ed448' }), 'malformed signature: the algorithm must be ed25519');
  await fails(signedBundle(state, { ...member(sign(state)), note: 'x' }), 'malformed signature: expected algorithm, public_key and value');
  await fails(signedBundle(state, { algorithm: 'ed25519', public_key: toHex(PUBLIC), val: sign(state) }), 'malformed signature: value must be a string');
  await fails(signedBundle(state, 'signed'), 'malformed signature: not an object');
  await fails(signedBundle(state, member(sign(state).slice(2))), 'a signature is 128 hex digits (64 bytes of Ed25519)');
  await fails(signedBundle(state, member(sign(state), 'zz'.repeat(32))), 'a device public key is 64 hex digits of an Ed25519 key');
});

test('strict Ed25519: RFC 8032 test 1, no malleable s, no small-order key, no torsion in R', () => {
  const hex = (s) => Uint8Array.from(s.match(/../g).map((b) => parseInt(b, 16)));
  const pub = hex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
  const sig = hex(
    'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  );
  assert.equal(verifyStrict(sig, new Uint8Array(0), pub), true);
  assert.equal(verifyStrict(sig, Uint8Array.of(0), pub), false);

  const L = ed25519.Point.Fn.ORDER;
  const le = (n) => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
  const numberLE = (b) => b.reduceRight((n, x) => (n << 8n) | BigInt(x), 0n);
  const msg = utf8.encode('{"open":true}');
  const good = ed25519.sign(msg, SECRET);
  assert.equal(verifyStrict(good, msg, PUBLIC), true);
  // s + L verifies under the group law, but is not the canonical encoding.
  const malleable = good.slice();
  malleable.set(le(numberLE(good.subarray(32)) + L), 32);
  assert.equal(verifyStrict(malleable, msg, PUBLIC), false);
  // The identity as a key and as R: anyone can "sign" with s = 0.
  const identity = ed25519.Point.ZERO.toBytes();
  const trivial = new Uint8Array(64);
  trivial.set(identity, 0);
  assert.equal(verifyStrict(trivial, msg, identity), false);

  // R with a torsion component: a cofactored check (noble's alone) passes it, dalek's
  // verify_strict does not, and neither does this one.
  const { scalar: a } = ed25519.utils.getExtendedPublicKey(SECRET);
  const T = ed25519.Point.fromHex(ED25519_TORSION_SUBGROUP[1]);
  const r = 123456789n;
  const R = ed25519.Point.BASE.multiply(r).add(T).toBytes();
  const k = numberLE(sha512(new Uint8Array([...R, ...PUBLIC, ...msg]))) % L;
  const s = (r + k * a) % L;
  const torsion = new Uint8Array([...R, ...le(s)]);
  assert.equal(ed25519.verify(torsion, msg, PUBLIC, { zip215: false }), true, 'the cofactored equation holds');
  assert.equal(verifyStrict(torsion, msg, PUBLIC), false);
});
