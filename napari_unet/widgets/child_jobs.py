"""Engine jobs in a child process, relayed through a worker thread of the dock.

The worker thread (see :mod:`.workers`) only relays: it mirrors Stop and Pause to the
child and yields the child's events to the GUI. Why a child process, and its protocol:
:mod:`napari_unet.engine.child_process`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from typing import Any

from .workers import _CONTROL, NICE_INCREMENT

__all__ = ["in_child_process"]


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
