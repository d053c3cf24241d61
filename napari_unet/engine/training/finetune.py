"""Fine-tuning on corrected slices: the correct-and-retrain loop's one code path.

The dock's *Correct & retrain* tab, ``napari-unet finetune`` and ``napari-unet train
--init-from`` all call :func:`finetune_iter`. It inherits the parent's whole recipe
(loss, border weights, augmentation, schedule, normalization), trains the corrected
slices mixed with the parent's own data (:mod:`.finetune_data`) with frozen batch norm,
a frozen contracting path (the encoder's features stay; the bottom and decoder adapt) and
a fraction of the parent's learning rate, then chooses the mask threshold on the held-back
bands of the corrections (:mod:`.calibration`) and writes a new model version.

The version is written under a temporary hidden name (``.v002.partial-...``) and renamed
into place only when it is complete, so a fine-tuning in progress or killed is never
listed as a usable version and never predicts with the temporary ``normalization: none``
the pre-normalized mix trains with.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import UserInputError
from ..events import TrainEvent, drain
from ..model.model_folder import ModelFolder
from .calibration import choose_threshold, store_threshold
from .finetune_data import FinetuneData, mix_for_finetuning, prepare_finetune_data

__all__ = [
    "SETUP_RESERVE_SECONDS",
    "default_output",
    "finetune",
    "finetune_config",
    "finetune_iter",
    "mix_for_finetuning",
]

#: Seconds of the budget kept for calibrating and writing the version after the last batch.
SETUP_RESERVE_SECONDS = 30.0
#: Fine-tuning learning rate as a fraction of the parent's.
LEARNING_RATE_FACTOR = 0.1


def default_output(parent: Path) -> Path:
    """Where a fine-tuned version goes without ``--output``: the next version beside a
    parent that is itself a version (``project/v001`` -> ``project/v002``), else the first
    version of ``./<parent name>-finetuned/`` (never inside an installed package)."""
    from ..model.versions import VersionStore

    parent = Path(parent).resolve()
    if parent.name[:1] == "v" and parent.name[1:].isdigit():
        return VersionStore(parent.parent).next_path()
    return VersionStore(Path.cwd() / f"{parent.name}-finetuned").next_path()


def finetune_config(
    parent_config: Config,
    parent_dir: Path,
    max_minutes: float | None,
    max_cpu_minutes: float | None = None,
    learning_rate_factor: float = LEARNING_RATE_FACTOR,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """The fine-tuning run's config: the parent's recipe with the fine-tuning settings.

    Parameters
    ----------
    parent_config, parent_dir
        The parent model's config and folder.
    max_minutes, max_cpu_minutes
        Budgets.
    learning_rate_factor
        The learning rate is the parent's times this (unless overridden).
    overrides
        Dotted-key overrides applied last (e.g. ``{"train.patch_size": 128}`` from the CLI).
    """
    if parent_config.model.task != "binary":
        raise UserInputError(
            f"fine-tuning on corrections is for binary models; this is a "
            f"{parent_config.model.task} model: warm-start it with train --init-from WEIGHTS.h5"
        )
    settings = parent_config.to_dict()
    settings["data"].update(
        images=None,
        masks=None,
        val_images=None,
        val_masks=None,
        val_fraction=0.0,
        normalization="none",  # the mix is normalized already (see the module docstring)
        flat_field=False,
        mask_kind="sparse",
        dataset=None,
        frames=None,
        patch_cache=None,
    )
    settings["train"].update(
        init_from=str(Path(parent_dir).resolve()),
        learning_rate=parent_config.train.learning_rate * learning_rate_factor,
        max_minutes=max_minutes,
        max_cpu_minutes=max_cpu_minutes,
        epochs=10_000,
        steps_per_epoch=25,  # a checkpoint every 25 batches: saving is not free on a CPU
        early_stopping_patience=None,
        monitor="last",
        freeze_batch_norm=True,
        freeze_encoder=True,  # measured: keeps cell separation (docs/benchmarks.md)
        val_em_metrics=False,
    )
    config = Config.model_validate(settings)
    return config.with_overrides(overrides or {})


def _saved_data_section(parent_config: Config, parent_dir: Path, output: Path) -> dict[str, Any]:
    """The parent's data section for the new version: its normalization, with data paths
    that still resolve from the new folder (relative within one project, else absolute)."""
    saved = parent_config.data.model_dump(mode="json")
    for key in ("images", "masks", "val_images", "val_masks"):
        if not saved.get(key):
            continue
        target = (Path(parent_dir) / saved[key]).resolve()
        project = output.resolve().parent
        inside = project in target.parents
        saved[key] = os.path.relpath(target, output.resolve()) if inside else str(target)
    return saved


def finetune_iter(
    parent: str | Path,
    images: np.ndarray,
    masks: np.ndarray,
    slices: list[int] | np.ndarray | None = None,
    output: str | Path | None = None,
    max_minutes: float | None = 2.0,
    max_cpu_minutes: float | None = None,
    learning_rate_factor: float = LEARNING_RATE_FACTOR,
    replay_images: np.ndarray | None = None,
    replay_masks: np.ndarray | None = None,
    replay_fraction: float = 0.5,
    max_replay_slices: int = 8,
    stop: threading.Event | None = None,
    metadata: dict[str, Any] | None = None,
    mask_kind: str = "auto",
    overrides: dict[str, Any] | None = None,
    holdout_fraction: float = 0.2,
    started: float | None = None,
    overwrite: bool = False,
) -> Generator[TrainEvent, None, Any]:
    """Fine-tune the model in `parent` on corrected slices, yielding training events.

    Parameters
    ----------
    parent
        Model folder to start from (its weights and config).
    images
        (Z, Y, X) raw image stack the corrections were made on.
    masks
        Corrections of the same shape: binary, a sparse annotation (0 unlabeled,
        1 background, 2 foreground) or instances, as `mask_kind` says.
    slices
        Corrected slice indices; None = every slice with labels and some foreground.
    output
        New model folder; default :func:`default_output`. Must not exist unless `overwrite`.
    max_minutes
        Wall-clock budget of the whole fine-tuning, set-up and calibration included,
        counted from `started`.
    max_cpu_minutes
        CPU-time budget of the batches.
    learning_rate_factor
        Learning rate as a fraction of the parent's.
    replay_images, replay_masks
        Original data to mix in; default the parent's own data files.
    replay_fraction, max_replay_slices
        Share of patches from the original data, and at most this many of its slices.
    stop
        Set it to stop after the current batch (the version is still completed).
    metadata
        Extra facts for the new version's ``metadata.json``.
    mask_kind
        What the correction values mean (``data.mask_kind``).
    overrides
        Dotted-key config overrides (CLI flags such as ``train.patch_size``).
    holdout_fraction
        Share of each corrected slice held back to choose the threshold on.
    started
        ``time.perf_counter()`` when the user asked (default: now).
    overwrite
        Replace an existing `output`.

    Returns
    -------
    TrainResult
        With ``model_dir`` the new version.
    """
    from .train import train_iter

    started = time.perf_counter() if started is None else started
    from ..model.model_source import model_folder_of

    parent = model_folder_of(parent)  # a bioimage.io package is imported once
    parent_folder = ModelFolder(Path(parent))
    if not parent_folder.config_path.exists():
        raise UserInputError(f"{parent} is not a model folder: config.yaml is missing")
    parent_config = parent_folder.load_config()
    output = Path(output) if output is not None else default_output(parent_folder.path)
    if output.exists() and not overwrite:
        raise UserInputError(f"{output} exists; choose another --output or pass --overwrite")
    data = prepare_finetune_data(
        parent_config,
        parent_folder.path,
        images,
        masks,
        slices,
        mask_kind,
        replay_images,
        replay_masks,
        replay_fraction,
        max_replay_slices,
        holdout_fraction,
    )
    config = finetune_config(
        parent_config,
        parent_folder.path,
        max_minutes,
        max_cpu_minutes,
        learning_rate_factor,
        overrides,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    config = config.with_overrides({"output": str(partial)})
    deadline = started + max_minutes * 60 - SETUP_RESERVE_SECONDS if max_minutes else None
    facts = {**data.facts, **(metadata or {})}
    try:
        result = yield from train_iter(
            config,
            data.images,
            data.sparse,
            stop=stop,
            metadata=facts,
            deadline=deadline,
            keep_data=False,
        )
        trained = ModelFolder(partial)
        if not (trained.best_path.exists() or trained.last_path.exists()):
            shutil.rmtree(partial, ignore_errors=True)
            return result  # a fault before the first checkpoint: no version
        _complete_version(partial, parent_config, parent_folder.path, output, data, facts)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _move_into_place(partial, output, overwrite)
    result.model_dir = output
    return result


def _complete_version(
    partial: Path,
    parent_config: Config,
    parent_dir: Path,
    output: Path,
    data: FinetuneData,
    facts: dict[str, Any],
) -> None:
    """Give the trained folder the parent's normalization, choose its threshold on the
    held-back bands and record it, before the folder becomes a version."""
    folder = ModelFolder(partial)
    config = folder.load_config()
    settings = config.to_dict()
    settings["data"] = _saved_data_section(parent_config, parent_dir, output)
    settings["output"] = str(output)
    folder.save_config(Config.model_validate(settings))
    calibrating = time.perf_counter()
    calibration = _calibrate(folder, data, parent_config.predict.threshold)
    store_threshold(folder, calibration.threshold)
    meta = folder.read_json(folder.metadata_path, default={}) or {}
    meta.update(
        {
            "calibration": calibration.as_metadata(),
            "calibration_seconds": time.perf_counter() - calibrating,
            "complete": True,
        }
    )
    folder.save_json(folder.metadata_path, meta)


def _calibrate(folder: ModelFolder, data: FinetuneData, default: float):
    """Threshold chosen on the held-back bands of the corrections (pixel error first, then
    Rand F-score: see :mod:`.calibration`)."""
    from ..inference.predict import predict_normalized
    from ..model.model_folder import load_model

    if not data.bands:
        return choose_threshold([], [], region="no held-back pixels", default=default)
    loaded = load_model(folder.path, prefer="last")
    margin = 64  # context around each band, so its edges are predicted as inside a slice
    probabilities, truths, labelled = [], [], []
    for z, (rows, cols) in enumerate(data.bands):
        width = data.corrected_images.shape[-1]
        lo, hi = max(0, cols.start - margin), min(width, cols.stop + margin)
        crop = data.corrected_images[z : z + 1, rows, lo:hi]
        probability = drain(
            predict_normalized(loaded.keras_model, crop, loaded.config.predict, loaded.multiple)
        )[0]
        inner = slice(cols.start - lo, cols.stop - lo)
        probabilities.append(probability[:, inner])
        truths.append(data.corrected_truth[z, rows, cols])
        labelled.append(data.corrected_labelled[z, rows, cols])
    return choose_threshold(
        probabilities,
        truths,
        labelled,
        region="held-back bands of the corrected slices",
        default=default,
        rule="pixel_error",
    )


def _move_into_place(partial: Path, output: Path, overwrite: bool) -> None:
    """Move the completed folder to `output`, synced and in one step: with `overwrite`
    an existing `output` is swapped for it; without, an `output` that appeared while
    fine-tuning is never replaced (see :func:`~napari_unet.engine.atomic.commit`)."""
    from ..atomic import commit

    try:
        commit(partial, output, overwrite)
    except UserInputError:
        shutil.rmtree(partial, ignore_errors=True)
        if output.exists() and not overwrite:
            raise UserInputError(
                f"{output} appeared while fine-tuning; the new version was not written over it"
            ) from None
        raise


def finetune(*args: Any, callback: Any = None, **kwargs: Any) -> Any:
    """Blocking form of :func:`finetune_iter`."""
    return drain(finetune_iter(*args, **kwargs), callback)
