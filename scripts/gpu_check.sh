#!/usr/bin/env bash
# The test suite on a GPU server: every test binary of the workspace (built
# here by scripts/gpu_prepare.sh, with the cuda-tests feature), so that the
# server runs the real tests — the CPU suite, which must pass unchanged on a
# machine with a GPU, and tests/cuda.rs + crates/infer/tests/cuda.rs, which
# compare CUDA with the CPU. Run from the repo root, with .dev carried:
#   bash scripts/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
# Needs python3 with torch 2.11 (its libtorch is used through
# LD_LIBRARY_PATH). OpenSlide 4 comes from the openslide-bin wheel in .dev/.
# `--cuda-only` runs just the CUDA tests (when the device time left is short:
# the rest of the suite runs in CI as well).
set -uo pipefail
cuda_only=0
[ "${1:-}" = "--cuda-only" ] && cuda_only=1
cd "$(dirname "$0")/.."
here=$(pwd)
if [ ! -f .dev/tests/MANIFEST ] && [ -f .dev/tests.tar.xz ]; then
    python3 - .dev/tests.tar.xz .dev <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    try:
        t.extractall(sys.argv[2], filter="data")
    except TypeError:  # a Python without extraction filters
        t.extractall(sys.argv[2])
PY
fi
[ -f .dev/tests/MANIFEST ] || { echo "no .dev/tests: run scripts/gpu_prepare.sh first" >&2; exit 1; }

echo "== environment"
nvidia-smi -L || echo "nvidia-smi: no GPU"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
libs=$torch_lib
# The binaries link OpenSlide 4 (libopenslide.so.1) from the openslide-bin wheel.
if ! ldconfig -p | grep -q libopenslide.so.1; then
    wheel=$(ls .dev/openslide_bin-*.whl 2>/dev/null | head -n1)
    [ -n "$wheel" ] || { echo "no OpenSlide: put the openslide-bin wheel in .dev/" >&2; exit 1; }
    rm -rf /tmp/openslide-bin && python3 -m zipfile -e "$wheel" /tmp/openslide-bin
    so=$(find /tmp/openslide-bin -name 'libopenslide.so.1*' | head -n1)
    libs=$libs:$(dirname "$so")
    echo "OpenSlide from $wheel"
fi
export LD_LIBRARY_PATH=$PWD/.dev/lib:$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
. scripts/gpu_env.sh

# The test binaries name the repository and the wsiseg binary by the paths
# they were built at: put this copy there.
root=$(cat .dev/tests/ROOT)
if [ "$root" != "$here" ]; then
    if [ -e "$root" ] && [ "$(readlink -f "$root")" != "$here" ]; then
        echo "$root exists and is not this checkout: run from a copy there" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$root")" && ln -sfn "$here" "$root"
fi
mkdir -p target/release && cp --remove-destination .dev/wsiseg target/release/wsiseg

# Test binaries that need what a closed GPU server lacks and cannot install
# (no network), and that check nothing of the GPU: they run in CI.
#   html: Debian's Chromium · slurm: slurm-wlm and munge ·
#   models, report, python: the setup's Python environment (smp/MONAI
#   exports, jsonschema, the built wsiseg module) · view: Chromium
skip=" html slurm models report python view "
# The CUDA tests first: they are what only this machine can run.
order=$( (grep -E ' cuda-[0-9a-f]+$' .dev/tests/MANIFEST; grep -vE ' cuda-[0-9a-f]+$' .dev/tests/MANIFEST) )

status=0
while read -r package binary; do
    if [[ "$skip" == *" ${binary%-*} "* ]]; then
        echo "== $package: $binary skipped (needs software a closed GPU server lacks; runs in CI)"
        continue
    fi
    if [ "$cuda_only" = 1 ] && [ "${binary%-*}" != cuda ]; then
        continue
    fi
    echo "== $package: $binary"
    start=$(date +%s)
    (cd "$root/$package" && "$here/.dev/tests/$binary" 2>&1)
    rc=$?
    echo "-- $binary: exit $rc in $(( $(date +%s) - start )) s"
    [ "$rc" -eq 0 ] || status=1
done <<< "$order"
echo "gpu_check status $status"
exit $status
