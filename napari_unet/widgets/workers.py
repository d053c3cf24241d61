"""Background work: napari ``thread_worker`` jobs over the engine generators.

Each job runs in a worker thread and only *yields* engine events (small frozen
dataclasses); the widgets apply them on the main thread through the worker's
``yielded`` signal, so Qt is never touched from a worker thread. TensorFlow is
imported inside the job functions, i.e. only when the user trains, predicts or
previews.

A :class:`Job` bundles the worker with its ``stop`` event (passed to the engine
as ``stop=``: training ends within one batch, keeping the best checkpoint)
and a ``closing`` event: when the widget or the viewer closes,
:meth:`Job.shutdown` disconnects the GUI, asks the engine to stop and quits the
worker; the job then runs the engine's stop path to its end (checkpoint,
``metadata.json``) without yielding anything more.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from napari.qt.threading import FunctionWorker, GeneratorWorker, create_worker

from napari_unet.engine.events import drain

from .tf_loader import ensure_tensorflow

__all__ = [
    "Job",
    "JobRegistry",
    "copy_model_job",
    "predict_job",
    "preview_job",
    "start_job",
    "train_job",
    "write_mask_job",
]


# --------------------------------------------------------------------------- job functions
# These run in the worker thread: no Qt, no napari layers, only engine calls.


def _forward(generator: Iterator[Any], closing: threading.Event) -> Generator[Any, None, Any]:
    """Yield the engine's events; once `closing` is set, run it to its end silently."""
    while True:
        try:
            event = next(generator)
        except StopIteration as finished:
            return finished.value
        if not closing.is_set():
            yield event
            time.sleep(0)  # let the GUI thread take the GIL right away


def _in_own_thread(
    factory: Callable[[], Generator[Any, None, Any]], name: str
) -> Generator[Any, None, Any]:
    """Drive ``factory()`` in a new Python thread; relay its events, return value and errors.

    All TensorFlow work runs in a fresh thread per job, never in a (reused)
    Qt pool thread: TensorFlow's pybind11 bindings cache a Python thread state
    per OS thread, and a pool thread gets a new one for each job, so a second
    job on the same pool thread can deadlock on the GIL. The engine generator
    is driven by that thread on its own (it never waits for the GUI); this
    generator relays what it produces.
    """
    channel: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def drive() -> None:
        try:
            generator = factory()
            while True:
                try:
                    channel.put(("event", next(generator)))
                except StopIteration as finished:
                    channel.put(("return", finished.value))
                    return
        except BaseException as exc:  # relayed to the napari worker's `errored`
            channel.put(("error", exc))

    thread = threading.Thread(target=drive, name=f"napari-unet-{name}")
    thread.start()
    while True:
        kind, value = channel.get()
        if kind == "event":
            yield value
        elif kind == "return":
            return value
        else:
            raise value


def train_job(
    config: Any,
    images: Any,
    masks: Any,
    val_images: Any,
    val_masks: Any,
    metadata: dict[str, Any] | None,
    stop: threading.Event,
    closing: threading.Event,
) -> Generator[Any, None, Any]:
    """Train with :func:`~napari_unet.engine.training.train.train_iter`, yielding its TrainEvents.

    Returns the engine's ``TrainResult``.
    """

    def events() -> Generator[Any, None, Any]:
        ensure_tensorflow()  # first: before any engine module can import it
        from napari_unet.engine.training.train import train_iter

        return (
            yield from train_iter(
                config, images, masks, val_images, val_masks, stop=stop, metadata=metadata
            )
        )

    return (yield from _forward(_in_own_thread(events, "training"), closing))


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
        from napari_unet.engine.model.model_folder import LoadedModel, load_model

        loaded = model if isinstance(model, LoadedModel) else load_model(model)
        yield loaded
        return (yield from predict_iter(loaded, np.asarray(images), predict_config, stop=stop))

    return (yield from _forward(_in_own_thread(events, "prediction"), closing))


def preview_job(
    image2d: np.ndarray, mask2d: np.ndarray | None, config: Any, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` augmented versions of one raw slice and its mask, normalized and
    binarized exactly as for training, then augmented with the training ops."""

    def run() -> Generator[Any, None, tuple[np.ndarray, np.ndarray]]:
        ensure_tensorflow()
        from napari_unet.engine.data.augment import preview_augmentations
        from napari_unet.engine.data.preprocess import normalize_percentile
        from napari_unet.engine.training.train import split_labels

        low, high = config.data.percentiles
        image = normalize_percentile(image2d[None], low, high, per_slice=True)[0]
        mask = None if mask2d is None else split_labels(np.asarray(mask2d)[None])[0][0]
        return preview_augmentations(image, mask, config, n=n, seed=seed)
        yield  # a generator without events

    return drain(_in_own_thread(run, "preview"))


def write_mask_job(path: Path, array: np.ndarray, fmt: str, overwrite: bool) -> Path:
    """Write a mask stack as a TIFF (``fmt="tiff"``) or a folder of PNG slices (``"png"``)."""
    from napari_unet.engine.io.stacks import write_png_slices, write_tiff

    if fmt == "png":
        return write_png_slices(path, array, overwrite=overwrite)
    return write_tiff(path, array, overwrite=overwrite)


def copy_model_job(source: Path, target: Path, overwrite: bool) -> Path:
    """Copy a model folder; the copy appears under `target` only once complete."""
    from napari_unet.engine.atomic import atomic_dir
    from napari_unet.engine.errors import UserInputError

    source, target = Path(source), Path(target)
    if not (source / "config.yaml").exists():
        raise UserInputError(f"{source} is not a model folder (config.yaml is missing)")
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise UserInputError(f"cannot copy the model folder {source} into itself")
    try:
        with atomic_dir(target, overwrite) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot copy {source} to {target}: {exc.strerror or exc}") from None
    return target


# --------------------------------------------------------------------------- jobs


class Job:
    """A started worker, its stop/closing events and its GUI connections.

    Parameters
    ----------
    worker
        The napari worker (not yet started).
    name
        What it does, for messages ("training").
    """

    def __init__(self, worker: FunctionWorker | GeneratorWorker, name: str) -> None:
        self.worker = worker
        self.name = name
        self.stop_event = threading.Event()
        self.closing = threading.Event()
        self._connections: list[tuple[Any, Callable[..., Any]]] = []
        self.finished = False
        worker.finished.connect(self._mark_finished)

    def _mark_finished(self) -> None:
        self.finished = True

    def connect(self, signal: str, slot: Callable[..., Any]) -> None:
        """Connect `slot` to the worker's `signal`, remembering it for :meth:`detach`."""
        bound = getattr(self.worker, signal)
        bound.connect(slot)
        self._connections.append((bound, slot))

    def detach(self) -> None:
        """Disconnect every GUI slot (the widgets may be gone)."""
        for signal, slot in self._connections:
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        self._connections.clear()

    @property
    def running(self) -> bool:
        """True until the worker's ``finished`` signal."""
        return not self.finished

    def request_stop(self) -> None:
        """Ask the engine to stop after the current batch."""
        self.stop_event.set()

    def shutdown(self) -> None:
        """Stop for good: no more GUI updates, engine stop, worker quit."""
        self.closing.set()
        self.stop_event.set()
        self.detach()
        try:
            self.worker.quit()
        except RuntimeError:  # the worker's QObject is already deleted
            pass


class JobRegistry:
    """The jobs of one dock widget, so that closing it stops them all.

    Deliberately a plain Python object: it can be captured by the widget's
    ``destroyed`` handler without keeping the widget alive.
    """

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def add(self, job: Job) -> Job:
        """Record a job until its worker finishes."""
        self.jobs = [j for j in self.jobs if j.running]
        self.jobs.append(job)
        job.worker.finished.connect(lambda: self.discard(job))
        return job

    def discard(self, job: Job) -> None:
        """Forget a finished job (so it keeps no widget alive)."""
        self.jobs = [j for j in self.jobs if j is not job]

    def running(self, name: str | None = None) -> list[Job]:
        """Running jobs (optionally only those called `name`)."""
        return [j for j in self.jobs if j.running and (name is None or j.name == name)]

    def shutdown_all(self) -> None:
        """Shut every running job down (idempotent)."""
        for job in self.jobs:
            if job.running:
                job.shutdown()


def start_job(
    registry: JobRegistry,
    name: str,
    func: Callable[..., Any],
    *args: Any,
    on_yielded: Callable[[Any], None] | None = None,
    on_returned: Callable[[Any], None] | None = None,
    on_errored: Callable[[BaseException], None] | None = None,
    on_finished: Callable[[], None] | None = None,
    pass_events: bool = False,
) -> Job:
    """Create, connect and start a worker for `func(*args)`.

    Parameters
    ----------
    registry
        Where the job is recorded (for shutdown).
    name
        What the job does.
    func
        A job function above (a generator function gives a GeneratorWorker).
    *args
        Its arguments; with `pass_events` the job's ``stop`` and ``closing``
        events are appended.
    on_yielded, on_returned, on_errored, on_finished
        Main-thread handlers of the worker's signals.
    pass_events
        Append ``stop, closing`` to `args` (generator jobs over the engine).
    """
    holder: dict[str, threading.Event] = {}
    if pass_events:
        holder["stop"], holder["closing"] = threading.Event(), threading.Event()
        args = (*args, holder["stop"], holder["closing"])
    worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True)
    job = Job(worker, name)
    if holder:
        job.stop_event, job.closing = holder["stop"], holder["closing"]
    if on_yielded is not None:
        job.connect("yielded", on_yielded)
    if on_returned is not None:
        job.connect("returned", on_returned)
    if on_errored is not None:
        job.connect("errored", on_errored)
    if on_finished is not None:
        job.connect("finished", on_finished)
    registry.add(job)
    worker.start()
    return job
