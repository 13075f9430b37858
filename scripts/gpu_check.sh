#!/usr/bin/env bash
# One-call GPU check (issue 2): on a GPU server without Rust or OpenSlide,
# segment tests/data/default.svs on CUDA and on the CPU with the same binary,
# and report how many mask pixels agree.
#
# Prepare here (see shared/GPU.md), then run this script there from the repo root:
#   strip -o .dev/wsiseg target/release/wsiseg
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -d .dev openslide-bin==4.0.1.2
#   (device) bash scripts/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log   # carry .dev
#
# Needs python3 with torch 2.11 (its libtorch is used through LD_LIBRARY_PATH)
# and Pillow. OpenSlide comes from the system, or from the openslide-bin wheel
# in .dev/ behind a libopenslide.so.0 link.
set -uo pipefail
cd "$(dirname "$0")/.."
# Masks and per-run logs go to WORK (not $OUT, which the device tool limits to 8 files).
WORK=${WSISEG_GPU_WORK:-/tmp/wsiseg-gpu-check}
mkdir -p "$WORK"
BIN=${WSISEG_BIN:-.dev/wsiseg}
[ -x "$BIN" ] || BIN=target/release/wsiseg
SLIDE=tests/data/default.svs

echo "== environment"
nvidia-smi -L || echo "nvidia-smi: no GPU"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
libs=$torch_lib
if [ -n "${WSISEG_OPENSLIDE_WHEEL:-}" ] || ! ldconfig -p | grep -q libopenslide.so.0; then
    wheel=$(ls .dev/openslide_bin-*.whl 2>/dev/null | head -n1)
    [ -n "$wheel" ] || { echo "no OpenSlide: put the openslide-bin wheel in .dev/" >&2; exit 1; }
    rm -rf /tmp/openslide-bin && python3 -m zipfile -e "$wheel" /tmp/openslide-bin
    so=$(find /tmp/openslide-bin -name 'libopenslide.so.1*' | head -n1)
    ln -sfn "$so" "$(dirname "$so")/libopenslide.so.0"
    libs=$libs:$(dirname "$so")
    echo "OpenSlide from $wheel"
fi
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
command -v readelf >/dev/null && readelf -d "$BIN" | grep -E 'NEEDED.*(torch|openslide)'

status=0
run() { # name, model, extra args...
    local name=$1 model=$2
    shift 2
    echo "== $name"
    "$BIN" segment "$SLIDE" --model "$model" --out "$WORK/$name" --overwrite --formats png,report "$@" 2>&1 | tee "$WORK/$name.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
run unet-cuda models/unet --device cuda
run unet-cpu models/unet --device cpu
run unet-cuda-l0 models/unet --device cuda --level 0
run unet-cpu-l0 models/unet --device cpu --level 0
run threshold-cuda tests/data/models/green-threshold --device cuda --level 0
run threshold-cpu tests/data/models/green-threshold --device cpu --level 0
run unet-cuda-f32 models/unet --device cuda --precision f32 --level 0

echo "== trained model on a held-out synthetic slide (seed 101), CUDA f16 vs CPU f32"
"$BIN" -q synth --out "$WORK/synth" --seed 101 --size 8192x8192 --overwrite || status=1
SLIDE=$WORK/synth/synth-101.svs run synth-cuda models/unet --device cuda
SLIDE=$WORK/synth/synth-101.svs run synth-cpu models/unet --device cpu
for d in synth-cuda synth-cpu; do
    "$BIN" eval --pred "$WORK/$d" --truth "$WORK/synth/truth" --overwrite || status=1
done

echo "== throughput: an 8192x8192 noise PNG at level 0 on CUDA (informative)"
python3 -c "
import numpy as np; from PIL import Image
Image.fromarray(np.random.default_rng(0).integers(0, 256, (8192, 8192, 3), dtype=np.uint8)).save('$WORK/noise.png', compress_level=1)"
SLIDE=$WORK/noise.png run throughput models/unet --device cuda --level 0 --readers 8
rm -f "$WORK/noise.png" "$WORK/throughput/noise.mask.png"
echo "== expected failure: explicit cuda:7"
"$BIN" -q segment "$SLIDE" --model models/unet --out "$WORK/none" --device cuda:7 && status=1

echo "== agreement (CUDA f16 vs CPU f32)"
python3 - "$WORK" <<'PY' || status=1
import sys
from collections import Counter
from PIL import Image
out = sys.argv[1]
ok = True
pairs = [("unet-cuda", "unet-cpu", "default"), ("unet-cuda-l0", "unet-cpu-l0", "default"),
         ("threshold-cuda", "threshold-cpu", "default"), ("synth-cuda", "synth-cpu", "synth-101")]
for a, b, name in pairs:
    x = Image.open(f"{out}/{a}/{name}.mask.png")
    y = Image.open(f"{out}/{b}/{name}.mask.png")
    assert x.size == y.size, (a, x.size, y.size)
    xs, ys = x.tobytes(), y.tobytes()
    same = sum(p == q for p, q in zip(xs, ys)) / len(xs)
    print(f"{a} vs {b}: {x.size[0]}x{x.size[1]}, agree {100 * same:.4f}%, "
          f"classes cuda {dict(Counter(xs))} cpu {dict(Counter(ys))}")
    ok &= same >= 0.999
print("PASS" if ok else "FAIL: < 99.9% agreement")
sys.exit(0 if ok else 1)
PY
echo "gpu_check status $status"
exit $status
