#!/usr/bin/env python3
"""POST throughput of a running twinledger with concurrent writers.

Usage: scripts/post-throughput.py [BASE_URL] [WRITERS] [RECORDS] [QUERY]
       (default http://127.0.0.1:8000, 32, 6400, "")

Each writer has its own keep-alive connection and twin and posts RECORDS/WRITERS states to
/v1/twins/{twin}/states{QUERY} (e.g. QUERY="?wait=anchored"). Prints records acknowledged per
second and the latency percentiles. Python's threads bound the rate this client can reach; the
project's benchmark (issue 5) replaces this script.
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
writers = int(sys.argv[2]) if len(sys.argv) > 2 else 32
records = int(sys.argv[3]) if len(sys.argv) > 3 else 6400
query = sys.argv[4] if len(sys.argv) > 4 else ""
url = urllib.parse.urlparse(base)
per_writer = records // writers
latencies = []
failures = []
lock = threading.Lock()


def writer(w):
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=120)
    mine = []
    for i in range(per_writer):
        body = json.dumps({"writer": w, "seq": i, "temperature": 20.5})
        t0 = time.perf_counter()
        conn.request("POST", f"/v1/twins/bench-{w}/states{query}", body, {"content-type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        mine.append(time.perf_counter() - t0)
        if resp.status != 201:
            with lock:
                failures.append((resp.status, payload[:200]))
    with lock:
        latencies.extend(mine)


threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
start = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.perf_counter() - start
latencies.sort()
n = len(latencies)
print(f"{n} records by {writers} writers in {elapsed:.2f} s: {n / elapsed:.0f} records/s; "
      f"latency p50 {latencies[n // 2] * 1000:.1f} ms, p99 {latencies[int(n * 0.99)] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
if failures:
    sys.exit(f"{len(failures)} failures, first: {failures[0]}")
