#!/usr/bin/env bash
# Start-up time to ready, idle RSS, and GET throughput/latency of one canvas.
#
#   bench/canvas-get.sh [SECONDS] [CONNECTIONS]      (defaults: 15 s, 100 connections)
#
# Runs the daemon as built by scripts/run (the one dev profile: dependencies optimised) on a
# fresh data directory and a loopback port, with its default logging (one access-log line per
# request, to a file), and drives it with wrk from the same machine.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

duration="${1:-15}"
connections="${2:-100}"
port=18431
ensure_packages wrk curl
cargo build -q --workspace --bins

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export NEXUS_SERVER__PORT=$port NEXUS_STORE__DATA_DIR="$work/data"
# Rate limits stay on, with quotas no load generator here reaches: the run measures what the
# limiter costs, not its refusals. NEXUS_RATE_LIMITS__ENABLED=false measures without it.
for bucket in READ ADDRESS; do
    export "NEXUS_RATE_LIMITS__${bucket}__PER_SECOND=1000000000.0"
    export "NEXUS_RATE_LIMITS__${bucket}__BURST=1000000000"
done
base="http://127.0.0.1:$port"

# Start-up: from spawn to the first 200 on /ready (the store is open and migrated).
"$daemon_bin" migrate >/dev/null    # so start-up does not include creating the schema
start_ns=$(date +%s%N)
"$daemon_bin" serve 2>"$work/daemon.log" &
pid=$!
until curl -sf "$base/ready" >/dev/null; do sleep 0.002; done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))

sleep 2
idle_rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

key=$("$daemon_bin" keys create --name bench --scope write)
auth="Authorization: Bearer $key"
project=$(curl -sf -H "$auth" -H 'Content-Type: application/json' -d '{"name":"bench"}' \
    "$base/api/v1/projects" | sed 's/.*"id":"\([^"]*\)".*/\1/')
document='{"title":"Hero","document":{"layers":[{"type":"text","text":"Spring sale","x":10,"y":20}]}}'
canvas=$(curl -sf -H "$auth" -H 'Content-Type: application/json' -d "$document" \
    "$base/api/v1/projects/$project/canvases" | sed 's/.*"id":"\([^"]*\)".*/\1/')

wrk -t2 -c"$connections" -d"${duration}s" --latency -H "$auth" \
    "$base/api/v1/canvases/$canvas" > "$work/wrk.txt"
loaded_rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

cat "$work/wrk.txt"
echo
echo "start-up to ready:      ${ready_ms} ms"
echo "RSS idle / after load:  $((idle_rss_kib / 1024)) MiB / $((loaded_rss_kib / 1024)) MiB"
echo "requests/s:             $(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")"
echo "p50 / p99 latency:      $(awk '$1 == "50%" {print $2}' "$work/wrk.txt") / $(awk '$1 == "99%" {print $2}' "$work/wrk.txt")"
echo "non-2xx answers:        $(awk '/Non-2xx/ {print $5}' "$work/wrk.txt" | grep . || echo 0)"
