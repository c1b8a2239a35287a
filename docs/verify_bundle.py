#!/usr/bin/env python3
"""Checks the hash math of a twinledger proof bundle (docs/proof-format.md), stdlib only.
Usage: python3 verify_bundle.py BUNDLE.json   Exit 0 if the math holds, 1 if not.
This is NOT the chain check: see "Chain checks" in docs/proof-format.md."""
import hashlib, json, math, struct, sys

H = lambda b: hashlib.sha256(b).digest()

def no_dups(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)): raise ValueError("duplicate key")
    return dict(pairs)

def es_number(x):  # ECMAScript Number::toString, as RFC 8785 requires
    if isinstance(x, int):
        if float(x) != x: raise ValueError(f"integer {x} is not exactly a double")
        x = float(x)
    if not math.isfinite(x): raise ValueError("number out of range for a double")
    if x == 0: return "0"
    m, _, e = repr(abs(x)).partition("e")
    ip, _, fp = m.partition(".")
    ds = (ip + fp).lstrip("0"); n = int(e or 0) + len(ip) - (len(ip + fp) - len(ds))
    ds = ds.rstrip("0"); k = len(ds); s = "-" if x < 0 else ""
    if k <= n <= 21: return s + ds + "0" * (n - k)
    if 0 < n <= 21: return s + ds[:n] + "." + ds[n:]
    if -6 < n <= 0: return s + "0." + "0" * -n + ds
    return s + ds[0] + ("." + ds[1:] if k > 1 else "") + "e" + ("+" if n >= 1 else "-") + str(abs(n - 1))

def jcs(v):  # RFC 8785
    if isinstance(v, dict):
        ks = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(jcs(k) + ":" + jcs(v[k]) for k in ks) + "}"
    if isinstance(v, list): return "[" + ",".join(jcs(i) for i in v) + "]"
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return es_number(v)

def state_hash(state, scheme):
    if scheme == "seed-sha256": return H(json.dumps(state, sort_keys=True).encode())
    if scheme == "jcs-sha256": return H(jcs(state).encode())
    raise ValueError(f"unknown hash scheme {scheme!r}")

def leaf(r):  # leaf format v1, or v2 (with an annex), integers big-endian
    tid, sch = r["twin_id"].encode(), r["hash_scheme"].encode()
    prev = bytes.fromhex(r["prev_leaf_hash"]) if r["prev_leaf_hash"] else bytes(32)
    kind = {"reported": 0, "desired": 1, "event": 2}[r["kind"]]
    annex = H(jcs(r["annex"]).encode()) if "annex" in r else b""
    return ((b"\x02" if annex else b"\x01") + struct.pack(">QBH", r["index"], kind, len(tid)) + tid
            + struct.pack(">QqB", r["version"], r["recorded_at_ms"], len(sch)) + sch
            + bytes.fromhex(r["state_hash"]) + prev + bytes.fromhex(r["salt"]) + annex)

def root_from_inclusion(index, size, leaf_hash, path):  # RFC 9162 section 2.1.3.2
    if index >= size: return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0: return None
        if fn & 1 or fn == sn:
            r = H(b"\x01" + p + r)
            while not fn & 1 and fn != 0: fn >>= 1; sn >>= 1
        else:
            r = H(b"\x01" + r + p)
        fn >>= 1; sn >>= 1
    return r if sn == 0 else None

FIELDS = {None: "format record leaf leaf_hash inclusion_proof tree_head anchor",
          "record": "index twin_id version kind state hash_scheme state_hash prev_leaf_hash "
                    "recorded_at_ms salt", "inclusion_proof": "leaf_index tree_size path",
          "tree_head": "size root", "anchor": "chain_id contract tx_hash block_number block_timestamp"}

def check(b):
    for part, names in FIELDS.items():  # every field required, no other (annex optional)
        o = b if part is None else b[part]
        optional = {"annex"} if part == "record" else set()
        assert isinstance(o, dict) and set(o) - optional == set(names.split()), \
            f"the fields of {part or 'the bundle'} are not the format's"
    assert b["format"] == "twinledger-proof-v1", "unknown format"
    r, p, head = b["record"], b["inclusion_proof"], b["tree_head"]
    assert state_hash(r["state"], r["hash_scheme"]).hex() == r["state_hash"], "state hash differs"
    lb = leaf(r); lh = H(b"\x00" + lb)
    assert lb.hex() == b["leaf"] and lh.hex() == b["leaf_hash"], "leaf differs"
    assert (p["leaf_index"], p["tree_size"]) == (r["index"], head["size"]), "proof is for another leaf"
    root = root_from_inclusion(r["index"], head["size"], lh, [bytes.fromhex(h) for h in p["path"]])
    assert root is not None and root.hex() == head["root"], "inclusion proof fails"
    return r, head

if __name__ == "__main__":
    try:
        r, head = check(json.load(open(sys.argv[1], encoding="utf-8"), object_pairs_hook=no_dups))
    except (AssertionError, ValueError, KeyError, TypeError, OverflowError) as e:
        sys.exit(f"NOT PROVEN: {e}")
    print(f"hash math OK: {r['twin_id']} v{r['version']} is leaf {r['index']} of the tree "
          f"of size {head['size']}, root {head['root']}; now check that root on chain")
    if "signature" in r.get("annex", {}):  # Ed25519 is not in the standard library
        print("the device signature in the annex is not checked here: check it with an Ed25519 "
              "library (message: the JCS text of record.state), or with twinledger verify-proof")
