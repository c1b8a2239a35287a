// The command line: output and exit codes as `twinledger verify-proof` gives them, and --json.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../cli.mjs', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('fixtures/boiler_1-v2.json', import.meta.url));
const CONTRACT = '0x5FbDB2315678afecb367f032d93F642f64180aa3';

function run(...args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }));
  });
}

/** A loopback port that nothing listens on. */
async function closedPort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

test('--offline: exit 0 and says plainly that no chain was checked', async () => {
  const r = await run(EXAMPLE, '--offline');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    'hash math OK for twin boiler_1 version 2 (log index 17) in the tree of size 18 with root 52812c95f0525edea874e3907ee0ba0ac594c81a969491247d4ec66c556a8473\n' +
      'NOT checked against any chain (--offline): this does not prove the record was anchored\n',
  );
});

test('a tampered bundle: exit 1 and NOT PROVEN with the reason, as text or JSON', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'verify-bundle-'));
  const edited = join(dir, 'edited.json');
  writeFileSync(edited, readFileSync(EXAMPLE, 'utf8').replace('"pressure_bar":2.6', '"pressure_bar":2.7'));
  let r = await run(edited, '--rpc', 'http://127.0.0.1:1', '--contract', CONTRACT);
  assert.equal(r.code, 1);
  assert.equal(
    r.stdout,
    'NOT PROVEN: the state does not match its hash: expected be57bb2dabe6317d193316a10c327ec5ceb6e1d1827128f38f5b9c934869098c, got 755e11a75ba9674285c79e6a9de6318417d515643f4a7b9bb1f41b13f8794aff\n',
  );
  r = await run(edited, '--offline', '--json');
  assert.equal(r.code, 1);
  assert.equal(r.stdout.trim().split('\n').length, 1, 'one line');
  const j = JSON.parse(r.stdout);
  assert.equal(j.status, 'not_proven');
  assert.equal(j.step, 'state_hash');
  assert.match(j.reason, /^the state does not match its hash/);
});

test('--json on success: the result object, step null', async () => {
  const r = await run(EXAMPLE, '--json', '--offline');
  assert.equal(r.code, 0);
  const j = JSON.parse(r.stdout);
  assert.equal(j.status, 'valid');
  assert.equal(j.step, null);
  assert.equal(j.reason, null);
  assert.equal(j.offline, true);
  assert.equal(j.twinId, 'boiler_1');
  assert.equal(j.size, 18);
});

test('a chain that cannot be reached: exit 2, error on stderr, never a pass', async () => {
  const rpc = `http://127.0.0.1:${await closedPort()}`;
  let r = await run(EXAMPLE, '--rpc', rpc, '--contract', CONTRACT);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^error: cannot reach the chain: chain node unreachable/);
  r = await run(EXAMPLE, '--json', `--rpc=${rpc}`, `--contract=${CONTRACT}`, '--chain-id', '31337');
  assert.equal(r.code, 2);
  assert.deepEqual([JSON.parse(r.stdout).status, JSON.parse(r.stdout).step], ['error', 'chain_id']);
});

test('what the verifier must say: errors with exit 2', async () => {
  for (const args of [
    [EXAMPLE],
    [EXAMPLE, '--contract', CONTRACT],
    [EXAMPLE, '--rpc', 'http://127.0.0.1:1'],
    [EXAMPLE, '--rpc', 'http://127.0.0.1:1', '--contract', 'nope'],
    [EXAMPLE, '--offline', '--rpc', 'http://127.0.0.1:1'],
    [EXAMPLE, '--offline', '--chain-id', '1'],
    [EXAMPLE, '--rpc', 'http://127.0.0.1:1', '--contract', CONTRACT, '--chain-id', 'x'],
    [EXAMPLE, '--offline', '--frobnicate'],
    [EXAMPLE, EXAMPLE, '--offline'],
    ['--offline'],
    [EXAMPLE, '--rpc'],
    [join(tmpdir(), 'no-such-bundle.json'), '--offline'],
  ]) {
    const r = await run(...args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, /^error: /, args.join(' '));
    const j = await run(...args, '--json');
    assert.equal(j.code, 2, args.join(' '));
    assert.equal(JSON.parse(j.stdout).status, 'error', args.join(' '));
  }
  // --help is no error.
  const help = await run('--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: twinledger-verify-bundle FILE --rpc URL --contract ADDRESS/);
});
