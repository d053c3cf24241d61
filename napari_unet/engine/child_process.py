"""Run an engine generator in a child Python process and relay its events.

Why: a TensorFlow job that runs in a thread of the napari process shares its GIL.
Importing TensorFlow holds the GIL for long stretches (C++ static initializers,
``ml_dtypes``' type registration: ``benchmarks/bench_import_stall.py``), and so do parts
of graph tracing; on a busy 2-core machine that froze the viewer for seconds
(docs/benchmarks.md, "Responsiveness"). In a child process the job has its own
interpreter: the GUI thread keeps its GIL, TensorFlow never meets napari's OpenGL
libraries (no LLVM clash, see ``widgets/tf_loader.py``), and the whole child runs at a
lower CPU priority.

Protocol, over two pipes (``multiprocessing.connection`` framing, pickled values):

- parent -> child ("control"): first the job ``(target, args, kwargs, options)``, then
  ``"stop"``, ``"pause"`` and ``"resume"``; the pipe's end (the parent is gone) counts as
  a stop, so the child still writes its checkpoint and ends;
- child -> parent ("events"): ``("ready", None)`` once the preloaded modules are imported,
  ``("event", value)`` for each yielded value, then ``("return", value)`` or
  ``("error", exception, traceback_text)``.

Pickle is safe here: only this process and the child it started hold the pipes' ends;
nothing pickled is ever read from a file, a socket or user input (the only module the
source audit in ``tests/test_safe_loading.py`` lets use pickle).

The child is a fresh interpreter (``python -m napari_unet.engine.child_process``), not a
fork of a process that runs Qt threads, and it does not re-import the parent's
``__main__`` as ``multiprocessing``'s spawn would. Ctrl-C in the terminal reaches the
parent only: the child ignores SIGINT and stops when the parent asks.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Generator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = ["ChildEnded", "ChildProcess", "child_main", "resolve_target"]


def resolve_target(target: str) -> Callable[..., Any]:
    """The function named by ``"package.module:function"`` (imported if needed)."""
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


class ChildEnded(RuntimeError):
    """The child process ended without sending a result (killed, crashed)."""


class ChildProcess:
    """A started child running ``target(*args, stop=..., [pause=...], **kwargs)``.

    Use :meth:`start`, then iterate :meth:`relay`.

    Parameters
    ----------
    process
        The child.
    events, control
        The parent's ends of the two pipes.
    """

    def __init__(self, process: subprocess.Popen, events: Connection, control: Connection) -> None:
        self.process = process
        self.events = events
        self.control = control
        self._stop_sent = False

    @classmethod
    def start(
        cls,
        target: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        preload: tuple[str, ...] = (),
        with_pause: bool = False,
        nice: int = 0,
    ) -> ChildProcess | None:
        """Start a child for ``module:function`` `target`; None if the job cannot be
        pickled (or on Windows, where descriptors cannot be handed over).

        Parameters
        ----------
        target
            ``"package.module:generator_function"``, called in the child with `args`,
            `kwargs` and ``stop=`` (and ``pause=`` with `with_pause`) events.
        preload
            Modules the child imports before it reports ``ready``.
        nice
            Added to the child's CPU nice value (Unix), so the GUI is scheduled first.
        """
        if os.name != "posix":  # the pipes are handed over by descriptor (pass_fds)
            return None
        job = (target, tuple(args), dict(kwargs or {}), {"preload": preload, "pause": with_pause})
        try:  # pickled first: lazily opened files may not travel; the caller then runs it here
            payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError):
            return None
        events_read, events_write = os.pipe()
        control_read, control_write = os.pipe()
        command = [sys.executable, "-m", __name__, str(events_write), str(control_read), str(nice)]
        # the child imports this very napari_unet, wherever the parent found it
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        try:
            process = subprocess.Popen(
                command,
                pass_fds=(events_write, control_read),
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path},
            )
        finally:
            os.close(events_write)
            os.close(control_read)
        events = Connection(events_read, writable=False)
        child = cls(process, events, Connection(control_write, readable=False))
        child.control.send_bytes(payload)
        return child

    def _send(self, message: str) -> None:
        with contextlib.suppress(OSError):
            self.control.send(message)
        self._stop_sent = self._stop_sent or message == "stop"

    def relay(
        self,
        stop: threading.Event,
        pause: threading.Event | None = None,
        given_up: Callable[[], bool] | None = None,
        ready: Any = None,
        poll_seconds: float = 0.1,
    ) -> Generator[Any, None, Any]:
        """Yield the child's events (and `ready` once it is set up); return its result.

        `stop` and `pause` are mirrored to the child while waiting; if `given_up()` turns
        True the relay returns None at once and the child is left to stop and save on its
        own. The child's exception is raised here; a child that ends without a result
        raises :class:`ChildEnded`.
        """
        paused = False
        try:
            while True:
                if stop.is_set() and not self._stop_sent:
                    self._send("stop")
                if pause is not None and pause.is_set() != paused:
                    paused = pause.is_set()
                    self._send("pause" if paused else "resume")
                if given_up is not None and given_up():
                    self._send("stop")
                    return None
                if not self.events.poll(poll_seconds):
                    continue
                try:
                    kind, *values = self.events.recv()
                except EOFError:
                    code = self.process.wait()
                    message = f"the job's process ended unexpectedly (exit code {code})"
                    raise ChildEnded(message) from None
                if kind == "ready":
                    if ready is not None:
                        yield ready
                elif kind == "event":
                    yield values[0]
                elif kind == "return":
                    return values[0]
                else:
                    raise values[0]
        finally:
            self.close()

    def close(self) -> None:
        """Tell a still running child to stop and close the parent's pipe ends."""
        if self.process.poll() is None and not self._stop_sent:
            self._send("stop")
        self.control.close()
        self.events.close()


# --------------------------------------------------------------------------- the child


def _listen(control: Connection, stop: threading.Event, pause: threading.Event) -> None:
    """Apply the parent's control messages; a closed pipe (parent gone) is a stop."""
    try:
        while True:
            message = control.recv()
            if message == "stop":
                stop.set()
            elif message == "pause":
                pause.set()
            elif message == "resume":
                pause.clear()
    except (EOFError, OSError):
        stop.set()


def child_main(events_fd: int, control_fd: int, nice: int = 0) -> int:
    """The child's side: read the job, run it, send its events; the exit code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice > 0 and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(nice)
    events = Connection(events_fd, readable=False)
    control = Connection(control_fd, writable=False)
    target, args, kwargs, options = pickle.loads(control.recv_bytes())
    stop, pause = threading.Event(), threading.Event()
    threading.Thread(target=_listen, args=(control, stop, pause), daemon=True).start()
    parent_gone = threading.Event()

    def send(message: tuple[Any, ...]) -> None:
        if parent_gone.is_set():
            return
        try:
            events.send(message)
        except (OSError, pickle.PicklingError):
            parent_gone.set()  # nobody listens: finish (and save) without reporting
            stop.set()

    try:
        for module in options["preload"]:
            importlib.import_module(module)
        function = resolve_target(target)
        send(("ready", None))
        extra: dict[str, Any] = {"stop": stop}
        if options["pause"]:
            extra["pause"] = pause
        generator = function(*args, **kwargs, **extra)
        while True:
            try:
                value = next(generator)
            except StopIteration as finished:
                send(("return", finished.value))
                return 0
            send(("event", value))
    except BaseException as exc:  # reported to the parent, raised there
        text = traceback.format_exc()
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        send(("error", exc, text))
        return 1


if __name__ == "__main__":
    sys.exit(child_main(*(int(value) for value in sys.argv[1:4])))
