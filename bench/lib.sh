# Shared by the fan-out benchmarks (see docs/BENCHMARKS.md): a fresh release
# server on fixed ports, and the load tester pointed at it. Build first:
#   cargo build --release -p livemap-server -p livemap-loadtest
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PUBLIC=127.0.0.1:18080
ADMIN=127.0.0.1:19091

# start_server [livemap flags...]: waits for the ports to be free, starts the
# server on the demo source, and stops it when the script exits.
# SERVER_NOFILE=N starts it with an open-file limit of N (soft and hard).
# LIVEMAP_BIN=path runs another build (say, an older commit's).
start_server() {
  while ss -ltn | grep -qE ":(18080|19091) "; do sleep 0.5; done
  ${SERVER_NOFILE:+prlimit --nofile=$SERVER_NOFILE:$SERVER_NOFILE} \
    "${LIVEMAP_BIN:-target/release/livemap}" --listen $PUBLIC --admin-listen $ADMIN --demo-seed 7 "$@" \
    > /tmp/livemap-bench-server.log 2>&1 &
  SRV=$!
  trap 'kill $SRV 2>/dev/null' EXIT
  until curl -sf http://$PUBLIC/healthz >/dev/null; do kill -0 $SRV || exit 1; sleep 0.2; done
}

# wait_live [orders/s]: the demo's backfill is over once orders grow by
# less than this a second.
wait_live() {
  local live=${1:-5000} prev=0 cur grew
  while true; do
    cur=$(curl -s http://$ADMIN/metrics | awk '/^livemap_orders /{print $2}')
    grew=$(python3 -c "print(int(float('$cur') - float('$prev')))")
    prev=$cur
    [ "$grew" -gt 0 ] && [ "$grew" -lt "$live" ] && return
    sleep 1
  done
}

clients() { target/release/livemap-loadtest clients --url http://$PUBLIC "$@"; }
metrics() { curl -s http://$ADMIN/metrics | grep -E "$1" | tr '\n' ' '; echo; }
rss_kib() { awk '/VmRSS/{print $2}' /proc/$SRV/status; }
