#!/usr/bin/env bash
# Sets up wsiseg on Debian/Ubuntu and runs its demo. Safe to run again.
#
#   scripts/setup.sh            install, build (release), run the demo
#   scripts/setup.sh --no-demo  install and build only
#
# 1. apt packages: OpenSlide's header (libopenslide-dev: openslide-sys's
#    bindings are generated from it), libjpeg-turbo's headers
#    (libjpeg-dev: plain JPEGs are decoded by scanlines), pkg-config,
#    libclang-dev (bindgen), a C++ compiler, python3-venv, and tcmalloc's static library
#    (libgoogle-perftools-dev: linked into the binary as its malloc, which
#    makes the model 1.4x faster on the CPU), chromium (the tests open
#    the HTML report in it, headless), and slurm-wlm + munge (the tests run
#    a one-node Slurm cluster: scripts/slurm/local-cluster.sh), iproute2
#    (the viewer test's own network namespace), and nodejs + npm unless npm
#    is already installed. Uses sudo when not root.
# 2. PyTorch 2.11.0 from PyPI (for libtorch) into a virtual environment
#    outside the repository: $WSISEG_VENV, default ~/.cache/wsiseg/venv.
#    Reused when it already has torch 2.11.0. Also OpenSlide 4 (openslide-bin
#    4.0.1.2, the library wsiseg links), numpy, OpenSlide's Python binding,
#    and scripts/export-requirements.txt (smp, MONAI: small).
# 3. .libtorch -> that environment's torch folder, and .openslide/ -> its
#    OpenSlide 4 (openslide-bin wheel; both read by .cargo/config.toml),
#    then `npm ci` in crates/view/web (OpenSeadragon, built into the binary
#    for `wsiseg view`, and playwright-core for its browser test; pinned by
#    package-lock.json) and `cargo build --release`. The binary finds libtorch by its RUNPATH;
#    LD_LIBRARY_PATH still overrides it.
# 4. The Python package: maturin (and pytest) into the environment, the
#    wheel built into target/wheels and installed there (`import wsiseg`).
#    `wsiseg doctor`: libtorch, OpenSlide, CUDA and driver, the model.
# 5. Demo: makes a synthetic 8192×8192 H&E slide with known tumor (seed 101,
#    not a training seed), segments it with the shipped model, and prints the
#    tumor Dice against its ground truth. Everything goes to out/demo/.
set -euo pipefail

cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
OPENSLIDE_BIN_VERSION=4.0.1.2
ONNXRUNTIME_VERSION=1.31.1
ONNX_VERSION=1.23.2
MATURIN_VERSION=1.16.0
PYTEST_VERSION=9.2.0
VENV=${WSISEG_VENV:-$HOME/.cache/wsiseg/venv}
DEMO=1
for arg in "$@"; do
    case $arg in
        --no-demo) DEMO=0 ;;
        -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*" >&2; }

step "system packages"
# patchelf, zstd, binutils (objcopy): scripts/bundle.sh, the offline bundle.
packages=(libopenslide-dev libjpeg-dev pkg-config libclang-dev clang g++ python3 python3-venv libgoogle-perftools-dev chromium slurm-wlm munge patchelf zstd binutils)
# Node.js and npm for the viewer's web assets (OpenSeadragon) and its
# browser test (playwright-core): Debian's, unless a node is already here.
command -v npm >/dev/null || packages+=(nodejs npm)
# `ip` brings up the loopback of the viewer test's network namespace.
packages+=(iproute2)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "all present: ${packages[*]}" >&2
fi

step "Rust toolchain"
if ! command -v cargo >/dev/null; then
    echo "setup.sh: cargo not found. Install Rust 1.92 or newer (https://rustup.rs), then run this again." >&2
    exit 1
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "$rust_minor" -lt 92 ]; then
    echo "setup.sh: $(rustc --version) is too old; wsiseg needs Rust 1.92 or newer (rustup update)." >&2
    exit 1
fi
rustc --version >&2

step "PyTorch $TORCH_VERSION (libtorch) in $VENV"
has_torch() {
    "$VENV/bin/python" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null
}
if ! has_torch; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" numpy
    has_torch || { echo "setup.sh: torch $TORCH_VERSION did not install into $VENV" >&2; exit 1; }
else
    echo "reusing torch $TORCH_VERSION" >&2
fi
# numpy and OpenSlide's Python binding (with Pillow) are for scripts/train_model.py
# and scripts/compare_pytorch.py.
"$VENV/bin/python" -c "import numpy, openslide" 2>/dev/null ||
    "$VENV/bin/pip" install --quiet --disable-pip-version-check numpy openslide-python
# jsonschema: the tests check every report against crates/report/report.schema.json.
"$VENV/bin/python" -c "import jsonschema" 2>/dev/null ||
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "jsonschema==4.26.0"
"$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('openslide-bin') != '$OPENSLIDE_BIN_VERSION')" 2>/dev/null ||
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "openslide-bin==$OPENSLIDE_BIN_VERSION"
# pydicom (pure Python) writes the tests' DICOM series (scripts/make_dicom.py);
# tifffile (pure Python) their OME-TIFF pyramids.
"$VENV/bin/python" -c "import pydicom, tifffile" 2>/dev/null ||
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pydicom==3.0.2" "tifffile==2026.3.3"
# nvJPEG (libnvjpeg.so.13, 4 MB, self-contained): `--decode gpu|auto` decodes
# JPEG tiles with it on a GPU; found beside torch's CUDA libraries, and carried
# by the CUDA bundle with them.
"$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('nvidia-nvjpeg') != '13.2.3.58')" 2>/dev/null ||
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "nvidia-nvjpeg==13.2.3.58"
# segmentation-models-pytorch and MONAI (about 15 MB with torchvision and timm)
# for scripts/export_model.py's presets, which the tests run.
"$VENV/bin/python" -c "import segmentation_models_pytorch, monai" 2>/dev/null ||
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/export-requirements.txt
has_torch || { echo "setup.sh: installing the exporter's packages changed torch in $VENV" >&2; exit 1; }
torch_dir=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
ln -sfn "$torch_dir" .libtorch

step "OpenSlide 4 (openslide-bin $OPENSLIDE_BIN_VERSION) in .openslide/"
# The wheel's libopenslide.so.1 is self-contained (its own libtiff, libjpeg,
# glib...). wsiseg links it instead of Debian's OpenSlide 3.4.1: DICOM slides,
# resolution of generic TIFFs, newer format fixes. openslide-sys's bindings are
# generated from the system header (libopenslide-dev): every call it makes is
# in OpenSlide 4 with the same signature. .cargo/config.toml points pkg-config
# at this openslide.pc, and the binary's RUNPATH at the wheel's folder.
os_lib=$("$VENV/bin/python" -c 'import os, openslide_bin; print(os.path.join(os.path.dirname(openslide_bin.__file__), "libopenslide.so.1"))')
os_cflags=$(PKG_CONFIG_PATH= pkg-config --cflags openslide)
mkdir -p .openslide
ln -sfn "$os_lib" .openslide/libopenslide.so.1
ln -sfn "$os_lib" .openslide/libopenslide.so
cat > .openslide/openslide.pc <<PC
# Made by scripts/setup.sh: OpenSlide $OPENSLIDE_BIN_VERSION from the openslide-bin wheel.
libdir=$PWD/.openslide
Name: openslide
Description: OpenSlide from the openslide-bin wheel
Version: ${OPENSLIDE_BIN_VERSION%.*}
Libs: -L\${libdir} -lopenslide
Cflags: $os_cflags
PC

step "ONNX Runtime (onnxruntime $ONNXRUNTIME_VERSION) in .onnxruntime/"
# wsiseg loads libonnxruntime at run time, only for .onnx models (the ort
# crate with load-dynamic: nothing is downloaded at build time). The wheel's
# library (MIT) is linked as .onnxruntime/libonnxruntime.so, where the binary
# looks for it (after WSISEG_ONNXRUNTIME and the bundle's lib/). `onnx` is
# for torch.onnx.export (scripts/export_model.py --format onnx).
"$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('onnxruntime') != '$ONNXRUNTIME_VERSION')" 2>/dev/null &&
    "$VENV/bin/python" -c "import onnx" 2>/dev/null ||
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "onnxruntime==$ONNXRUNTIME_VERSION" "onnx==$ONNX_VERSION"
ort_lib=$(ls "$("$VENV/bin/python" -c 'import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))')"/capi/libonnxruntime.so.* | head -1)
mkdir -p .onnxruntime
ln -sfn "$ort_lib" .onnxruntime/libonnxruntime.so

step "the viewer's web assets from npm (crates/view/web: OpenSeadragon, built into the binary; playwright-core for its test)"
(cd crates/view/web && npm ci --no-audit --no-fund --loglevel=error)

step "building wsiseg (release)"
cargo build --release --locked
./target/release/wsiseg --version

step "the Python package (import wsiseg): wheel in target/wheels, installed into $VENV"
# maturin builds crates/python + python/wsiseg into one wheel (stable ABI,
# CPython >= 3.9); pytest runs python/tests (from tests/python.rs).
"$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('maturin') != '$MATURIN_VERSION' or m.version('pytest') != '$PYTEST_VERSION')" 2>/dev/null ||
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "maturin==$MATURIN_VERSION" "pytest==$PYTEST_VERSION"
rm -f target/wheels/wsiseg-*.whl
"$VENV/bin/maturin" build --release --locked --quiet --out target/wheels
"$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels/wsiseg-*.whl
"$VENV/bin/python" -c "import wsiseg; print('import wsiseg', wsiseg.__version__, 'from', wsiseg.__file__)"

step "wsiseg doctor: can this machine run it?"
./target/release/wsiseg doctor ||
    echo "setup.sh: wsiseg doctor found a problem (above); the build itself succeeded" >&2

if [ "$DEMO" = 1 ]; then
    step "demo: synthetic slide → segment → Dice against its ground truth"
    wsiseg=./target/release/wsiseg
    $wsiseg synth --out out/demo/slides --seed 101 --size 8192x8192 --overwrite
    $wsiseg segment out/demo/slides --model models/unet --out out/demo/masks --overwrite
    $wsiseg eval --pred out/demo/masks --truth out/demo/slides/truth --overwrite
fi
