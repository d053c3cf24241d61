"""Import TensorFlow safely inside napari, without freezing it.

**Two copies of LLVM.** TensorFlow's core libraries (``libtensorflow_framework.so.2``,
``libtensorflow_cc.so.2``) carry their own LLVM and export its symbols; Mesa's
OpenGL drivers (llvmpipe, radeonsi, ...), which napari's canvas loads, use another
LLVM. Whichever is loaded second binds to the first one's symbols:

* napari first, then ``import tensorflow``: TensorFlow's static initializers call
  Mesa's LLVM and the process dies (``_GLOBAL__sub_I_DebugInfoMetadata.cpp``);
* TensorFlow first (an engine script, the test suite), then a napari canvas: the GL
  driver calls TensorFlow's LLVM (``llvm::FixedVectorType::get`` inside ``glClear``)
  and crashes, or corrupts the heap so that the process aborts at exit
  (``free(): invalid pointer``).

Two narrow fixes, one per direction:

* TensorFlow's symbols stay private (:func:`keep_symbols_local`): its static build
  loads ``_pywrap_tensorflow_internal`` with ``RTLD_GLOBAL``, which its own code says
  is only needed by custom ops without explicit library dependencies (we have none);
  without it, a later LLVM never sees TensorFlow's.
* TensorFlow resolves its own LLVM first (``RTLD_DEEPBIND`` on exactly the two
  LLVM-carrying libraries) when another LLVM is already in the process-wide symbol
  namespace. That is decided by the clash itself (:func:`llvm_clash`: one of the LLVM
  symbols TensorFlow defines already resolves in the global scope), not by a library
  name, so a statically linked LLVM (Mesa's ``libgallium``, ``llvmlite``) counts too.
  Deep-binding TensorFlow's pybind11 extension modules as well
  (``sys.setdlopenflags``) would break pybind11's per-thread state (a later job can
  deadlock on the GIL), so only those two libraries are deep-bound.
  ``tests/test_tf_loader.py`` shows both crashes and both fixes in real processes.

**Keeping napari responsive.** This runs in a worker thread. The big libraries are
preloaded through a ctypes ``dlopen``, which releases the GIL while 1.3 GB are mapped
and relocated. The garbage collector's automatic runs are held off for the import
(measured: left on, the ~700,000 objects it creates trigger about 7 full collections
of 20-490 ms each, holding the GIL). Those objects would still all sit in the youngest
generation when collection resumes: measured on an idle AMD EPYC, the next collections
then took 180 ms (generation 0), 190 ms (1) and 375 ms twice (2), each a stall of the
GUI. So the objects alive when a TensorFlow job runs are moved out of the collector's
scans for the job (:func:`jobs_hold_heap`, ``gc.freeze``) and handed back when the last
job ends (``gc.unfreeze``): nothing is kept out of collection for good (a layer deleted
during a training is collected after it), and between jobs the collector sees
everything. Nothing is redirected:
TensorFlow's few start-up lines go to napari's terminal, and stderr stays whole for
other threads and for a faulthandler dump.

Opening the plugin never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "ensure_tensorflow",
    "jobs_hold_heap",
    "keep_symbols_local",
    "llvm_clash",
    "llvm_is_loaded",
]

_lock = threading.Lock()
_heap_lock = threading.Lock()
_heap_holders = 0  # jobs inside jobs_hold_heap()

#: LLVM symbols exported by TensorFlow 2.21's framework library and by Mesa's LLVM 14
#: and 15 alike (``raw_ostream::write``, ``raw_ostream::flush_nonempty``,
#: ``FixedVectorType::get``, checked with ``nm -D``): if one already resolves
#: process-wide, TensorFlow would bind to another LLVM.
_LLVM_PROBES = (
    b"_ZN4llvm11raw_ostream5writeEPKcm",
    b"_ZN4llvm11raw_ostream14flush_nonemptyEv",
    b"_ZN4llvm15FixedVectorType3getEPNS_4TypeEj",
)
#: TensorFlow's module that turns ``RTLD_GLOBAL`` on for its core extension.
_GLOBAL_FLAGS_MODULE = "tensorflow.python.pywrap_dlopen_global_flags"


def llvm_clash() -> bool:
    """True if an LLVM already resolves in this process's global symbol scope (Linux).

    ``dlsym(RTLD_DEFAULT, ...)`` of LLVM symbols that TensorFlow defines: what
    TensorFlow's libraries would bind to if they were not deep-bound.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        dlsym = ctypes.CDLL(None).dlsym
    except (OSError, AttributeError):
        return False
    dlsym.restype = ctypes.c_void_p
    dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return any(dlsym(None, name) for name in _LLVM_PROBES)


def llvm_is_loaded() -> bool:
    """Deprecated name of :func:`llvm_clash` (kept for callers)."""
    return llvm_clash()


def keep_symbols_local() -> None:
    """Make the next ``import tensorflow`` keep its symbols (and its LLVM) private.

    TensorFlow's static build imports :data:`_GLOBAL_FLAGS_MODULE` to load its core
    extension with ``RTLD_GLOBAL``; a stand-in whose two functions do nothing leaves
    Python's default ``RTLD_LOCAL``. A no-op once TensorFlow is imported.
    """
    if "tensorflow" in sys.modules or _GLOBAL_FLAGS_MODULE in sys.modules:
        return
    stand_in = types.ModuleType(_GLOBAL_FLAGS_MODULE)
    stand_in.__doc__ = "napari-unet: TensorFlow's symbols stay RTLD_LOCAL (see tf_loader)."
    stand_in.set_dlopen_flags = lambda: None  # type: ignore[attr-defined]
    stand_in.reset_dlopen_flags = lambda: None  # type: ignore[attr-defined]
    sys.modules[_GLOBAL_FLAGS_MODULE] = stand_in


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

    The LLVM-carrying ones get ``RTLD_DEEPBIND`` when :func:`llvm_clash` finds
    another LLVM; everything is loaded without holding the GIL. Returns what was
    loaded.
    """
    if not sys.platform.startswith("linux"):
        return []
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations)))
    deepbind = getattr(os, "RTLD_DEEPBIND", 0) if llvm_clash() else 0
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


@contextlib.contextmanager
def _collector_held_off() -> Iterator[None]:
    """No automatic garbage collection while inside (bounded: the import only)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextlib.contextmanager
def jobs_hold_heap() -> Iterator[None]:
    """Keep the objects alive now out of the collector's scans while inside.

    The first job in freezes them (``gc.freeze``: the TensorFlow modules, napari's
    objects); the last one out hands them back (``gc.unfreeze``), so garbage among them
    is collected after the job rather than never. Jobs may nest or overlap.
    """
    global _heap_holders
    with _heap_lock:
        _heap_holders += 1
        gc.freeze()  # also takes what an earlier job created; cheap (a list splice)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_holders -= 1
            if _heap_holders == 0:
                gc.unfreeze()


def ensure_tensorflow() -> None:
    """Import TensorFlow and Keras (local symbols, deep binding where needed) if not yet
    done; called at the start of every job that needs them, in its worker thread."""
    if "tensorflow" in sys.modules:
        return
    with _lock:
        if "tensorflow" in sys.modules:
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        keep_symbols_local()
        with _collector_held_off():
            _preload_libraries()
            importlib.import_module("tensorflow")
            importlib.import_module("keras")  # imported by every job next; same reasons
            if _heap_holders:  # inside a job: its new objects join the frozen ones
                gc.freeze()
