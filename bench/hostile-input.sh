#!/usr/bin/env bash
# Hostile input against the release binary on Apache Kafka (docs/BENCHMARKS.md,
# "Hostile inputs"): live demo traffic (1,000 msgs/s, about 100 orders/s)
# into a 4-partition topic, 200 WebSocket clients watching, and three
# attacks from bench/poison.py in turn:
#   1. fast clock: one order 4 minutes ahead of the clock; for the next
#      minute the public orders_per_minute is sampled every second and the
#      late count watched;
#   2. long categories: 1,000 orders each with its own 60 KB category;
#      the server's memory before and after;
#   3. huge total: one order of 184,467,440,737,095,516.15 USD.
# Prints one line per attack and the clients' report.
# Build first (and scripts/kafka.sh install):
#   cargo build --release -p livemap-server -p livemap-loadtest
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BROKER=127.0.0.1:19092
KAFKA_DIR=/tmp/bench-hostile-kafka
SERVER=127.0.0.1:18080
ADMIN=127.0.0.1:19091
LT=target/release/livemap-loadtest
OUT=$(mktemp -d)

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; scripts/kafka.sh stop $KAFKA_DIR' EXIT
while ss -ltn | grep -qE ":(19092|19093|18080|19091) "; do sleep 0.5; done
rm -rf $KAFKA_DIR
scripts/kafka.sh start $KAFKA_DIR 19092 19093

$LT produce --brokers $BROKER --topic hostile --partitions 4 --rate 1000 --duration 3600 \
  > /dev/null 2>&1 &
pids+=($!)
target/release/livemap --kafka-brokers $BROKER --topic hostile --group-id bench-hostile \
  --listen $SERVER --admin-listen $ADMIN --state-dir "$OUT/state" > "$OUT/server.log" 2>&1 &
SRV=$!
pids+=($SRV)
until curl -sf http://$ADMIN/healthz > /dev/null; do kill -0 $SRV; sleep 0.5; done

snap() { curl -s http://$SERVER/api/snapshot; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
rss_mib() { awk '/VmRSS/{printf "%.1f", $2/1024}' /proc/$SRV/status; }
inject() { python3 bench/poison.py "$@" > "$OUT/poison.jsonl"; \
  $LT produce --brokers $BROKER --topic hostile --file "$OUT/poison.jsonl" --rate 100000 > /dev/null 2>&1; }

echo "== waiting for a whole minute of live orders (about 6,000)"
until [ "$(snap | field "int(d['rates']['orders_per_minute'])")" -gt 5000 ]; do sleep 2; done
$LT clients --url http://$SERVER --connections 200 --duration 150 --ramp 2 \
  --report "$OUT/clients.json" > /dev/null 2>&1 &
CLIENTS=$!
pids+=($CLIENTS)
sleep 5

echo "== fast clock: one order 240 s ahead"
late0=$(snap | field "d['ingest']['late']")
inject fast-clock 240
low=999999
for _ in $(seq 60); do
  opm=$(snap | field "int(d['rates']['orders_per_minute'])")
  [ "$opm" -lt "$low" ] && low=$opm
  sleep 1
done
late1=$(snap | field "d['ingest']['late']")
echo "fast clock: lowest orders_per_minute over 60 s: $low; late orders: +$((late1 - late0)); RSS $(rss_mib) MiB"

echo "== long categories: 1,000 orders, each its own 60 KB category"
before=$(rss_mib)
acc0=$(snap | field "d['ingest']['accepted']")
truncated0=$(curl -s http://$ADMIN/metrics | awk '/^livemap_strings_truncated_total /{print $2}')
inject long-category 1000 60000
until [ "$(curl -s http://$ADMIN/metrics | awk '/^livemap_strings_truncated_total /{print $2}')" -ge $((truncated0 + 1000)) ]; do sleep 1; done
sleep 5
echo "long categories: RSS $before -> $(rss_mib) MiB; accepted +$(( $(snap | field "d['ingest']['accepted']") - acc0 )) (live traffic included); truncated +1000"

echo "== huge total: one order of 184,467,440,737,095,516.15 USD"
gmv0=$(snap | field "d['totals']['gmv_usd_cents']")
inject huge-total
until [ "$(snap | field "d['ingest']['rejected'].get('implausible_total', 0)")" -ge 1 ]; do sleep 1; done
gmv1=$(snap | field "d['totals']['gmv_usd_cents']")
echo "huge total: rejected implausible_total = 1; GMV grew by $(( (gmv1 - gmv0) / 100 )) USD (live traffic only); RSS $(rss_mib) MiB"

wait $CLIENTS || true
python3 -c "import json; r=json.load(open('$OUT/clients.json')); l=r['latency_ms']; print(f\"clients: {r['connected_at_end']} of {r['connections_wanted']} held, p50 {l['p50']} ms, p99 {l['p99']} ms, gaps {r['gaps']}, dropped {r['dropped']}\")"
