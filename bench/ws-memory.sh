#!/bin/bash
# Server RSS per WebSocket client: before, and with N clients held.
# usage: bench/ws-memory.sh CLIENTS SECONDS [livemap flags...]
set -e
source "$(dirname "$0")/lib.sh"
N=$1 DUR=$2; shift 2
start_server "$@"
wait_live "${LIVE_ORDERS_PER_SEC:-5000}"
sleep 3
before=$(rss_kib)
clients --connections "$N" --duration "$DUR" --ramp 20 --report "/tmp/livemap-ws-memory-$N.json" 2>/dev/null &
LT=$!
sleep $((20 + DUR / 2))
with=$(rss_kib)
held=$(curl -s http://$ADMIN/metrics | awk '/^livemap_connections\{transport="ws"\}/{print $2}')
wait $LT
echo "server RSS before: $before KiB; with $held clients: $with KiB; per client: $(( (with - before) * 1024 / held )) bytes"
