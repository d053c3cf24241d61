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
too (``sys.setdlopenflags``) imports fine but breaks pybind11's per-thread
state (a later job can deadlock on the GIL).

The big libraries are preloaded through a ctypes call to ``dlopen``, which
releases the GIL, so napari keeps redrawing while 1.3 GB of TensorFlow is
mapped and relocated.

This runs in a worker thread, at the start of training, prediction or an
augmentation preview; opening the plugin never imports TensorFlow.
"""

from __future__ import annotations

import ctypes
import gc
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
#: Other big libraries loaded by ``import tensorflow`` (preloaded without the GIL).
_OTHER_LIBRARIES = (
    "python/lib_pywrap_tensorflow_common.so",
    "lite/python/libpywrap_tflite_common.so",
    "python/profiler/internal/_pywrap_profiler_plugin.so",
)


def _dlopen_releasing_the_gil(path: Path, mode: int) -> bool:
    """``dlopen(path, mode)`` through ctypes, which releases the GIL during the call.

    Python's own import holds the GIL while the dynamic loader maps and relocates
    a library (over a second for TensorFlow's 1 GB ``libtensorflow_cc.so.2``),
    which would freeze napari; a ctypes foreign call lets the GUI thread run.
    """
    try:
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
    except (OSError, AttributeError):
        return False
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return bool(dlopen(os.fsencode(path), mode))


def _preload_libraries() -> list[str]:
    """Load TensorFlow's big shared libraries before ``import tensorflow`` (Linux).

    The LLVM-carrying ones get ``RTLD_DEEPBIND`` when an LLVM library is already
    mapped; everything is loaded without holding the GIL. Returns what was loaded.
    """
    if not sys.platform.startswith("linux"):
        return []
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations)))
    deepbind = getattr(os, "RTLD_DEEPBIND", 0) if llvm_is_loaded() else 0
    loaded = []
    for names, mode in ((_LLVM_LIBRARIES, os.RTLD_NOW | deepbind), (_OTHER_LIBRARIES, os.RTLD_NOW)):
        for name in names:
            path = folder / name
            if not path.exists():
                continue
            if _dlopen_releasing_the_gil(path, mode):
                loaded.append(name)
            elif mode & deepbind:  # must be deep-bound: fall back to a GIL-holding dlopen
                ctypes.CDLL(str(path), mode=mode)
                loaded.append(name)
    return loaded


def ensure_tensorflow() -> None:
    """Import TensorFlow (quietly, and with deep binding where needed) if not yet done.

    The import allocates hundreds of thousands of long-lived objects, which
    triggers full garbage collections of the whole napari process (100-250 ms
    each, holding the GIL: visible freezes). The collector is paused during
    the import and the imported objects are then frozen (``gc.freeze``) so that
    later collections do not scan them again.
    """
    if "tensorflow" in sys.modules:
        return
    with _lock:
        if "tensorflow" in sys.modules:
            return
        collecting = gc.isenabled()
        gc.disable()
        try:
            _preload_libraries()
            try:
                from napari_unet.engine.model.tf_import import import_tensorflow_quietly
            except ImportError:  # pragma: no cover - older engine
                import tensorflow  # noqa: F401
            else:
                import_tensorflow_quietly()
            import keras  # noqa: F401  (imported by every job next; same reasons)
        finally:
            gc.freeze()  # O(1); a little import-time garbage is kept for good
            if collecting:
                gc.enable()
