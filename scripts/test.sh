#!/usr/bin/env bash
# Installs what is missing and runs every check and test: formatting,
# lints, the generated-code check, unit and integration tests, the wasm
# build, promtool's linter over a demo server's /metrics, and the
# end-to-end test in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*" >&2; }

step "setup"
scripts/setup.sh

step "generated FlatBuffers code is current"
tmp=$(mktemp -d)
flatc --rust --gen-all -o "$tmp" wire/schema/livemap.fbs
diff -u wire/src/livemap_generated.rs "$tmp/livemap_generated.rs"
rm -rf "$tmp"

step "cargo fmt"
cargo fmt --all -- --check

step "wasm build"
scripts/build-wasm.sh

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "page unit tests (node)"
node --test e2e/timeline.test.mjs e2e/moments.test.mjs

step "release build (for the metrics lint and the end-to-end test)"
cargo build --release -p livemap-server

step "/metrics of a demo server passes promtool's linter (tools/promcheck)"
coproc SERVER { exec target/release/livemap --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --demo-rate 1000 2>/dev/null; }
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
# Its first line names the ports it bound.
read -r -t 30 started <&"${SERVER[0]}"
admin=$(sed -n 's|.*(admin on http://\([^/]*\)/).*|\1|p' <<<"$started")
[ -n "$admin" ] || { echo "no admin address in: $started" >&2; exit 1; }
# Scraped once an order is counted, so that every family it has is there;
# nothing signals that, so the scrape is tried for at most 20 s.
scrape=$(mktemp)
for _ in $(seq 100); do
  curl -sf "http://$admin/metrics" >"$scrape" || true
  [ "$(awk '/^livemap_orders /{print $2}' "$scrape")" -gt 0 ] 2>/dev/null && break
  sleep 0.2
done
grep -q '^livemap_events_total{outcome="accepted"} [1-9]' "$scrape" || { echo "no order counted on /metrics:" >&2; cat "$scrape" >&2; exit 1; }
"$HOME/.cache/livemap/bin/promcheck" <"$scrape"
echo "$(grep -c '^# TYPE' "$scrape") families, no problem" >&2
kill "$SERVER_PID"
wait "$SERVER_PID" || true
trap - EXIT

step "the operator's kit: alert rules (promtool) and the Grafana dashboard"
"$HOME/.cache/livemap/bin/promtool" check rules ops/prometheus/livemap-alerts.yml
"$HOME/.cache/livemap/bin/promtool" test rules ops/prometheus/livemap-alerts.test.yml
python3 tools/check-ops.py "$scrape" ops/grafana/livemap.json ops/prometheus/livemap-alerts.yml
rm -f "$scrape"

step "end-to-end in headless Chromium"
node e2e/e2e.mjs target/release/livemap
