// The strict reader and the two canonical forms, against the vectors that CPython (seed-sha256)
// and the rfc8785 package (jcs-sha256) produced, as crates/core/tests/vectors.rs checks them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { JsonError, JsonNumber, jcsJson, parseJson, pyFloatRepr, seedJson, sha256, toHex } from '../index.mjs';

const utf8 = new TextEncoder();
const hex = (s) => toHex(sha256(utf8.encode(s)));

function load(dir) {
  const url = new URL(`../../crates/core/testdata/${dir}/vectors.jsonl`, import.meta.url);
  return readFileSync(url, 'utf8')
    .split('\n')
    .map((line, i) => [line, i + 1])
    .filter(([line]) => line.trim())
    .map(([line, n]) => ({ line: n, ...JSON.parse(line) }));
}

test('every seed-sha256 vector gives CPython json.dumps(sort_keys=True) byte for byte', () => {
  const vectors = load('seed-sha256');
  assert.equal(vectors.length, 468);
  for (const v of vectors) {
    const ctx = `seed line ${v.line} (${v.desc})`;
    assert.equal(hex(v.canonical), v.sha256, `${ctx}: file is inconsistent`);
    const text = seedJson(parseJson(v.input));
    assert.equal(text, v.canonical, ctx);
    assert.equal(hex(text), v.sha256, ctx);
    // The canonical text is JSON with the same meaning.
    assert.equal(seedJson(parseJson(v.canonical)), v.canonical, `${ctx}: not idempotent`);
  }
});

test('every jcs-sha256 vector gives the rfc8785 package output byte for byte', () => {
  const vectors = load('jcs-sha256');
  assert.equal(vectors.length, 346);
  let refusedOnTheWayBack = 0;
  for (const v of vectors) {
    const ctx = `jcs line ${v.line} (${v.desc})`;
    assert.equal(hex(v.canonical), v.sha256, `${ctx}: file is inconsistent`);
    const text = jcsJson(parseJson(v.input));
    assert.equal(text, v.canonical, ctx);
    assert.equal(hex(text), v.sha256, ctx);
    try {
      assert.equal(jcsJson(parseJson(v.canonical)), v.canonical, `${ctx}: not idempotent`);
    } catch (e) {
      // ECMAScript prints doubles below 1e21 without an exponent (2^68 as 295147905179352830000),
      // an integer lexeme that is not exact and so is refused when read back, as in Rust.
      assert.match(e.message, /is not exactly representable as an ieee 754 double/, ctx);
      refusedOnTheWayBack++;
    }
  }
  assert.ok(refusedOnTheWayBack > 0, "the 2^68-like vectors are refused on the way back");
});

test('Python float repr corner cases (crates/core/src/seed.rs)', () => {
  for (const [input, want] of [
    ['25.3', '25.3'],
    ['0.1', '0.1'],
    ['1e-7', '1e-07'],
    ['1e16', '1e+16'],
    ['1e15', '1000000000000000.0'],
    ['9999999999999998', '9999999999999998.0'],
    ['1.5e300', '1.5e+300'],
    ['-0.0', '-0.0'],
    ['0.0', '0.0'],
    ['1.0', '1.0'],
    ['5e-324', '5e-324'],
    ['123456789012345680.0', '1.2345678901234568e+17'],
    ['0.0001', '0.0001'],
    ['0.00001', '1e-05'],
    ['0.00012', '0.00012'],
    ['1.7976931348623157e308', '1.7976931348623157e+308'],
    ['-2.5e-5', '-2.5e-05'],
    ['1e100', '1e+100'],
    ['123.456', '123.456'],
    ['1424953923781206.25', '1424953923781206.2'], // a tie at the 17th digit: the even one
  ]) {
    assert.equal(pyFloatRepr(Number(input)), want, input);
  }
  assert.equal(
    seedJson(parseJson('[-0, -0.0, 1E5, 0.1e1, 10000000000000000000000, 123456789012345678901234567890.0]')),
    '[0, -0.0, 100000.0, 1.0, 10000000000000000000000, 1.2345678901234568e+29]',
  );
});

test('seed strings are ASCII-escaped and keys sorted by code point', () => {
  assert.equal(
    seedJson(parseJson(String.raw`"q\"b\\/\n\r\t\b\f\u0000\u001f\u007f é ü 中 😀 \udbff\udfff"`)),
    String.raw`"q\"b\\/\n\r\t\b\f\u0000\u001f\u007f \u00e9 \u00fc \u4e2d \ud83d\ude00 \udbff\udfff"`,
  );
  assert.equal(
    seedJson(parseJson('{"b": 1, "B": 2, "a1": 3, "a10": 4, "a2": 5, "é": 6, "😀": 7, "\\ue000": 8}')),
    String.raw`{"B": 2, "a1": 3, "a10": 4, "a2": 5, "b": 1, "\u00e9": 6, "\ue000": 8, "\ud83d\ude00": 7}`,
  );
});

test('JCS: RFC 8785 appendix B numbers, key order by UTF-16 units, minimal escapes', () => {
  const bits = (h) => new DataView(new BigUint64Array([BigInt('0x' + h)]).buffer).getFloat64(0, true);
  for (const [h, want] of [
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555554', '333333333.33333325'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ]) {
    const x = bits(h);
    assert.equal(jcsJson(new JsonNumber(Object.is(x, -0) ? '-0.0' : x.toExponential())), want, h);
  }
  assert.equal(
    jcsJson(parseJson('{"\\u20ac":1,"\\r":2,"\\ufb33":3,"1":4,"\\ud83d\\ude00":5,"\\u0080":6,"\\u00f6":7}')),
    '{"\\r":2,"1":4,"\u0080":6,"ö":7,"€":1,"😀":5,"\ufb33":3}',
  );
  assert.equal(jcsJson(parseJson(String.raw`["\u0000\u0007\b\t\n\u000b\f\r\u001f\u007f\u2028é😀\/"]`)), '["\\u0000\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f\u007f\u2028é😀/"]');
  assert.equal(jcsJson(parseJson('[1.0, 1.50, 1E5, -0.0, -0, 0.1e1, 1e21, 1e-7]')), '[1,1.5,100000,0,0,1,1e+21,1e-7]');
});

test('JCS refuses integers that no double equals, and keeps those that one does', () => {
  for (const bad of ['9007199254740993', '-9007199254740993', '123456789012345678901234567890', '9'.repeat(400)]) {
    assert.throws(() => jcsJson(parseJson(`[${bad}]`)), /is not exactly representable as an ieee 754 double/, bad);
  }
  assert.equal(jcsJson(parseJson('[9007199254740994, 1180591620717411303424, 100000000000000000000]')), '[9007199254740994,1.1805916207174113e+21,100000000000000000000]');
  const max = BigInt(Number.MAX_VALUE).toString();
  assert.equal(jcsJson(parseJson(`[${max}]`)), '[1.7976931348623157e+308]');
  // The seed scheme is Python's: an int of any size is fine there.
  assert.equal(seedJson(parseJson('[123456789012345678901234567890]')), '[123456789012345678901234567890]');
});

test('the reader refuses what RFC 8259 does not allow, and duplicate keys', () => {
  for (const [bad, why] of [
    ['{"a":1,"a":2}', /duplicate key "a"/],
    ['{"a":{"b":1,"b":1}}', /duplicate key "b"/],
    ['NaN', /non-finite/],
    ['[Infinity]', /non-finite/],
    ['[-Infinity]', /non-finite/],
    ['[1,]', /trailing comma/],
    ['{"a":1,}', /trailing comma/],
    ['[1] // c', /comments/],
    ['/* c */ 1', /comments/],
    ['[01]', /leading zero/],
    ['[+1]', /leading plus/],
    ['[.5]', /missing integer part/],
    ['[1.]', /after the decimal point/],
    ['[1e]', /in the exponent/],
    ['[1e400]', /out of range/],
    ['["\u0001"]', /unescaped control character/],
    ['["\\ud800"]', /unpaired surrogate/],
    ['["\\udc00\\ud800"]', /unpaired surrogate/],
    ['["\\x"]', /invalid escape/],
    ["['a']", /expected a json value/],
    ['[1] 2', /trailing characters/],
    ['\ufeff{}', /expected a json value/],
    ['[tru]', /invalid literal/],
    ['{"a" 1}', /expected ':'/],
    ['[1', /unexpected end/],
    ['"abc', /unexpected end/],
    ['', /unexpected end/],
  ]) {
    assert.throws(() => parseJson(bad), (e) => e instanceof JsonError && why.test(e.message), JSON.stringify(bad));
  }
  // Invalid UTF-8, with the offset Rust's reader gives: a bad byte, an overlong form, an encoded
  // surrogate, a sequence cut short.
  assert.throws(() => parseJson(Uint8Array.of(0x22, 0x61, 0x62, 0x63, 0xff, 0x22)), /^Error: invalid utf-8 at byte 4$|invalid utf-8 at byte 4$/);
  assert.throws(() => parseJson(Uint8Array.of(0x22, 0xc0, 0xaf, 0x22)), /invalid utf-8 at byte 1$/);
  assert.throws(() => parseJson(Uint8Array.of(0x5b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x5d)), /invalid utf-8 at byte 2$/);
  assert.throws(() => parseJson(Uint8Array.of(0x22, 0xe2, 0x82)), /invalid utf-8 at byte 1$/);
  assert.equal(parseJson(Uint8Array.of(0x22, 0xc3, 0xa9, 0x22)), 'é');
  assert.throws(() => parseJson('"\ud800"'), /invalid utf-8/); // a lone surrogate in a JS string
  assert.throws(() => parseJson('['.repeat(129) + ']'.repeat(129)), /nesting deeper than 128/);
  assert.doesNotThrow(() => parseJson('['.repeat(128) + ']'.repeat(128)));
  assert.throws(() => parseJson(`{"${'k'.repeat(257)}":1}`), /key longer than 256 bytes/);
  // Member order and number spellings are kept.
  const v = parseJson('{"b": [1, 2.50, -0, 1E3], "a": {}}');
  assert.deepEqual([...v.keys()], ['b', 'a']);
  assert.deepEqual(v.get('b').map((n) => n.lexeme), ['1', '2.50', '-0', '1E3']);
});
