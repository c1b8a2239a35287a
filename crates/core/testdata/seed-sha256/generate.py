#!/usr/bin/env python3
"""Test vectors for the seed-sha256 scheme, from CPython itself as the oracle.

The seed prototype hashed a state with
    hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
and this script records exactly that for a deterministic set of documents.

Produced with (from the repository root, stdlib only, no network):
    python3 crates/core/testdata/seed-sha256/generate.py
which rewrites crates/core/testdata/seed-sha256/vectors.jsonl.
Python used: Python 3.11.7 (`python3 --version`).

Each line of vectors.jsonl is one JSON object:
    desc       what the document exercises
    input      JSON text whose parse is the document (what a client sends)
    canonical  json.dumps(json.loads(input), sort_keys=True)
    sha256     hashlib.sha256(canonical.encode()).hexdigest()
"""

import hashlib
import json
import math
import os
import random
import struct
import sys

SEED = 20240601
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.jsonl")

# The Rust parser under test is strict RFC 8259 with default limits, so every
# input must be acceptable to it; these mirror twinledger_core::json::Limits.
MAX_DEPTH = 64
MAX_KEY_BYTES = 256
MAX_STRING_BYTES = 64 * 1024


def bits_to_float(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def strict_loads(text):
    """json.loads that refuses what RFC 8259 (and the Rust parser) refuse."""

    def pairs(items):
        keys = [k for k, _ in items]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key in %r" % (text,))
        return dict(items)

    def constant(name):
        raise ValueError("non-finite literal %s" % name)

    doc = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    check_strict(doc, 0)
    return doc


def check_strict(value, depth):
    if isinstance(value, str):
        value.encode("utf-8")  # raises on lone surrogates
        assert len(value.encode("utf-8")) <= MAX_STRING_BYTES
    elif isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, list):
        assert depth < MAX_DEPTH
        for item in value:
            check_strict(item, depth + 1)
    elif isinstance(value, dict):
        assert depth < MAX_DEPTH
        for key, item in value.items():
            key.encode("utf-8")
            assert len(key.encode("utf-8")) <= MAX_KEY_BYTES
            check_strict(item, depth + 1)


vectors = []
descs = set()


def add_text(desc, text):
    """Records a vector whose input is the given JSON text."""
    assert desc not in descs, desc
    descs.add(desc)
    doc = strict_loads(text)
    assert isinstance(doc, dict), desc
    canonical = json.dumps(doc, sort_keys=True)
    vectors.append(
        {
            "desc": desc,
            "input": text,
            "canonical": canonical,
            "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        }
    )


def add(desc, doc):
    """Records a vector whose input is json.dumps(doc) (insertion order)."""
    text = json.dumps(doc)
    add_text(desc, text)
    assert vectors[-1]["canonical"] == json.dumps(doc, sort_keys=True), desc


rng = random.Random(SEED)

# --- the seed's own example -------------------------------------------------
add("seed example", {"temperature": 25.3, "status": "operational"})
add_text("seed example, compact input", '{"temperature":25.3,"status":"operational"}')

# --- floats whose repr is easy to get wrong ---------------------------------
SPECIAL_FLOATS = [
    25.3, 0.1, 0.2, 0.3, 1e-07, 1e16, 1.5e300, -0.0, 0.0, 1.0, -1.0, 5e-324,
    -5e-324, 123456789012345680.0, 1e15, 1e16, 1e17, 0.0001, 0.00001, 0.00012,
    1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308,
    2.225073858507201e-308, 9999999999999998.0, 9999999999999999.0,
    999999999999999.9, 1234567890123456.8, 0.1 + 0.2, 1 / 3, 2 / 3, 100.0,
    1e21, 1e22, 1e23, 1e-4, 1e-5, 1e-6, 1e-7, 123.456, -273.15, 6.02214076e23,
    6.62607015e-34, math.pi, math.e, 2.0 ** 53, 2.0 ** 53 + 2, 2.0 ** 63,
    2.0 ** 64, 2.0 ** -1022, 2.0 ** -1074, 4.35, 0.5, 0.25, 0.125, 1e300 * 1.7,
    9007199254740993.0, 1424953923781206.25, 1125899906842624.75,
]
for i, x in enumerate(SPECIAL_FLOATS):
    add("special float %d: %r" % (i, x), {"value": x})
add("special floats together", {"values": SPECIAL_FLOATS})

# Exact ties at the 17th significant digit: Python keeps the even digit.
for i in range(12):
    n = rng.randrange(2 ** 50, 2 ** 51)
    frac = rng.choice([0.25, 0.75])
    add("tie-to-even double %d" % i, {"x": n + frac, "neg": -(n + frac)})

# Powers of two and their neighbours, where the rounding interval is lopsided.
for i in range(12):
    e = rng.randrange(-1070, 1020)
    base = math.ldexp(1.0, e)
    add(
        "power of two 2**%d and neighbours" % e,
        {"p": base, "below": math.nextafter(base, 0.0), "above": math.nextafter(base, math.inf)},
    )

# Around the fixed/exponent switch points of repr (decpt -4 and 16).
for i, x in enumerate([9.9999e-05, 0.000099999, 0.0001, 0.00010000000000000002,
                       9999999999999998.0, 1e16, 1.0000000000000002e16, 12345678901234567.0,
                       0.00009999999999999999, 99999999999999999.0]):
    add("repr switch point %d" % i, {"v": x, "neg": -x})

# Random bit patterns: normal, subnormal, huge and tiny doubles.
count = 0
while count < 120:
    values = []
    for _ in range(rng.randrange(1, 4)):
        while True:
            if rng.random() < 0.15:
                bits = rng.getrandbits(52) | (rng.getrandbits(1) << 63)  # subnormal
            else:
                bits = rng.getrandbits(64)
            x = bits_to_float(bits)
            if math.isfinite(x):
                break
        values.append(x)
    add("random doubles %d" % count, {"r%d" % j: v for j, v in enumerate(values)})
    count += 1

# Sensor-like decimals with few digits.
for i in range(25):
    add(
        "sensor decimals %d" % i,
        {
            "temperature": round(rng.uniform(-50, 150), rng.randrange(0, 4)),
            "pressure": round(rng.uniform(0, 2e5), rng.randrange(0, 3)),
            "ratio": round(rng.random(), rng.randrange(1, 8)),
            "tiny": rng.random() * 10 ** rng.randrange(-12, -3),
            "huge": rng.random() * 10 ** rng.randrange(14, 30),
        },
    )

# --- integers -------------------------------------------------------------
INTS = [0, 1, -1, 42, -42, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 1,
        -(2 ** 53) - 1, 2 ** 63 - 1, 2 ** 63, -(2 ** 63), 2 ** 64 - 1, 2 ** 64,
        2 ** 70, -(2 ** 100), 10 ** 30, -(10 ** 30), 10 ** 100, 3 ** 200]
for i, n in enumerate(INTS):
    add("integer %d" % i, {"n": n})
for i in range(10):
    add("random big integer %d" % i, {"n": rng.getrandbits(rng.randrange(64, 600)) * rng.choice([1, -1])})
add("thousand digit integer", {"n": int("7" * 1000)})
add_text("negative zero integer", '{"n": -0}')
add_text("negative zero integer and float", '{"a": -0, "b": -0.0, "c": 0, "d": 0.0, "e": [-0, -0.0]}')
add_text("integer lexeme vs float lexeme", '{"int": 10, "float": 10.0, "exp": 1e1, "negexp": 100e-1}')

# --- literals and containers ----------------------------------------------
add("literals", {"t": True, "f": False, "n": None})
add("empty object", {})
add("empty containers", {"obj": {}, "arr": [], "nested": [[], {}, [[]], [{}]]})
add("nested arrays", {"a": [1, [2, [3, [4, [5]]]]]})
add("mixed array", {"a": [1, "two", 3.0, None, True, False, {"k": "v"}, [], {}]})
add("nested objects", {"z": {"y": {"x": {"w": {"v": 1}}}}, "a": {"c": 3, "b": 2}})
deep = {"leaf": 1}
for i in range(60):
    deep = {"level%02d" % i: deep, "n": i}
add("60 levels deep", deep)
add("array of objects", {"records": [{"id": i, "name": "twin-%d" % i, "ok": i % 2 == 0} for i in range(20)]})

# --- keys -----------------------------------------------------------------
add("keys differing only in case", {"b": 1, "B": 2, "a": 3, "A": 4, "ab": 5, "Ab": 6, "aB": 7, "AB": 8})
add("keys with digits", {"10": 1, "9": 2, "1": 3, "a10": 4, "a9": 5, "a1": 6, "01": 7, "-1": 8, "1.5": 9})
add("empty and whitespace keys", {"": 0, " ": 1, "\t": 2, "a b": 3, " a": 4})
add("unicode keys", {"é": 1, "e": 2, "f": 3, "ü": 4, "z": 5, "中": 6, "日本": 7, "Ω": 8, "ω": 9})
add("astral vs high bmp keys", {"\U0001F600": 1, "\ue000": 2, "\uffff": 3, "\U00010000": 4, "\U0010FFFF": 5, "\uff61": 6, "\ufb33": 7})
add("precomposed vs combining keys", {"\u00e9": "precomposed", "e\u0301": "combining"})
add("control character keys", {"\u0000": 0, "\u001f": 1, "\u007f": 2, "\n": 3})
add("rfc 8785 sort example keys", {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                                    "1": "One", "\U0001F600": "Emoji: Grinning Face", "\u0080": "Control",
                                    "\u00f6": "Latin Small Letter O With Diaeresis"})
add("quote and backslash keys", {'"': 1, "\\": 2, "/": 3, "a\"b": 4})
add("long key", {"k" * 256: 1})

# --- strings --------------------------------------------------------------
add("non-ascii strings", {"fr": "café crème", "de": "Grüße", "cjk": "数字孪生", "jp": "デジタルツイン", "ru": "Привет"})
add("astral strings", {"emoji": "\U0001F600", "max": "\U0010FFFF", "first": "\U00010000", "mix": "a\U0001F680b\u00e9c"})
add("all control characters", {"c": "".join(chr(i) for i in range(0x20)) + "\u007f"})
for i in range(0x20):
    add("control character %#04x" % i, {"s": "a" + chr(i) + "b"})
add("delete character", {"s": "\u007f"})
add("escapes", {"quote": '"', "backslash": "\\", "slash": "/", "all": "\"\\/\b\f\n\r\t"})
add("line and paragraph separators", {"s": "\u2028\u2029"})
add("bom and replacement char", {"s": "\ufeff\ufffd\ufffe\uffff"})
add("latin-1 range", {"s": "".join(chr(i) for i in range(0x80, 0x100))})
add("long string", {"s": "twin " * 2000})
add("string that looks like json", {"s": '{"a": [1, 2.0, null]}'})

# --- hand-written input texts ---------------------------------------------
HAND = [
    ("whitespace everywhere", ' \n\t{ \r\n "b" :\t[ 1 , 2 ] ,\n "a" : { } } \n'),
    ("no whitespace", '{"b":[1,2],"a":{},"c":"x"}'),
    ("exponent 1E5", '{"x": 1E5}'),
    ("exponent 1.50e2", '{"x": 1.50e2}'),
    ("exponent 0.1e1", '{"x": 0.1e1}'),
    ("exponent 1e0", '{"x": 1e0}'),
    ("exponent 1E-0", '{"x": 1E-0}'),
    ("exponent 2.5E+3", '{"x": 2.5E+3}'),
    ("exponent 100e-2", '{"x": 100e-2}'),
    ("exponent with leading zeros", '{"x": 1e007, "y": 1e-007}'),
    ("trailing fraction zeros", '{"x": 25.30000, "y": 1.000000000000000000001}'),
    ("many digits rounding", '{"x": 0.30000000000000004441, "y": 3.141592653589793238462643383279}'),
    ("float written as huge integer with fraction", '{"x": 123456789012345678901234567890.0}'),
    ("tiny exponent underflows to zero", '{"x": 1e-400, "y": -1e-400}'),
    ("near max double", '{"x": 1.7976931348623158e308}'),
    ("subnormal spelled long", '{"x": 4.9406564584124654e-324, "y": 3e-324}'),
    ("unicode escapes uppercase", '{"s": "\\u00E9\\u00e9\\uD83D\\uDE00\\uFFFF"}'),
    ("escaped slash", '{"s": "a\\/b", "\\/": 1}'),
    ("short escapes", '{"s": "\\b\\f\\n\\r\\t\\"\\\\"}'),
    ("escaped control characters", '{"s": "\\u0000\\u0001\\u001F\\u007F"}'),
    ("escaped key", '{"\\u0041": 1, "B": 2, "\\u0061": 3}'),
    ("raw utf-8", '{"s": "café 数字 \U0001F600 \u2028 \u007f"}'),
]
for desc, text in HAND:
    add_text("hand-written: " + desc, text)

# ensure_ascii=False and indented renderings of some documents.
UNICODE_DOCS = [
    {"name": "Température", "ville": "Zürich", "emoji": "\U0001F321", "cjk": "温度"},
    {"\U0001F600": "grin", "\u00e9": ["\u00e8", "\u00ea"], "z": {"\u4e2d": 1.5}},
    {"s": "\u0000\u001f\u007f\u0080\u00ff\u0100\uffff\U00010000\U0010FFFF"},
]
for i, doc in enumerate(UNICODE_DOCS):
    add_text("ensure_ascii=False %d" % i, json.dumps(doc, ensure_ascii=False))
    add_text("indent=2 %d" % i, json.dumps(doc, indent=2))
    add_text("separators=(',', ':') %d" % i, json.dumps(doc, separators=(",", ":"), ensure_ascii=False))

# --- random documents -----------------------------------------------------
CHAR_POOL = (
    [chr(c) for c in range(0x20, 0x7F)] * 4
    + [chr(c) for c in range(0x00, 0x20)] + ["\u007f"]
    + [chr(c) for c in range(0x80, 0x250)]
    + [chr(c) for c in range(0x4E00, 0x4E40)]
    + [chr(c) for c in range(0xE000, 0xE010)] + ["\ufb33", "\uff61", "\ufffd", "\uffff"]
    + [chr(c) for c in range(0x1F600, 0x1F610)] + ["\U00010000", "\U0010FFFF", "\U0002A6D6"]
)


def rand_string(max_len):
    return "".join(rng.choice(CHAR_POOL) for _ in range(rng.randrange(0, max_len)))


def rand_float():
    kind = rng.randrange(4)
    if kind == 0:
        while True:
            x = bits_to_float(rng.getrandbits(64))
            if math.isfinite(x):
                return x
    if kind == 1:
        return round(rng.uniform(-1000, 1000), rng.randrange(0, 6))
    if kind == 2:
        return rng.random() * 10 ** rng.randrange(-30, 30)
    return float(rng.randrange(-10 ** 6, 10 ** 6))


def rand_scalar():
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randrange(-10 ** 6, 10 ** 6)
    if kind == 1:
        return rng.getrandbits(rng.randrange(1, 200)) * rng.choice([1, -1])
    if kind == 2:
        return rand_float()
    if kind == 3:
        return rand_string(12)
    if kind == 4:
        return rng.choice([True, False])
    if kind == 5:
        return None
    return rand_string(4)


def rand_value(depth):
    if depth > 4 or rng.random() < 0.5:
        return rand_scalar()
    if rng.random() < 0.5:
        return [rand_value(depth + 1) for _ in range(rng.randrange(0, 5))]
    return rand_object(depth + 1)


def rand_object(depth):
    obj = {}
    for _ in range(rng.randrange(0, 6)):
        obj[rand_string(8)] = rand_value(depth)
    return obj


for i in range(100):
    add("random document %d" % i, rand_object(0))

with open(OUT, "w", encoding="ascii", newline="\n") as f:
    for v in vectors:
        f.write(json.dumps(v) + "\n")
print("wrote %d vectors to %s (%s)" % (len(vectors), OUT, sys.version.split()[0]), file=sys.stderr)
