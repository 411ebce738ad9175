# Shared settings for scripts/run, scripts/test and the benches; sourced, not run.
#
# One build directory for every command, outside the clone where the machine allows it, so
# that running, testing and CI reuse one build of the heavy dependencies.

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if [ -d /work ] && [ -w /work ]; then
        export CARGO_TARGET_DIR=/work/target
    else
        export CARGO_TARGET_DIR="$repo_root/target"
    fi
fi
daemon_bin="$CARGO_TARGET_DIR/debug/nexus-canvasd"

# Installs Debian packages that are missing (as root, or through sudo).
ensure_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
