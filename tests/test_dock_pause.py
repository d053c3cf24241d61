"""Pause/Resume of training: the engine's ``pause`` event and the Train tab's button."""

from __future__ import annotations

import threading
import time

import pytest

from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.training.train import train_iter

from .conftest import tiny_config

PAUSE_SECONDS = 2.0


def _timed_events(generator, on_event=None):
    """Drain `generator`, returning ``[(perf_counter, event), ...]`` and its result."""
    events = []
    while True:
        try:
            event = next(generator)
        except StopIteration as finished:
            return events, finished.value
        events.append((time.perf_counter(), event))
        if on_event is not None:
            on_event(event)


def test_the_step_counter_holds_while_paused_and_the_budget_skips_the_pause(tmp_path):
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=4)
    # a 60 s budget that ends training long before its 5000 steps: the ETA is what is
    # left of the budget, so a pause that counted would take PAUSE_SECONDS off it
    config = tiny_config(
        tmp_path, epochs=1000, steps_per_epoch=5, max_minutes=1.0, val_em_metrics=False
    )
    pause, stop = threading.Event(), threading.Event()

    def on_event(event):
        if event.kind == "step" and event.step == 2:
            pause.set()
            threading.Timer(PAUSE_SECONDS, pause.clear).start()
        if event.kind == "step" and event.step == 6:
            stop.set()

    events, result = _timed_events(
        train_iter(config, images, masks, stop=stop, pause=pause), on_event
    )
    steps = [(t, e) for t, e in events if e.kind == "step"]
    (t2, second), (t3, third) = steps[1], steps[2]
    assert (second.step, third.step) == (2, 3)  # nothing advanced while paused...
    assert t3 - t2 >= PAUSE_SECONDS - 0.1  # ...for the whole pause, then it resumed
    assert [e.step for _, e in steps][2:] == [3, 4, 5, 6]
    assert result.stopped_reason == "stopped by the user"
    # the ETA (what is left of the budget) lost one batch, not the pause
    assert second.eta - third.eta < PAUSE_SECONDS / 2, (second.eta, third.eta)


def test_a_pause_longer_than_the_budget_does_not_spend_it():
    from napari_unet.engine.config import TrainConfig
    from napari_unet.engine.training.loop import _Budget

    budget = _Budget(TrainConfig(max_minutes=0.5 / 60))  # half a second
    budget.start()
    wall, cpu = time.perf_counter(), time.process_time()
    time.sleep(0.8)  # "paused"
    budget.exclude(time.perf_counter() - wall, time.process_time() - cpu)
    assert not budget.spent() and budget.elapsed() < 0.3
    assert budget.eta(1, 10**9) > 0.2  # what is left of the budget
    time.sleep(0.6)
    assert budget.spent()


def test_stop_while_paused_ends_promptly(tmp_path):
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=4)
    config = tiny_config(tmp_path, epochs=1000, steps_per_epoch=5, val_em_metrics=False)
    pause, stop = threading.Event(), threading.Event()
    marks = {}

    def on_event(event):
        if event.kind == "step" and event.step == 2:
            pause.set()
            marks["stop"] = time.perf_counter() + 0.5
            threading.Timer(0.5, stop.set).start()

    events, result = _timed_events(
        train_iter(config, images, masks, stop=stop, pause=pause), on_event
    )
    assert pause.is_set()  # never resumed
    assert result.stopped_reason == "stopped by the user"
    assert result.steps == 2
    final_time, final = events[-1]
    assert final.kind == "stopped"
    assert final_time - marks["stop"] < 15.0  # the wait ends at once; the stop path follows


# --------------------------------------------------------------------------- the Train tab


@pytest.mark.gui
@pytest.mark.parametrize("job_process", ["1", "0"], ids=["child-process", "in-process"])
def test_pause_button_holds_training_and_resume_continues(
    unet_dock, qtbot, notifications, monkeypatch, job_process
):
    """Both ways a dock job runs: in a child process (the default) and in a thread of
    napari's process (data that cannot be sent to a child, NAPARI_UNET_JOB_PROCESS=0)."""
    import napari  # noqa: F401  (a test dependency: missing fails)

    monkeypatch.setenv("NAPARI_UNET_JOB_PROCESS", job_process)

    tab = unet_dock.train_tab
    tab.epochs.value = 200
    assert tab.pause_button.text == "Pause" and not tab.pause_button.enabled
    job = tab.train()
    assert job is not None
    qtbot.waitUntil(lambda: len(tab.plot.data["train_x"]) >= 2, timeout=300_000)
    assert tab.pause_button.enabled
    tab.toggle_pause()
    assert tab.paused and tab.pause_button.text == "Resume"
    assert "paused" in tab.status_label.text()
    qtbot.wait(600)  # a batch may be running when Pause is pressed
    held = tab.last_event.step
    qtbot.wait(1500)
    assert tab.last_event.step == held
    tab.toggle_pause()
    assert not tab.paused and tab.pause_button.text == "Pause"
    qtbot.waitUntil(lambda: tab.last_event.step > held, timeout=60_000)
    tab.toggle_pause()  # pause again, then stop while paused
    tab.stop()
    qtbot.waitUntil(lambda: job.finished, timeout=120_000)
    assert tab.last_event.kind == "stopped"
    assert not tab.pause_button.enabled and tab.pause_button.text == "Pause"
