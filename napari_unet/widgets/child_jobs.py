"""Engine jobs in a child process, relayed through a worker thread of the dock.

The worker thread (see :mod:`.workers`) only relays: it mirrors Stop and Pause to the
child and yields the child's events to the GUI. Why a child process, and its protocol:
:mod:`napari_unet.engine.child_process`. :func:`engine_job` falls back to a thread of
napari's process, with the very same call, when the job cannot be sent to a child.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from typing import Any

from .tf_loader import ensure_tensorflow
from .workers import _CONTROL, NICE_INCREMENT, _forward, _in_own_thread

__all__ = ["engine_job", "in_child_process"]


def in_child_process(
    target: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    stop: threading.Event,
    pause: threading.Event | None = None,
    ready: Any = None,
) -> Generator[Any, None, Any] | None:
    """Run the engine generator `target` (``"module:function"``) in a child process.

    Returns the relay of its events (`ready` first, once TensorFlow is imported there),
    or None if the job cannot be sent to a child (data that cannot be pickled, e.g. a
    lazily opened file): the caller then runs it in a thread of this process. See
    :mod:`napari_unet.engine.child_process` for why. ``NAPARI_UNET_JOB_PROCESS=0`` keeps
    every job in this process.
    """
    if os.environ.get("NAPARI_UNET_JOB_PROCESS", "1") == "0":
        return None
    from napari_unet.engine.child_process import ChildProcess

    child = ChildProcess.start(
        target,
        args,
        kwargs,
        preload=("tensorflow",),
        with_pause=pause is not None,
        nice=max(NICE_INCREMENT, 0),
    )
    if child is None:
        return None
    control = _CONTROL.get(threading.get_ident())
    given_up = None if control is None else control.given_up
    return child.relay(stop, pause, given_up=given_up, ready=ready)


def engine_job(
    target: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    stop: threading.Event,
    closing: threading.Event,
    name: str,
    pause: threading.Event | None = None,
    ready: Any = None,
) -> Generator[Any, None, Any]:
    """Run ``target(*args, **kwargs, stop=stop[, pause=pause])``, an engine generator, and
    yield its events (`ready` first, once TensorFlow is imported); return its result.

    In a child process (:func:`in_child_process`), or, when the job cannot be sent to one,
    in a thread of this process (:func:`.workers._in_own_thread`, named `name`). Once
    `closing` is set, the job runs to its end silently (:func:`.workers._forward`).
    """
    child = in_child_process(target, args, kwargs, stop, pause, ready=ready)
    if child is not None:
        return (yield from _forward(child, closing))

    def here() -> Generator[Any, None, Any]:
        ensure_tensorflow()  # first: before any engine module can import it
        from napari_unet.engine.child_process import resolve_target

        function = resolve_target(target)
        if ready is not None:
            yield ready
        extra = {"stop": stop} if pause is None else {"stop": stop, "pause": pause}
        return (yield from function(*args, **kwargs, **extra))

    return (yield from _forward(_in_own_thread(here, name), closing))
