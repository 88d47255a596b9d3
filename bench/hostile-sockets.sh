#!/bin/bash
# Hostile sockets beside real clients: the demo server with a lowered
# open-file limit; real WebSocket clients connect first, then the attack
# (idle and slow-header sockets, each coming back as soon as it is closed)
# runs while the clients are measured and /healthz (admin) and
# /api/snapshot (public) are probed on fresh connections five times a
# second.
#
# usage: bench/hostile-sockets.sh OPEN_FILES IDLE SLOW [ATTACKERS [PER_SOURCE]] [-- livemap flags...]
#   OPEN_FILES  the server's open-file limit (soft and hard)
#   IDLE, SLOW  attack sockets in all, split over ATTACKERS processes (1;
#               one process holds at most about 19,000 sockets here)
#   PER_SOURCE  attack sockets per source address (500): fewer addresses
#               meet the per-address cap sooner
# Environment: CLIENTS (200) real WebSocket clients, DURATION (30) seconds of
# measurement, LIVEMAP_BIN another server build.
# Prints one line per measure; reports land in /tmp/livemap-hostile-*.
set -e
source "$(dirname "$0")/lib.sh"
FILES=$1 IDLE=$2 SLOW=$3 PROCS=${4:-1} PER_SOURCE=${5:-500}
shift $(( $# < 5 ? $# : 5 ))
[ "$1" = "--" ] && shift
CLIENTS=${CLIENTS:-200} DURATION=${DURATION:-30}
OUT=/tmp/livemap-hostile
rm -f $OUT-*

SERVER_NOFILE=$FILES start_server --demo-backfill-minutes 0 "$@"
PIDS=()
trap 'kill $SRV "${PIDS[@]}" 2>/dev/null' EXIT
echo "server pid $SRV, open files $(awk '/Max open files/{print $4}' /proc/$SRV/limits), RSS $(rss_kib) KiB at start"

# probe NAME URL: one fresh connection five times a second; a line per try.
probe() {
  while true; do
    t=$(date +%s.%N)
    echo "$t $(curl -s -o /dev/null --max-time 10 -w '%{http_code} %{time_total}' "$2")" >> $OUT-$1.txt || true
    sleep 0.2
  done
}
probe healthz http://$ADMIN/healthz & PIDS+=($!)
probe snapshot http://$PUBLIC/api/snapshot & PIDS+=($!)

clients --connections $CLIENTS --duration $((DURATION + 5)) --ramp 2 --report $OUT-clients.json 2>/dev/null > $OUT-clients.txt & CL=$!
PIDS+=($CL)
sleep 5   # the clients are in before the attack starts
date +%s.%N > $OUT-window.txt
for i in $(seq 1 $PROCS); do
  first=127.$((i + 1)).0.1
  target/release/livemap-loadtest attack --url http://$PUBLIC --reconnect \
    --idle $((IDLE / PROCS)) --slow $((SLOW / PROCS)) --per-source $PER_SOURCE \
    --first-source $first --duration $DURATION --ramp 2 --report $OUT-attack-$i.json \
    2>/dev/null > $OUT-attack-$i.txt & PIDS+=($!)
done
sleep $((DURATION / 2))
echo "mid-attack: $(metrics '^livemap_sockets_(open|limit) ')"
for i in $(seq 1 $PROCS); do wait ${PIDS[$((2 + i))]} 2>/dev/null || true; done
date +%s.%N >> $OUT-window.txt
wait $CL
kill ${PIDS[0]} ${PIDS[1]} 2>/dev/null || true

summary() {  # NAME: the tries that started during the attack, by status, and their p99 and slowest times
  python3 - "$OUT-$1.txt" "$OUT-window.txt" <<'PY'
import sys, collections
start, end = (float(l) for l in open(sys.argv[2]))
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 3]
rows = [r for r in rows if start <= float(r[0]) <= end]
codes = collections.Counter(r[1] for r in rows)
t = sorted(float(r[2]) for r in rows) or [0.0]
p99 = t[min(len(t) - 1, int(len(t) * 0.99))]
silent = sum(float(r[2]) for r in rows if r[1] == "000")
print(f"during the attack ({end - start:.0f} s): {len(rows)} tries, statuses {dict(codes)}, p99 {p99*1000:.0f} ms, slowest {t[-1]*1000:.0f} ms; "
      f"{silent:.0f} s spent waiting on tries that got no answer (000) within 10 s")
PY
}
echo "healthz (admin): $(summary healthz)"
echo "snapshot (public, fresh connections): $(summary snapshot)"
echo "real clients: $(cat $OUT-clients.txt)"
for i in $(seq 1 $PROCS); do echo "attacker $i: $(cat $OUT-attack-$i.txt)"; done
echo "server: peak RSS $(awk '/VmHWM/{print $2}' /proc/$SRV/status) KiB, now $(rss_kib) KiB"
echo "metrics: $(metrics '^livemap_sockets_|^livemap_connections\{transport="ws"\}')"
