"""Import TensorFlow safely inside napari.

On Linux with Mesa OpenGL (llvmpipe, radeonsi, ...), showing napari's canvas
loads ``libLLVM`` with global symbol visibility. TensorFlow's core libraries
(``libtensorflow_framework.so.2``, ``libtensorflow_cc.so.2``) contain their own,
different LLVM; when TensorFlow is imported *afterwards*, their static
initializers bind to Mesa's LLVM symbols and the process dies with a
segmentation fault (``_GLOBAL__sub_I_DebugInfoMetadata.cpp``).

The fix: when an LLVM library is already mapped, preload exactly those
TensorFlow libraries with ``RTLD_DEEPBIND`` (they resolve their own symbols
first), then import TensorFlow normally. Only the libraries that define LLVM
symbols are deep-bound: deep-binding TensorFlow's pybind11 extension modules
too (``sys.setdlopenflags``) imports fine but deadlocks the next training run
in a reused worker thread (a stale pybind11 thread state re-acquiring the GIL).

This runs in a worker thread, at the start of training, prediction or an
augmentation preview; opening the plugin never imports TensorFlow.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import threading
from pathlib import Path

__all__ = ["ensure_tensorflow", "llvm_is_loaded"]

_lock = threading.Lock()


def llvm_is_loaded() -> bool:
    """True if a shared LLVM library (e.g. Mesa's) is mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:
        return False


#: TensorFlow libraries that define LLVM symbols, in load order (dependencies first).
_LLVM_LIBRARIES = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")


def _preload_with_deep_binding() -> list[str]:
    """dlopen TensorFlow's LLVM-carrying libraries with RTLD_DEEPBIND; return those loaded."""
    deepbind = getattr(os, "RTLD_DEEPBIND", None)
    if deepbind is None or not llvm_is_loaded():
        return []
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations)))
    loaded = []
    for name in _LLVM_LIBRARIES:
        path = folder / name
        if path.exists():
            ctypes.CDLL(str(path), mode=os.RTLD_NOW | deepbind)
            loaded.append(name)
    return loaded


def ensure_tensorflow() -> None:
    """Import TensorFlow (quietly, and with deep binding where needed) if not yet done."""
    if "tensorflow" in sys.modules:
        return
    with _lock:
        if "tensorflow" in sys.modules:
            return
        _preload_with_deep_binding()
        try:
            from napari_unet.engine.tf_import import import_tensorflow_quietly
        except ImportError:  # pragma: no cover - older engine
            import tensorflow  # noqa: F401
        else:
            import_tensorflow_quietly()
