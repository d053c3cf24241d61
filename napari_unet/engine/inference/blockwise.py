"""Blockwise prediction of volumes larger than memory, to zarr (and TIFF).

The volume is cut into blocks: runs of whole slices (the default while a slice
has at most :data:`WHOLE_SLICE_PIXELS` pixels), or ``(z, Y-block, X-block)``
boxes for huge slices. Every block is predicted with the tiles of the *global*
tile grid of a slice that touch it -- the block plus a halo reaching to the
edges of those tiles -- and the same blending as in-memory tiled prediction
(:func:`~napari_unet.engine.inference.predict.predict_tiles`), so the result equals
:func:`~napari_unet.engine.inference.predict.predict` given the same normalization.
The normalization percentiles come from a strided subsample of the whole
volume (:func:`~napari_unet.engine.io.lazy.volume_stats`).

Only one block (plus the next one being read, and the previous one being
written) is in memory at a time, whatever the volume size. Results go to a
zarr group (``probability`` as uint8 ``round(255 p)``, float16 or float32, and
``mask`` as uint8 ``{0, 255}``, chunked one slice deep) written in a temporary
``<name>.zarr.tmp-XXXX`` folder renamed into place at the end; a TIFF stack is
written page by page under a temporary name and renamed likewise.

The same blocks run on a ``dask.distributed`` cluster when a client is given
(see :mod:`napari_unet.engine.inference.distributed`): every worker loads the model once
and writes its blocks straight into the zarr output.

TensorFlow is imported only when a block is predicted.

Modules, one concern each (this module re-exports their public names):

* :mod:`~napari_unet.engine.inference.blocks` -- :class:`BlockwiseOptions`,
  :class:`Block`, :class:`BlockPlan` and :func:`make_plan` (cutting a volume
  into blocks with their tile halos);
* :mod:`~napari_unet.engine.inference.block_predict` -- normalizing, laying out
  and predicting one block;
* :mod:`~napari_unet.engine.inference.block_store` -- the zarr group and TIFF
  stack outputs (temporary names, renames);
* :mod:`~napari_unet.engine.inference.block_pipeline` -- the single-process
  read-ahead/write-behind loop;
* :mod:`~napari_unet.engine.inference.distributed` -- the same blocks on a cluster;
* this module -- the public driver (:func:`predict_blockwise_iter`,
  :func:`predict_blockwise`, :func:`predict_lazy_iter`, :class:`BlockwiseResult`).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import check_writable
from ..config import DataConfig, PredictConfig
from ..errors import UserInputError
from ..events import PredictEvent, drain
from ..io.lazy import as_lazy, volume_stats
from .block_pipeline import run_local
from .block_predict import block_stats as block_stats
from .block_predict import predict_block as predict_block
from .block_predict import prepare_block as prepare_block
from .block_store import TiffTarget, ZarrTarget, atomic_zarr, create_group, zarr_to_tiff
from .block_store import encode_mask as encode_mask
from .block_store import encode_probability as encode_probability
from .blocks import DEFAULT_BLOCK_SIZE as DEFAULT_BLOCK_SIZE
from .blocks import TARGET_BLOCK_PIXELS as TARGET_BLOCK_PIXELS
from .blocks import WHOLE_SLICE_PIXELS as WHOLE_SLICE_PIXELS
from .blocks import Block as Block
from .blocks import BlockPlan, BlockwiseOptions, make_plan
from .blocks import ProbabilityDtype as ProbabilityDtype
from .blocks import block_tiles as block_tiles
from .blocks import output_region as output_region

__all__ = [
    "BlockPlan",
    "BlockwiseOptions",
    "BlockwiseResult",
    "make_plan",
    "predict_blockwise",
    "predict_blockwise_iter",
    "predict_lazy_iter",
]

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")


# --------------------------------------------------------------------------- result


@dataclass
class BlockwiseResult:
    """What blockwise prediction wrote.

    Attributes
    ----------
    path
        The zarr group (None if only a TIFF was asked for, or when stopped).
    tiff
        The TIFF stack, if one was written.
    shape
        Output ``(Z, Y, X)``.
    threshold
        Mask threshold used.
    stats
        Normalization ``(lo, hi)`` used.
    elapsed
        Seconds.
    stopped
        True if a stop request ended the run (nothing was written then).
    probability_dtype
        dtype of the stored probability.
    tiles
        Network tiles predicted (over all blocks).
    blocks
        Number of blocks.
    extra
        Free-form details for callers.
    """

    path: Path | None
    tiff: Path | None
    shape: tuple[int, int, int]
    threshold: float
    stats: tuple[np.ndarray, np.ndarray]
    elapsed: float
    stopped: bool = False
    probability_dtype: str = "uint8"
    tiles: int = 0
    blocks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``model.task``: multiclass stores class probabilities ``(Z, Y, X, K)`` and the
    #: arg-max class indices as ``mask``; regression stores float32 values only.
    task: str = "binary"

    def _array(self, name: str) -> Any:
        import dask.array as da
        import zarr

        if self.path is None:
            raise UserInputError("no zarr output was written")
        return da.from_zarr(zarr.open_array(str(self.path / name), mode="r"))

    @property
    def probability(self) -> Any:
        """Lazy dask array of the stored probability (stored dtype)."""
        return self._array("probability")

    @property
    def mask(self) -> Any:
        """Lazy dask array of the stored mask (uint8 ``{0, 255}``)."""
        return self._array("mask")

    def probability_float(self) -> Any:
        """Lazy float32 probability in ``[0, 1]`` (uint8 storage rescaled)."""
        prob = self.probability
        if prob.dtype == np.uint8:
            return prob.astype(np.float32) / np.float32(255)
        return prob.astype(np.float32)

    def labels(self) -> Any:
        """Lazy uint8 ``{0, 1}`` mask (class indices for multiclass; a napari Labels layer)."""
        if self.task == "multiclass":
            return self.mask
        if self.task == "regression":
            raise UserInputError("a regression prediction has no labels (see .probability)")
        return (self.mask > 0).astype(np.uint8)


# --------------------------------------------------------------------------- driver


def _resolve_output(
    output: str | Path | None, options: BlockwiseOptions
) -> tuple[Path | None, Path | None]:
    """(zarr target or None, tiff target or None)."""
    tiff = Path(options.tiff).expanduser() if options.tiff is not None else None
    if output is None:
        folder = Path(tempfile.mkdtemp(prefix="napari-unet-"))
        return folder / "prediction.zarr", tiff
    output = Path(output).expanduser()
    if output.suffix.lower() in TIFF_SUFFIXES:
        if tiff is not None and tiff != output:
            raise UserInputError("give the TIFF output either as `output` or as options.tiff")
        return None, output
    if output.suffix.lower() != ".zarr":
        raise UserInputError(
            f"blockwise output {output} must end in .zarr (or .tif/.tiff for a TIFF stack)"
        )
    return output, tiff


def predict_blockwise_iter(
    model: Any,
    source: Any,
    output: str | Path | None = None,
    config: PredictConfig | None = None,
    stop: threading.Event | None = None,
    options: BlockwiseOptions | None = None,
    client: Any = None,
) -> Generator[PredictEvent, None, BlockwiseResult]:
    """Predict a volume block by block into zarr (and/or a TIFF stack).

    Parameters
    ----------
    model
        A :class:`~napari_unet.engine.model.model_folder.LoadedModel` or a model
        folder (a folder is required with `client`).
    source
        Path (TIFF, zarr, OME-Zarr, folder of slices), dask, zarr or numpy array.
    output
        ``.zarr`` folder (``probability`` and ``mask`` arrays), a ``.tif``
        stack (the mask, or the probability with ``options.tiff_content``), or
        None: a new folder under the system's temporary directory.
    config
        Tiling options (default: the model's ``predict`` section).
    stop
        Set it to end after the current batch; the outputs are then discarded.
    options
        Blocks and outputs (:class:`BlockwiseOptions`).
    client
        A ``dask.distributed.Client``: run the blocks on its cluster.

    Yields
    ------
    PredictEvent
        After each batch of tiles (after each block on a cluster).

    Returns
    -------
    BlockwiseResult
        Paths written and the statistics used.
    """
    started = time.perf_counter()
    options = options or BlockwiseOptions()
    zarr_path, tiff_path = _resolve_output(output, options)
    loaded, folder, model_config = _resolve_model(model, need_folder=client is not None)
    config = config or model_config.predict
    task = model_config.model.task
    options = _task_options(options, model_config)
    volume = as_lazy(source, "images")
    plan = make_plan(volume, model_config.data, config, model_config.model.multiple, options)
    stats = _stats(volume, plan, model_config.data, options)
    attrs = {
        "model": str(folder) if folder else None,
        "threshold": config.threshold,
        "probability_dtype": options.probability_dtype,
        "probability_scale": 1 / 255 if options.probability_dtype == "uint8" else 1.0,
        "mask_values": [0, 255] if task == "binary" else None,
        "task": task,
        "classes": model_config.model.classes,
        "normalization": {"lo": stats[0].tolist(), "hi": stats[1].tolist()},
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "z_offset": plan.z_offset,
    }
    total = plan.total_tiles
    yield PredictEvent(done=0, total=total, elapsed=0.0, message="normalization statistics ready")
    try:
        with contextlib.ExitStack() as stack:
            target: ZarrTarget | None = None
            if zarr_path is not None or client is not None:
                target_path = zarr_path
                if target_path is None:  # TIFF only, on a cluster: zarr in a scratch folder
                    assert tiff_path is not None
                    check_writable(tiff_path, options.overwrite)
                    scratch = Path(tempfile.mkdtemp(prefix=".napari-unet-", dir=tiff_path.parent))
                    stack.callback(shutil.rmtree, scratch, True)
                    target_path = scratch / "blocks.zarr"
                tmp = stack.enter_context(atomic_zarr(target_path, options.overwrite))
                create_group(tmp, plan, options, attrs, task, model_config.model.out_channels)
                target = ZarrTarget(
                    str(tmp),
                    options.probability_dtype,
                    options.write_probability,
                    options.write_mask,
                    config.threshold,
                    task,
                )
            tiff_target: TiffTarget | None = None
            if tiff_path is not None:
                tiff_target = TiffTarget(tiff_path, plan, options, config.threshold, task)
                stack.callback(tiff_target.abort)
            if client is not None:
                from .distributed import run_blocks

                assert target is not None
                stopped = yield from run_blocks(
                    client, str(folder), source, volume, plan, stats, target, stop, total
                )
                if not stopped and tiff_target is not None:
                    zarr_to_tiff(Path(target.path), plan, tiff_target)
            else:
                stopped = yield from run_local(
                    loaded, volume, plan, stats, target, tiff_target, options, stop, total
                )
            if stopped:
                raise _Stopped
            if tiff_target is not None:
                tiff_target.finish()
        stopped = False
    except _Stopped:
        zarr_path = tiff_path = None
        stopped = True
    except OSError as exc:  # full disk, read-only folder: one clear line (outputs cleaned up)
        from ..atomic import write_error

        raise write_error(zarr_path or tiff_path, exc) from None
    return BlockwiseResult(
        path=zarr_path,
        tiff=tiff_path,
        shape=plan.shape,
        threshold=config.threshold,
        stats=stats,
        elapsed=time.perf_counter() - started,
        stopped=stopped,
        probability_dtype=options.probability_dtype,
        tiles=total,
        blocks=len(plan.blocks),
        task=task,
    )


def _task_options(options: BlockwiseOptions, model_config: Any) -> BlockwiseOptions:
    """`options` as a model's task can use them: float32 values without a mask for a
    regression; single-channel input for every task.

    Raises
    ------
    UserInputError
        For a model of several input channels (blockwise prediction reads one channel).
    """
    import dataclasses

    if (model_config.model.in_channels or 1) > 1:
        raise UserInputError(
            "blockwise prediction reads single-channel volumes; predict a multi-channel "
            "stack in memory (a .tif/.npy output)"
        )
    if model_config.model.task != "regression":
        return options
    return dataclasses.replace(
        options, probability_dtype="float32", write_probability=True, write_mask=False
    )


class _Stopped(Exception):
    """Internal: unwinds the output context managers (discarding them) after a stop."""


def _resolve_model(model: Any, need_folder: bool) -> tuple[Any, Path | None, Any]:
    """(loaded model or None, model folder or None, its Config).

    On a cluster only the folder matters (workers load it), so the model is
    not loaded here then.
    """
    from ..model.model_folder import LoadedModel, ModelFolder, load_model

    if isinstance(model, LoadedModel):
        if need_folder and model.folder is None:
            raise UserInputError("prediction on a cluster needs a model folder, not a model")
        from ..model.precision import for_prediction

        model = for_prediction(model, model.config.predict.precision)
        return model, model.folder, model.config
    folder = Path(model).expanduser()
    if need_folder:
        if not (folder / "config.yaml").exists():
            raise UserInputError(f"{folder} is not a model folder: config.yaml is missing")
        return None, folder.resolve(), ModelFolder(folder).load_config()
    from ..model.precision import for_prediction

    loaded = load_model(folder)
    loaded = for_prediction(loaded, loaded.config.predict.precision)
    return loaded, loaded.folder, loaded.config


def _stats(
    volume: Any, plan: BlockPlan, data_cfg: DataConfig, options: BlockwiseOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Normalization statistics: given, or from a subsample of the volume."""
    if options.stats is not None:
        lo, hi = (np.asarray(s, dtype=np.float64).reshape(-1) for s in options.stats)
        if lo.size not in (1, plan.shape[0]) or hi.size != lo.size:
            raise UserInputError(
                f"normalization statistics have {lo.size} values for {plan.shape[0]} slices"
            )
        return lo, hi
    low, high = data_cfg.percentiles
    if data_cfg.normalization == "slice":
        part = volume[plan.z_offset : plan.z_offset + plan.shape[0]]
        return volume_stats(part, low, high, per_slice=True)
    return volume_stats(volume, low, high, per_slice=False)


def predict_blockwise(
    model: Any,
    source: Any,
    output: str | Path | None = None,
    config: PredictConfig | None = None,
    options: BlockwiseOptions | None = None,
    client: Any = None,
    callback: Callable[[PredictEvent], None] | None = None,
    stop: threading.Event | None = None,
) -> BlockwiseResult:
    """Blocking form of :func:`predict_blockwise_iter`; `callback(event)` sees each event."""
    return drain(
        predict_blockwise_iter(model, source, output, config, stop, options, client), callback
    )


def predict_lazy_iter(
    model: Any,
    images: Any,
    config: PredictConfig | None = None,
    stop: threading.Event | None = None,
    output: str | Path | None = None,
    options: BlockwiseOptions | None = None,
) -> Generator[PredictEvent, None, BlockwiseResult]:
    """Predict a (dask-backed) napari layer lazily, for the GUI.

    Writes to `output` (default: a new ``prediction.zarr`` under the system's
    temporary folder) and returns a :class:`BlockwiseResult` whose
    :meth:`~BlockwiseResult.probability_float` and :meth:`~BlockwiseResult.labels`
    are dask arrays backed by that zarr store, ready for napari layers.
    """
    return (yield from predict_blockwise_iter(model, images, output, config, stop, options))
