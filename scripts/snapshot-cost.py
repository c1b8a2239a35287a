#!/usr/bin/env python3
"""What a snapshot of the embedded Anvil costs at N anchors' worth of contract storage.

Usage: scripts/snapshot-cost.py N [twinledger binary, default target/debug/twinledger]

Starts `serve` on a fresh data directory (anchor.busy_interval_ms = 0, the node's debug log on),
fills the TwinLedger contract's storage with 2 slots per anchor through anvil_setStorageAt (the
shape `anchor` writes; reaching 100,000 real anchors takes hours), then (A) anchors 8 records
3 s apart, (B) runs 4 writers until the chain grew by 700 blocks, and prints the service's own
snapshot times from its log, the state file's size and Anvil's own anvil_dumpState times.
Figures in docs/performance.md.
"""
import json, sys, time, urllib.request, os, re, random, statistics, threading, gzip, subprocess, tempfile, socket
n = int(sys.argv[1])
binary = sys.argv[2] if len(sys.argv) > 2 else "target/debug/twinledger"
data_dir = tempfile.mkdtemp(prefix="snapshot-cost-")
log = os.path.join(data_dir, "serve.log")
with socket.socket() as s_:
    s_.bind(("127.0.0.1", 0)); port = s_.getsockname()[1]
api = f"http://127.0.0.1:{port}"
env = dict(os.environ, RUST_LOG="twinledger::node=debug,info", NO_COLOR="1", TWINLEDGER_ANCHOR__BUSY_INTERVAL_MS="0")
serve = subprocess.Popen([binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
for _ in range(120):
    try: urllib.request.urlopen(f"{api}/health"); break
    except Exception: time.sleep(1)
def node(): return json.load(open(os.path.join(data_dir, 'node.json')))['url']
contract = json.load(urllib.request.urlopen(f"{api}/health"))['chain']['contract']
def batch(calls):
    body = json.dumps([{"jsonrpc":"2.0","id":i,"method":m,"params":p} for i,(m,p) in enumerate(calls)]).encode()
    req = urllib.request.Request(node(), data=body, headers={"Content-Type":"application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=600).read())
rng = random.Random(7)
calls = []
t = time.time()
for i in range(n):
    base = rng.getrandbits(256)
    calls.append(("anvil_setStorageAt", [contract, hex(base), "0x%064x" % rng.getrandbits(256)]))
    calls.append(("anvil_setStorageAt", [contract, hex(base + 1), "0x%064x" % ((2_000_000 + i) << 64 | 1_796_000_000 + i)]))
    if len(calls) >= 2000:
        batch(calls); calls = []
if calls: batch(calls)
print(f"filled {2*n} slots in {time.time()-t:.0f}s", flush=True)
def post(path, body):
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
def text(): return re.sub(r"\x1b\[[0-9;]*m", "", open(log).read())
def snaps(): return [int(m) for m in re.findall(r"snapshot of the embedded Anvil block=\S+ ms=(\d+)", text())]
def state():
    p = os.path.join(data_dir, 'anvil-state.json.gz')
    st = json.loads(gzip.open(p).read())
    return os.path.getsize(p), len(st['blocks'])
def dump_ms():
    out = []
    for _ in range(3):
        t = time.time()
        req = urllib.request.Request(node(), data=json.dumps({"jsonrpc":"2.0","id":1,"method":"anvil_dumpState","params":[]}).encode(), headers={"Content-Type":"application/json"})
        body = urllib.request.urlopen(req, timeout=600).read()
        out.append(int((time.time()-t)*1000))
    return out, len(body)//2
before = len(snaps())
for i in range(8):
    post("/v1/twins/synth/states?wait=anchored", {"i": i}); time.sleep(3)
ms = snaps()[before:]
size, blocks = state()
d, dsize = dump_ms()
print(f"A {n}: few blocks ({blocks}): snapshots ms {ms} median {statistics.median(ms)}; file {size} B; anvil_dumpState alone ms {d} ({dsize} B gzip)", flush=True)
stop = False
def writer(w):
    i = 0
    while not stop:
        try: post(f"/v1/twins/w{w}-{i%10}/states", {"i": i})
        except Exception as e: time.sleep(0.1)
        i += 1
for w in range(4): threading.Thread(target=writer, args=(w,), daemon=True).start()
def block():
    req = urllib.request.Request(node(), data=json.dumps({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}).encode(), headers={"Content-Type":"application/json"})
    return int(json.loads(urllib.request.urlopen(req).read())["result"], 16)
b0 = block(); before = len(snaps())
while True:
    try:
        if block() >= b0 + 700: break
    except Exception: pass
    time.sleep(1)
stop = True; time.sleep(3)
ms = snaps()[before:][-15:]
size, blocks = state()
comp = re.findall(r"compacted the embedded Anvil's history.*", text())
print(f"B {n}: window ({blocks} blocks): last snapshots ms {ms} median {statistics.median(ms)}; file {size} B; compactions {len(comp)} {comp[-1:] }", flush=True)
d, dsize = dump_ms()
print(f"B {n}: anvil_dumpState alone ms {d} ({dsize} B gzip)", flush=True)
serve.terminate(); serve.wait()
