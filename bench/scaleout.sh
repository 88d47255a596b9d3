#!/usr/bin/env bash
# Scale-out on one machine (docs/BENCHMARKS.md, "Scale-out"): an Apache
# Kafka broker, AGGREGATORS aggregators and one edge, all release builds
# on the same cores. Build first (and scripts/kafka.sh install):
#   cargo build --release -p livemap-server -p livemap-loadtest
#
# Usage: [PUBLISH_MS=1000] bench/scaleout.sh AGGREGATORS [MESSAGES] [LAG_RATE]
# (AGGREGATORS 0: one --role all process instead, the baseline; PUBLISH_MS
# is the aggregators' --publish-ms.)
#
# 1. Throughput: MESSAGES of the demo mix are produced to a 6-partition
#    topic first; then the aggregators start and read the backlog. The rate
#    is taken from the edge's /api/snapshot, between 10 % and 90 % of the
#    messages shown (start-up and the last publish excluded), and the CPU
#    the aggregators used is divided by the messages.
# 2. Lag: LAG_RATE messages/s for 30 s, live; every 200 ms the age of the
#    newest order arc on the edge's /api/snapshot (event time to the edge's
#    snapshot) is sampled; p50/p99 of those ages.
#    Meanwhile the CPU of each role, and what the edge reads: records as
#    decoded, and bytes from the brokers on the wire.
# 3. A late edge: started once the live traffic is over, the time until it
#    shows what the first edge shows, from the partial-state topic alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
K=${1:?usage: bench/scaleout.sh AGGREGATORS [MESSAGES] [LAG_RATE]}
N=${2:-3000000}
LAG_RATE=${3:-20000}
PARTITIONS=6
BROKER=127.0.0.1:19092
EDGE=127.0.0.1:18080
KAFKA_DIR=/tmp/scaleout-kafka

pids=()
# Every process ends (cleanly, while the broker is still up) before the
# broker does, so that none is left to join the next run's broker.
trap 'kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; scripts/kafka.sh stop $KAFKA_DIR' EXIT
while ss -ltn | grep -qE ":(19092|19093|18080|19091) "; do sleep 0.5; done
rm -rf $KAFKA_DIR
scripts/kafka.sh start $KAFKA_DIR 19092 19093
BROKER_PID=$(cat $KAFKA_DIR/kafka.pid)
target/release/livemap-loadtest produce --brokers $BROKER --partitions $PARTITIONS --rate 1000000 \
  --count "$N" --duration 3600 2>/dev/null | tail -1

aggs=()
if [ "$K" = 0 ]; then
  # The baseline: one process (--role all) reads the topic and serves.
  target/release/livemap --kafka-brokers $BROKER --listen $EDGE --admin-listen 127.0.0.1:19091 \
    --state-dir "$(mktemp -d)" > /tmp/scaleout-edge.log 2>&1 &
  pids+=($!)
  aggs+=($!)
fi
for i in $(seq 1 "$K"); do
  target/release/livemap --role aggregator --aggregator-id "agg-$i" --kafka-brokers $BROKER \
    --publish-ms "${PUBLISH_MS:-1000}" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "/tmp/scaleout-agg-$i.log" 2>&1 &
  pids+=($!)
  aggs+=($!)
done
if [ "$K" != 0 ]; then
  # The edge waits for the partial-state topic, which the first aggregator makes.
  until grep -q listening "/tmp/scaleout-agg-1.log" 2>/dev/null; do sleep 0.2; done
  target/release/livemap --role edge --kafka-brokers $BROKER --listen $EDGE \
    --admin-listen 127.0.0.1:19091 > /tmp/scaleout-edge.log 2>&1 &
  pids+=($!)
  EDGE_PID=$!
fi

cpu_secs() { # summed user+system CPU seconds of the given pids
  local total=0
  for p in "$@"; do
    total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{print t + ($14 + $15) / hz}' "/proc/$p/stat")
  done
  echo "$total"
}

python3 bench/rate.py "$N" "$EDGE" > /tmp/scaleout-throughput.txt 2> /tmp/scaleout-ingest.json
read -r RATE SHOWN < /tmp/scaleout-throughput.txt
echo "ingest at the end: $(cat /tmp/scaleout-ingest.json)"
AGG_CPU=$(cpu_secs "${aggs[@]}")
BROKER_CPU=$(cpu_secs "$BROKER_PID")
echo "aggregators: $K  messages shown by the edge: $SHOWN of $N"
echo "throughput (10-90 %): $RATE messages/s"
python3 -c "print(f'aggregator CPU: {float($AGG_CPU):.1f} s in all, {float($AGG_CPU) * 1e6 / $N:.2f} CPU-s per million messages (the broker: {float($BROKER_CPU):.1f} s)')"

if [ "$K" != 0 ]; then
  # The same messages through one process (its own group): the edge's
  # counts must equal its counts, field by field.
  target/release/livemap --kafka-brokers $BROKER --group-id reference --listen 127.0.0.1:18081 \
    --admin-listen 127.0.0.1:19099 --state-dir "$(mktemp -d)" > /tmp/scaleout-reference.log 2>&1 &
  REF=$!
  python3 - "$N" "$EDGE" 127.0.0.1:18081 <<'EOF'
import json, sys, time, urllib.request
n, edge, ref = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def ingest(addr):
    try:
        return json.load(urllib.request.urlopen(f"http://{addr}/api/snapshot", timeout=5))["ingest"]
    except Exception:
        return None
def total(i):
    return i["accepted"] + i["duplicates"] + i["filtered"] + sum(i["rejected"].values()) if i else 0
deadline = time.time() + 300
while time.time() < deadline and total(ingest(ref)) < n:
    time.sleep(0.5)
# Let the edge take its last records in.
end = time.time() + 10
while time.time() < end and ingest(edge) != ingest(ref):
    time.sleep(0.5)
e, r = ingest(edge), ingest(ref)
print("edge equals one process on the same messages:", "yes" if e == r else f"NO\n  edge: {e}\n  one process: {r}")
EOF
  kill $REF; wait $REF 2>/dev/null || true
fi
target/release/livemap-loadtest produce --brokers $BROKER --rate "$LAG_RATE" --duration 30 --seed 2 > /dev/null 2>&1 &
pids+=($!)
LIVE_PRODUCER=$!
# CPU while live: the aggregators' (each, on average) and the edge's, over
# the lag sampling below.
edge_bytes() { curl -s http://127.0.0.1:19091/metrics | awk '/^livemap_partials_bytes_total /{print $2}'; }
edge_wire() { curl -s http://127.0.0.1:19091/metrics | awk '/^livemap_partials_received_bytes_total /{print $2}'; }
LIVE_AGG0=$(cpu_secs "${aggs[@]}"); LIVE_EDGE0=$(cpu_secs ${EDGE_PID:-}); LIVE_T0=$(date +%s.%N)
LIVE_BYTES0=$(edge_bytes); LIVE_WIRE0=$(edge_wire)
python3 - "$EDGE" <<'EOF'
import json, sys, time, urllib.request, datetime
edge = sys.argv[1]
def at_ms(a):
    v = a["at"]
    if isinstance(v, (int, float)):
        return int(v)
    return int(datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)
ages = []
time.sleep(5)  # the first records of the live traffic
end = time.time() + 20
while time.time() < end:
    s = json.load(urllib.request.urlopen(f"http://{edge}/api/snapshot", timeout=5))
    arcs = s.get("arcs") or []
    if arcs:
        ages.append(time.time() * 1000 - max(at_ms(a) for a in arcs))
    time.sleep(0.2)
ages.sort()
q = lambda f: ages[min(len(ages) - 1, int(f * len(ages)))]
print(f"event to edge snapshot ({len(ages)} samples): p50 {q(0.5):.0f} ms, p99 {q(0.99):.0f} ms, max {ages[-1]:.0f} ms")
EOF
LIVE_AGG1=$(cpu_secs "${aggs[@]}"); LIVE_EDGE1=$(cpu_secs ${EDGE_PID:-}); LIVE_T1=$(date +%s.%N)
LIVE_BYTES1=$(edge_bytes); LIVE_WIRE1=$(edge_wire)
python3 -c "
dt = $LIVE_T1 - $LIVE_T0
k = max($K, 1)
edge = f', the edge {100 * ($LIVE_EDGE1 - $LIVE_EDGE0) / dt:.1f} %' if $K else ''
who = 'per aggregator' if $K else 'for the one process'
print(f'CPU while live at $LAG_RATE msgs/s: {100 * ($LIVE_AGG1 - $LIVE_AGG0) / dt / k:.1f} % of a core {who}{edge} ({dt:.0f} s)')
b0, b1 = '${LIVE_BYTES0:-0}', '${LIVE_BYTES1:-0}'
if $K and b0 and b1:
    print(f'the edge read {(float(b1) - float(b0)) / dt / 1e6:.2f} MB/s of partial-state records (as decoded, before gzip: livemap_partials_bytes_total)')
w0, w1 = '${LIVE_WIRE0:-0}', '${LIVE_WIRE1:-0}'
if $K and w0 and w1:
    print(f'the edge received {(float(w1) - float(w0)) / dt / 1e6:.3f} MB/s from the brokers (on the wire, arcs included: livemap_partials_received_bytes_total)')"
if [ "$K" != 0 ]; then
  # A late edge: from the partial-state topic alone, how long until it
  # shows what the first edge shows (the live traffic over).
  wait "$LIVE_PRODUCER" 2>/dev/null || true
  sleep 3
  LATE_T0=$(date +%s.%N)
  target/release/livemap --role edge --kafka-brokers $BROKER --listen 127.0.0.1:18082 \
    --admin-listen 127.0.0.1:19098 > /tmp/scaleout-late-edge.log 2>&1 &
  pids+=($!)
  python3 - "$EDGE" 127.0.0.1:18082 "$LATE_T0" <<'EOF'
import json, sys, time, urllib.request
edge, late, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
def ingest(addr):
    try:
        return json.load(urllib.request.urlopen(f"http://{addr}/api/snapshot", timeout=5))["ingest"]
    except Exception:
        return None
deadline = time.time() + 120
while time.time() < deadline:
    a, b = ingest(edge), ingest(late)
    if a is not None and a == b:
        print(f"a late edge showed what the first shows {time.time() - t0:.1f} s after it started (process start included)")
        break
    time.sleep(0.1)
else:
    print("a late edge did NOT catch up within 120 s")
EOF
fi

