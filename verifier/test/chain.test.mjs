// Step 5 against a scripted JSON-RPC node (an injected fetch) that answers as the doc's Anvil
// did for the example bundle; each answer is then changed the way a forged, misdirected or
// pruned case would change it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ANCHORED_TOPIC, checksumAddress, encodeVerifyInclusion, formatResult, parseAddress, verifyBundle } from '../index.mjs';

const EXAMPLE = readFileSync(new URL('fixtures/boiler_1-v2.json', import.meta.url), 'utf8');
const DOC = readFileSync(new URL('../../docs/proof-format.md', import.meta.url), 'utf8');
const CONTRACT = '0x5FbDB2315678afecb367f032d93F642f64180aa3';
const RPC = 'http://127.0.0.1:43157';
const ROOT = '52812c95f0525edea874e3907ee0ba0ac594c81a969491247d4ec66c556a8473';
const TX = '0x5253ba5f17802d592048e95a5f4dece960be8dfa4f5f55acaffe3615e2037464';
const word = (n) => BigInt(n).toString(16).padStart(64, '0');

// The calldata of verifyInclusion exactly as the doc builds it with printf.
const DOC_VERIFY_INCLUSION = DOC.match(/^\$ D=(0xbca46017.*)$/m)[1].replace(/\$\(printf '((?:%064x)+)' ([0-9 ]+)\)/g, (_, fmt, args) =>
  args.split(' ').map(word).join(''),
);
// The answer to anchoredRoot(18) that the doc shows.
const DOC_ANCHORED_ROOT = DOC.match(/"result":"(0x52812c95[0-9a-f]+)"/)[1];

/** A node: `answers` maps a method (or "eth_call:<selector>") to a result or a function. */
function node(answers = {}) {
  const calls = [];
  const defaults = {
    eth_chainId: '0x7a69',
    eth_getCode: '0x6080604052',
    'eth_call:0xc539e14c': DOC_ANCHORED_ROOT,
    'eth_call:0xbca46017': '0x' + word(1),
    eth_getTransactionReceipt: {
      transactionHash: TX,
      blockNumber: '0xe',
      status: '0x1',
      logs: [
        { address: CONTRACT.toLowerCase(), topics: ['0x' + 'ab'.repeat(32)], data: '0x' },
        { address: CONTRACT.toLowerCase(), topics: [ANCHORED_TOPIC, '0x' + word(18)], data: '0x' + ROOT + word(16) },
      ],
    },
    eth_getBlockByNumber: { number: '0xe' },
  };
  const table = { ...defaults, ...answers };
  const fetch = async (url, init) => {
    assert.equal(url, RPC);
    assert.equal(init.method, 'POST');
    const req = JSON.parse(init.body);
    assert.equal(req.jsonrpc, '2.0');
    calls.push(req);
    const key = req.method === 'eth_call' ? `eth_call:${req.params[0].data.slice(0, 10)}` : req.method;
    let answer = table[key];
    if (typeof answer === 'function') answer = answer(req);
    if (answer instanceof Error) throw answer;
    const body = answer && answer.rpcError ? { jsonrpc: '2.0', id: req.id, error: answer.rpcError } : { jsonrpc: '2.0', id: req.id, result: answer };
    return { ok: true, status: 200, json: async () => body };
  };
  return { fetch, calls };
}

async function verify(answers, options = {}, text = EXAMPLE) {
  const n = node(answers);
  const r = await verifyBundle(text, { rpc: RPC, contract: CONTRACT, fetch: n.fetch, ...options });
  return { ...r, calls: n.calls };
}

test('the example bundle is proven against the doc answers, with the calls the doc shows', async () => {
  const r = await verify();
  assert.equal(r.status, 'valid', r.reason);
  assert.equal(r.step, null);
  assert.equal(r.transaction, 'checked');
  assert.equal(r.contract, CONTRACT);
  assert.equal(r.chainId, 31337);
  assert.deepEqual(
    formatResult(r),
    [
      'VALID: twin boiler_1 version 2 (log index 17) is in the tree of size 18 anchored on chain 31337 by contract 0x5FbDB2315678afecb367f032d93F642f64180aa3 at block 14 (timestamp 1795558461)',
    ],
  );
  const [chainId, code, anchoredRoot, receipt, inclusion] = r.calls;
  assert.deepEqual(
    r.calls.map((c) => c.method),
    ['eth_chainId', 'eth_getCode', 'eth_call', 'eth_getTransactionReceipt', 'eth_call'],
  );
  assert.deepEqual(chainId.params, []);
  assert.deepEqual(code.params, [CONTRACT.toLowerCase(), 'latest']);
  assert.deepEqual(anchoredRoot.params, [{ to: CONTRACT.toLowerCase(), data: '0xc539e14c' + word(18) }, 'latest']);
  assert.deepEqual(receipt.params, [TX]);
  assert.equal(inclusion.params[0].data, DOC_VERIFY_INCLUSION);
  assert.equal(inclusion.params[0].data.length, 2 + 8 + 64 * 7);
});

test('verifyInclusion calldata: three static words, offset 0x80, length, elements', () => {
  const h = (b) => new Uint8Array(32).fill(b);
  assert.equal(
    encodeVerifyInclusion(5n, 6n, h(1), [h(2)]),
    '0xbca46017' + word(5) + word(6) + '01'.repeat(32) + word(0x80) + word(1) + '02'.repeat(32),
  );
  assert.equal(encodeVerifyInclusion(0n, 1n, h(1), []), '0xbca46017' + word(0) + word(1) + '01'.repeat(32) + word(0x80) + word(0));
  assert.equal(checksumAddress(parseAddress('0x5fbdb2315678afecb367f032d93f642f64180aa3')), CONTRACT);
  assert.equal(checksumAddress(parseAddress('0XFB6916095CA1DF60BB79CE92CE3EA74C37C5D359')), '0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359');
});

test('a node that no longer holds the anchor block: the contract record stands, and the output says so', async () => {
  const r = await verify({ eth_getTransactionReceipt: null, eth_getBlockByNumber: null });
  assert.equal(r.status, 'valid', r.reason);
  assert.equal(r.transaction, 'pruned');
  assert.deepEqual(r.calls.at(-2).params, ['0xe', false]);
  assert.match(formatResult(r)[1], /^the node no longer holds block 14, so transaction 0x5253.* was not checked; the contract's own record/);
});

test('the wrong chain, or the wrong contract, is refused before anything is read from it', async () => {
  let r = await verify({}, { chainId: 1 });
  assert.deepEqual([r.status, r.step, r.reason], ['not_proven', 'chain_id', 'the node is on chain 31337, not the expected chain 1']);
  r = await verify({}, { chainId: '31337' });
  assert.equal(r.status, 'valid');
  r = await verify({ eth_chainId: '0x1' });
  assert.deepEqual([r.status, r.step, r.reason], ['not_proven', 'chain_id', 'the bundle claims chain 31337, the node is on chain 1']);
  r = await verify({}, { contract: '0x0000000000000000000000000000000000000001' });
  assert.deepEqual(
    [r.status, r.step, r.reason],
    ['not_proven', 'contract', 'the bundle names contract 0x5FbDB2315678afecb367f032d93F642f64180aa3, not the trusted contract 0x0000000000000000000000000000000000000001'],
  );
  assert.equal(r.calls.length, 1);
  // The same 20 bytes in another letter case are the same contract.
  r = await verify({}, { contract: CONTRACT.toLowerCase() });
  assert.equal(r.status, 'valid', r.reason);
  r = await verify({ eth_getCode: '0x' });
  assert.deepEqual([r.status, r.step], ['not_proven', 'contract']);
  assert.match(r.reason, /^there is no contract at 0x5FbDB2315678afecb367f032d93F642f64180aa3 on chain 31337$/);
});

test('a root not anchored, another root, another block or timestamp: step "anchor"', async () => {
  let r = await verify({ 'eth_call:0xc539e14c': '0x' + '00'.repeat(96) });
  assert.deepEqual([r.status, r.step, r.reason], ['not_proven', 'anchor', 'no tree of size 18 is anchored on this contract']);
  const other = 'ff' + ROOT.slice(2);
  r = await verify({ 'eth_call:0xc539e14c': DOC_ANCHORED_ROOT.replace(ROOT, other) });
  assert.deepEqual([r.status, r.step, r.reason], ['not_proven', 'anchor', `the root anchored for size 18 is ${other}, the bundle's is ${ROOT}`]);
  r = await verify({ 'eth_call:0xc539e14c': '0x' + ROOT + word(0x6b060c3d) + word(15) });
  assert.deepEqual(
    [r.status, r.step, r.reason],
    ['not_proven', 'anchor', 'the head was anchored at block 15 (timestamp 1795558461), the bundle says block 14 (timestamp 1795558461)'],
  );
  r = await verify({ 'eth_call:0xc539e14c': '0x' + ROOT + word(0x6b060c3e) + word(14) });
  assert.deepEqual([r.status, r.step], ['not_proven', 'anchor']);
});

test('a transaction that did not anchor this head: step "anchor"', async () => {
  const receipt = (logs, blockNumber = '0xe') => ({ transactionHash: TX, blockNumber, status: '0x1', logs });
  const event = (size, root = ROOT, address = CONTRACT) => ({ address, topics: [ANCHORED_TOPIC, '0x' + word(size)], data: '0x' + root + word(0) });
  const refuted = `transaction ${TX} did not anchor the tree of size 18 on this contract`;
  for (const [why, answers] of [
    ['another size', { eth_getTransactionReceipt: receipt([event(17)]) }],
    // A receipt that shows another anchor refutes, whether or not the node still has the block.
    ['another size, block not held', { eth_getTransactionReceipt: receipt([event(17)]), eth_getBlockByNumber: null }],
    ['another root', { eth_getTransactionReceipt: receipt([event(18, '00'.repeat(32))]) }],
    ['another block', { eth_getTransactionReceipt: receipt([event(18)], '0xf') }],
    ['another contract, block held', { eth_getTransactionReceipt: receipt([event(18, ROOT, '0x' + '11'.repeat(20))]) }],
    ['no receipt, block held', { eth_getTransactionReceipt: null }],
    ['no event, block held', { eth_getTransactionReceipt: receipt([]) }],
  ]) {
    const r = await verify(answers);
    assert.deepEqual([r.status, r.step, r.reason], ['not_proven', 'anchor', refuted], why);
  }
  // A tx_hash that is no hash at all is not asked for; the node still holds the block.
  const r = await verify({}, {}, EXAMPLE.replace(TX, '0xnothex'));
  assert.deepEqual([r.status, r.step], ['not_proven', 'anchor']);
  assert.ok(!r.calls.some((c) => c.method === 'eth_getTransactionReceipt'));
});

test('the contract refusing the proof fails step "inclusion"', async () => {
  const r = await verify({ 'eth_call:0xbca46017': '0x' + word(0) });
  assert.deepEqual([r.status, r.step, r.reason], ['not_proven', 'inclusion', "the contract's verifyInclusion rejects the proof"]);
});

test('a chain that cannot be asked is an error, never a pass', async () => {
  const down = new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:1' } });
  for (const [why, answers, step] of [
    ['unreachable', { eth_chainId: down }, 'chain_id'],
    ['garbled chain id', { eth_chainId: 'thirty' }, 'chain_id'],
    ['getCode fails', { eth_getCode: { rpcError: { code: -32000, message: 'boom' } } }, 'contract'],
    ['anchoredRoot reverts', { 'eth_call:0xc539e14c': { rpcError: { code: 3, message: 'execution reverted' } } }, 'anchor'],
    ['anchoredRoot short', { 'eth_call:0xc539e14c': '0x' + ROOT }, 'anchor'],
    ['receipt fails', { eth_getTransactionReceipt: down }, 'anchor'],
    ['receipt garbled', { eth_getTransactionReceipt: { logs: 'none' } }, 'anchor'],
    ['block lookup fails', { eth_getTransactionReceipt: null, eth_getBlockByNumber: down }, 'anchor'],
    ['verifyInclusion not a bool', { 'eth_call:0xbca46017': '0x' + word(2) }, 'inclusion'],
    ['verifyInclusion empty', { 'eth_call:0xbca46017': '0x' }, 'inclusion'],
  ]) {
    const r = await verify(answers);
    assert.deepEqual([r.status, r.step], ['error', step], `${why}: ${r.reason}`);
  }
  const r = await verify({ eth_chainId: down });
  assert.equal(r.reason, 'cannot reach the chain: chain node unreachable: fetch failed: connect ECONNREFUSED 127.0.0.1:1');
  assert.match(formatResult(r)[0], /^error: cannot reach the chain/);
  // An HTTP error, and an answer that is not JSON.
  const http = await verifyBundle(EXAMPLE, { rpc: RPC, contract: CONTRACT, fetch: async () => ({ ok: false, status: 502 }) });
  assert.deepEqual([http.status, http.step], ['error', 'chain_id']);
  const html = await verifyBundle(EXAMPLE, {
    rpc: RPC,
    contract: CONTRACT,
    fetch: async () => ({ ok: true, status: 200, json: async () => JSON.parse('<html>') }),
  });
  assert.equal(html.status, 'error');
  // A node that never answers.
  const hang = await verifyBundle(EXAMPLE, {
    rpc: RPC,
    contract: CONTRACT,
    timeoutMs: 50,
    fetch: (url, init) => new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' })))),
  });
  assert.deepEqual([hang.status, hang.reason], ['error', 'cannot reach the chain: chain node unreachable: no answer in time']);
});

test('a node that refuses for its rate limit is asked again', async () => {
  const n = node();
  let refusals = 2;
  const fetch = async (url, init) => (JSON.parse(init.body).method === 'eth_getCode' && refusals-- > 0 ? { ok: false, status: 429 } : n.fetch(url, init));
  const r = await verifyBundle(EXAMPLE, { rpc: RPC, contract: CONTRACT, fetch });
  assert.equal(r.status, 'valid', r.reason);
  assert.equal(refusals, -1);
});

test('what the verifier must bring: an RPC URL and a contract, both valid', async () => {
  const n = node();
  for (const [options, why] of [
    [{ contract: CONTRACT }, /no RPC URL/],
    [{ rpc: RPC }, /no trusted contract address/],
    [{ rpc: RPC, contract: '0x1234' }, /invalid contract address "0x1234"/],
    [{ rpc: RPC, contract: CONTRACT, chainId: 'one' }, /invalid chain id/],
    [{ rpc: 'ftp://127.0.0.1', contract: CONTRACT }, /http:\/\/ or https:\/\//],
    [{ rpc: 'not a url', contract: CONTRACT }, /is not a URL/],
  ]) {
    const r = await verifyBundle(EXAMPLE, { fetch: n.fetch, ...options });
    assert.equal(r.status, 'error', why.source);
    assert.match(r.reason, why);
  }
  assert.equal(n.calls.length, 0);
  // A bundle whose hash math fails is refused before the chain is asked, or needed.
  const r = await verifyBundle(EXAMPLE.replace('"pressure_bar":2.6', '"pressure_bar":2.7'), { fetch: n.fetch });
  assert.deepEqual([r.status, r.step], ['not_proven', 'state_hash']);
  assert.equal(n.calls.length, 0);
});
