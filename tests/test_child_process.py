"""Engine generators in a child process: events, stop, pause, errors (no TensorFlow)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_unet.engine.child_process import ChildEnded, ChildProcess
from napari_unet.engine.errors import UserInputError

HERE = Path(__file__).resolve().parent
JOB = "test_child_process:counting"  # imported by the child from tests/ (PYTHONPATH)


def counting(data, steps, stop, pause, fail_at=None, die_at=None):
    """A job for the child: one event per step, pausable and stoppable."""
    done = 0
    for step in range(steps):
        while pause.is_set() and not stop.is_set():
            time.sleep(0.01)
        if stop.is_set():
            break
        if step == fail_at:
            raise UserInputError(f"bad input at step {step}")
        if step == die_at:
            os._exit(3)
        done += 1
        yield {"step": step, "pid": os.getpid(), "sum": float(np.sum(data))}
        time.sleep(0.02)
    return {"done": done, "stopped": stop.is_set()}


@pytest.fixture(autouse=True)
def importable_from_the_child(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


def _run(child, stop, pause=None, on_event=None):
    events, relay = [], child.relay(stop, pause, ready="ready", poll_seconds=0.02)
    try:
        while True:
            event = next(relay)
            events.append(event)
            if on_event is not None:
                on_event(event)
    except StopIteration as finished:
        return events, finished.value


def test_events_and_result_come_from_another_process():
    data = np.arange(12.0).reshape(3, 4)
    child = ChildProcess.start(JOB, (data, 5), with_pause=True)
    events, result = _run(child, threading.Event(), threading.Event())
    assert events[0] == "ready"
    assert [e["step"] for e in events[1:]] == [0, 1, 2, 3, 4]
    assert events[1]["pid"] != os.getpid() and events[1]["sum"] == 66.0
    assert result == {"done": 5, "stopped": False}


def test_stop_and_pause_reach_the_child():
    stop, pause = threading.Event(), threading.Event()
    child = ChildProcess.start(JOB, (np.zeros(2), 10_000), with_pause=True)
    seen: list[float] = []

    def control(event):
        if event == "ready":
            return
        seen.append(time.perf_counter())
        if event["step"] == 3:
            pause.set()
            threading.Timer(0.6, pause.clear).start()
        if event["step"] == 6:
            stop.set()

    _, result = _run(child, stop, pause, control)
    assert result == {"done": 7, "stopped": True}
    assert seen[4] - seen[3] > 0.5  # held while paused
    assert child.process.wait(10) == 0


def test_the_childs_error_is_raised_in_the_parent():
    child = ChildProcess.start(JOB, (np.zeros(2), 5), {"fail_at": 2}, with_pause=True)
    with pytest.raises(UserInputError, match="bad input at step 2"):
        _run(child, threading.Event(), threading.Event())


def test_a_child_that_dies_is_reported():
    child = ChildProcess.start(JOB, (np.zeros(2), 5), {"die_at": 1}, with_pause=True)
    with pytest.raises(ChildEnded, match="exit code 3"):
        _run(child, threading.Event(), threading.Event())


def test_data_that_cannot_travel_is_refused_before_a_child_starts():
    assert ChildProcess.start(JOB, (threading.Lock(), 1)) is None
