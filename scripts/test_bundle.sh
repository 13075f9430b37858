#!/usr/bin/env bash
# The offline bundle's test (issue 14), run by .ci/run after the tests:
#
# 1. builds the CPU bundle (scripts/bundle.sh) from the release build;
# 2. makes a fresh minimal Debian root file system (debootstrap
#    --variant=minbase: glibc, libstdc++, coreutils, no Python, no OpenSlide,
#    no libjpeg) and unpacks the bundle's archive into it;
# 3. inside it — chroot, no network (unshare --net), an empty environment
#    (env -i), its own /proc — checks the bundle's SHA256SUMS, that ldd
#    resolves every library of the binary inside the bundle or the base C/C++
#    runtime, runs `./wsiseg doctor --json` (must say ready, with libtorch
#    and OpenSlide loaded from the bundle, ONNX Runtime from its lib/ and
#    AOTInductor available), checks the shipped UNet as .pt2 and .onnx
#    (tests/formats.rs's fixtures), and segments tests/data/default.svs
#    and a synthetic slide;
# 4. compares those masks byte for byte with the normal build's.
#
# Needs root (chroot, unshare), debootstrap, patchelf and zstd (installed
# here with apt when missing) and Debian's package mirror. Environment:
#   WSISEG_DEBIAN_MIRROR  default http://deb.debian.org/debian
#   KEEP=1                keep the work folder (printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
say() { printf '==> test_bundle: %s (%d s)\n' "$*" "$((SECONDS - START))" >&2; }
fail() { echo "test_bundle: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (chroot and unshare)"
missing=()
for tool in debootstrap:debootstrap patchelf:patchelf zstd:zstd; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsiseg-bundle-test.XXXXXX")
ROOT=$WORK/root
cleanup() {
    mountpoint -q "$ROOT/proc" 2>/dev/null && umount "$ROOT/proc" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "test_bundle: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

say "building the CPU bundle"
bash scripts/bundle.sh --cpu
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
NAME=wsiseg-$VERSION-linux-x86_64-cpu
ARCHIVE=dist/$NAME.tar.zst
(cd dist && sha256sum -c --quiet "$NAME.tar.zst.sha256") || fail "$ARCHIVE does not match its checksum"

say "reference masks from the normal build"
BIN=target/release/wsiseg
mkdir -p "$WORK/data"
cp tests/data/default.svs "$WORK/data/"
$BIN -q synth --out "$WORK/synth" --seed 7 --size 3072x3072
cp "$WORK/synth/synth-7.svs" "$WORK/data/"
ARGS=(--model models/unet --device cpu --probabilities --formats png,tiff,geojson,overlay,report)
$BIN -q segment "$WORK/data" "${ARGS[@]}" --out "$WORK/ref"

say "debootstrap --variant=minbase bookworm"
debootstrap --variant=minbase bookworm "$ROOT" "${WSISEG_DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
# Nothing wsiseg needs is in the base system: the bundle must bring it.
[ ! -e "$ROOT/usr/bin/python3" ] || fail "the minimal root has python3"
for lib in libopenslide.so.0 libopenslide.so.1 libjpeg.so.62 libtorch_cpu.so libgomp.so.1; do
    [ -z "$(find "$ROOT/usr" -name "$lib" 2>/dev/null)" ] || fail "the minimal root has $lib"
done

say "unpacking the bundle into the root"
mkdir -p "$ROOT/opt" "$ROOT/data"
tar --zstd -xf "$ARCHIVE" -C "$ROOT/opt"
cp "$WORK/data/"*.svs "$ROOT/data/"

# Runs a shell command in the root: no network, empty environment, own /proc.
inside() {
    unshare --net --mount --pid --fork --mount-proc="$ROOT/proc" \
        chroot "$ROOT" /usr/bin/env -i /bin/sh -c "cd /opt/$NAME && $1"
}

say "checksums and ldd inside the root"
inside "sha256sum -c --quiet SHA256SUMS" || fail "SHA256SUMS"
inside "ls python/wsiseg-*-abi3-linux_x86_64.whl python/INSTALL.txt" >&2 ||
    fail "the bundle carries no Python wheel (python/)"
inside "ldd /opt/$NAME/wsiseg" > "$WORK/ldd.txt"
cat "$WORK/ldd.txt" >&2
! grep -q "not found" "$WORK/ldd.txt" || fail "ldd: a library is not found"
while read -r name _ path _; do
    case $path in
        /opt/$NAME/lib/*) ;;
        /lib/x86_64-linux-gnu/* | /usr/lib/x86_64-linux-gnu/* | /lib64/*)
            case $name in
                libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | libutil.so.1 | \
                    libstdc++.so.6 | libgcc_s.so.1 | /lib64/ld-linux-x86-64.so.2) ;;
                *) fail "ldd: $name comes from the base system ($path), not the bundle" ;;
            esac ;;
        *) fail "ldd: $name resolves to $path" ;;
    esac
done < <(awk '/=>/ {print $1, $2, $3} !/=>/ && /\// {print $1, "=>", $1}' "$WORK/ldd.txt")

say "wsiseg doctor inside the root"
inside "./wsiseg doctor --json --out /tmp" > "$WORK/doctor.json" || { cat "$WORK/doctor.json" >&2; fail "doctor exited non-zero"; }
python3 - "$WORK/doctor.json" "/opt/$NAME" <<'PY' || fail "doctor's report"
import json, sys
report = json.load(open(sys.argv[1]))
root = sys.argv[2]
checks = {c["name"]: c for c in report["checks"]}
assert report["ready"] is True, report
assert checks["libtorch"]["data"]["dir"] == root + "/lib", checks["libtorch"]
assert checks["libtorch"]["data"]["version"].startswith("2.11."), checks["libtorch"]
assert checks["OpenSlide"]["data"]["path"] == root + "/lib/libopenslide.so.1", checks["OpenSlide"]
assert checks["OpenSlide"]["data"]["version"].startswith("4."), checks["OpenSlide"]
assert checks["CUDA support"]["status"] == "note", checks["CUDA support"]
assert checks["model"]["status"] == "ok" and checks["model"]["data"]["path"] == root + "/models/unet", checks["model"]
assert checks["ONNX Runtime"]["status"] == "ok", checks["ONNX Runtime"]
assert checks["ONNX Runtime"]["data"]["path"] == root + "/lib/libonnxruntime.so", checks["ONNX Runtime"]
assert checks["AOTInductor"]["status"] == "ok", checks["AOTInductor"]
for c in report["checks"]:
    print("   %-5s %-13s %s" % (c["status"], c["name"], c["detail"]))
PY

say "the shipped UNet as .pt2 and .onnx inside the root"
# tests/formats.rs's fixtures when that test ran (else made here, ~3 min).
FORMATS=$(ls -d target/tmp/formats/*/ 2>/dev/null | while read -r d; do [ -e "$d/done" ] && echo "$d"; done | head -1)
if [ -z "$FORMATS" ]; then
    FORMATS=$WORK/formats
    "${WSISEG_VENV:-$HOME/.cache/wsiseg/venv}/bin/python" tests/data/models/make_formats.py "$FORMATS" > "$WORK/formats.log" 2>&1 ||
        { tail -20 "$WORK/formats.log" >&2; fail "make_formats.py"; }
fi
mkdir -p "$ROOT/formats"
cp -r "$FORMATS/unet" "$ROOT/formats/"
for file in model.pt2 model.onnx; do
    inside "./wsiseg model check /formats/unet/$file --device cpu" > "$WORK/check.txt" 2>&1 ||
        { cat "$WORK/check.txt" >&2; fail "model check of $file"; }
    grep -E "^ *runtime" "$WORK/check.txt" >&2
done

say "wsiseg segment inside the root"
inside "./wsiseg -q segment /data ${ARGS[*]} --out /out" || fail "segment exited non-zero"

say "comparing masks with the normal build's"
n=0
for f in "$WORK/ref"/*.png "$WORK/ref"/*.tiff "$WORK/ref"/*.geojson; do
    b=$(basename "$f")
    cmp -s "$f" "$ROOT/out/$b" || fail "$b differs from the normal build's"
    n=$((n + 1))
done
[ "$n" -ge 10 ] || fail "only $n outputs compared"
echo "test_bundle: ok — $n outputs (2 slides) byte-identical to the normal build's; bundle $(du -h "$ARCHIVE" | cut -f1); $((SECONDS - START)) s" >&2
