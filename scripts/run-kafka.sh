#!/usr/bin/env bash
# The real path in one command: a local single-node Apache Kafka, the load
# tester producing demo traffic into it at a chosen rate, and the live map
# consuming it. Installs what is missing first (as scripts/run.sh does, plus
# the broker's jars). Ctrl-C stops all three.
#
#   scripts/run-kafka.sh [--rate MSGS_PER_SEC] [--partitions N] [livemap flags...]
#
# Defaults: 20,000 messages/s (about 2,000 orders/s) into a 6-partition
# topic `checkouts` on 127.0.0.1:29092; the globe at http://127.0.0.1:8080.
# The broker's data lives in target/run-kafka (kept across runs, so a
# restart resumes the sale; delete it to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."

rate=20000
partitions=6
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --partitions) partitions=${2:?--partitions needs a value}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

BROKER_PORT=${LIVEMAP_KAFKA_PORT:-29092}
BROKER=127.0.0.1:$BROKER_PORT
DATA=target/run-kafka

scripts/setup.sh demo
scripts/kafka.sh install
scripts/build-wasm.sh
cargo build --release -p livemap-server -p livemap-loadtest

pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  scripts/kafka.sh stop "$DATA/kafka"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/kafka.sh start "$DATA/kafka" "$BROKER_PORT" $((BROKER_PORT + 1))
# The topic first (a consumer does not create it), then a day of traffic.
target/release/livemap-loadtest produce --brokers "$BROKER" --topic checkouts \
  --partitions "$partitions" --count 0 > /dev/null
# A new seed each run: the same seed would replay the same event ids,
# which the map rightly counts as duplicates.
target/release/livemap-loadtest produce --brokers "$BROKER" --topic checkouts \
  --rate "$rate" --duration 86400 --seed "$(date +%s)" > "$DATA/produce.log" 2>&1 &
pids+=($!)
echo "[run-kafka] producing $rate messages/s to checkouts (log: $DATA/produce.log)" >&2
target/release/livemap --kafka-brokers "$BROKER" --topic checkouts --group-id livemap \
  --state-dir "$DATA/state" "${args[@]}" &
pids+=($!)
wait -n "${pids[@]}"
