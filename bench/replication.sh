#!/usr/bin/env bash
# Replication to S3 under write load, against moto's S3 server on loopback: how long a write
# that asks for `Prefer: durability=replicated` waits (commit to object in S3), alone and with
# many writers at once, how many uploads they share (group commit), and how long a restore of
# the result takes. The ship interval is the default, 1 s.
#
#   bench/replication.sh [WRITERS] [WRITES_PER_WRITER]
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

writers="${1:-64}" per_writer="${2:-10}"
port=18532 s3_port=18533
cargo build -q -p nexus-canvasd --bin nexus-canvasd
command -v moto_server >/dev/null || python3 -m pip install --quiet 'moto[server]==5.*'

work="$(mktemp -d)"
trap 'kill "$daemon" "$s3" 2>/dev/null || true; rm -rf "$work"' EXIT
moto_server -H 127.0.0.1 -p $s3_port >/dev/null 2>&1 &
s3=$!
until curl -s "http://127.0.0.1:$s3_port" >/dev/null; do sleep 0.2; done
curl -s -X PUT "http://127.0.0.1:$s3_port/bench" >/dev/null

export NEXUS_SERVER__PORT=$port NEXUS_STORE__DATA_DIR="$work/data" NEXUS_LOG__LEVEL=warn
export NEXUS_INFERENCE__ENABLED=false NEXUS_RATE_LIMITS__ENABLED=false
export NEXUS_REPLICATION__S3__ENABLED=true NEXUS_REPLICATION__S3__URL=s3://bench/appliance
export NEXUS_REPLICATION__S3__ENDPOINT="http://127.0.0.1:$s3_port"
export NEXUS_REPLICATION__S3__ALLOW_HTTP=true NEXUS_REPLICATION__S3__ACCESS_KEY_ID=bench
export NEXUS_REPLICATION__S3__SECRET_ACCESS_KEY=bench
"$daemon_bin" serve 2>"$work/daemon.log" &
daemon=$!
until curl -sf "http://127.0.0.1:$port/ready" >/dev/null; do sleep 0.2; done
key=$("$daemon_bin" keys create --name bench --scope write)

python3 bench/replication.py "http://127.0.0.1:$port" "$key" \
    "http://127.0.0.1:$s3_port/bench" "$writers" "$per_writer"

started=$(date +%s.%N)
"$daemon_bin" restore --into "$work/restored.db" >/dev/null
echo "restore of the latest state: $(echo "$(date +%s.%N) - $started" | bc) s," \
     "$(stat -c %s "$work/data/nexus-canvas.db") bytes of database"
