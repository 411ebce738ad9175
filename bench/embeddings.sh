#!/usr/bin/env bash
# Embedding speed, side by side in one run so that the figures compare: the model in process
# (CPU backend, and wgpu), the daemon over HTTP, sentence-transformers (PyTorch) and ONNX
# Runtime, all with the same thread count on the same sentences; then each WGSL kernel
# against burn's composition of the same operation. Prints a Markdown report; the raw JSON
# lines stay in the work directory it names.
#
#   bench/embeddings.sh [SENTENCES] [THREADS]        (defaults: 1024 sentences, 2 threads)
#
# Set BENCH_WGPU_SENTENCES to bound the wgpu run (default: SENTENCES); on software Vulkan it
# is about ten times slower than the CPU backend and proves correctness, not speed.
# The peers run in a virtualenv made by bench/setup-peers.sh (a PyTorch wheel, several GB).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$repo_root"

sentences="${1:-1024}"
threads="${2:-2}"
wgpu_sentences="${BENCH_WGPU_SENTENCES:-$sentences}"
port=18432
venv="${BENCH_VENV:-/work/bench-venv}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# Every thread pool of every contender (rayon for burn's ndarray backend and the tokenizers).
export RAYON_NUM_THREADS="$threads"

ensure_packages mesa-vulkan-drivers libvulkan1 curl
models/fetch.sh >&2
bench/setup-peers.sh >&2
# The same target set as scripts/test, so no dependency is rebuilt with other features.
cargo build -q --workspace --bins --examples

work="$(mktemp -d)"
results="$work/results.jsonl"
daemon=""
trap '[ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true' EXIT
echo "raw results: $results" >&2

# The model in process.
"$CARGO_TARGET_DIR/debug/examples/bench" embed cpu "$sentences" >>"$results"
"$CARGO_TARGET_DIR/debug/examples/bench" embed wgpu "$wgpu_sentences" 50 >>"$results"

# The daemon over HTTP, CPU backend, cache off (the bench repeats its inputs).
export NEXUS_SERVER__PORT=$port NEXUS_STORE__DATA_DIR="$work/data"
export NEXUS_INFERENCE__DEVICE=cpu NEXUS_INFERENCE__CACHE_BYTES=0
key="$("$daemon_bin" keys create --name bench --scope read)"
"$daemon_bin" serve 2>"$work/daemon.log" &
daemon=$!
until curl -sf "http://127.0.0.1:$port/ready" >/dev/null; do
    kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.2
done
python3 bench/http_embeddings.py --url "http://127.0.0.1:$port" --key "$key" --label cpu \
    --sentences "$sentences" >>"$results"
kill "$daemon"
wait "$daemon" || true

# The peers.
"$venv/bin/python" bench/peers.py --threads "$threads" --sentences "$sentences" >>"$results"

# The kernels.
"$CARGO_TARGET_DIR/debug/examples/bench" kernels >>"$results"

python3 bench/report.py "$results"
