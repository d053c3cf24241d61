"""Import TensorFlow safely inside napari.

On Linux with Mesa OpenGL (llvmpipe, radeonsi, ...), showing napari's canvas
loads ``libLLVM`` with global symbol visibility. TensorFlow bundles its own,
different LLVM; when it is imported *afterwards*, its static initializers bind
to Mesa's LLVM symbols and the process dies with a segmentation fault
(``_GLOBAL__sub_I_DebugInfoMetadata.cpp`` in ``libtensorflow_framework.so``).
Importing TensorFlow with ``RTLD_DEEPBIND`` makes its libraries resolve their
own symbols first, which avoids the clash. The flag is only used when an LLVM
library is already mapped into the process, so nothing changes elsewhere.

This runs in a worker thread, at the start of training, prediction or an
augmentation preview; opening the plugin never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["ensure_tensorflow", "llvm_is_loaded"]

_lock = threading.Lock()


def llvm_is_loaded() -> bool:
    """True if a shared LLVM library (e.g. Mesa's) is mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:
        return False


@contextlib.contextmanager
def _deep_binding() -> Iterator[None]:
    deepbind = getattr(os, "RTLD_DEEPBIND", None)
    if deepbind is None or not llvm_is_loaded():
        yield
        return
    previous = sys.getdlopenflags()
    sys.setdlopenflags(os.RTLD_NOW | deepbind)
    try:
        yield
    finally:
        sys.setdlopenflags(previous)


def ensure_tensorflow() -> None:
    """Import TensorFlow (quietly, and with deep binding where needed) if not yet done."""
    if "tensorflow" in sys.modules:
        return
    with _lock:
        if "tensorflow" in sys.modules:
            return
        with _deep_binding():
            try:
                from napari_unet.engine.tf_import import import_tensorflow_quietly
            except ImportError:  # pragma: no cover - older engine
                import tensorflow  # noqa: F401
            else:
                import_tensorflow_quietly()
