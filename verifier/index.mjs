// @twinledger/verify-bundle: checks a twinledger proof bundle (docs/proof-format.md) without
// trusting the server that served it: the hash math here, the anchor on a chain and contract
// that the caller names. Plain ES modules with no Node-only API, for Node 18+ and browsers.

import { NotProven, checkHashMath, jsonInt, parseBundle } from './bundle.mjs';
import { ChainUnavailable, checkChain, parseAddress } from './chain.mjs';
import { fromHex } from './hash.mjs';

export { NotProven, STEPS, BUNDLE_FORMAT, parseBundle, checkHashMath, checkSignature, checkTwinId, leafBytes, parseHash, verifyStrict } from './bundle.mjs';
export { JsonError, JsonNumber, parseJson, seedJson, jcsJson, canonicalBytes, pyFloatRepr } from './json.mjs';
export { sha256, leafHash, nodeHash, rootFromInclusion, toHex, fromHex } from './hash.mjs';
export {
  ChainUnavailable,
  ANCHORED_TOPIC,
  ANCHORED_ROOT_SELECTOR,
  VERIFY_INCLUSION_SELECTOR,
  checkChain,
  checksumAddress,
  decodeAnchoredRoot,
  decodeBool,
  encodeAnchoredRoot,
  encodeVerifyInclusion,
  headAnchoredBy,
  parseAddress,
  rpcClient,
} from './chain.mjs';

const EMPTY = Object.freeze({
  twinId: null,
  version: null,
  index: null,
  kind: null,
  hashScheme: null,
  size: null,
  root: null,
  leafHash: null,
  deviceKey: null,
  chainId: null,
  contract: null,
  txHash: null,
  blockNumber: null,
  blockTimestamp: null,
  transaction: null,
});

function result(status, step, reason, offline, fields = {}) {
  return { status, step, reason, offline, ...EMPTY, ...fields };
}

function expectedChainId(v) {
  if (v === undefined || v === null || v === '') return null;
  const s = String(v);
  if (!/^[0-9]{1,20}$/.test(s) || BigInt(s) >= 1n << 64n) return undefined;
  return BigInt(s);
}

/**
 * Verifies a bundle (its JSON text, or its bytes). Options: `rpc` (a JSON-RPC URL of a node of
 * the chain you trust), `contract` (the TwinLedger address you trust), `chainId` (optional, the
 * chain id you expect), `fetch` (default globalThis.fetch), `timeoutMs` (per RPC call, default
 * 30000), or `offline: true` for steps 1 to 4 and the signature only.
 *
 * Resolves to `{ status, step, reason, offline, twinId, version, index, kind, hashScheme, size,
 * root, leafHash, deviceKey, chainId, contract, txHash, blockNumber, blockTimestamp, transaction }`:
 * status "valid" (step and reason null), "not_proven" (step: the check that failed), or "error"
 * (the chain could not be checked; never a pass). Fields not established are null. Integers are
 * numbers, or decimal strings beyond 2^53.
 */
export async function verifyBundle(text, options = {}) {
  const offline = options.offline === true;
  let bundle;
  let math;
  try {
    bundle = parseBundle(text);
    math = checkHashMath(bundle);
  } catch (e) {
    if (e instanceof NotProven) return result('not_proven', e.step, e.reason, offline);
    return result('error', null, `internal error: ${e?.message ?? e}`, offline);
  }
  if (offline) return result('valid', null, null, true, math);

  const { rpc, contract } = options;
  if (!rpc) return result('error', null, 'no RPC URL of a chain you trust (or verify offline: the hash math only)', false, math);
  if (!contract) return result('error', null, 'no trusted contract address: the contract is never taken from the bundle', false, math);
  const trusted = parseAddress(contract);
  if (!trusted) return result('error', null, `invalid contract address ${JSON.stringify(String(contract))}`, false, math);
  const expectedChain = expectedChainId(options.chainId);
  if (expectedChain === undefined) return result('error', null, `invalid chain id ${JSON.stringify(String(options.chainId))}`, false, math);

  try {
    const chain = await checkChain(bundle, fromHex(math.leafHash, 32), {
      rpc,
      trusted,
      expectedChain,
      fetch: options.fetch,
      timeoutMs: options.timeoutMs,
    });
    const a = bundle.anchor;
    return result('valid', null, null, false, {
      ...math,
      chainId: jsonInt(chain.chainId),
      contract: chain.contract,
      txHash: a.txHash,
      blockNumber: jsonInt(a.blockNumber),
      blockTimestamp: jsonInt(a.blockTimestamp),
      transaction: chain.transaction,
    });
  } catch (e) {
    if (e instanceof NotProven) return result('not_proven', e.step, e.reason, false, math);
    if (e instanceof ChainUnavailable) return result('error', e.step, e.message, false, math);
    return result('error', null, `internal error: ${e?.message ?? e}`, false, math);
  }
}

/** What `twinledger verify-proof` prints for a result, line by line. */
export function formatResult(r) {
  if (r.status === 'not_proven') return [`NOT PROVEN: ${r.reason}`];
  if (r.status !== 'valid') return [`error: ${r.reason}`];
  if (r.offline) {
    return [
      `hash math OK for twin ${r.twinId} version ${r.version} (log index ${r.index}) in the tree of size ${r.size} with root ${r.root}`,
      'NOT checked against any chain (--offline): this does not prove the record was anchored',
    ];
  }
  const lines = [
    `VALID: twin ${r.twinId} version ${r.version} (log index ${r.index}) is in the tree of size ${r.size} anchored on chain ${r.chainId} by contract ${r.contract} at block ${r.blockNumber} (timestamp ${r.blockTimestamp})`,
  ];
  if (r.transaction === 'pruned') {
    lines.push(
      `the node no longer holds block ${r.blockNumber}, so transaction ${r.txHash} was not checked; the contract's own record of the anchor (root, block, timestamp) was`,
    );
  }
  return lines;
}
