#!/usr/bin/env bash
# Tests the Debian package on this machine, as root: build two versions, lint them, install,
# check what the install created, run the installed daemon, upgrade (with the pre-upgrade
# backup), downgrade, remove (data kept) and purge (data gone). systemd is not PID 1 here, so
# the daemon is started directly, as the unit would start it.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

if [ "$(id -u)" -ne 0 ]; then
    echo "test-deb.sh: must run as root (it installs the package)" >&2
    exit 1
fi

fail() { echo "test-deb.sh: FAIL: $*" >&2; exit 1; }
step() { echo "test-deb.sh: $*"; }

port=18471
url="http://127.0.0.1:$port"
config=/etc/nexus-canvas/config.toml
state=/var/lib/nexus-canvas
daemon_pid=""

cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    dpkg -P nexus-canvas >/dev/null 2>&1 || true
}
trap cleanup EXIT
dpkg -P nexus-canvas >/dev/null 2>&1 || true

start_daemon() {
    # setpriv execs (runuser would stay the parent), so the PID is the daemon's own.
    NEXUS_SERVER__PORT=$port setpriv --reuid=nexus-canvas --regid=nexus-canvas --init-groups \
        nexus-canvasd --config "$config" serve >"$scratch/daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do
        curl -fsS "$url/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$scratch/daemon.log" >&2
    fail "the installed daemon did not answer /health"
}

stop_daemon() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || fail "the daemon did not exit cleanly on SIGTERM"
    daemon_pid=""
}

mode_owner() { stat -c '%a %U:%G' "$1"; }
expect_mode() {
    [ "$(mode_owner "$1")" = "$2" ] || fail "$1 is $(mode_owner "$1"), expected $2"
}

scratch=$(mktemp -d)
step "building 0.1.0-1 and 0.1.1-1"
packaging/build-deb.sh --output "$scratch/old" >/dev/null 2>&1
packaging/build-deb.sh --deb-version 0.1.1-1 --output "$scratch/new" >/dev/null 2>&1
old="$scratch/old/nexus-canvas_0.1.0-1_amd64.deb"
new="$scratch/new/nexus-canvas_0.1.1-1_amd64.deb"

step "lintian"
lintian --fail-on error,warning --suppress-tags initial-upload-closes-no-bugs "$old"

step "systemd-analyze security"
# --threshold is ten times the score: fail above 1.9 ("OK" starts below 5).
systemd-analyze security --offline=true --threshold=19 packaging/nexus-canvasd.service \
    >"$scratch/security.txt" || fail "$(tail -1 "$scratch/security.txt")"
step "$(grep 'Overall exposure level' "$scratch/security.txt")"

step "install $old"
dpkg -i "$old" >"$scratch/install.log" 2>&1 || { cat "$scratch/install.log"; fail "dpkg -i"; }
getent passwd nexus-canvas >/dev/null || fail "no nexus-canvas user"
getent group nexus-canvas >/dev/null || fail "no nexus-canvas group"
expect_mode "$state" "750 nexus-canvas:nexus-canvas"
expect_mode "$state/models" "750 nexus-canvas:nexus-canvas"
expect_mode /var/log/nexus-canvas "750 nexus-canvas:nexus-canvas"
expect_mode "$config" "640 root:nexus-canvas"
expect_mode /etc/nexus-canvas/admin.key "600 root:root"
expect_mode "$state/nexus-canvas.db" "600 nexus-canvas:nexus-canvas"
grep -qx "$config" /var/lib/dpkg/info/nexus-canvas.conffiles || fail "$config is not a conffile"
[ -f /usr/lib/systemd/system/nexus-canvasd.service ] || fail "the unit is not installed"
systemd-analyze verify /usr/lib/systemd/system/nexus-canvasd.service \
    || fail "systemd-analyze verify on the installed unit"

key=$(cat /etc/nexus-canvas/admin.key)
start_daemon
project=$(curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"name": "kept across upgrades"}' "$url/api/v1/projects")
project_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$project")

step "upgrade to $new while the daemon runs"
dpkg -i "$new" >"$scratch/upgrade.log" 2>&1 || { cat "$scratch/upgrade.log"; fail "upgrade"; }
backup=$(ls "$state"/backups/pre-upgrade-from-0.1.0-1-*.db 2>/dev/null | head -1)
[ -n "$backup" ] || fail "the upgrade took no backup"
python3 - "$backup" "$project_id" <<'PY' || fail "the backup lacks the project"
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("SELECT id FROM projects WHERE id = ?", (sys.argv[2],))
sys.exit(0 if rows.fetchone() else 1)
PY
[ "$(dpkg-query -W -f='${Version}' nexus-canvas)" = 0.1.1-1 ] || fail "not upgraded"
[ "$(cat /etc/nexus-canvas/admin.key)" = "$key" ] || fail "the upgrade replaced the admin key"
stop_daemon

step "downgrade to $old"
dpkg -i "$old" >"$scratch/downgrade.log" 2>&1 || { cat "$scratch/downgrade.log"; fail "downgrade"; }
[ "$(dpkg-query -W -f='${Version}' nexus-canvas)" = 0.1.0-1 ] || fail "not downgraded"
start_daemon
curl -fsS -H "Authorization: Bearer $key" "$url/api/v1/projects/$project_id" >/dev/null \
    || fail "the project is gone after the downgrade"
stop_daemon

step "a downgrade over a newer schema stops with the way back, which works"
dpkg -i "$new" >/dev/null 2>&1 || fail "second upgrade"
# Stands for a migration that only the newer release knows.
python3 - "$state/nexus-canvas.db" <<'PY'
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as db:
    db.execute("INSERT INTO schema_migrations VALUES (9999, 'from 0.1.1', '')")
PY
if dpkg -i "$old" >"$scratch/refused.log" 2>&1; then
    fail "the older package accepted a newer schema"
fi
grep -q "9999" "$scratch/refused.log" \
    || { cat "$scratch/refused.log"; fail "no schema versions named"; }
grep -q "restore the newest file in $state/backups" "$scratch/refused.log" \
    || fail "the way back is not printed"
# The rollback procedure of docs/operations.md.
newest=$(ls -t "$state"/backups/pre-upgrade-from-0.1.0-1-*.db | head -1)
mv "$state/nexus-canvas.db" "$state/nexus-canvas.db.newer"
rm -f "$state/nexus-canvas.db-wal" "$state/nexus-canvas.db-shm"
install -o nexus-canvas -g nexus-canvas -m 0600 "$newest" "$state/nexus-canvas.db"
dpkg --configure -a >/dev/null || fail "dpkg --configure -a after restoring the backup"
start_daemon
curl -fsS -H "Authorization: Bearer $key" "$url/api/v1/projects/$project_id" >/dev/null \
    || fail "the project is gone after the rollback"
stop_daemon

step "remove keeps the data"
dpkg -r nexus-canvas >/dev/null
[ -f "$state/nexus-canvas.db" ] || fail "remove deleted the database"
[ -f "$config" ] || fail "remove deleted the conffile"

step "purge says what it deletes, then deletes it"
dpkg -P nexus-canvas >"$scratch/purge.log" 2>&1
grep -q "purge: deleting /var/lib/nexus-canvas" "$scratch/purge.log" || fail "purge said nothing"
[ ! -e "$state" ] || fail "purge left $state"
[ ! -e /etc/nexus-canvas ] || fail "purge left /etc/nexus-canvas"

step "passed"
