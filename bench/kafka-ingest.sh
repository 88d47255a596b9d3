#!/usr/bin/env bash
# Kafka end to end (docs/BENCHMARKS.md, "Kafka end to end"): an Apache
# Kafka broker on this machine, MESSAGES of the demo mix produced into a
# 4-partition topic, then read three ways over the same messages:
#   1. the load tester's produce rate (generate + produce, lz4, acks=all);
#   2. the bare rdkafka consumer (`livemap-loadtest consume`): the broker's
#      and the client library's limit on this machine;
#   3. `livemap` end to end (consume, decode, dedup, aggregate, snapshot),
#      timed from its /api/snapshot between 10 % and 90 % of the messages.
# Build first (and scripts/kafka.sh install):
#   cargo build --release -p livemap-server -p livemap-loadtest
#
# Usage: bench/kafka-ingest.sh [MESSAGES]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-2000000}
BROKER=127.0.0.1:19092
KAFKA_DIR=/tmp/bench-kafka
SERVER=127.0.0.1:18080

pids=()
# Every process ends (cleanly, while the broker is still up) before the
# broker does, so that none is left to join the next run's broker.
trap 'kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; scripts/kafka.sh stop $KAFKA_DIR' EXIT
while ss -ltn | grep -qE ":(19092|19093|18080|19091) "; do sleep 0.5; done
rm -rf $KAFKA_DIR
scripts/kafka.sh start $KAFKA_DIR 19092 19093

echo "== produce"
target/release/livemap-loadtest produce --brokers $BROKER --partitions 4 --rate 10000000 \
  --count "$N" --duration 3600 2>/dev/null | tail -1

echo "== bare consumer"
target/release/livemap-loadtest consume --brokers $BROKER --count "$N" 2>/dev/null | tail -1

echo "== livemap"
target/release/livemap --kafka-brokers $BROKER --group-id bench-livemap --listen $SERVER \
  --admin-listen 127.0.0.1:19091 --state-dir "$(mktemp -d)" ${LIVEMAP_FLAGS:-} > /tmp/bench-livemap.log 2>&1 &
pids+=($!)
read -r RATE SHOWN < <(python3 bench/rate.py "$N" "$SERVER" 2>/dev/null)
echo "livemap end to end: $RATE msgs/s (10-90 %), $SHOWN processed"
