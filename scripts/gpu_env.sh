# Sourced by scripts/gpu_check.sh and scripts/gpu_bench.sh on a GPU server:
# nvJPEG (libnvjpeg.so.13) from the nvidia-nvjpeg wheel in .dev/, unpacked
# once, for `--decode gpu|auto` (the server's image has no nvJPEG of its
# own beside torch).
nvjpeg_wheel=$(ls .dev/nvidia_nvjpeg-*.whl 2>/dev/null | head -n1)
if [ -z "${WSISEG_NVJPEG:-}" ] && [ -n "$nvjpeg_wheel" ]; then
    [ -f /tmp/nvjpeg/nvidia/cu13/lib/libnvjpeg.so.13 ] ||
        { rm -rf /tmp/nvjpeg && python3 -m zipfile -e "$nvjpeg_wheel" /tmp/nvjpeg; }
    export WSISEG_NVJPEG=/tmp/nvjpeg/nvidia/cu13/lib/libnvjpeg.so.13
fi
echo "nvJPEG: ${WSISEG_NVJPEG:-none (put the nvidia-nvjpeg wheel in .dev/: scripts/gpu_prepare.sh)}"
