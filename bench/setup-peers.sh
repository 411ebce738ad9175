#!/usr/bin/env bash
# Create the virtualenv that bench/peers.py runs in and install bench/requirements-peers.txt.
#
#   bench/setup-peers.sh
#   "${BENCH_VENV:-/work/bench-venv}/bin/python" bench/peers.py [OPTIONS]
#
# The virtualenv lives outside the repository: $BENCH_VENV, default /work/bench-venv. $PYTHON
# (default python3) creates it. Idempotent: an existing virtualenv is reused and pip installs
# only what is missing or at another version. Needs PyPI; the default torch wheel brings the
# CUDA libraries, about 6 GB, so the first run takes minutes.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${BENCH_VENV:-/work/bench-venv}"

if [[ ! -x "${venv}/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv "${venv}"
fi
"${venv}/bin/python" -m pip install --quiet --requirement "${script_dir}/requirements-peers.txt"
echo "peers virtualenv ready: ${venv}"
