#!/bin/bash
# Clients on one transport against the demo (once its backfill is done).
# usage: bench/transport.sh ws|sse|longpoll CLIENTS SECONDS RAMP_SECONDS [livemap flags...]
# (LIVE_ORDERS_PER_SEC: above the demo's live order rate, if raised.)
set -e
source "$(dirname "$0")/lib.sh"
T=$1 N=$2 DUR=$3 RAMP=$4; shift 4
start_server "$@"
wait_live "${LIVE_ORDERS_PER_SEC:-5000}"
clients --transport "$T" --connections "$N" --duration "$DUR" --ramp "$RAMP" --report "/tmp/livemap-$T-$N.json" 2>/dev/null
metrics "^livemap_(keyframe|delta)_bytes|^livemap_connections_accepted_total\{transport=\"$T\"\}|^livemap_sockets_(refused_total|header_timeouts_total)"
