"""Type stubs of wsiseg's extension module (crates/python)."""

from os import PathLike
from typing import Any, Callable, Iterator, Literal, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

_Path = Union[str, PathLike[str]]
_Progress = Callable[[int, int], object]

class WsisegError(Exception):
    """Base class of every error wsiseg raises; its message is the command's line."""

class SlideError(WsisegError):
    """A slide that is missing, unreadable, corrupt or of an unsupported layout."""

class ModelError(WsisegError):
    """A model that cannot be loaded, does not fit its manifest, or gave NaN/Inf."""

class OutputError(WsisegError):
    """Outputs that cannot be written, are locked, or were made differently."""

class SettingError(WsisegError):
    """An impossible setting or a wrong-shaped or wrong-dtype array."""

class SegmentResult:
    """What Engine.segment did for a slide."""

    slide: PathLike[str]
    skipped: bool
    files: list[PathLike[str]]
    figures: dict[str, Any]
    timings: Optional[dict[str, float]]
    report: Optional[dict[str, Any]]
    @property
    def tumor_fraction(self) -> float: ...
    @property
    def tumor_mm2(self) -> Optional[float]: ...
    @property
    def regions(self) -> Optional[int]: ...
    def file(self, suffix: str) -> Optional[PathLike[str]]: ...

class Engine:
    """Models loaded once on their devices; slides and tiles run through them."""

    def __init__(
        self,
        model: Union[_Path, Sequence[Union[_Path, Tuple[_Path, float]]]],
        device: str = "auto",
        precision: Optional[Literal["f32", "f16", "bf16"]] = None,
        batch: Optional[int] = None,
        tta: Literal["none", "flips", "dihedral"] = "none",
        threshold: Optional[float] = None,
        readers: Optional[int] = None,
        decode: Literal["auto", "cpu", "gpu"] = "auto",
    ) -> None: ...
    @property
    def manifest(self) -> dict[str, Any]: ...
    @property
    def devices(self) -> list[str]: ...
    @property
    def precision(self) -> str: ...
    @property
    def batch(self) -> int: ...
    @property
    def members(self) -> list[dict[str, Any]]: ...
    def segment(
        self,
        slide: _Path,
        out: _Path,
        formats: Optional[Union[str, Sequence[str]]] = None,
        mpp: Optional[float] = None,
        level: Optional[int] = None,
        slide_mpp: Optional[float] = None,
        tile: Optional[int] = None,
        overlap: Optional[int] = None,
        tissue: bool = True,
        tissue_threshold: Optional[int] = None,
        reader: Literal["auto", "openslide"] = "auto",
        mask_values: Literal["01", "0255"] = "01",
        min_area: float = 500.0,
        overwrite: bool = False,
        bad_tiles: Literal["fail", "background"] = "fail",
        progress: Optional[_Progress] = None,
    ) -> SegmentResult: ...
    def segment_many(
        self,
        inputs: Union[_Path, Sequence[_Path]],
        out: _Path,
        formats: Optional[Union[str, Sequence[str]]] = None,
        recursive: bool = False,
        shard: Optional[str] = None,
        mpp: Optional[float] = None,
        level: Optional[int] = None,
        slide_mpp: Optional[float] = None,
        tile: Optional[int] = None,
        overlap: Optional[int] = None,
        tissue: bool = True,
        tissue_threshold: Optional[int] = None,
        reader: Literal["auto", "openslide"] = "auto",
        mask_values: Literal["01", "0255"] = "01",
        min_area: float = 500.0,
        overwrite: bool = False,
        bad_tiles: Literal["fail", "background"] = "fail",
        one_at_a_time: bool = False,
        progress: Optional[_Progress] = None,
    ) -> dict[str, Any]: ...
    @overload
    def predict(self, tiles: npt.NDArray[np.uint8], probabilities: Literal[False] = False) -> npt.NDArray[np.uint8]: ...
    @overload
    def predict(
        self, tiles: npt.NDArray[np.uint8], probabilities: Literal[True]
    ) -> Tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]: ...

class Tiles(Iterator[Tuple[int, int, npt.NDArray[np.uint8]]]):
    """A slide's planned tiles, read by background threads, in plan order."""

    def __iter__(self) -> "Tiles": ...
    def __next__(self) -> Tuple[int, int, npt.NDArray[np.uint8]]: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...

class Slide:
    """A slide opened through the engine's readers."""

    @property
    def path(self) -> PathLike[str]: ...
    @property
    def format(self) -> str: ...
    @property
    def dimensions(self) -> Tuple[int, int]: ...
    @property
    def levels(self) -> list[Tuple[int, int, float]]: ...
    @property
    def mpp(self) -> Optional[Tuple[float, float]]: ...
    @property
    def properties(self) -> dict[str, Any]: ...
    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> npt.NDArray[np.uint8]: ...
    def read(self, x: int, y: int, w: int, h: int, mpp: float) -> npt.NDArray[np.uint8]: ...
    def thumbnail(self, max_side: int = 2048) -> npt.NDArray[np.uint8]: ...
    def tissue(self, threshold: Optional[int] = None) -> Tuple[npt.NDArray[np.bool_], int]: ...
    def tiles(
        self,
        mpp: Optional[float] = None,
        tile: int = 256,
        overlap: int = 0,
        tissue: bool = True,
        threads: Optional[int] = None,
        level: Optional[int] = None,
    ) -> Tiles: ...

def open(path: _Path, reader: Literal["auto", "openslide"] = "auto", mpp: Optional[float] = None) -> Slide: ...
def synth(
    out: _Path,
    seed: int = 1,
    size: Tuple[int, int] = (8192, 8192),
    mpp: float = 0.25,
    quality: int = 80,
    plain: Sequence[Literal["png", "jpeg", "tiff"]] = (),
    overwrite: bool = False,
) -> Tuple[PathLike[str], PathLike[str]]: ...
def evaluate(
    pred: _Path,
    truth: _Path,
    boundary_tolerance: int = 2,
    probabilities: Optional[_Path] = None,
    classes: Optional[Sequence[str]] = None,
    truth_labels: Optional[dict[str, int]] = None,
) -> dict[str, Any]: ...
def versions() -> dict[str, Optional[str]]: ...
