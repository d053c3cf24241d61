"""Background work: napari ``thread_worker`` jobs over the engine generators.

Each job runs in a worker thread and only *yields* engine events (small frozen
dataclasses); the widgets apply them on the main thread through the worker's
``yielded`` signal, so Qt is never touched from a worker thread. TensorFlow is
imported inside the job functions, i.e. only when the user trains, predicts or
previews.

A :class:`Job` bundles the worker with its ``stop`` event (the engine's ``stop=``)
and a ``closing`` event: :meth:`Job.shutdown` disconnects the GUI and asks the engine
to stop; it then runs its stop path (checkpoint, ``metadata.json``) silently.
:meth:`JobRegistry.shutdown_all` joins the jobs with a timeout (:data:`JOIN_SECONDS`);
when napari quits, late jobs are abandoned (engine threads are daemon threads), so
quitting never hangs on a save. After Stop, the job is released to the GUI
(``on_finished`` runs, :attr:`Job.running` is False) at the engine's last event or
:data:`RELEASE_SECONDS` after the request, while validation and saving finish in the
background (:attr:`Job.alive`). Engine threads run at ``nice`` +:data:`NICE_INCREMENT`
(Linux; TensorFlow's thread pools inherit it), so the GUI thread is scheduled first.
"""

from __future__ import annotations

import contextlib
import inspect
import os
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

from .tf_loader import ensure_tensorflow, jobs_hold_heap

__all__ = [
    "JOIN_SECONDS",
    "NICE_INCREMENT",
    "RELEASE_SECONDS",
    "Job",
    "JobRegistry",
    "copy_model_job",
    "preview_job",
    "start_job",
    "write_mask_job",
]


#: Seconds :meth:`JobRegistry.shutdown_all` waits for the jobs when the dock closes.
JOIN_SECONDS = 5.0
#: Seconds after Stop until the GUI gets a job back even if the engine is still saving.
RELEASE_SECONDS = 1.5
#: Added to the nice value of engine threads (Linux), so the GUI thread goes first
#: (``NAPARI_UNET_WORKER_NICE`` overrides it; 0 turns it off).
NICE_INCREMENT = int(os.environ.get("NAPARI_UNET_WORKER_NICE", "10"))
_TERMINAL_KINDS = ("stopped", "done")


def _lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: per-thread nice); never fails."""
    if NICE_INCREMENT <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(current + NICE_INCREMENT, 19))


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
        _lower_priority()
        try:
            with jobs_hold_heap():  # no full scans of napari + TensorFlow (tf_loader)
                generator = factory()
                while True:
                    try:
                        channel.put(("event", next(generator)))
                    except StopIteration as finished:
                        channel.put(("return", finished.value))
                        return
        except BaseException as exc:  # relayed to the napari worker's `errored`
            channel.put(("error", exc))

    # a daemon thread: an abandoned job (see JobRegistry.shutdown_all) cannot keep
    # the interpreter from exiting
    thread = threading.Thread(target=drive, name=f"napari-unet-{name}", daemon=True)
    thread.start()
    control = _CONTROL.get(threading.get_ident())
    while True:
        try:
            kind, value = channel.get(timeout=0.1)
        except queue.Empty:
            if control is not None and control.given_up():
                return None  # napari quits: stop waiting for this job
            continue
        if kind == "event":
            yield value
        elif kind == "return":
            return value
        else:
            raise value


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


class _Control:
    """What a worker thread's relay checks while it waits for the engine thread."""

    def __init__(self, abandon: threading.Event) -> None:
        self.abandon = abandon
        self.worker: Any = None

    def given_up(self) -> bool:
        """True once the job is abandoned, or napari asked every worker to quit (its
        ``aboutToQuit`` handler waits for the thread pool: this lets it empty)."""
        return self.abandon.is_set() or bool(getattr(self.worker, "abort_requested", False))


#: The control of the job running in each worker thread (by thread ident).
_CONTROL: dict[int, _Control] = {}


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
        #: Set by the worker thread itself when the job function has ended.
        self.done = threading.Event()
        #: Set to make a job that outlived the dock return at once (see shutdown_all).
        self.abandon = threading.Event()
        self._connections: list[tuple[Any, Callable[..., Any]]] = []
        self._on_released: list[Callable[[], None]] = []
        self.finished = False
        self.released = False
        self.stop_requested_at: float | None = None
        worker.finished.connect(self._mark_finished)

    def _mark_finished(self) -> None:
        self.finished = True
        self._release()

    def _release(self) -> None:
        """The GUI is done with this job (finished, or stopped and settled): run the
        ``on_finished`` handlers once."""
        if self.released:
            return
        self.released = True
        for callback in self._on_released:
            callback()
        self._on_released.clear()

    def _on_event(self, event: Any) -> None:
        if self.stop_event.is_set() and getattr(event, "kind", None) in _TERMINAL_KINDS:
            self._release()

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
        """True until the worker finished, or until a stopped job was released to the GUI."""
        return not (self.finished or self.released)

    @property
    def alive(self) -> bool:
        """True while the job function runs (also after a stopped job was released)."""
        return not (self.finished or self.done.is_set())

    def request_stop(self) -> None:
        """Ask the engine to stop after the current batch; the GUI gets the job back when
        the engine's last event arrives or after :data:`RELEASE_SECONDS`."""
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        self.stop_requested_at = time.perf_counter()
        from qtpy.QtCore import QTimer

        QTimer.singleShot(int(RELEASE_SECONDS * 1000), self._release_after_timeout)

    def _release_after_timeout(self) -> None:
        if self.stop_event.is_set() and not self.closing.is_set():
            self._release()

    def shutdown(self) -> None:
        """Stop for good: no more GUI updates, engine stop (its stop path runs to the
        end, silently; :meth:`JobRegistry.shutdown_all` decides how long to wait)."""
        self.closing.set()
        self.stop_event.set()
        self.detach()
        self._on_released.clear()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the job function to end; True if it did."""
        return self.finished or self.done.wait(max(timeout, 0.0))


class JobRegistry:
    """The jobs of one dock widget, so that closing it stops them all.

    Deliberately a plain Python object: it can be captured by the widget's
    ``destroyed`` handler without keeping the widget alive.
    """

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        _watch_quit()

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
        """Jobs whose function still runs (optionally only those called `name`)."""
        return [j for j in self.jobs if j.alive and (name is None or j.name == name)]

    def shutdown_all(self, timeout: float = JOIN_SECONDS, abandon: bool | None = None) -> list[Job]:
        """Shut every job down and wait for them, `timeout` seconds in all (idempotent).

        Returns the jobs still running after the timeout. When napari quits (or with
        `abandon`), they are abandoned: their worker returns at once, so Qt's thread
        pool does not hold the exit; the engine thread, a daemon thread, goes on with
        its save while the process ends. When only the dock or a viewer closes, they
        finish their stop path (checkpoint, ``metadata.json``) in the background.
        """
        alive = [job for job in self.jobs if job.alive]
        for job in alive:
            job.shutdown()
        deadline = time.perf_counter() + timeout
        late = [job for job in alive if not job.join(deadline - time.perf_counter())]
        if _QUITTING.is_set() if abandon is None else abandon:
            for job in late:
                job.abandon.set()
        return late


#: Set when the Qt application is about to quit (then late jobs are abandoned).
_QUITTING = threading.Event()
_WATCHING: list[bool] = []


def _watch_quit() -> None:
    """Connect (once) the application's ``aboutToQuit`` to :data:`_QUITTING`."""
    if _WATCHING:
        return
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(_QUITTING.set)
        _WATCHING.append(True)


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
    events = {name: threading.Event() for name in ("stop", "closing", "done", "abandon")}
    if pass_events:
        args = (*args, events["stop"], events["closing"])
    runner = _generator_runner if inspect.isgeneratorfunction(func) else _function_runner
    control = _Control(events["abandon"])
    worker = create_worker(
        runner, func, args, events["done"], control, _start_thread=False, _ignore_errors=True
    )
    control.worker = worker
    job = Job(worker, name)
    job.stop_event, job.closing = events["stop"], events["closing"]
    job.done, job.abandon = events["done"], events["abandon"]
    if isinstance(worker, GeneratorWorker):
        job.connect("yielded", job._on_event)
    if on_yielded is not None:
        job.connect("yielded", on_yielded)
    if on_returned is not None:
        job.connect("returned", on_returned)
    if on_errored is not None:
        job.connect("errored", on_errored)
    if on_finished is not None:
        job._on_released.append(on_finished)
    registry.add(job)
    worker.start()
    return job


def _function_runner(
    func: Callable[..., Any], args: tuple[Any, ...], done: threading.Event, _: _Control
) -> Any:
    """Run `func(*args)` in the worker thread; set `done` when it ends (however it ends)."""
    try:
        return func(*args)
    finally:
        done.set()


def _generator_runner(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    done: threading.Event,
    control: _Control,
) -> Generator[Any, None, Any]:
    """Drive the generator `func(*args)` in the worker thread; `done` is set at its end,
    and `control` is registered for :func:`_in_own_thread` to know when to give up."""
    ident = threading.get_ident()
    _CONTROL[ident] = control
    try:
        return (yield from func(*args))
    finally:
        _CONTROL.pop(ident, None)
        done.set()
