"""How the plugin imports TensorFlow (napari_unet/widgets/tf_loader.py), in real processes.

TensorFlow and Mesa's OpenGL driver (napari's canvas) each carry an LLVM; the one
loaded second binds to the first one's symbols and crashes. The loader's two fixes
are each shown to be needed: without deep binding, napari-then-TensorFlow crashes;
without keeping TensorFlow's symbols local, TensorFlow-then-napari crashes. With the
loader both orders train, draw and exit cleanly (exit 0: no "free(): invalid
pointer" at interpreter exit). The loader also leaves stderr and the garbage
collector as they were for the rest of the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

_PRELUDE = """
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
from napari_unet.widgets import tf_loader

def canvas():
    import napari
    from qtpy.QtWidgets import QApplication
    viewer = napari.Viewer(show=True)
    viewer.add_image(np.random.rand(16, 16))
    for _ in range(5):
        QApplication.processEvents()
        time.sleep(0.05)
    return viewer

def train():
    import keras
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(2, 3, padding="same")])
    model.compile("adam", "mse")
    model.fit(np.zeros((2, 16, 16, 1), "float32"), np.zeros((2, 16, 16, 2), "float32"), verbose=0)
"""


def _run(body: str, gui: bool = True, timeout: float = 400) -> subprocess.CompletedProcess:
    """Run `body` after :data:`_PRELUDE` in a fresh interpreter (under Xvfb if no display)."""
    argv = [sys.executable, "-c", textwrap.dedent(_PRELUDE) + textwrap.dedent(body)]
    if gui and not os.environ.get("DISPLAY"):
        if shutil.which("xvfb-run") is None:
            pytest.skip("needs a display or xvfb-run")
        argv = ["xvfb-run", "-a", *argv]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def _crashed(proc: subprocess.CompletedProcess) -> bool:
    """Killed by a signal (directly, or as the shell-style 128 + n of xvfb-run)."""
    return proc.returncode < 0 or proc.returncode >= 128


def test_napari_first_needs_deep_binding():
    check = "viewer = canvas()\nprint('clash', tf_loader.llvm_clash(), flush=True)\n"
    proc = _run(check + "tf_loader.ensure_tensorflow()\ntrain()\nviewer.close()\nprint('=END=')\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "clash True" in proc.stdout and proc.stdout.strip().endswith("=END=")
    # the same without deep binding: TensorFlow binds to Mesa's LLVM and dies
    undeep = check + "tf_loader.llvm_clash = lambda: False\ntf_loader.ensure_tensorflow()\n"
    proc = _run(undeep + "train()\nprint('=END=')\n")
    assert _crashed(proc) and "=END=" not in proc.stdout, (proc.returncode, proc.stdout)


def test_tensorflow_first_needs_local_symbols():
    body = "tf_loader.ensure_tensorflow()\ntrain()\nviewer = canvas()\ntrain()\n"
    proc = _run(body + "viewer.close()\nprint('=END=')\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("=END=")
    # the same with TensorFlow's RTLD_GLOBAL: Mesa's driver calls TensorFlow's LLVM
    proc = _run("tf_loader.keep_symbols_local = lambda: None\n" + body + "print('=END=')\n")
    assert _crashed(proc) and "=END=" not in proc.stdout, (proc.returncode, proc.stdout)


def test_no_other_llvm_no_deep_binding_and_nothing_leaks():
    """Without napari no clash is found (no deep binding), and TensorFlow's own LLVM does
    not become visible process-wide (a later LLVM would not bind to it)."""
    body = """
    before = tf_loader.llvm_clash()
    tf_loader.ensure_tensorflow()
    print(before, tf_loader.llvm_clash())
    """
    proc = _run(body, gui=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["False", "False"]


def test_stderr_and_the_collector_are_left_alone():
    """Another thread's stderr output during the import all arrives; the collector is
    held off during the import only, and nothing is frozen."""
    body = """
    import gc, threading
    done, ticks, seen = threading.Event(), [0], set()
    def talk():
        while not done.is_set():
            os.write(2, b"tick\\n")
            ticks[0] += 1
            seen.add(gc.isenabled())
            time.sleep(0.005)
    thread = threading.Thread(target=talk)
    thread.start()
    tf_loader.ensure_tensorflow()
    done.set()
    thread.join()
    print(ticks[0], sorted(seen), gc.isenabled(), gc.get_freeze_count())
    """
    proc = _run(body, gui=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written, seen_a, seen_b, enabled, frozen = proc.stdout.split()
    assert proc.stderr.count("tick\n") == int(written) > 0, "stderr lines were lost"
    assert f"{seen_a} {seen_b}" == "[False, True]"  # off while importing, on after
    assert enabled == "True" and frozen == "0"


def test_jobs_hold_heap_until_the_last_job_ends():
    """Objects alive when a job starts skip the collector's scans during it (no multi-
    100 ms full collections of TensorFlow's heap), and are collectable again after."""
    import gc
    import weakref

    from napari_unet.widgets.tf_loader import jobs_hold_heap

    class Node:
        pass

    node = Node()
    node.cycle = node  # freed only by the cyclic collector
    alive = weakref.ref(node)
    assert gc.get_freeze_count() == 0
    with jobs_hold_heap():
        assert gc.get_freeze_count() > 0
        with jobs_hold_heap():  # a second, overlapping job
            pass
        assert gc.get_freeze_count() > 0  # the first job still runs
        del node
        gc.collect()
        assert alive() is not None  # frozen for the job
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None  # handed back: collected, not leaked
