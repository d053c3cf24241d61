"""Worker job functions of the Train and Export tabs (run with :func:`.workers.start_job`).

Like those of :mod:`.workers` they run in a worker thread, touch neither Qt
nor napari layers and only yield small frozen values; TensorFlow is imported
inside them. :func:`train_job` adds a ``pause`` event and start-up
:class:`Phase` markers to the engine's training events; :func:`lr_find_job`
runs the learning-rate range test; :func:`export_model_job` relays
:func:`~napari_unet.engine.model.exchange.export_model`'s step messages;
:func:`write_prediction_job` writes a mask or probability map in any export
format.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .child_jobs import engine_job
from .tf_loader import ensure_tensorflow
from .workers import _forward, _in_own_thread

__all__ = [
    "ExportStep",
    "Phase",
    "export_model_job",
    "lr_find_job",
    "train_job",
    "write_prediction_job",
]


@dataclass(frozen=True)
class Phase:
    """A start-up phase of training, before the engine's ``start`` event.

    Attributes
    ----------
    index, total
        ``index`` of ``total`` phases (the engine's start event is the last).
    text
        What is being done.
    """

    index: int
    total: int
    text: str
    kind: str = "phase"


#: The start-up phases of :func:`train_job`; the third is the engine's ``start`` event.
START_PHASES = 3


@dataclass(frozen=True)
class ExportStep:
    """A step message of a model export (``on_step`` of ``export_model``)."""

    text: str


def train_job(
    config: Any,
    images: Any,
    masks: Any,
    val_images: Any,
    val_masks: Any,
    metadata: dict[str, Any] | None,
    pause: threading.Event,
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[Any, None, Any]:
    """Train with :func:`~napari_unet.engine.training.train.train_iter`, pausable.

    Yields two :class:`Phase` markers (importing TensorFlow; preparing the data
    and building the network), then the engine's TrainEvents. Returns the
    engine's ``TrainResult``. The engine runs in a child process
    (:func:`.child_jobs.engine_job`: the viewer keeps its GIL), or in a thread
    of this process when the data cannot be sent to one.
    """
    yield Phase(1, START_PHASES, "starting the training process, loading TensorFlow")
    return (
        yield from engine_job(
            "napari_unet.engine.training.train:train_iter",
            (config, images, masks, val_images, val_masks),
            {"metadata": metadata},
            stop,
            closing,
            "training",
            pause=pause,
            ready=Phase(2, START_PHASES, "reading the data, building and compiling the network"),
        )
    )


def lr_find_job(
    config: Any,
    images: Any,
    masks: Any,
    options: dict[str, Any],
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[Any, None, Any]:
    """The learning-rate range test (:func:`~napari_unet.engine.training.lr_finder.lr_find_iter`).

    `options` are ``min_lr``, ``max_lr``, ``steps`` and ``output``. Yields
    LRFindEvents; returns the ``LRFindResult``.
    """

    def events() -> Generator[Any, None, Any]:
        ensure_tensorflow()
        from napari_unet.engine.training.lr_finder import lr_find_iter

        return (yield from lr_find_iter(config, images, masks, stop=stop, **options))

    return (yield from _forward(_in_own_thread(events, "lr-find"), closing))


def export_model_job(
    model_dir: Path,
    fmt: str,
    output: Path,
    overwrite: bool,
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[ExportStep, None, Path]:
    """Export a model folder (the CLI's ``export-model`` call), yielding its step messages.

    The export itself cannot be interrupted; `stop` only drops the remaining messages.
    """

    def events() -> Generator[ExportStep, None, Path]:
        ensure_tensorflow()
        from napari_unet.engine.model.exchange import export_model

        steps: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["path"] = export_model(model_dir, fmt, output, overwrite, on_step=steps.put)
            except BaseException as exc:  # relayed below
                outcome["error"] = exc
            finally:
                steps.put(None)

        # export_model reports steps through a callback: run it in a thread of its own
        # (a fresh one, as TensorFlow wants) and yield the messages as they come
        thread = threading.Thread(target=work, name="napari-unet-export-model")
        thread.start()
        while (text := steps.get()) is not None:
            if not stop.is_set():
                yield ExportStep(text)
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return Path(outcome["path"])

    return (yield from _forward(events(), closing))


def write_prediction_job(
    output: str | Path,
    data: np.ndarray,
    probability: bool,
    overwrite: bool,
    ids: list[str] | None = None,
) -> Path:
    """Write a mask (nonzero = foreground) or a probability map; the format follows the
    output's suffix (``.tif``, ``.npy``, ``.csv`` run-length encoded, or a folder of PNGs)."""
    from napari_unet.engine.io.export import write_prediction

    if probability:
        path, _ = write_prediction(output, probability=data, overwrite=overwrite, ids=ids)
    else:
        mask01 = (np.asarray(data) != 0).astype(np.uint8)
        path, _ = write_prediction(output, mask01=mask01, overwrite=overwrite, ids=ids)
    return path
