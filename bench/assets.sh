#!/usr/bin/env bash
# Serving assets, the daemon against nginx on the same machine, from the same files on disk
# (both in the page cache): a 1 MiB asset (a PDF of random bytes) fetched whole, and random
# 1 MiB windows of a 50 MiB video (an MP4 of random bytes) by `Range` requests, 100 kept-alive
# connections, wrk (-t2, SECONDS each; bench/load/ranges.lua, fixed seed: the same windows for
# both). The daemon serves `GET /api/v1/blobs/{sha256}` with a read key, inference and rate
# limits off; nginx (worker_processes 2, sendfile on, access log off) serves copies of the
# stored files. Reports requests/s, MB/s, p50/p99 and the daemon / nginx ratio (goal >= 0.5).
#
#   bench/assets.sh [SECONDS=15] [CONNECTIONS=100]
#
# PERF=1 also records the daemon with `perf record -g` during the 1 MiB run and prints the
# hottest symbols (the full report is left in bench/assets-perf.data).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

seconds="${1:-15}" conns="${2:-100}"
cargo build -q --workspace --bins
command -v nginx >/dev/null || ensure_packages nginx-light
ensure_packages wrk curl
ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) nginx_port=$(free_port)

work="$(mktemp -d)"; chmod 755 "$work"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import os, struct, sys
work = sys.argv[1]
with open(f"{work}/small.pdf", "wb") as f:
    f.write(b"%PDF-1.4\n" + os.urandom(1024 * 1024 - 9))
size = 50 * 1024 * 1024
ftyp = struct.pack(">I", 24) + b"ftypisom" + b"\0\0\0\0" + b"iso2mp41"
with open(f"{work}/video.mp4", "wb") as f:
    f.write(ftyp + struct.pack(">I", size - len(ftyp)) + b"free" + os.urandom(size - len(ftyp) - 8))
PY

env NEXUS_SERVER__PORT=$port NEXUS_STORE__DATA_DIR="$work/data" NEXUS_LOG__LEVEL=warn \
    NEXUS_INFERENCE__ENABLED=false NEXUS_RATE_LIMITS__ENABLED=false \
    "$daemon_bin" serve 2>"$work/daemon.log" &
daemon=$!; pids+=($daemon)
base="http://127.0.0.1:$port"
until curl -sf "$base/ready" >/dev/null; do sleep 0.05; done
write_key=$(NEXUS_STORE__DATA_DIR="$work/data" "$daemon_bin" keys create --name up --scope write 2>/dev/null)
read_key=$(NEXUS_STORE__DATA_DIR="$work/data" "$daemon_bin" keys create --name bench --scope read 2>/dev/null)
project=$(curl -sf -H "Authorization: Bearer $write_key" -H 'Content-Type: application/json' \
    -d '{"name":"assets"}' "$base/api/v1/projects" | sed 's/.*"id":"\([^"]*\)".*/\1/')
mkdir -p "$work/www"
for name in small.pdf video.mp4; do
    curl -sf -H "Authorization: Bearer $write_key" -H 'Content-Type: application/octet-stream' \
        --data-binary "@$work/$name" "$base/api/v1/projects/$project/assets?filename=$name" >/dev/null
    sha=$(sha256sum "$work/$name" | cut -d' ' -f1)
    eval "sha_${name%%.*}=$sha"
    # nginx serves a copy of the very file the daemon stored.
    cp "$work/data/assets/sha256/${sha:0:2}/${sha:2:2}/$sha" "$work/www/$name"
done

cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
user root;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
    uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
    types { application/pdf pdf; video/mp4 mp4; }
    server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
NGINX
mkdir -p "$work/tmp"
nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" & pids+=($!)
until curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/small.pdf"; do sleep 0.05; done

video_bytes=$(stat -c %s "$work/video.mp4")
check=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -r 0-1048575 \
    -H "Authorization: Bearer $read_key" "$base/api/v1/blobs/$sha_video")
[ "$check" = "206 1048576" ] || { echo "daemon range check failed: $check" >&2; exit 1; }

run() {  # name url path file_bytes range_bytes [auth header]
    local name=$1 url=$2 path=$3 bytes=$4 window=$5; shift 5
    ASSET_PATH=$path FILE_BYTES=$bytes RANGE_BYTES=$window wrk -t2 -c"$conns" -d"${seconds}s" \
        --timeout 20s --latency -s bench/load/ranges.lua "$@" "$url" > "$work/$name.txt" 2>&1
    echo "$name: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}
auth=(-H "Authorization: Bearer $read_key")
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${PERF:-0}" = 1 ]; then
    perf record -q -g -o bench/assets-perf.data -p "$daemon" -- sleep "$seconds" 2>/dev/null &
    perf_pid=$!
fi
run d-small "$base" "/api/v1/blobs/$sha_small" 1048576 0 "${auth[@]}"
if [ "${PERF:-0}" = 1 ]; then
    wait "$perf_pid"
    perf report -i bench/assets-perf.data --no-children --percent-limit 1.5 --stdio \
        -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
fi
run n-small "http://127.0.0.1:$nginx_port" /small.pdf 1048576 0
run d-video "$base" "/api/v1/blobs/$sha_video" "$video_bytes" 1048576 "${auth[@]}"
run n-video "http://127.0.0.1:$nginx_port" /video.mp4 "$video_bytes" 1048576

rps() { awk '/Requests\/sec/ {print $2}' "$work/$1.txt"; }
mbs() { awk '/Transfer\/sec/ {v=$2; u=substr(v, length(v)-1); n=v+0; if (u=="GB") n*=1024; if (u=="KB") n/=1024; printf "%.0f", n * 1.048576}' "$work/$1.txt"; }
pct() { awk -v p="$2" '$1 == p {print $2}' "$work/$1.txt"; }
bad() { awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$work/$1.txt"; }
printf '\n%s; %s connections, %s s each; load average after: %s\n\n' "$(date -u +%FT%TZ)" "$conns" "$seconds" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-28s | %-30s | %-30s | %-14s |\n' what nexus-canvasd nginx "ratio (req/s)"
printf '|---|---|---|---|\n'
for what in small video; do
    label=$([ $what = small ] && echo "1 MiB asset, whole" || echo "50 MiB video, 1 MiB ranges")
    d="$(rps d-$what) req/s, $(mbs d-$what) MB/s, p50 $(pct d-$what 50%) p99 $(pct d-$what 99%)"
    n="$(rps n-$what) req/s, $(mbs n-$what) MB/s, p50 $(pct n-$what 50%) p99 $(pct n-$what 99%)"
    printf '| %-28s | %-30s | %-30s | %-14s |\n' "$label" "$d" "$n" \
        "$(echo "scale=2; $(rps d-$what) / $(rps n-$what)" | bc)"
    for side in d n; do
        if [ -n "$(bad $side-$what)" ]; then echo "  $side-$what: $(bad $side-$what)"; fi
    done
done
