#!/usr/bin/env bash
# Exact top-k search latency: the WGSL kernel on the wgpu device (lavapipe, software Vulkan,
# where there is no GPU), the CPU path and the single-threaded reference, at 10k, 100k and 1M
# vectors of 384 dims. Prints a Markdown table with p50/p99 per query and each path's speed-up
# over the reference; the raw JSON lines stay in the work directory it names.
#
#   bench/search.sh [SIZES] [K]            (defaults: 10000,100000,1000000 and 10)
#
# Set SEARCH_BENCH_RUNS (default 50) and SEARCH_BENCH_BUDGET_S (default 20: seconds of
# timed queries per path and size, at least 5 queries) to trade precision for time; 1M
# vectors on lavapipe take about a second a query. Memory: about 6 GB at 1M vectors (the
# vectors, the CPU block's copy, the WGSL block's host copy and lavapipe's "device" copy).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

sizes="${1:-10000,100000,1000000}"
k="${2:-10}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

ensure_packages mesa-vulkan-drivers libvulkan1
# The same target set as scripts/test, so no dependency is rebuilt with other features.
cargo build -q --workspace --bins --examples

work="$(mktemp -d)"
echo "raw results: $work/results.jsonl" >&2
"$CARGO_TARGET_DIR/debug/examples/search_bench" --sizes "$sizes" --k "$k" \
    --runs "${SEARCH_BENCH_RUNS:-50}" --budget-s "${SEARCH_BENCH_BUDGET_S:-20}" \
    2> >(tee "$work/log.txt" | grep '^{' >"$work/results.jsonl") \
    | tee "$work/table.md"
