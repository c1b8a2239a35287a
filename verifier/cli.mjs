#!/usr/bin/env node
// twinledger-verify-bundle: the command-line face of index.mjs, with the output and exit codes
// of `twinledger verify-proof` (0 proven, 1 not proven, 2 could not check). --json prints the
// result object instead, on one line, with the same exit code.

import { readFile } from 'node:fs/promises';
import { formatResult, verifyBundle } from './index.mjs';

const USAGE = `usage: twinledger-verify-bundle FILE --rpc URL --contract ADDRESS [--chain-id N] [--json]
       twinledger-verify-bundle FILE --offline [--json]

Checks a twinledger proof bundle (format twinledger-proof-v1): the state hash, the leaf, the
inclusion proof and any device signature, then the anchor on the chain at URL, in the contract
ADDRESS. Both are yours to choose: they are never taken from the bundle. --offline checks the
hash math only, which proves nothing about anchoring. Exit 0 proven, 1 not proven, 2 error.`;

const VALUED = ['--rpc', '--contract', '--chain-id'];
const FLAGS = ['--offline', '--json', '--help', '-h'];

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = {};
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      files.push(...argv.slice(i + 1));
      break;
    }
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (VALUED.includes(name)) {
      let value;
      if (name !== arg) value = arg.slice(eq + 1);
      else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) value = argv[++i];
      else throw new UsageError(`${name} needs a value`);
      if (opts[name] !== undefined) throw new UsageError(`${name} given more than once`);
      opts[name] = value;
    } else if (FLAGS.includes(arg)) {
      opts[arg === '-h' ? '--help' : arg] = true;
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      files.push(arg);
    }
  }
  if (opts['--help']) return { help: true };
  if (files.length !== 1) throw new UsageError(files.length ? 'give one bundle file' : 'give the bundle file');
  if (opts['--offline'] && VALUED.some((o) => opts[o] !== undefined)) {
    throw new UsageError('--offline cannot be used with --rpc, --contract or --chain-id');
  }
  const chainId = opts['--chain-id'];
  if (chainId !== undefined && (!/^[0-9]{1,20}$/.test(chainId) || BigInt(chainId) >= 1n << 64n)) {
    throw new UsageError(`invalid --chain-id ${JSON.stringify(chainId)}: expected an integer`);
  }
  return {
    file: files[0],
    rpc: opts['--rpc'],
    contract: opts['--contract'],
    chainId,
    offline: opts['--offline'] === true,
    json: opts['--json'] === true,
  };
}

const EXIT = { valid: 0, not_proven: 1, error: 2 };

function report(result, json) {
  if (json) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    const out = result.status === 'error' ? process.stderr : process.stdout;
    out.write(formatResult(result).join('\n') + '\n');
  }
  process.exitCode = EXIT[result.status] ?? 2;
}

async function main(argv) {
  let args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    const json = argv.includes('--json');
    report({ status: 'error', step: null, reason: e.message, offline: argv.includes('--offline') }, json);
    if (!json) process.stderr.write(USAGE + '\n');
    return;
  }
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  let bytes;
  try {
    bytes = await readFile(args.file);
  } catch (e) {
    report({ status: 'error', step: null, reason: `cannot read ${args.file}: ${e.message}`, offline: args.offline }, args.json);
    return;
  }
  const result = await verifyBundle(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
    rpc: args.rpc,
    contract: args.contract,
    chainId: args.chainId,
    offline: args.offline,
  });
  report(result, args.json);
}

await main(process.argv.slice(2));
