#!/usr/bin/env bash
# CUDA smoke test: every irob stage at tiny size with --device cuda, one JSON line per stage (wall seconds and
# peak GPU memory), outputs under "${OUT:-/tmp}/cuda-smoke". Run from the repository root with the package
# installed:   bash benchmarks/cuda_smoke.sh
# Fails loudly (non-zero exit, reason on stderr) when CUDA is absent or any stage fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-python}"
if ! "$PY" -c "import intrinsic_robustness" 2>/dev/null; then
    if [ -d src/intrinsic_robustness ]; then
        export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
        echo "cuda_smoke: package not installed; using $PWD/src" >&2
    fi
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "cuda_smoke: FAILED: CUDA is not available to $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1); run this on a machine with an NVIDIA GPU and a CUDA build of torch" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
exec "$PY" benchmarks/cuda_smoke.py --device cuda "$@"
