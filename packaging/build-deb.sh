#!/usr/bin/env bash
# Builds the Debian package: target/debian/nexus-canvas_<version>_amd64.deb.
#
#   packaging/build-deb.sh [--deb-version VERSION] [--profile PROFILE] [--output DIR]
#
# By default it packages the `dev` profile, the one profile this repository builds (its
# dependencies, burn above all, are optimised; only our own crates are at opt-level 1), so CI
# and the tests reuse one build instead of compiling burn twice. Release artifacts can pass
# `--profile release` at the cost of that second build.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

profile=dev
output="$CARGO_TARGET_DIR/debian"
deb_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --deb-version) deb_args+=(--deb-version "$2"); shift 2 ;;
        --output) output="$2"; shift 2 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

command -v cargo-deb >/dev/null || cargo install --locked cargo-deb@3.8.0

cargo build --workspace --bins --profile "$profile"
# cargo-deb warns that it will stop packaging the dev profile; 3.8 (pinned above) does it.
mkdir -p "$output"
cargo deb -p nexus-canvasd --profile "$profile" --no-build --strip --fast "${deb_args[@]}" \
    --output "$output/"
