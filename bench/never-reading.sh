#!/bin/bash
# 2,000 reading clients alone, then beside 1,000 that never read: the
# readers' latency, the server's memory, and when the stuck ones are dropped.
set -e
source "$(dirname "$0")/lib.sh"
start_server
wait_live
clients --connections 2000 --duration 60 --ramp 5 --report /tmp/livemap-readers.json 2>/dev/null
before=$(rss_kib)
clients --connections 3000 --never-read 1000 --duration 120 --ramp 5 --report /tmp/livemap-never-read.json 2>/dev/null &
LT=$!
for t in 30 60 90 120; do
  sleep 30
  echo "t=${t}s: server RSS $(rss_kib) KiB (before $before) $(metrics '^livemap_(connections|clients_dropped_slow_total)\{transport="ws"\}')"
done
wait $LT
