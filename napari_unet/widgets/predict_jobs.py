"""Worker functions of the Predict tab and of edit tracking (no Qt, no layers).

- :func:`predict_lazy_job`: a lazily opened (dask/zarr) stack predicted block by
  block with :func:`napari_unet.engine.inference.blockwise.predict_lazy_iter` into a
  scratch zarr group; memory stays bounded by a few blocks, as on the CLI.
- :func:`labels_job`: the ``<image> prediction`` labels from a probability and a
  threshold, slice by slice, copying the slices to keep (edited or reviewed) from
  the current labels instead; in memory, or into a new zarr array for lazy stacks.
  It also returns the digest of every slice it thresholded (the new baseline of
  the edit tracking).
- :func:`digest_job`: per-slice digests for :class:`~.loop_edits.EditTracker`.

Scratch folders live in ``~/.cache/napari-unet/predictions`` (or the system's
temporary folder) and are removed when napari exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.engine.events import PredictEvent

from .layer_utils import is_user_writable, stack_view
from .tf_loader import ensure_tensorflow
from .workers import _forward, _in_own_thread

__all__ = [
    "LabelsResult",
    "LazyPrediction",
    "digest_job",
    "labels_job",
    "predict_job",
    "predict_lazy_job",
    "scratch_folder",
]

#: Scratch folders made in this session (removed at exit).
_SCRATCH: list[Path] = []


def _scratch_root() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", "") or Path.home() / ".cache")
    root = cache / "napari-unet" / "predictions"
    return root if is_user_writable(root) else Path(tempfile.gettempdir()) / "napari-unet"


def scratch_folder(name: str) -> Path:
    """A new folder for one lazy prediction (removed when napari exits)."""
    root = _scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(tempfile.mkdtemp(prefix=f"{name[:40]}-{stamp}-", dir=root))
    if not _SCRATCH:
        atexit.register(_remove_scratch)
    _SCRATCH.append(folder)
    return folder


def _remove_scratch() -> None:
    for folder in _SCRATCH:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class LazyPrediction:
    """A blockwise prediction in a scratch zarr group.

    Attributes
    ----------
    folder
        The scratch folder (``prediction.zarr`` inside).
    result
        The engine's ``BlockwiseResult`` (``probability_float()`` is a dask array).
    """

    folder: Path
    result: Any

    @property
    def group(self) -> Path:
        """The zarr group (``probability``, then one ``labels-N`` array per thresholding)."""
        return self.folder / "prediction.zarr"


@dataclass
class LabelsResult:
    """What :func:`labels_job` made.

    Attributes
    ----------
    labels
        uint8 {0, 1} labels: numpy, or a zarr array for lazy stacks.
    digests
        Digest of every thresholded slice (kept slices are not in it).
    kept
        The slices copied from the old labels.
    threshold
        The threshold used.
    """

    labels: Any
    digests: dict[int, str] = field(default_factory=dict)
    kept: set[int] = field(default_factory=set)
    threshold: float = 0.5


def digest_job(stack: Any, slices: list[int]) -> dict[int, str]:
    """Per-slice digests of a ``(Z, Y, X)`` stack (lazy stacks read slice by slice)."""
    from napari_unet.engine.autosave import slice_digests

    return slice_digests(stack, slices)


def _loaded(model: Any) -> Any:
    """`model` if it is a ``LoadedModel``, else loaded from its folder (a bioimage.io
    package is imported first; in the worker, since it loads Keras)."""
    from napari_unet.engine.model.model_folder import LoadedModel, load_model
    from napari_unet.engine.model.model_source import model_folder_of

    return model if isinstance(model, LoadedModel) else load_model(model_folder_of(model))


def predict_job(
    model: Any,
    images: Any,
    predict_config: Any,
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[Any, None, Any]:
    """Load the model if needed (yielding the ``LoadedModel`` once so the GUI can
    cache it), then predict, yielding PredictEvents. Returns the ``Prediction``."""

    def events() -> Generator[Any, None, Any]:
        ensure_tensorflow()
        from napari_unet.engine.inference.predict import predict_iter

        loaded = _loaded(model)
        yield loaded
        return (yield from predict_iter(loaded, np.asarray(images), predict_config, stop=stop))

    return (yield from _forward(_in_own_thread(events, "prediction"), closing))


def predict_lazy_job(
    model: Any,
    images: Any,
    predict_config: Any,
    folder: Path,
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[Any, None, Any]:
    """Load the model if needed (yielding the ``LoadedModel``), then predict `images`
    blockwise into ``folder/prediction.zarr``, yielding PredictEvents.

    Returns a :class:`LazyPrediction` (its result has ``stopped`` set after a stop).
    """

    def events() -> Generator[Any, None, Any]:
        ensure_tensorflow()
        from napari_unet.engine.inference.blockwise import BlockwiseOptions, predict_lazy_iter

        loaded = _loaded(model)
        yield loaded
        options = BlockwiseOptions(probability_dtype="uint8", write_mask=False)
        result = yield from predict_lazy_iter(
            loaded,
            images,
            predict_config,
            stop=stop,
            output=folder / "prediction.zarr",
            options=options,
        )
        return LazyPrediction(folder=folder, result=result)

    return (yield from _forward(_in_own_thread(events, "prediction"), closing))


def _read(array: Any, z: int) -> np.ndarray:
    part = array[z]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")
    return np.asarray(part)


def _new_labels(shape: tuple[int, ...], dtype: np.dtype, target: Path | None) -> Any:
    """Empty labels shaped like the probability: numpy, or a zarr array at `target`."""
    if target is None:
        return np.empty(shape, dtype=dtype)
    import zarr

    y, x = shape[-2:]
    plane = (y, x) if y * x <= 4096 * 4096 else (2048, 2048)
    chunks = (1,) * (len(shape) - 2) + plane
    return zarr.create_array(str(target), shape=shape, chunks=chunks, dtype=dtype)


def labels_job(
    probability: Any,
    old: Any,
    threshold: float,
    keep: set[int],
    target: Path | None,
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[PredictEvent, None, LabelsResult | None]:
    """Threshold `probability` slice by slice into new labels, keeping slices of `old`.

    Parameters
    ----------
    probability
        float probability ``(Z, Y, X)`` or ``(Y, X)`` (numpy or dask).
    old
        The current labels of the same shape, or None.
    threshold
        Foreground where ``probability > threshold``.
    keep
        Slices copied from `old` instead (edited or reviewed by the user).
    target
        None: numpy labels; else the path of a new zarr array (lazy stacks).
    stop, closing
        Set `stop` to give up (returns None).

    Yields
    ------
    PredictEvent
        After every slice (``done`` of ``total`` slices).
    """
    from napari_unet.engine.autosave import slice_digest

    started = time.perf_counter()
    same = old is not None and tuple(old.shape) == tuple(probability.shape)
    dtype = np.dtype(old.dtype) if same and np.dtype(old.dtype).kind in "iu" else np.dtype("uint8")
    prob, before = stack_view(probability), (stack_view(old) if same else None)
    labels = _new_labels(tuple(probability.shape), dtype, target)
    out = stack_view(labels) if isinstance(labels, np.ndarray) else labels
    two_d = len(probability.shape) == 2
    n = int(prob.shape[0])
    result = LabelsResult(labels=labels, threshold=float(threshold))
    for z in range(n):
        if stop.is_set():
            return None
        if z in keep and before is not None:
            plane = _read(before, z).astype(dtype, copy=False)
            result.kept.add(z)
        else:
            plane = (_read(prob, z) > threshold).astype(dtype)
            result.digests[z] = slice_digest(plane)
        if two_d and not isinstance(labels, np.ndarray):
            out[...] = plane
        else:
            out[z] = plane
        if not closing.is_set():
            elapsed = time.perf_counter() - started
            yield PredictEvent(
                done=z + 1,
                total=n,
                elapsed=elapsed,
                eta=elapsed / (z + 1) * (n - z - 1),
                message="thresholding",
            )
    return result
