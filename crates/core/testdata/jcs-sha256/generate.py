#!/usr/bin/env python3
"""Test vectors for the jcs-sha256 scheme, from an independent RFC 8785 implementation.

Oracle: the `rfc8785` package by Trail of Bits, pinned to 0.1.4 (pure Python,
its number formatting is derived from Anders Rundgren's reference code, not
from the Rust code under test).

Produced with (from the repository root; the venv lives outside the repo):
    python3 -m venv /tmp/jcs-venv
    /tmp/jcs-venv/bin/pip install rfc8785==0.1.4
    /tmp/jcs-venv/bin/python crates/core/testdata/jcs-sha256/generate.py
which rewrites crates/core/testdata/jcs-sha256/vectors.jsonl.
Python used: Python 3.11.7 (`python3 --version`).

Each line of vectors.jsonl is one JSON object:
    desc       what the document exercises
    input      JSON text whose parse is the document
    canonical  rfc8785.dumps(json.loads(input)) decoded as UTF-8
    sha256     hashlib.sha256(rfc8785.dumps(json.loads(input))).hexdigest()
"""

import hashlib
import json
import math
import os
import random
import struct
import sys

import rfc8785

assert rfc8785.__version__ == "0.1.4", rfc8785.__version__

SEED = 8785
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.jsonl")
MAX_SAFE = 2 ** 53 - 1  # rfc8785 refuses integers outside +-(2**53 - 1)


def hex_to_float(h):
    return struct.unpack(">d", bytes.fromhex(h))[0]


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

    return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)


vectors = []
descs = set()


def add_text(desc, text, expect=None):
    assert desc not in descs, desc
    descs.add(desc)
    doc = strict_loads(text)
    assert isinstance(doc, dict), desc
    canonical = rfc8785.dumps(doc)
    if expect is not None:
        assert canonical.decode("utf-8") == expect, (desc, canonical, expect)
    vectors.append(
        {
            "desc": desc,
            "input": text,
            "canonical": canonical.decode("utf-8"),
            "sha256": hashlib.sha256(canonical).hexdigest(),
        }
    )


def add(desc, doc, expect=None):
    add_text(desc, json.dumps(doc), expect)


rng = random.Random(SEED)

# --- RFC 8785 Appendix B: IEEE-754 bit patterns and their required output ----
# (The NaN and Infinity rows are errors in JCS and cannot appear in JSON text.)
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]
for h, expected in APPENDIX_B:
    add("rfc 8785 appendix b %s" % h, {"n": hex_to_float(h)}, '{"n":%s}' % expected)
add("rfc 8785 appendix b, all", {"numbers": [hex_to_float(h) for h, _ in APPENDIX_B]},
    '{"numbers":[%s]}' % ",".join(e for _, e in APPENDIX_B))

# --- RFC 8785 section 3.2.2 and 3.2.3 examples -------------------------------
add_text(
    "rfc 8785 section 3.2.2 example",
    '{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n'
    '  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
    '  "literals": [null, true, false]\n}',
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
)
add_text(
    "rfc 8785 section 3.2.3 sorting example",
    '{\n  "\\u20ac": "Euro Sign",\n  "\\r": "Carriage Return",\n  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n'
    '  "1": "One",\n  "\\ud83d\\ude00": "Emoji: Grinning Face",\n  "\\u0080": "Control",\n'
    '  "\\u00f6": "Latin Small Letter O With Diaeresis"\n}',
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
    '"\u20ac":"Euro Sign","\U0001F600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
)

# --- key ordering by UTF-16 code units -------------------------------------
# Astral characters encode as surrogates 0xD800..0xDFFF, which sort *before*
# BMP characters 0xE000..0xFFFF although their code points are larger.
add("utf-16 order: emoji before private use", {"\ue000": 1, "\U0001F600": 2})
add("utf-16 order: U+10000 before U+FFFF", {"\uffff": 1, "\U00010000": 2})
add("utf-16 order: U+10FFFF before U+E000", {"\ue000": 1, "\U0010FFFF": 2})
add("utf-16 order: halfwidth vs astral", {"\uff61": 1, "\U0002A6D6": 2, "\ufb33": 3, "\U0001F680": 4, "\ud7ff": 5})
add("utf-16 order: prefixes", {"a\U0001F600": 1, "a\ue000": 2, "a": 3, "a\uffff": 4, "a\U00010000b": 5})
add("utf-16 order: ascii case and digits", {"b": 1, "B": 2, "a": 3, "A": 4, "10": 5, "9": 6, "1": 7, "": 8})
add("utf-16 order: latin-1 and cjk", {"\u00e9": 1, "e": 2, "\u4e2d": 3, "\u00ff": 4, "\u0100": 5})
HIGH_KEY_CHARS = ["\ue000", "\uf8ff", "\ufb33", "\ufeff", "\uff61", "\ufffd", "\uffff",
                  "\U00010000", "\U0001F600", "\U0001F680", "\U0002A6D6", "\U0010FFFF",
                  "\u00e9", "\u20ac", "\ud7ff", "a", "Z", "0"]
for i in range(40):
    keys = set()
    while len(keys) < rng.randrange(2, 8):
        keys.add("".join(rng.choice(HIGH_KEY_CHARS) for _ in range(rng.randrange(1, 4))))
    add("utf-16 order: random high keys %d" % i, {k: j for j, k in enumerate(sorted(keys))})

# --- numbers ----------------------------------------------------------------
SPECIAL_FLOATS = [
    25.3, 0.1, 1e-07, 1e-06, 1e-05, 1.5e300, -0.0, 1.0, -1.0, 5e-324,
    123456789012345680.0, 1e15, 1e16, 1e20, 1e21, 1e22, 9.999999999999999e20,
    0.0001, 0.00001, 0.000001234, 1.7976931348623157e308, 2.2250738585072014e-308,
    0.1 + 0.2, 1 / 3, 4.5, 0.002, 1e-27, 1e30, 2.0 ** 53, 2.0 ** 53 + 2, 2.0 ** 64,
    2.0 ** 70, 1e100, 123.456, -273.15, 6.02214076e23, 1424953923781206.25,
    1125899906842624.75, 999999999999999.9, 100.0, 1234567.0,
]
for i, x in enumerate(SPECIAL_FLOATS):
    add("special float %d: %r" % (i, x), {"value": x})

for i in range(12):
    n = rng.randrange(2 ** 50, 2 ** 51)
    frac = rng.choice([0.25, 0.75])
    add("tie-to-even double %d" % i, {"x": n + frac, "neg": -(n + frac)})

for i in range(8):
    e = rng.randrange(-1070, 1020)
    base = math.ldexp(1.0, e)
    add("power of two 2**%d and neighbours" % e,
        {"p": base, "below": math.nextafter(base, 0.0), "above": math.nextafter(base, math.inf)})

for i in range(60):
    values = []
    for _ in range(rng.randrange(1, 4)):
        while True:
            if rng.random() < 0.15:
                bits = rng.getrandbits(52) | (rng.getrandbits(1) << 63)
            else:
                bits = rng.getrandbits(64)
            x = bits_to_float(bits)
            if math.isfinite(x):
                break
        values.append(x)
    add("random doubles %d" % i, {"r%d" % j: v for j, v in enumerate(values)})

for i in range(20):
    add("random decimal magnitudes %d" % i,
        {"a": rng.random() * 10 ** rng.randrange(-10, 25), "b": round(rng.uniform(-1e4, 1e4), rng.randrange(0, 6))})

INTS = [0, 1, -1, 42, 2 ** 31, 2 ** 32, 10 ** 15, 10 ** 15 + 1, MAX_SAFE - 1, MAX_SAFE, -MAX_SAFE, 2 ** 52, -(2 ** 52) - 1]
for i, n in enumerate(INTS):
    add("integer %d" % i, {"n": n})
for i in range(10):
    add("random safe integers %d" % i, {"a": rng.randrange(-MAX_SAFE, MAX_SAFE + 1), "b": rng.randrange(-1000, 1000)})
add_text("negative zero integer", '{"n": -0}', '{"n":0}')
add_text("integer vs float lexemes", '{"i": 10, "f": 10.0, "e": 1e1, "g": 100e-1, "h": 1E+2, "k": 0.1e1}',
         '{"e":10,"f":10,"g":10,"h":100,"i":10,"k":1}')
add_text("exponent spellings", '{"a": 1.50e2, "b": 2.5E+3, "c": 1E-0, "d": 1e007, "e": 1e-007}')
add_text("underflow to zero", '{"a": 1e-400, "b": -1e-400}', '{"a":0,"b":0}')

# --- strings ----------------------------------------------------------------
add("all control characters", {"c": "".join(chr(i) for i in range(0x20)) + "\u007f"})
for i in range(0x20):
    add("control character %#04x" % i, {"s": "a" + chr(i) + "b"})
add("escapes", {"quote": '"', "backslash": "\\", "slash": "/", "all": "\"\\/\b\f\n\r\t"})
add("non-ascii strings", {"fr": "caf\u00e9", "cjk": "\u6570\u5b57\u5b6a\u751f", "emoji": "\U0001F600", "max": "\U0010FFFF"})
add("line separators and bom", {"s": "\u2028\u2029\ufeff\ufffd\uffff"})
add_text("raw utf-8 input", '{"s": "caf\u00e9 \U0001F600 \u2028 \u007f"}')
add_text("uppercase unicode escapes", '{"s": "\\u00E9\\uD83D\\uDE00\\u001F"}')

# --- literals, containers and whitespace -------------------------------------
add("literals", {"t": True, "f": False, "n": None})
add("empty object", {})
add("empty containers", {"o": {}, "a": [], "n": [[], {}, [[]], [{}]]})
add("nested", {"z": {"y": {"x": [1, {"w": [2.5, None]}]}}, "a": [{"c": 1, "b": 2}]})
add_text("whitespace everywhere", ' \n\t{ \r\n "b" :\t[ 1 , 2 ] ,\n "a" : { } } \n', '{"a":{},"b":[1,2]}')
add("seed example", {"temperature": 25.3, "status": "operational"}, '{"status":"operational","temperature":25.3}')

# --- random documents ---------------------------------------------------------
CHAR_POOL = (
    [chr(c) for c in range(0x20, 0x7F)] * 4
    + [chr(c) for c in range(0x00, 0x20)] + ["\u007f"]
    + [chr(c) for c in range(0x80, 0x250)]
    + [chr(c) for c in range(0x4E00, 0x4E20)]
    + HIGH_KEY_CHARS
)


def rand_string(max_len):
    return "".join(rng.choice(CHAR_POOL) for _ in range(rng.randrange(0, max_len)))


def rand_scalar():
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randrange(-MAX_SAFE, MAX_SAFE + 1)
    if kind == 1:
        while True:
            x = bits_to_float(rng.getrandbits(64))
            if math.isfinite(x):
                return x
    if kind == 2:
        return round(rng.uniform(-1000, 1000), rng.randrange(0, 6))
    if kind == 3:
        return rand_string(10)
    if kind == 4:
        return rng.choice([True, False, None])
    return rng.random() * 10 ** rng.randrange(-25, 25)


def rand_value(depth):
    if depth > 4 or rng.random() < 0.5:
        return rand_scalar()
    if rng.random() < 0.5:
        return [rand_value(depth + 1) for _ in range(rng.randrange(0, 5))]
    return rand_object(depth + 1)


def rand_object(depth):
    return {rand_string(6): rand_value(depth) for _ in range(rng.randrange(0, 6))}


for i in range(60):
    add("random document %d" % i, rand_object(0))

with open(OUT, "w", encoding="ascii", newline="\n") as f:
    for v in vectors:
        f.write(json.dumps(v) + "\n")
print("wrote %d vectors to %s (%s)" % (len(vectors), OUT, sys.version.split()[0]), file=sys.stderr)
