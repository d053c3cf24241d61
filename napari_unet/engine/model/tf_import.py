"""Import TensorFlow without its start-up chatter on stderr.

TensorFlow's C++ layer prints several lines (oneDNN notes, "could not find
cuda drivers", cuInit errors) before its logging is configured, whatever
``TF_CPP_MIN_LOG_LEVEL`` says. The CLI promises one clear line on stderr for
a user error, so the import and device discovery run with file descriptor 2
pointed at /dev/null. Python exceptions still propagate.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType

__all__ = ["import_tensorflow_quietly"]


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. some IDEs): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> ModuleType:
    """Import TensorFlow (and list its devices) with C++ start-up logs hidden."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
