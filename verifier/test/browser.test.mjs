// What a browser needs: every module reachable from index.mjs resolves through the import map
// that README.md gives, and none of them is a Node built-in or uses a Node-only global.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = new URL('../../', import.meta.url); // served as "/"
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const importMap = JSON.parse(readme.match(/<script type="importmap">([\s\S]*?)<\/script>/)[1]).imports;

function resolve(specifier, from) {
  if (specifier.startsWith('./') || specifier.startsWith('../') || specifier.startsWith('/')) {
    return specifier.startsWith('/') ? new URL('.' + specifier, ROOT) : new URL(specifier, from);
  }
  let target = importMap[specifier];
  if (!target) {
    const prefix = Object.keys(importMap)
      .filter((k) => k.endsWith('/') && specifier.startsWith(k))
      .sort((a, b) => b.length - a.length)[0];
    if (!prefix) return null;
    target = importMap[prefix] + specifier.slice(prefix.length);
  }
  return new URL('.' + target, ROOT);
}

const IMPORT = /^(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]|^import\s*['"]([^'"]+)['"]/gm;

test('the README import map resolves every module index.mjs loads, none of them Node-only', () => {
  const seen = new Set();
  const queue = [new URL('verifier/index.mjs', ROOT)];
  while (queue.length) {
    const url = queue.pop();
    if (seen.has(url.href)) continue;
    seen.add(url.href);
    const path = fileURLToPath(url);
    assert.ok(existsSync(path), `${path} is missing`);
    const source = readFileSync(path, 'utf8');
    for (const m of source.matchAll(IMPORT)) {
      const specifier = m[1] ?? m[2];
      assert.ok(!specifier.startsWith('node:'), `${path} imports ${specifier}`);
      const next = resolve(specifier, url);
      assert.ok(next, `${path}: ${specifier} is not in the import map`);
      queue.push(next);
    }
  }
  const ours = [...seen].filter((u) => u.includes('/verifier/'));
  assert.deepEqual(ours.map((u) => u.split('/verifier/')[1]).sort(), ['bundle.mjs', 'chain.mjs', 'hash.mjs', 'index.mjs', 'json.mjs']);
  assert.ok(seen.size > 10, 'the noble modules were followed too');
  for (const u of ours) {
    // Code only: the comments may name what the code avoids.
    const source = readFileSync(fileURLToPath(u), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/.*$/gm, '');
    for (const nodeOnly of [/\bprocess\./, /\bBuffer\b/, /\brequire\(/, /\b__dirname\b/, /crypto\.subtle/]) {
      assert.doesNotMatch(source, nodeOnly, u);
    }
  }
});
