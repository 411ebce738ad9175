#!/usr/bin/env bash
# Builds every fuzz target (nightly toolchain, cargo-fuzz, AddressSanitizer) and runs each for
# SECONDS_PER_TARGET seconds (default 60), one after the other; prints the executions of each.
# Fails if a target crashes, leaks, times out or runs out of memory, naming the input that did
# it: rerun that input with `$bin/<target> <input>`, and make it a unit test in nexus-formats.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# The corpus grows in $CARGO_TARGET_DIR/fuzz/corpus/<target>, seeded from fuzz/seeds/<target>,
# and reproducers go to $CARGO_TARGET_DIR/fuzz/artifacts/<target>: nothing in the clone is
# written, so a run never dirties the tree.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz/run.sh: SECONDS_PER_TARGET must be a positive whole number, not '$seconds'" >&2
    exit 2
fi

# Fuzzing needs nightly (sanitizer flags); a machine without it must not pass by skipping.
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: FAILED: the nightly toolchain is missing; install it with" \
        "'rustup toolchain install nightly'" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: FAILED: cargo-fuzz is missing; install it with" \
        "'cargo install --locked cargo-fuzz'" >&2
    exit 1
fi

work="$CARGO_TARGET_DIR/fuzz"
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin="$work/$triple/release"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

# Release code with debug assertions and overflow checks, as the daemon's own dev profile
# runs, under AddressSanitizer (cargo-fuzz's defaults).
# cargo-fuzz builds one named target, or all of them.
build_only=()
[ ${#targets[@]} -eq 1 ] && build_only=("${targets[0]}")
cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$work" --target "$triple" \
    "${build_only[@]}"

failed=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target"
    log="$work/logs/$target.log"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    cp -n "fuzz/seeds/$target"/* "$corpus"/ 2>/dev/null || true

    # -timeout: an input that takes 10 s is a hang, reported like a crash; -rss_limit_mb:
    # libFuzzer's default, stated since a decoder's memory is part of what is checked.
    # A dictionary (fuzz/dicts/<target>.dict) gives the tokens a parser compares text with,
    # which coverage alone finds slowly: field names, numbers at the edges of i64.
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
        -artifact_prefix="$artifacts/" -print_final_stats=1)
    [ -f "fuzz/dicts/$target.dict" ] && options+=(-dict="fuzz/dicts/$target.dict")

    status=0
    "$bin/$target" "$corpus" "${options[@]}" >"$log" 2>&1 || status=$?

    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    inputs="$(find "$corpus" -type f | wc -l)"
    if [ "$status" -eq 0 ]; then
        printf 'fuzz %-18s %12s executions in %ss, corpus %s inputs\n' \
            "$target" "${runs:-?}" "$seconds" "$inputs"
    else
        reproducer="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
        printf 'fuzz %-18s FAILED (exit %s) after %s executions\n' \
            "$target" "$status" "${runs:-?}"
        grep -m 2 -E '^(==[0-9]+== ?ERROR|thread .* panicked)' "$log" | sed 's/^/    /' || true
        echo "    reproducer: ${reproducer:-none written; see $log}"
        echo "    rerun:      $bin/$target ${reproducer:-<input>}"
        echo "    log:        $log"
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
