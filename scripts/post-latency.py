#!/usr/bin/env python3
"""Times sequential POSTs to the seed's update endpoint of a running twinledger.

Usage: scripts/post-latency.py [BASE_URL] [N]   (default http://127.0.0.1:8000, 100)

One keep-alive connection, one twin, N requests in a row; prints the median, p90 and max of the
end-to-end time of one POST (stored, anchored by its own transaction, receipt read, answered).
"""
import http.client
import json
import statistics
import sys
import time
import urllib.parse

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
times = []
for i in range(n):
    body = json.dumps({"twin_id": "latency-probe", "data": {"temperature": 20 + i / 10, "status": "operational"}})
    t0 = time.perf_counter()
    conn.request("POST", "/update_twin_on_blockchain/", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    times.append((time.perf_counter() - t0) * 1000)
    if resp.status != 200:
        sys.exit(f"POST {i} answered {resp.status}: {payload!r}")
window = max(1, n // 5)
for start in range(0, n, window):
    chunk = times[start:start + window]
    print(f"  POSTs {start + 1}-{start + len(chunk)}: {len(chunk) / (sum(chunk) / 1000):.0f}/s, median {statistics.median(chunk):.2f} ms")
times.sort()
print(f"{n} POSTs: median {statistics.median(times):.2f} ms, p90 {times[int(0.9 * (n - 1))]:.2f} ms, max {times[-1]:.2f} ms")
