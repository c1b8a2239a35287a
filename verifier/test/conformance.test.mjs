// The conformance vectors of verifier/vectors (made by crates/cli/tests/it/bundle_vectors.rs):
// the hash math of each offline, and every case through the CLI against an Anvil loaded with
// the chain they were anchored on, when node_modules has Anvil (`npm ci`).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyBundle } from '../index.mjs';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const VECTORS = here('../vectors/');
const MANIFEST = join(VECTORS, 'manifest.json');
const ANVIL = here('../../node_modules/.bin/anvil');
const CLI = here('../cli.mjs');
const manifest = existsSync(MANIFEST) ? JSON.parse(readFileSync(MANIFEST, 'utf8')) : null;
const HASH_STEPS = ['format', 'state_hash', 'leaf', 'inclusion'];

test('conformance vectors, offline: the hash math of each case', { skip: !manifest && 'no verifier/vectors/manifest.json' }, async () => {
  assert.ok(manifest.cases.length >= 20);
  for (const c of manifest.cases) {
    const r = await verifyBundle(readFileSync(join(VECTORS, c.file)), { offline: true });
    // `offline` in the manifest is the hash math without the signature (verify_bundle.py).
    if (c.step === 'signature') {
      assert.deepEqual([r.status, r.step], ['not_proven', 'signature'], c.name);
    } else if (HASH_STEPS.includes(c.step)) {
      assert.deepEqual([r.status, r.step], [c.expect, c.step], c.name);
    } else {
      assert.equal(r.status, c.offline, c.name);
    }
  }
});

function cli(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }));
  });
}

async function startAnvil(state) {
  const child = spawn(ANVIL, ['--host', '127.0.0.1', '--port', '0', '--hardfork', 'cancun', '--prune-history', '--load-state', state], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`anvil did not start: ${out}`)), 30_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/Listening on (127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    });
    child.on('exit', (code) => reject(new Error(`anvil exited ${code}: ${out}`)));
  });
  return { url, stop: () => child.kill() };
}

const skipChain = !manifest ? 'no verifier/vectors/manifest.json' : !existsSync(ANVIL) ? 'no node_modules/.bin/anvil (npm ci)' : false;

test('conformance vectors against Anvil: each case its expected status and step', { skip: skipChain }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'verify-bundle-anvil-'));
  const state = join(dir, 'anvil-state.json');
  copyFileSync(join(VECTORS, manifest.chain.anvil_state), state);
  const anvil = await startAnvil(state);
  try {
    const seen = new Set();
    for (const c of manifest.cases) {
      const args = [join(VECTORS, c.file), '--json', '--rpc', anvil.url, '--contract', c.trust?.contract ?? manifest.chain.contract];
      if (c.trust?.chain_id !== undefined) args.push('--chain-id', String(c.trust.chain_id));
      const out = await cli(args);
      const r = JSON.parse(out.stdout);
      assert.deepEqual([r.status, r.step], [c.expect, c.step], `${c.name}: ${r.reason}`);
      assert.equal(out.code, { valid: 0, not_proven: 1, error: 2 }[c.expect], c.name);
      seen.add(`${c.expect}:${c.step}`);
    }
    for (const step of ['format', 'state_hash', 'leaf', 'inclusion', 'signature', 'chain_id', 'contract', 'anchor']) {
      assert.ok(seen.has(`not_proven:${step}`), `no vector fails ${step}`);
    }
    assert.ok(seen.has('valid:null'));
  } finally {
    anvil.stop();
  }
});
