#!/usr/bin/env node
// Compiles every contracts/*.sol with the pinned solc-js (see package.json)
// and writes one artifact per contract to contracts/out/<ContractName>.json.
//
//   node contracts/build.mjs           compile and (re)write contracts/out/
//   node contracts/build.mjs --check   compile in memory and compare byte-for-byte
//                                      with the committed contracts/out/ (exit 1 on
//                                      any difference, missing or extra artifact)
//
// Artifact shape (accepted by alloy's `sol!(Name, "path/to/Name.json")`):
//   { contractName, abi, bytecode: { object }, deployedBytecode: { object },
//     compiler: { version, evmVersion, optimizer: { enabled, runs } } }
//
// Determinism: source unit names are repo-relative ("contracts/Foo.sol") and
// imports are named by their import path ("@openzeppelin/contracts/..."), so
// the metadata hash appended to the bytecode does not depend on where the
// repository is checked out.

import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CONTRACTS_DIR = "contracts";
const OUT_DIR = path.join(REPO_ROOT, CONTRACTS_DIR, "out");

// Ganache 7.9.2 executes at most Shanghai. The compiler's newer default target
// may emit post-Shanghai opcodes (e.g. Cancun's MCOPY), which make calls revert
// there with "invalid opcode". Anvil runs Shanghai bytecode fine.
const EVM_VERSION = "shanghai";
const OPTIMIZER = { enabled: true, runs: 200 };

function usage(msg) {
  if (msg) process.stderr.write(`${msg}\n`);
  process.stderr.write("usage: node contracts/build.mjs [--check]\n");
  process.exit(2);
}

const args = process.argv.slice(2);
let checkMode = false;
for (const a of args) {
  if (a === "--check") checkMode = true;
  else if (a === "-h" || a === "--help") usage();
  else usage(`unknown argument: ${a}`);
}

// Byte-wise ordering, independent of locale.
const byteOrder = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

function toPosix(p) {
  return p.split(path.sep).join("/");
}

function collectSources() {
  const dir = path.join(REPO_ROOT, CONTRACTS_DIR);
  const names = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith(".sol"))
    .map((d) => d.name)
    .sort(byteOrder);
  const sources = {};
  for (const name of names) {
    const unit = `${CONTRACTS_DIR}/${name}`;
    sources[unit] = { content: fs.readFileSync(path.join(dir, name), "utf8") };
  }
  return sources;
}

// Import callback: "contracts/..." resolves against the repo root, everything
// else (e.g. "@openzeppelin/contracts/token/ERC20/ERC20.sol") against
// node_modules. Absolute paths and ".." segments are rejected.
function findImports(importPath) {
  const segments = importPath.split("/");
  if (path.isAbsolute(importPath) || segments.includes("..") || segments.includes(".")) {
    return { error: `refusing to resolve import path "${importPath}"` };
  }
  const base = importPath.startsWith(`${CONTRACTS_DIR}/`)
    ? REPO_ROOT
    : path.join(REPO_ROOT, "node_modules");
  const file = path.join(base, ...segments);
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch (e) {
    return { error: `cannot read "${importPath}" (${toPosix(path.relative(REPO_ROOT, file))}): ${e.code || e.message}` };
  }
}

function compile(sources) {
  const input = {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: OPTIMIZER.enabled, runs: OPTIMIZER.runs },
      outputSelection: {
        "*": {
          "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"],
        },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  let errorCount = 0;
  for (const e of output.errors || []) {
    const msg = (e.formattedMessage || `${e.severity}: ${e.message}`).trimEnd();
    process.stderr.write(`${msg}\n\n`);
    if (e.severity === "error") errorCount++;
  }
  if (errorCount > 0) {
    process.stderr.write(`contracts: compilation failed with ${errorCount} error(s)\n`);
    process.exit(1);
  }
  return output;
}

function hex(object) {
  if (typeof object !== "string") return "0x";
  return object.startsWith("0x") ? object : `0x${object}`;
}

function buildArtifacts() {
  const sources = collectSources();
  if (Object.keys(sources).length === 0) {
    process.stderr.write(`contracts: no .sol files in ${CONTRACTS_DIR}/\n`);
    process.exit(1);
  }
  const output = compile(sources);

  const artifacts = new Map(); // file name -> contents
  const origin = new Map(); // contract name -> source unit
  for (const unit of Object.keys(sources).sort(byteOrder)) {
    const contracts = (output.contracts && output.contracts[unit]) || {};
    for (const name of Object.keys(contracts).sort(byteOrder)) {
      if (origin.has(name)) {
        process.stderr.write(
          `contracts: contract name "${name}" defined in both ${origin.get(name)} and ${unit}; artifact names must be unique\n`,
        );
        process.exit(1);
      }
      origin.set(name, unit);
      const c = contracts[name];
      const metadata = JSON.parse(c.metadata);
      const artifact = {
        contractName: name,
        abi: c.abi,
        bytecode: { object: hex(c.evm.bytecode.object) },
        deployedBytecode: { object: hex(c.evm.deployedBytecode.object) },
        compiler: {
          version: metadata.compiler.version,
          evmVersion: EVM_VERSION,
          optimizer: { enabled: OPTIMIZER.enabled, runs: OPTIMIZER.runs },
        },
      };
      artifacts.set(`${name}.json`, `${JSON.stringify(artifact, null, 2)}\n`);
    }
  }
  return artifacts;
}

function existingArtifacts() {
  if (!fs.existsSync(OUT_DIR)) return [];
  return fs
    .readdirSync(OUT_DIR, { withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith(".json"))
    .map((d) => d.name)
    .sort(byteOrder);
}

const artifacts = buildArtifacts();
const outRel = `${CONTRACTS_DIR}/out`;

if (checkMode) {
  const problems = [];
  for (const [file, content] of [...artifacts].sort((a, b) => byteOrder(a[0], b[0]))) {
    const p = path.join(OUT_DIR, file);
    if (!fs.existsSync(p)) {
      problems.push(`missing: ${outRel}/${file}`);
    } else if (!fs.readFileSync(p).equals(Buffer.from(content, "utf8"))) {
      problems.push(`differs: ${outRel}/${file}`);
    }
  }
  for (const file of existingArtifacts()) {
    if (!artifacts.has(file)) problems.push(`extra:   ${outRel}/${file} (no contract of that name in ${CONTRACTS_DIR}/*.sol)`);
  }
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`${p}\n`);
    process.stderr.write(`contracts: ${outRel} is out of date; run \`npm run contracts:build\` and commit the result\n`);
    process.exit(1);
  }
  process.stdout.write(`contracts: ${artifacts.size} artifact(s) in ${outRel} are up to date (solc ${solc.version()})\n`);
} else {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  for (const file of existingArtifacts()) {
    if (!artifacts.has(file)) {
      fs.rmSync(path.join(OUT_DIR, file));
      process.stdout.write(`removed stale ${outRel}/${file}\n`);
    }
  }
  for (const [file, content] of [...artifacts].sort((a, b) => byteOrder(a[0], b[0]))) {
    const p = path.join(OUT_DIR, file);
    const same = fs.existsSync(p) && fs.readFileSync(p).equals(Buffer.from(content, "utf8"));
    if (!same) fs.writeFileSync(p, content);
    process.stdout.write(`${same ? "unchanged" : "wrote"} ${outRel}/${file}\n`);
  }
}
