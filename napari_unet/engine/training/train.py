"""Training as a generator of progress events, with a blocking wrapper.

:func:`train_iter` prepares the data, builds (or warm-starts) the U-Net and
runs a custom training loop; it yields a :class:`TrainEvent` every few batches
and after each validation, writes ``best.keras``/``last.keras`` atomically,
TensorBoard logs and the history, and honours a stop request within one batch.

The stages live in their own modules: data preparation in
:mod:`~napari_unet.engine.data.prepare`, the model and its compiled steps in
:mod:`~napari_unet.engine.training.build` and
:mod:`~napari_unet.engine.training.steps`, the model folder in
:mod:`~napari_unet.engine.training.run_folder`, the epochs in
:mod:`~napari_unet.engine.training.loop` (with
:mod:`~napari_unet.engine.training.checkpoints` and
:mod:`~napari_unet.engine.training.faults`). Their public names are
re-exported here for existing callers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The `name as name` imports are re-exports: callers (the CLI, the widgets, the
# learning-rate finder, tests and benchmarks) import these names from this module.
from ..config import Config
from ..data.prepare import PreparedData, prepare_data
from ..data.prepare import _load_pair as _load_pair
from ..data.prepare import _prepare_data as _prepare_data
from ..data.prepare import split_labels as split_labels
from ..errors import StopRequested, UserInputError
from ..events import TrainEvent, drain
from ..model.precision import resolve_precision as resolve_precision
from .build import _build_or_load as _build_or_load
from .build import build_run
from .build import build_training as build_training
from .checkpoints import _monitor_name as _monitor_name
from .checkpoints import _score as _score
from .faults import _fault_message as _fault_message
from .loop import TrainingLoop
from .loop import _eta as _eta
from .loop import _write_scalars as _write_scalars
from .run_folder import KEEP_DATA_BYTES as KEEP_DATA_BYTES
from .run_folder import _keep_array_data as _keep_array_data
from .run_folder import _model_folder as _model_folder
from .run_folder import _with_parent_architecture, check_run_folder, open_run_folder
from .steps import _confusion_metrics as _confusion_metrics
from .steps import _rand_on_slices as _rand_on_slices
from .steps import _Steps as _Steps
from .steps import _validate as _validate
from .task_run import calibrate_for_task, score_test_slices, with_data_channels

__all__ = ["PreparedData", "TrainResult", "prepare_data", "train", "train_iter"]


@dataclass
class TrainResult:
    """What training produced."""

    model_dir: Path
    history: list[dict[str, Any]]
    best_score: float | None
    stopped_reason: str
    steps: int
    elapsed: float
    #: True if a fault (NaN loss, out of memory, full disk, an error in a step)
    #: ended training; `stopped_reason` says which. Checkpoints written before
    #: the fault are kept.
    failed: bool = False
    #: Scores of the ``data.split.test`` slices with the best checkpoint (None without).
    test_metrics: dict[str, Any] | None = None


def train_iter(
    config: Config,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
    stop: threading.Event | None = None,
    metadata: dict[str, Any] | None = None,
    deadline: float | None = None,
    keep_data: bool = True,
    pause: threading.Event | None = None,
    overwrite: bool = False,
) -> Generator[TrainEvent, None, TrainResult]:
    """Train a U-Net, yielding progress events.

    Parameters
    ----------
    config
        The run's configuration; ``config.output`` names the model folder.
    images, masks, val_images, val_masks
        Arrays or paths overriding ``config.data``.
    stop
        Set it to stop: within one batch in every phase (data preparation and model
        building skip what is left; the loop ends after the current batch; the final
        calibration is skipped). The model folder still gets a loadable ``best.keras``
        and ``last.keras`` (the initial weights if no batch ran) and ``metadata.json``.
    metadata
        Extra facts stored in ``metadata.json`` (e.g. layer names).
    deadline
        ``time.perf_counter()`` value by which the batches must end (on top of
        ``train.max_minutes``, which counts from the first batch).
    keep_data
        Store in-memory training arrays in the model folder for later replay.
    pause
        While set, training waits between batches (a stop still ends it at
        once); the time budgets, progress and ETA exclude the paused time.
    overwrite
        Train into a ``config.output`` folder that already holds a model (its
        checkpoints, history and metadata are removed first); otherwise refused.

    Returns
    -------
    TrainResult
        The model folder, history and why training ended.
    """
    stop = stop or threading.Event()
    started = time.perf_counter()
    check_run_folder(config, overwrite)
    config = _with_parent_architecture(config)
    try:
        prepared = prepare_data(config, images, masks, val_images, val_masks, stop=stop)
    except StopRequested as stopped:  # no data to train on: the model is written untrained
        prepared = _no_data(str(stopped))
    config = with_data_channels(config, prepared)  # model.in_channels as the data has it
    keep = keep_data and not stop.is_set()
    config, folder = open_run_folder(config, images, masks, keep, overwrite)
    run = build_run(config, prepared, folder, stop)
    loop = TrainingLoop(run, started)
    loop.budget.deadline = deadline
    yield loop.start_event()
    yield from loop.run_epochs(stop, pause)
    _ensure_checkpoints(loop)
    calibration = calibrate_for_task(run, loop.failed, stop)  # binary: the threshold
    test = score_test_slices(run, loop.failed, stop)  # data.split.test, best checkpoint
    result = _finish(loop, {**(metadata or {}), **calibration, **test})
    yield _final_event(loop, result)
    return result


def _no_data(phase: str) -> PreparedData:
    """Empty training data, after a stop during data preparation (nothing to train on)."""
    import numpy as np

    empty = np.zeros((0, 1, 1), np.float32)
    return PreparedData(empty, empty, empty, None, None, None, {"stopped_during": phase})


def _ensure_checkpoints(loop: TrainingLoop) -> None:
    """Make sure a training that ran or was stopped leaves ``last.keras`` and ``best.keras``.

    A stop before the first epoch ended writes the model as it is (its initial or
    warm-started weights); a fault writes nothing more. A failed write ends the
    training as failed (the final event still follows).
    """
    run = loop.run
    try:
        if not loop.failed and loop.step == 0 and not run.folder.last_path.exists():
            run.folder.save_weights_file(run.model, "last")
        loop.checkpoints.ensure_best(run.model, loop.step, loop.failed)
        if not loop.failed and loop.step == 0 and not run.folder.best_path.exists():
            run.folder.save_weights_file(run.model, "best")
    except UserInputError as exc:  # e.g. a full disk
        loop.stopped_reason, loop.failed = str(exc), True


def _finish(loop: TrainingLoop, metadata: dict[str, Any] | None) -> TrainResult:
    """Write ``metadata.json`` and sum up the training.

    A failure to write it (e.g. a full disk) turns a successful training into a
    failed one; the final event still follows.

    Parameters
    ----------
    loop
        The loop after :meth:`~TrainingLoop.run_epochs`.
    metadata
        Extra facts for ``metadata.json``.

    Returns
    -------
    TrainResult
        The model folder, history and why training ended.
    """
    run = loop.run
    elapsed = time.perf_counter() - loop.started
    summary = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parent": run.config.train.init_from,
        "precision": run.precision,
        "data": run.prepared.description,
        "steps": loop.step,
        "elapsed_seconds": elapsed,
        # from the last batch to here: the last epoch's validation and checkpoints, closing
        # the data stream and TensorBoard, calibration and test scoring (a wall-clock budget
        # ends the batches; this is what the budget's reserve must cover)
        "seconds_after_last_batch": time.perf_counter() - loop.last_batch_end,
        "stopped_reason": loop.stopped_reason,
        "failed": loop.failed,
        "best_score": loop.checkpoints.best,
        "monitor": loop.checkpoints.monitor_name(run.val_ds is not None),
        "final": loop.history[-1] if loop.history else {},
        **(metadata or {}),
    }
    try:
        run.folder.save_json(run.folder.metadata_path, summary)
    except UserInputError as exc:  # e.g. a full disk: still end with a final event
        if not loop.failed:
            loop.stopped_reason, loop.failed = str(exc), True
    return TrainResult(
        model_dir=run.folder.path,
        history=loop.history,
        best_score=loop.checkpoints.best,
        stopped_reason=loop.stopped_reason,
        steps=loop.step,
        elapsed=elapsed,
        failed=loop.failed,
        test_metrics=summary.get("test"),
    )


def _final_event(loop: TrainingLoop, result: TrainResult) -> TrainEvent:
    """The ``done`` (finished or budget reached) or ``stopped`` event that ends training."""
    finished = result.stopped_reason in ("finished", "time budget reached")
    last = result.history[-1] if result.history else {}
    return TrainEvent(
        kind="done" if finished else "stopped",
        epoch=len(result.history),
        total_epochs=loop.train_cfg.epochs,
        step=result.steps,
        total_steps=loop.total_steps,
        loss=last["loss"] if result.history else None,
        val={k[4:]: v for k, v in last.items() if k.startswith("val_")},
        elapsed=result.elapsed,
        eta=0.0,
        model_dir=str(result.model_dir),
        message=result.stopped_reason,
    )


def train(
    config: Config,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
    callback: Callable[[TrainEvent], None] | None = None,
    stop: threading.Event | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Blocking form of :func:`train_iter`; `callback(event)` sees every event."""
    events = train_iter(config, images, masks, val_images, val_masks, stop, overwrite=overwrite)
    return drain(events, callback)
