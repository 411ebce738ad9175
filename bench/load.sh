#!/usr/bin/env bash
# Load with many simultaneous users on loopback: one wrk per route class, all at once, so each
# class gets its own latency distribution. Reads and writes of canvases and embeddings of short
# sentences, by default 800 + 150 + 50 = 1,000 connections for 30 s, the load generator on the
# same machine as the daemon. Reports requests/s, non-2xx answers and p50/p99 per class, and
# the daemon's CPU and peak RSS.
#
#   bench/load.sh [SECONDS] [READERS] [WRITERS] [EMBEDDERS]
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

duration="${1:-30}" readers="${2:-800}" writers="${3:-150}" embedders="${4:-50}"
port=18432
ensure_packages wrk curl
models/fetch.sh >/dev/null
cargo build -q --workspace --bins
# A thousand connections need as many descriptors on each side; raise the soft limit to the
# hard one.
ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export NEXUS_SERVER__PORT=$port NEXUS_STORE__DATA_DIR="$work/data" NEXUS_LOG__LEVEL=warn
# Quotas above what this load asks: the run measures the daemon, not the limiter's refusals.
for bucket in READ WRITE INFERENCE ADDRESS; do
    export "NEXUS_RATE_LIMITS__${bucket}__PER_SECOND=1000000000.0"
    export "NEXUS_RATE_LIMITS__${bucket}__BURST=1000000000"
done
base="http://127.0.0.1:$port"

"$daemon_bin" serve 2>"$work/daemon.log" &
pid=$!
until curl -sf "$base/ready" >/dev/null; do sleep 0.05; done

key=$("$daemon_bin" keys create --name load --scope write)
auth="Authorization: Bearer $key"
json='Content-Type: application/json'
project=$(curl -sf -H "$auth" -H "$json" -d '{"name":"load"}' "$base/api/v1/projects" \
    | sed 's/.*"id":"\([^"]*\)".*/\1/')
for n in $(seq 200); do
    # -w: one id per line (the answer itself ends without a newline).
    curl -sf -w '\n' -H "$auth" -H "$json" \
        -d "{\"title\":\"seed $n\",\"document\":{\"n\":$n}}" \
        "$base/api/v1/projects/$project/canvases" | sed 's/.*"id":"\([^"]*\)".*/\1/'
done > "$work/canvases"
export LOAD_PROJECT=$project LOAD_CANVASES="$work/canvases"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks_before=$(cpu_ticks)
(while sleep 0.5; do awk '/VmRSS/ {print $2}' "/proc/$pid/status"; done) > "$work/rss" &
sampler=$!

run() {  # class connections script
    wrk -t1 -c"$2" -d"${duration}s" --timeout 20s --latency -H "$auth" -s "bench/load/$3" \
        "$base" > "$work/$1.txt" 2>&1
}
runs=()
run reads "$readers" reads.lua & runs+=($!)
run writes "$writers" writes.lua & runs+=($!)
run embeddings "$embedders" embeddings.lua & runs+=($!)
wait "${runs[@]}"
kill "$sampler" 2>/dev/null || true

ticks_after=$(cpu_ticks)
peak_rss=$(sort -n "$work/rss" | tail -1)
cpu=$(awk -v t=$((ticks_after - ticks_before)) -v d="$duration" 'BEGIN {printf "%.0f", t / d}')

printf '%-11s %6s %10s %9s %10s %10s\n' class conns "req/s" non-2xx p50 p99
for class in reads writes embeddings; do
    file="$work/$class.txt"
    conns=$(awk '/connections/ {print $4; exit}' "$file")
    rps=$(awk '/Requests\/sec/ {print $2}' "$file")
    errors=$(awk '/Non-2xx/ {print $5}' "$file" | grep . || echo 0)
    timeouts=$(awk '/Socket errors/ {print $0}' "$file")
    printf '%-11s %6s %10s %9s %10s %10s %s\n' "$class" "$conns" "$rps" "$errors" \
        "$(awk '$1 == "50%" {print $2}' "$file")" "$(awk '$1 == "99%" {print $2}' "$file")" \
        "$timeouts"
done
echo "daemon CPU: ${cpu}% of one core; peak RSS: $((peak_rss / 1024)) MiB"
