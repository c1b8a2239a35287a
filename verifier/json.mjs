// Strict JSON and the two canonical forms a state hash is taken over.
//
// A generic JSON.parse would merge duplicate keys and round every number to a double before we
// could see it, and the seed scheme hashes Python's view of the number (an int of any size, or a
// float) while JCS hashes a double. So this parser keeps each number's lexeme and each object's
// member order, refuses whatever RFC 8259 does not allow, and applies the same limits as
// twinledger's reader (crates/core/src/json), so that both refuse the same bundles.
//
// Values: null, true, false, string, JsonNumber (the lexeme), Array, and Map for objects (a Map
// keeps insertion order and cannot be confused with a prototype).

/** A JSON number, kept as its source text. */
export class JsonNumber {
  constructor(lexeme) {
    this.lexeme = lexeme;
    Object.freeze(this);
  }
  /** Python reads a lexeme without `.`, `e` or `E` as an int, every other one as a float. */
  get isInteger() {
    return !/[.eE]/.test(this.lexeme);
  }
}

/** Why a text is not acceptable JSON, or a value has no canonical form. */
export class JsonError extends Error {}

export const BUNDLE_LIMITS = Object.freeze({
  maxDepth: 128,
  maxStringBytes: 16 * 1024 * 1024,
  maxKeyBytes: 256,
  maxObjectMembers: 10_000,
  maxArrayLen: 100_000,
});

const utf8 = new TextEncoder();

export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Bytes (checked as UTF-8, a BOM kept so that it is refused) or a string, to a string. */
export function decodeText(input) {
  if (typeof input === 'string') {
    const bad = firstLoneSurrogate(input);
    if (bad >= 0) throw new JsonError(`invalid utf-8 at byte ${utf8Length(input.slice(0, bad))}`);
    return input;
  }
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new JsonError(`invalid utf-8 at byte ${validUtf8Prefix(bytes)}`);
  }
}

function firstLoneSurrogate(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
      else return i;
    } else if (c >= 0xdc00 && c <= 0xdfff) return i;
  }
  return -1;
}

// Only for the error message: where the first invalid sequence starts, as Rust's valid_up_to.
function validUtf8Prefix(b) {
  let lo = 0;
  let hi = b.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    try {
      new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  // b[0..lo) may end inside a sequence that the next byte (or the end) breaks: back to its lead.
  let k = 0;
  while (k < 3 && lo - k > 0 && (b[lo - k - 1] & 0xc0) === 0x80) k++;
  const lead = b[lo - k - 1];
  const need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
  return lo - k > 0 && need > k ? lo - k - 1 : lo;
}

/**
 * Parses exactly one JSON value. Throws JsonError with the same wording as twinledger's reader
 * (offsets are in UTF-8 bytes, as there).
 */
export function parseJson(input, limits = BUNDLE_LIMITS) {
  const text = decodeText(input);
  const p = new Parser(text, { ...BUNDLE_LIMITS, ...limits });
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.pos < text.length) throw p.fail(`trailing characters after the json value at byte ${p.byte()}`);
  return v;
}

class Parser {
  constructor(text, limits) {
    this.s = text;
    this.pos = 0;
    this.limits = limits;
  }
  byte(at = this.pos) {
    return utf8Length(this.s.slice(0, at));
  }
  fail(message) {
    return new JsonError(message);
  }
  unexpected(expected) {
    if (this.pos >= this.s.length) {
      return this.fail(`unexpected end of input at byte ${this.byte()}, expected ${expected}`);
    }
    const found = String.fromCodePoint(this.s.codePointAt(this.pos));
    return this.fail(`expected ${expected}, found ${JSON.stringify(found)} at byte ${this.byte()}`);
  }
  ws() {
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.pos++;
      else if (c === 0x2f) throw this.fail(`comments are not allowed in json (byte ${this.byte()})`);
      else return;
    }
  }
  value(depth) {
    const s = this.s;
    const c = s[this.pos];
    switch (c) {
      case '{':
        return this.object(depth + 1);
      case '[':
        return this.array(depth + 1);
      case '"': {
        const start = this.pos;
        const str = this.string();
        if (str.length * 3 > this.limits.maxStringBytes && utf8Length(str) > this.limits.maxStringBytes) {
          throw this.fail(`string longer than ${this.limits.maxStringBytes} bytes (max_string_bytes) at byte ${this.byte(start)}`);
        }
        return str;
      }
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      case 'N':
      case 'I':
        return this.nonFinite();
      case '-':
        if (s[this.pos + 1] === 'I') return this.nonFinite();
        return this.number();
      case '+':
        throw this.fail(`invalid number at byte ${this.byte()}: leading plus sign`);
      case '.':
        throw this.fail(`invalid number at byte ${this.byte()}: missing integer part`);
      default:
        if (c >= '0' && c <= '9') return this.number();
        throw this.unexpected('a json value');
    }
  }
  literal(word, v) {
    const s = this.s;
    if (s.startsWith(word, this.pos)) {
      this.pos += word.length;
      return v;
    }
    const rest = s.slice(this.pos);
    if (word.startsWith(rest)) throw this.fail(`unexpected end of input at byte ${this.byte(s.length)}, expected ${word}`);
    throw this.fail(`invalid literal at byte ${this.byte()}`);
  }
  nonFinite() {
    const s = this.s;
    if (['NaN', 'Infinity', '-Infinity'].some((w) => s.startsWith(w, this.pos))) {
      throw this.fail(`non-finite number literal at byte ${this.byte()} is not json`);
    }
    throw this.unexpected('a json value');
  }
  number() {
    // A port of the Rust reader's scan_number, for the same errors.
    const s = this.s;
    const start = this.pos;
    const digit = (i) => s[i] >= '0' && s[i] <= '9';
    const digitsFrom = (i) => {
      while (digit(i)) i++;
      return i;
    };
    const invalid = (i, reason) => this.fail(`invalid number at byte ${this.byte(i)}: ${reason}`);
    let i = start;
    if (s[i] === '-') i++;
    if (s[i] === '0') {
      i++;
      if (digit(i)) throw invalid(start, 'leading zero');
    } else if (digit(i)) i = digitsFrom(i);
    else if (i >= s.length) throw this.fail(`unexpected end of input at byte ${this.byte(i)}, expected a digit`);
    else throw invalid(i, 'expected a digit');
    if (s[i] === '.') {
      const end = digitsFrom(++i);
      if (end === i) throw invalid(i, 'expected a digit after the decimal point');
      i = end;
    }
    if (s[i] === 'e' || s[i] === 'E') {
      i++;
      if (s[i] === '+' || s[i] === '-') i++;
      const end = digitsFrom(i);
      if (end === i) throw invalid(i, 'expected a digit in the exponent');
      i = end;
    }
    const n = new JsonNumber(s.slice(start, i));
    // Integers are exact lexemes of any size; a float must be a finite double.
    if (!n.isInteger && !Number.isFinite(Number(n.lexeme))) {
      throw this.fail(`number out of range at byte ${this.byte(start)}`);
    }
    this.pos = i;
    return n;
  }
  // After an element: true at the closing bracket, false after a comma.
  closeOrComma(close, expected) {
    this.ws();
    const c = this.s[this.pos];
    if (c === ',') {
      const comma = this.pos;
      this.pos++;
      this.ws();
      if (this.s[this.pos] === close) throw this.fail(`trailing comma at byte ${this.byte(comma)}`);
      return false;
    }
    if (c === close) {
      this.pos++;
      return true;
    }
    throw this.unexpected(expected);
  }
  depth(depth) {
    if (depth > this.limits.maxDepth) {
      throw this.fail(`nesting deeper than ${this.limits.maxDepth} levels (max_depth) at byte ${this.byte()}`);
    }
  }
  array(depth) {
    this.depth(depth);
    this.pos++;
    const items = [];
    this.ws();
    if (this.s[this.pos] === ']') {
      this.pos++;
      return items;
    }
    for (;;) {
      if (items.length >= this.limits.maxArrayLen) {
        throw this.fail(`array has more than ${this.limits.maxArrayLen} elements (max_array_len) at byte ${this.byte()}`);
      }
      items.push(this.value(depth));
      if (this.closeOrComma(']', "',' or ']'")) return items;
    }
  }
  object(depth) {
    this.depth(depth);
    this.pos++;
    const members = new Map();
    this.ws();
    if (this.s[this.pos] === '}') {
      this.pos++;
      return members;
    }
    for (;;) {
      const keyAt = this.pos;
      if (this.s[this.pos] !== '"') throw this.unexpected('a string key');
      if (members.size >= this.limits.maxObjectMembers) {
        throw this.fail(`object has more than ${this.limits.maxObjectMembers} members (max_object_members) at byte ${this.byte(keyAt)}`);
      }
      const key = this.string();
      if (key.length > this.limits.maxKeyBytes / 3 && utf8Length(key) > this.limits.maxKeyBytes) {
        throw this.fail(`key longer than ${this.limits.maxKeyBytes} bytes (max_key_bytes) at byte ${this.byte(keyAt)}`);
      }
      if (members.has(key)) throw this.fail(`duplicate key ${JSON.stringify(key)} at byte ${this.byte(keyAt)}`);
      this.ws();
      if (this.s[this.pos] !== ':') throw this.unexpected("':'");
      this.pos++;
      this.ws();
      members.set(key, this.value(depth));
      if (this.closeOrComma('}', "',' or '}'")) return members;
    }
  }
  string() {
    const s = this.s;
    this.pos++;
    let out = '';
    for (;;) {
      const runStart = this.pos;
      let c = s.charCodeAt(this.pos);
      while (this.pos < s.length && c !== 0x22 && c !== 0x5c && c >= 0x20) c = s.charCodeAt(++this.pos);
      out += s.slice(runStart, this.pos);
      if (this.pos >= s.length) throw this.fail(`unexpected end of input at byte ${this.byte()}, expected '"'`);
      if (c === 0x22) {
        this.pos++;
        return out;
      }
      if (c === 0x5c) out += this.escape();
      else {
        throw this.fail(`unescaped control character 0x${c.toString(16).padStart(2, '0')} in string at byte ${this.byte()}`);
      }
    }
  }
  escape() {
    const s = this.s;
    const at = this.pos;
    if (at + 1 >= s.length) throw this.fail(`unexpected end of input at byte ${this.byte(s.length)}, expected an escape sequence`);
    const kind = s[at + 1];
    this.pos = at + 2;
    const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }[kind];
    if (simple !== undefined) return simple;
    if (kind !== 'u') throw this.fail(`invalid escape sequence at byte ${this.byte(at)}`);
    // Only whole surrogate pairs: a lone surrogate is no character, and is not valid UTF-8.
    const lone = (code) => this.fail(`unpaired surrogate \\u${code.toString(16).padStart(4, '0')} at byte ${this.byte(at)}`);
    const high = this.hex4(at);
    if (high >= 0xdc00 && high <= 0xdfff) throw lone(high);
    if (high < 0xd800 || high > 0xdbff) return String.fromCharCode(high);
    if (s[this.pos] !== '\\' || s[this.pos + 1] !== 'u') throw lone(high);
    const lowAt = this.pos;
    this.pos += 2;
    const low = this.hex4(lowAt);
    if (low < 0xdc00 || low > 0xdfff) throw lone(high);
    return String.fromCharCode(high, low);
  }
  hex4(at) {
    const s = this.s;
    if (this.pos + 4 > s.length) throw this.fail(`unexpected end of input at byte ${this.byte(s.length)}, expected four hex digits`);
    const digits = s.slice(this.pos, this.pos + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) throw this.fail(`invalid escape sequence at byte ${this.byte(at)}`);
    this.pos += 4;
    return parseInt(digits, 16);
  }
}

// ---------------------------------------------------------------------------------------------
// seed-sha256: the text of CPython's json.dumps(json.loads(state), sort_keys=True).

/** The exact text of Python's `json.dumps(value, sort_keys=True)`. */
export function seedJson(value) {
  if (value === null) return 'null';
  if (value === true) return 'true';
  if (value === false) return 'false';
  if (typeof value === 'string') return pyString(value);
  if (value instanceof JsonNumber) {
    // An int is printed in full; lexemes have no leading zeros or '+', so only -0 changes.
    if (value.isInteger) return value.lexeme === '-0' ? '0' : value.lexeme;
    return pyFloatRepr(Number(value.lexeme));
  }
  if (Array.isArray(value)) return '[' + value.map(seedJson).join(', ') + ']';
  if (value instanceof Map) {
    const keys = [...value.keys()].sort(byCodePoint);
    return '{' + keys.map((k) => pyString(k) + ': ' + seedJson(value.get(k))).join(', ') + '}';
  }
  throw new JsonError('not a json value');
}

// Python sorts str by code point. JS compares UTF-16 code units, which puts astral characters
// (surrogates, 0xD800..) before U+E000..U+FFFF: move the surrogates above them.
function byCodePoint(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      x = x >= 0xe000 ? x - 0x800 : x >= 0xd800 ? x + 0x2000 : x;
      y = y >= 0xe000 ? y - 0x800 : y >= 0xd800 ? y + 0x2000 : y;
      return x - y;
    }
  }
  return a.length - b.length;
}

const PY_ESCAPES = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

// ensure_ascii: printable ASCII as is, everything else as \uxxxx per UTF-16 code unit.
function pyString(s) {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    const c = s.charCodeAt(i);
    if (PY_ESCAPES[ch]) out += PY_ESCAPES[ch];
    else if (c >= 0x20 && c <= 0x7e) out += ch;
    else out += '\\u' + c.toString(16).padStart(4, '0');
  }
  return out + '"';
}

/**
 * The shortest digits that read back as |x| (finite, non-zero), with decpt such that
 * |x| = 0.DIGITS × 10^decpt. ECMAScript's Number::toString picks the same digits as Python's
 * repr (the fewest, and of those the nearest to x), so they are taken from String(x).
 */
export function shortestDigits(x) {
  let s = String(Math.abs(x));
  let exp = 0;
  const e = s.indexOf('e');
  if (e >= 0) {
    exp = Number(s.slice(e + 1));
    s = s.slice(0, e);
  }
  const dot = s.indexOf('.');
  let decpt = (dot < 0 ? s.length : dot) + exp;
  let digits = s.replace('.', '');
  let lead = 0;
  while (lead < digits.length - 1 && digits[lead] === '0') lead++;
  digits = digits.slice(lead).replace(/0+$/, '');
  decpt -= lead;
  return [digits, decpt];
}

/** Python's float.__repr__ (the 'r' format of Python/pystrtod.c). */
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  if (x === 0) return sign + '0.0';
  const [digits, decpt] = shortestDigits(x);
  const k = digits.length;
  if (decpt <= -4 || decpt > 16) {
    const exp = decpt - 1;
    const mant = digits[0] + (k > 1 ? '.' + digits.slice(1) : '');
    return sign + mant + 'e' + (exp < 0 ? '-' : '+') + String(Math.abs(exp)).padStart(2, '0');
  }
  if (decpt <= 0) return sign + '0.' + '0'.repeat(-decpt) + digits;
  if (decpt >= k) return sign + digits + '0'.repeat(decpt - k) + '.0';
  return sign + digits.slice(0, decpt) + '.' + digits.slice(decpt);
}

// ---------------------------------------------------------------------------------------------
// jcs-sha256: RFC 8785.

/** The RFC 8785 (JCS) text of a value. Throws JsonError for integers no double equals. */
export function jcsJson(value) {
  if (value === null) return 'null';
  if (value === true) return 'true';
  if (value === false) return 'false';
  if (typeof value === 'string') return jcsString(value);
  if (value instanceof JsonNumber) return String(jcsDouble(value));
  if (Array.isArray(value)) return '[' + value.map(jcsJson).join(',') + ']';
  if (value instanceof Map) {
    // UTF-16 code unit order is JavaScript's own string order.
    const keys = [...value.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return '{' + keys.map((k) => jcsString(k) + ':' + jcsJson(value.get(k))).join(',') + '}';
  }
  throw new JsonError('not a json value');
}

function quoteLexeme(lexeme) {
  return lexeme.length <= 64 ? lexeme : lexeme.slice(0, 64) + '...';
}

/**
 * The double a number stands for under JCS. An integer lexeme that no double equals is
 * refused: JCS would print it as another number, giving two states one text.
 */
export function jcsDouble(n) {
  const x = Number(n.lexeme);
  if (!n.isInteger) {
    if (!Number.isFinite(x)) throw new JsonError(`number ${quoteLexeme(n.lexeme)} is out of range for an ieee 754 double`);
    return x;
  }
  const digits = n.lexeme.replace(/^-/, '');
  // More than 309 digits is beyond the largest double; 15 or fewer are always exact.
  const exact = digits.length <= 309 && Number.isFinite(x) && (digits.length <= 15 || BigInt(x) === BigInt(n.lexeme));
  if (!exact) {
    throw new JsonError(`integer ${quoteLexeme(n.lexeme)} is not exactly representable as an ieee 754 double`);
  }
  return x;
}

const JCS_ESCAPES = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

function jcsString(s) {
  // eslint-disable-next-line no-control-regex
  return '"' + s.replace(/["\\\u0000-\u001f]/g, (ch) => JCS_ESCAPES[ch] ?? '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0')) + '"';
}

/** The canonical text of `state` under a hash scheme, as UTF-8 bytes. */
export function canonicalBytes(state, scheme) {
  if (scheme === 'seed-sha256') return utf8.encode(seedJson(state));
  if (scheme === 'jcs-sha256') return utf8.encode(jcsJson(state));
  throw new JsonError(`unknown hash scheme ${JSON.stringify(scheme)}, expected "seed-sha256" or "jcs-sha256"`);
}
