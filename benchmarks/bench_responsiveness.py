"""Is napari responsive while the U-Net trains? Event-loop stalls from Train to the end.

Run under a display: ``xvfb-run -a python benchmarks/bench_responsiveness.py``. By default
two conditions are measured, each in a fresh process (so each pays the TensorFlow import):

- ``idle``: nothing else started by the benchmark;
- ``cpu_hog``: ``--hogs`` (default 2) extra processes spinning on the CPU the whole time,
  as when another program (or a second training) runs on the same 2-core machine.

In each:

1. open napari with the shipped ISBI 2012 sample and the U-Net dock from the Plugins
   menu (``add_plugin_dock_widget``, as a user does);
2. a ``QTimer`` heartbeat fires every 10 ms while another timer pans the camera every
   50 ms and changes the slice every 2 s, for ``--baseline`` seconds, then Train is
   pressed (preset ``cpu-small``, 256 px patches, batch 4, live loss plot);
3. ``--seconds`` after the first training step (or ``--max-startup`` seconds after Train
   if training has not started by then), Stop is pressed; measuring goes on until the
   worker has finished and the Train button is enabled again.

A *stall* is the gap between two heartbeats (ideal 10 ms), attributed to the phase in
which it *ends*, so the stall of the Train click itself counts in ``startup``. Phases:
``before_training``, ``startup`` (Train pressed to the first step event: the click
handler, TensorFlow import, data preparation, tracing), ``training`` (first step to
the worker's end, Stop included) and ``train_to_end`` (the target: pressed Train to the
end of training). With ``--profile`` (default on) a watchdog thread samples the GUI
thread's stack whenever the heartbeat is over 50 ms late, and the report counts where
it was (``stall_samples``). Target: longest stall under 100 ms in ``train_to_end``,
and the Train button back within 2 s of Stop.

Results: ``docs/bench_responsiveness.json`` (both conditions), written by this script.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # measure this checkout, whatever is installed

DEFAULT_OUT = REPO / "docs" / "bench_responsiveness.json"
HEARTBEAT_MS = 10
STALL_MS = 50


def _stats(gaps_ms: np.ndarray) -> dict[str, Any]:
    if gaps_ms.size == 0:
        return {"heartbeats": 0}
    return {
        "heartbeats": int(gaps_ms.size),
        "longest_ms": round(float(gaps_ms.max()), 1),
        "p99_ms": round(float(np.percentile(gaps_ms, 99)), 1),
        "p50_ms": round(float(np.percentile(gaps_ms, 50)), 1),
        "over_50ms": int((gaps_ms > 50).sum()),
        "over_100ms": int((gaps_ms > 100).sum()),
    }


HOG = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


class StallSampler(threading.Thread):
    """Samples the GUI thread's stack while its heartbeat is late (needs the GIL itself:
    a sample shows where the GUI thread is once the GIL is free)."""

    def __init__(self, last_beat: list[float]) -> None:
        super().__init__(daemon=True, name="stall-sampler")
        self.last_beat = last_beat
        self.main = threading.main_thread().ident
        self.samples: collections.Counter[str] = collections.Counter()
        self.others: collections.Counter[str] = collections.Counter()
        self.running = True

    def run(self) -> None:
        while self.running:
            time.sleep(0.005)
            if time.perf_counter() - self.last_beat[0] < STALL_MS / 1000:
                continue
            frames = sys._current_frames()
            self.samples[_where(frames.get(self.main))] += 1
            for ident, frame in frames.items():
                if ident not in (self.main, threading.get_ident()):
                    self.others[_where(frame)] += 1


def _where(frame: Any) -> str:
    """The innermost frames of a stack, ours marked, as one line."""
    if frame is None:
        return "?"
    stack = traceback.extract_stack(frame)[-6:]
    parts = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack]
    return " > ".join(parts)


class Bench:
    """Drives napari, the dock and the timers; collects heartbeats and events."""

    def __init__(self, args: argparse.Namespace) -> None:
        import napari
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        self.args = args
        self.viewer = napari.Viewer(title="napari-unet responsiveness")
        self.app = QApplication.instance()
        self.viewer.open_sample("napari-unet", "isbi2012")
        _, self.dock = self.viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
        self.models = Path(tempfile.mkdtemp(prefix="bench-resp-"))
        tab = self.dock.train_tab
        tab.preset.value = args.preset
        tab.epochs.value = 1000
        tab.steps_per_epoch.value = 20
        tab.batch_size.value = args.batch
        tab.max_minutes.value = 0
        tab.models_dir.value = str(self.models)
        self.dock.data_tab.patch_size.value = args.patch
        self.dock.tabs.setCurrentWidget(tab)

        self.beats: list[float] = []
        self.last_beat = [time.perf_counter()]
        self.events: list[tuple[float, str, int]] = []
        self.marks: dict[str, float] = {}
        self.heartbeat = QTimer()
        self.heartbeat.setInterval(HEARTBEAT_MS)
        self.heartbeat.timeout.connect(self._beat)
        self.panner = QTimer()
        self.panner.setInterval(50)
        self.panner.timeout.connect(self._pan)
        self._pan_step = 0
        self.job: Any = None
        self.gc_pauses: list[tuple[float, int, float]] = []
        self._gc_start = 0.0
        gc.callbacks.append(self._gc_callback)
        self.sampler = StallSampler(self.last_beat) if args.profile else None

    def _beat(self) -> None:
        now = time.perf_counter()
        self.beats.append(now)
        self.last_beat[0] = now
        stop = self.marks.get("stop_clicked")
        if stop and "train_enabled" not in self.marks and self.dock.train_tab.train_button.enabled:
            self.marks["train_enabled"] = now
            self._maybe_quit()

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
        elif now - self._gc_start > 0.02:
            self.gc_pauses.append((self._gc_start, int(info["generation"]), now - self._gc_start))

    def _pan(self) -> None:
        self._pan_step += 1
        angle = self._pan_step / 20.0
        camera = self.viewer.camera
        camera.center = (*camera.center[:-2], 256 + 60 * np.sin(angle), 256 + 60 * np.cos(angle))
        if self._pan_step % 40 == 0:
            nz = self.viewer.layers[0].data.shape[0]
            step = list(self.viewer.dims.current_step)
            step[0] = (step[0] + 1) % nz
            self.viewer.dims.current_step = tuple(step)

    def _on_event(self, event: Any) -> None:
        now = time.perf_counter()
        kind = getattr(event, "kind", type(event).__name__)
        self.events.append((now, kind, int(getattr(event, "step", 0) or 0)))
        if kind == "step" and "first_step" not in self.marks:
            from qtpy.QtCore import QTimer

            self.marks["first_step"] = now
            QTimer.singleShot(int(self.args.seconds * 1000), self._stop_training)

    def run(self) -> dict[str, Any]:
        from qtpy.QtCore import QTimer

        if self.sampler is not None:
            self.sampler.start()
        self.heartbeat.start()
        self.panner.start()
        start_ms = int(self.args.baseline * 1000)
        QTimer.singleShot(start_ms, self._start_training)
        QTimer.singleShot(int(start_ms + self.args.max_startup * 1000), self._stop_training)
        self.app.exec_()
        return self.report()

    def _start_training(self) -> None:
        self.marks["train_clicked"] = time.perf_counter()
        self.job = self.dock.train_tab.train()
        self.marks["train_returned"] = time.perf_counter()
        if self.job is None:
            raise SystemExit("training did not start (see the notification)")
        self.job.worker.yielded.connect(self._on_event)
        self.job.worker.finished.connect(self._finished)

    def _stop_training(self) -> None:
        if "stop_clicked" in self.marks:
            return
        self.marks["stop_clicked"] = time.perf_counter()
        self.dock.train_tab.stop()

    def _finished(self) -> None:
        self.marks["finished"] = time.perf_counter()
        self._maybe_quit()

    def _maybe_quit(self) -> None:
        from qtpy.QtCore import QTimer

        if "finished" in self.marks and "train_enabled" in self.marks:
            QTimer.singleShot(300, self._quit)

    def _quit(self) -> None:
        self.heartbeat.stop()
        self.panner.stop()
        if self.sampler is not None:
            self.sampler.running = False
        self.viewer.close()
        self.app.quit()

    def report(self) -> dict[str, Any]:
        beats = np.asarray(self.beats)
        t0 = self.marks["train_clicked"]
        end = self.marks.get("finished", beats[-1])
        first = self.marks.get("first_step", end)
        gaps = np.diff(beats) * 1000.0
        ends = beats[1:]  # a gap belongs to the phase it ends in: the click counts
        phases = {
            "before_training": (beats[0], t0),
            "startup": (t0, first),
            "training": (first, end),
            "train_to_end": (t0, end),
        }
        report: dict[str, Any] = {}
        for name, (a, b) in phases.items():
            chosen = gaps[(ends > a) & (ends <= b)]
            report[name] = {"seconds": round(float(b - a), 1), **_stats(chosen)}
        report["train_click_handler_ms"] = round(
            (self.marks["train_returned"] - self.marks["train_clicked"]) * 1000, 1
        )
        worst = np.argsort(gaps)[::-1][:8]
        report["gc_pauses_over_20ms"] = [
            {"at_s": round(at - t0, 2), "generation": gen, "ms": round(ms * 1000, 1)}
            for at, gen, ms in self.gc_pauses
        ]
        report["longest_stalls"] = [
            {
                "ends_at_s": round(float(ends[i] - t0), 2),
                "ms": round(float(gaps[i]), 1),
                "last_event": _last_event(self.events, ends[i]),
            }
            for i in sorted(worst, key=lambda i: ends[i])
        ]
        steps = [e for e in self.events if e[1] == "step"]
        report["training"]["step_events"] = len(steps)
        if len(steps) > 1:
            span = steps[-1][0] - steps[0][0]
            report["training"]["steps_per_second"] = round((len(steps) - 1) / span, 3)
        report["training"]["plot_points"] = len(self.dock.train_tab.plot.data["train_x"])
        stop = self.marks.get("stop_clicked")
        if stop is not None:
            after = [e for e in self.events if e[0] >= stop]
            final = next((e[0] for e in after if e[1] in ("stopped", "done")), None)
            enabled = self.marks.get("train_enabled")
            report["stop"] = {
                "train_enabled_after_stop_s": round(enabled - stop, 2) if enabled else None,
                "final_event_after_stop_s": round(final - stop, 2) if final else None,
                "worker_finished_after_stop_s": round(end - stop, 2),
                "note": "after Stop the engine validates the partial epoch and saves in the "
                "background; the Train button comes back at its last event or after 1.5 s",
            }
        if self.sampler is not None:
            report["stall_samples"] = {
                "gui_thread": dict(self.sampler.samples.most_common(12)),
                "other_threads": dict(self.sampler.others.most_common(8)),
            }
        return report


def _last_event(events: list[tuple[float, str, int]], at: float) -> str:
    before = [e for e in events if e[0] <= at]
    if not before:
        return "none yet (startup)"
    _, kind, step = before[-1]
    return f"{kind} (step {step})"


def run_condition(args: argparse.Namespace) -> dict[str, Any]:
    """Measure one condition in this process (with ``args.hogs`` CPU hogs if ``cpu_hog``)."""
    hogs = []
    if args.condition == "cpu_hog":
        hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    load_before = os.getloadavg()
    try:
        results = Bench(args).run()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(5)
    results["condition"] = {
        "name": args.condition,
        "cpu_hogs": len(hogs),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    train_to_end = results["train_to_end"].get("longest_ms", 1e9)
    back = (results.get("stop") or {}).get("train_enabled_after_stop_s")
    results["target"] = {
        "longest_stall_ms": 100,
        "met_from_train_to_end": train_to_end < 100,
        "train_back_within_2s_of_stop": back is not None and back < 2.0,
    }
    return results


def _forwarded(argv: list[str]) -> list[str]:
    """The command line without ``--condition`` and ``--out`` (and their values)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--condition", "--out"):
            skip = True
        elif not arg.startswith(("--condition=", "--out=")):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (every condition in a subprocess, or one here) and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time measured")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds before Train")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hogs", type=int, default=2, help="CPU hogs of the cpu_hog condition")
    parser.add_argument(
        "--max-startup", type=float, default=600.0, help="press Stop anyway after this long"
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument(
        "--condition",
        choices=("idle", "cpu_hog", "both"),
        default="both",
        help="both: each condition in a fresh process, one JSON",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    if args.condition != "both":
        results = run_condition(args)
    else:
        results = {}
        for condition in ("idle", "cpu_hog"):
            part = Path(tempfile.mkdtemp(prefix="bench-resp-")) / f"{condition}.json"
            command = [sys.executable, __file__, *_forwarded(argv or sys.argv[1:])]
            command += ["--condition", condition, "--out", str(part)]
            for attempt in (1, 2):  # TensorFlow + Mesa can crash a process at import
                done = subprocess.run(command, check=False)
                if done.returncode == 0:
                    results[condition] = json.loads(part.read_text())
                    break
                results[condition] = {"failed": f"exit status {done.returncode}"}
                results[condition]["attempts"] = attempt
    results = {
        **results,
        "settings": {
            "seconds_after_first_step": args.seconds,
            "max_startup_seconds": args.max_startup,
            "baseline_seconds": args.baseline,
            "preset": args.preset,
            "patch_size": args.patch,
            "batch_size": args.batch,
            "heartbeat_ms": HEARTBEAT_MS,
            "camera_pan_ms": 50,
            "slice_change_s": 2,
            "data": "shipped ISBI 2012 sample (6 x 512 x 512)",
            "dock": "opened with viewer.window.add_plugin_dock_widget (proxy viewer)",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "display": os.environ.get("DISPLAY", ""),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    shown = results if args.condition != "both" else {k: results[k] for k in ("idle", "cpu_hog")}
    keys = ("startup", "training", "train_to_end", "stop", "train_click_handler_ms")
    if args.condition == "both":
        print(json.dumps({c: {k: shown[c].get(k) for k in keys} for c in shown}, indent=2))
        for condition in ("idle", "cpu_hog"):
            if "failed" in results[condition]:
                print(f"{condition}: the measuring process failed ({results[condition]})")
    else:
        print(json.dumps({k: shown.get(k) for k in keys}, indent=2))
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
