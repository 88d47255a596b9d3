"""Waits until the live map at ADDR shows N messages processed and prints
"RATE SHOWN": the messages per second between 10 % and 90 % of N (0 when
one step carried them all, too few to time), and how many it shows. The
final `ingest` object of /api/snapshot goes to standard error.

Usage: python3 bench/rate.py N ADDR   (shared by the Kafka benchmarks)
"""
import json
import sys
import time
import urllib.request

n, addr = int(sys.argv[1]), sys.argv[2]


def snapshot():
    return json.load(urllib.request.urlopen(f"http://{addr}/api/snapshot", timeout=5))


def processed():
    try:
        i = snapshot()["ingest"]
    except Exception:
        return 0
    return i["accepted"] + i["duplicates"] + i["filtered"] + sum(i["rejected"].values())


t10 = t90 = None
p = 0
deadline = time.time() + 600
while time.time() < deadline:
    p, now = processed(), time.time()
    if t10 is None and p >= 0.1 * n:
        t10 = (now, p)
    if t90 is None and p >= 0.9 * n:
        t90 = (now, p)
    if p >= n:
        break
    time.sleep(0.02)
if t10 is None or t90 is None:
    sys.exit(f"{addr} showed only {p} of {n} messages")
rate = (t90[1] - t10[1]) / (t90[0] - t10[0]) if t90[0] > t10[0] else 0
print(f"{rate:.0f} {p}")
print(json.dumps(snapshot()["ingest"]), file=sys.stderr)
