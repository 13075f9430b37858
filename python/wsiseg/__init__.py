"""wsiseg: tumor segmentation of whole-slide images, from Python.

The engine of the ``wsiseg`` command, its slide readers and its scores::

    import wsiseg

    engine = wsiseg.Engine("models/unet")                  # device="auto"
    result = engine.segment("slide.svs", "out/")            # masks, GeoJSON, report
    print(result.tumor_fraction, result.files)

    slide = wsiseg.open("slide.svs")
    for x, y, tile in slide.tiles(mpp=1.0, tile=256):      # background reader threads
        ...                                                 # uint8 256×256×3 arrays

Errors are :class:`WsisegError` subclasses (:class:`SlideError`,
:class:`ModelError`, :class:`OutputError`, :class:`SettingError`) carrying the
one-line message the command prints. Ctrl-C raises ``KeyboardInterrupt``
after the engine has removed its temporary files.
"""

import importlib.util as _util
import os as _os
import pathlib as _pathlib

# One libtorch in the process: the engine runs on the libtorch that PyTorch
# loads, so PyTorch is imported first (whichever of the two a program
# imports first, both then share it).
_TORCH = "2.11"
try:
    import torch as _torch
except ImportError as _e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"wsiseg needs PyTorch {_TORCH} (its libtorch runs the models): "
        f"pip install torch=={_TORCH}.0 ({_e})"
    ) from None
if not _torch.__version__.startswith(_TORCH + ".") and _torch.__version__ != _TORCH:
    raise ImportError(
        f"wsiseg was built against PyTorch {_TORCH} but PyTorch {_torch.__version__} "
        f"is installed ({_os.path.dirname(_torch.__file__)}): install torch=={_TORCH}.0 "
        "(pip install torch==2.11.0), or rebuild wsiseg against this one"
    )

# OpenSlide 4 from the openslide-bin wheel (loaded by importing it).
try:
    import openslide_bin as _openslide_bin  # noqa: F401
except ImportError as _e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"wsiseg needs OpenSlide 4 from the openslide-bin package: pip install openslide-bin ({_e})"
    ) from None

# ONNX Runtime for .onnx models: the onnxruntime wheel's library, unless
# WSISEG_ONNXRUNTIME names one (it is loaded only when an ONNX model is).
if "WSISEG_ONNXRUNTIME" not in _os.environ:
    _spec = _util.find_spec("onnxruntime")
    if _spec is not None and _spec.submodule_search_locations:
        for _dir in _spec.submodule_search_locations:
            _libs = sorted(_pathlib.Path(_dir, "capi").glob("libonnxruntime.so*"))
            if _libs:
                _os.environ["WSISEG_ONNXRUNTIME"] = str(_libs[-1])
                break

from ._wsiseg import (  # noqa: E402
    Engine,
    ModelError,
    OutputError,
    SegmentResult,
    SettingError,
    Slide,
    SlideError,
    Tiles,
    WsisegError,
    evaluate,
    open,
    synth,
    versions,
)

__version__ = versions()["wsiseg"]

__all__ = [
    "Engine",
    "ModelError",
    "OutputError",
    "SegmentResult",
    "SettingError",
    "Slide",
    "SlideError",
    "Tiles",
    "WsisegError",
    "evaluate",
    "open",
    "synth",
    "versions",
]
