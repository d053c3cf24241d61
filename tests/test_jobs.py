"""Background jobs: Stop gives the GUI back quickly, closing joins with a timeout, engine
threads run at a lower priority (``xvfb-run -a python -m pytest tests/test_jobs.py``)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import napari  # noqa: F401  (a test dependency: missing fails)
import pytest

pytestmark = pytest.mark.gui


@dataclass(frozen=True)
class _Event:
    kind: str


def _engine_like(seconds_after_stop: float, terminal: bool, seen: dict):
    """A job function shaped like the engine's: events until stopped, then a long
    stop path (validation, saving), optionally announced by a ``stopped`` event."""
    from napari_unet.widgets.workers import _forward, _in_own_thread

    def job(stop: threading.Event, closing: threading.Event):
        def events():
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            while not stop.is_set():
                yield _Event("step")
                time.sleep(0.02)
            if terminal:
                yield _Event("stopped")
            time.sleep(seconds_after_stop)  # the partial epoch's validation, the final save
            return "saved"

        return (yield from _forward(_in_own_thread(events, "test"), closing))

    return job


def test_stop_gives_the_gui_back_before_the_save_ends(qtbot):
    from napari_unet.widgets.workers import JobRegistry, start_job

    registry, seen, log = JobRegistry(), {}, []
    job = start_job(
        registry,
        "training",
        _engine_like(3.0, terminal=True, seen=seen),
        on_returned=lambda value: log.append(("returned", value)),
        on_finished=lambda: log.append(("finished", time.perf_counter())),
        pass_events=True,
    )
    qtbot.waitUntil(lambda: "nice" in seen, timeout=10_000)
    asked = time.perf_counter()
    job.request_stop()
    qtbot.waitUntil(lambda: not job.running, timeout=5_000)
    assert time.perf_counter() - asked < 2.0  # control back within 2 s
    assert job.alive and registry.running() == [job]  # the save goes on in the background
    assert [entry[0] for entry in log] == ["finished"]
    qtbot.waitUntil(lambda: job.finished, timeout=10_000)
    assert [entry[0] for entry in log] == ["finished", "returned"]  # on_finished ran once
    assert ("returned", "saved") in log and registry.running() == []


def test_stop_without_a_final_event_is_released_after_a_timeout(qtbot):
    from napari_unet.widgets.workers import RELEASE_SECONDS, JobRegistry, start_job

    registry, seen = JobRegistry(), {}
    job = start_job(
        registry, "prediction", _engine_like(4.0, terminal=False, seen=seen), pass_events=True
    )
    qtbot.waitUntil(lambda: "nice" in seen, timeout=10_000)
    asked = time.perf_counter()
    job.request_stop()
    qtbot.waitUntil(lambda: not job.running, timeout=5_000)
    assert RELEASE_SECONDS - 0.2 <= time.perf_counter() - asked < 2.0
    registry.shutdown_all(timeout=10)
    assert job.done.is_set()


def test_closing_joins_with_a_timeout_and_never_hangs(qtbot):
    from napari_unet.widgets.workers import JobRegistry, start_job

    registry, seen = JobRegistry(), {}
    job = start_job(
        registry, "training", _engine_like(30.0, terminal=False, seen=seen), pass_events=True
    )
    qtbot.waitUntil(lambda: "nice" in seen, timeout=10_000)
    started = time.perf_counter()
    late = registry.shutdown_all(timeout=0.5, abandon=True)  # as when napari quits
    assert time.perf_counter() - started < 1.5
    assert late == [job] and job.abandon.is_set()
    qtbot.waitUntil(lambda: job.finished, timeout=3_000)  # the worker returned at once


def test_closing_a_viewer_lets_a_late_job_finish_its_save(qtbot):
    from napari_unet.widgets.workers import JobRegistry, start_job

    registry, seen, returned = JobRegistry(), {}, []
    job = start_job(
        registry,
        "training",
        _engine_like(1.5, terminal=False, seen=seen),
        on_returned=returned.append,
        pass_events=True,
    )
    qtbot.waitUntil(lambda: "nice" in seen, timeout=10_000)
    assert registry.shutdown_all(timeout=0.2) == [job]  # napari goes on: not abandoned
    assert not job.abandon.is_set()
    qtbot.waitUntil(lambda: job.done.is_set(), timeout=10_000)  # the save completed


def test_closing_waits_for_a_quick_stop(qtbot):
    from napari_unet.widgets.workers import JobRegistry, start_job

    registry, seen = JobRegistry(), {}
    job = start_job(
        registry, "training", _engine_like(0.3, terminal=True, seen=seen), pass_events=True
    )
    qtbot.waitUntil(lambda: "nice" in seen, timeout=10_000)
    assert registry.shutdown_all(timeout=5) == []
    assert job.done.is_set() and not job.abandon.is_set()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priorities")
def test_engine_threads_run_at_a_lower_priority(qtbot):
    from napari_unet.widgets.workers import NICE_INCREMENT, JobRegistry, start_job

    registry, seen = JobRegistry(), {}
    start_job(registry, "training", _engine_like(0.0, terminal=True, seen=seen), pass_events=True)
    qtbot.waitUntil(lambda: "nice" in seen, timeout=10_000)
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["nice"] >= min(gui + NICE_INCREMENT, 19)
    registry.shutdown_all(timeout=5)


def test_quitting_napari_with_a_job_that_will_not_stop_does_not_hang(tmp_path):
    """The whole application quits within the join timeout even if a job never ends."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "quit.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading, time
            import napari
            from qtpy.QtCore import QTimer
            from qtpy.QtWidgets import QApplication
            from napari_unet.widgets.workers import _forward, _in_own_thread, start_job

            viewer = napari.Viewer(show=False)
            _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")

            def stubborn(stop, closing):
                def events():
                    yield "started"
                    time.sleep(120)  # ignores stop: a save that never ends
                return (yield from _forward(_in_own_thread(events, "stubborn"), closing))

            start_job(dock.jobs, "training", stubborn, pass_events=True)
            QTimer.singleShot(1000, QApplication.instance().quit)
            napari.run()
            print("QUIT", flush=True)
            """
        )
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert "QUIT" in done.stdout, done.stderr[-2000:]
    assert time.perf_counter() - started < 45
