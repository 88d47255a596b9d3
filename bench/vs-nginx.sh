#!/bin/bash
# Long-poll and snapshot requests/s, against nginx serving the same bytes
# as static files, side by side with wrk (apt install nginx wrk).
set -e
source "$(dirname "$0")/lib.sh"
NGX=/tmp/livemap-nginx
mkdir -p $NGX/html $NGX/logs
sed "s|@ROOT@|$NGX|g" bench/nginx.conf > $NGX/nginx.conf
start_server --max-connections-per-ip 0
trap 'kill $SRV 2>/dev/null; nginx -c $NGX/nginx.conf -s stop 2>/dev/null' EXIT
sleep 10
curl -s "http://$PUBLIC/api/poll?v=0&k=0" -o $NGX/html/keyframe.bin
curl -s "http://$PUBLIC/api/snapshot" -o $NGX/html/snapshot.json
ls -l $NGX/html
nginx -c $NGX/nginx.conf
for round in 1 2; do
  for url in "http://127.0.0.1:18081/keyframe.bin" "http://$PUBLIC/api/poll?v=0&k=0" \
             "http://127.0.0.1:18081/snapshot.json" "http://$PUBLIC/api/snapshot"; do
    echo "$url: $(wrk -t2 -c64 -d15s "$url" | grep Requests/sec)"
  done
done
