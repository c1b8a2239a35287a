#!/usr/bin/env node
// Copies the browser modules the dashboard needs from node_modules (at the versions
// package-lock.json pins) into crates/server/assets/vendor, where the binary embeds them, so
// that `cargo build` needs no Node and the dashboard needs no internet. With --check (CI), fails
// if the committed copies differ from what node_modules holds.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(root, "node_modules");
const vendor = join(root, "crates/server/assets/vendor");

// The ES module builds the verifier imports, by their package paths; what they import follows.
const entries = [
  "@noble/hashes/esm/sha2.js",
  "@noble/hashes/esm/sha3.js",
  "@noble/curves/esm/ed25519.js",
];
// Files copied as they are (a classic script, a style sheet), and each package's licence.
const verbatim = [
  "uplot/dist/uPlot.iife.min.js",
  "uplot/dist/uPlot.min.css",
  "uplot/LICENSE",
  "@noble/hashes/LICENSE",
  "@noble/curves/LICENSE",
];

/** `@noble/x/name.js` (a package export) to its ES module file. */
function resolveBare(spec) {
  const m = spec.match(/^(@noble\/(?:hashes|curves))\/(.+?)(\.js)?$/);
  if (!m) throw new Error(`cannot resolve ${spec}`);
  return `${m[1]}/esm/${m[2]}.js`;
}

function closure() {
  const seen = new Set();
  const todo = [...entries];
  while (todo.length) {
    const file = todo.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(join(modules, file), "utf8");
    for (const [, spec] of text.matchAll(/(?:from|import)\s*["']([^"']+)["']/g)) {
      const next = spec.startsWith(".") ? normalize(join(dirname(file), spec)) : resolveBare(spec);
      todo.push(next);
    }
  }
  return [...seen, ...verbatim].sort();
}

function walk(dir) {
  let out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    out = statSync(path).isDirectory() ? out.concat(walk(path)) : out.concat(path);
  }
  return out;
}

const wanted = closure();
if (process.argv.includes("--check")) {
  const have = walk(vendor).map((p) => relative(vendor, p)).sort();
  const problems = [];
  for (const file of wanted) {
    let committed;
    try {
      committed = readFileSync(join(vendor, file));
    } catch {
      problems.push(`missing: ${file}`);
      continue;
    }
    const sha = (b) => createHash("sha256").update(b).digest("hex");
    if (sha(committed) !== sha(readFileSync(join(modules, file)))) problems.push(`differs: ${file}`);
  }
  for (const file of have) if (!wanted.includes(file)) problems.push(`not needed: ${file}`);
  if (problems.length) {
    console.error(`crates/server/assets/vendor is not what package-lock.json pins:\n  ${problems.join("\n  ")}\nrun: node scripts/vendor-assets.mjs`);
    process.exit(1);
  }
  console.log(`vendor: ${wanted.length} files match node_modules`);
} else {
  rmSync(vendor, { recursive: true, force: true });
  for (const file of wanted) {
    mkdirSync(dirname(join(vendor, file)), { recursive: true });
    writeFileSync(join(vendor, file), readFileSync(join(modules, file)));
  }
  console.log(`vendor: copied ${wanted.length} files`);
}
