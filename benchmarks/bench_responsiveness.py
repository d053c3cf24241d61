"""Is napari responsive while the U-Net trains? Event-loop stalls during training.

Run under a display (``xvfb-run -a python benchmarks/bench_responsiveness.py``):

1. open napari with the shipped ISBI 2012 sample (File > Open Sample > napari-unet) and
   the U-Net dock;
2. start training through the dock (preset ``cpu-small``, 256 px patches, batch 4,
   a step event per batch, the live loss plot on);
3. a ``QTimer`` heartbeat fires every 10 ms while another timer pans the camera every
   50 ms and changes the slice every 2 s (napari redraws), for ``--baseline`` seconds
   (default 10) before Train is pressed and ``--seconds`` (default 60) after;
4. then press Stop and keep measuring until the worker has finished.

A *stall* is the gap between two heartbeats (ideal: 10 ms). The report splits the run
into ``before_training`` (the baseline: napari alone), ``startup`` (Train pressed until
the first training step arrives: TensorFlow import, data preparation, network build and
tracing) and ``training`` (first step until Stop finished), and lists the longest gaps
with what was happening. Results go to docs/bench_responsiveness.json.
Target: longest stall < 100 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # measure this checkout, whatever is installed

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "bench_responsiveness.json"
HEARTBEAT_MS = 10


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


class Bench:
    """Drives napari, the dock and the timers; collects heartbeats and events."""

    def __init__(
        self, seconds: float, preset: str, patch: int, batch: int, baseline: float
    ) -> None:
        import napari
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        self.seconds = seconds
        self.baseline = baseline
        self.viewer = napari.Viewer(title="napari-unet responsiveness")
        self.app = QApplication.instance()
        self.viewer.open_sample("napari-unet", "isbi2012")
        _, self.dock = self.viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
        self.models = Path(tempfile.mkdtemp(prefix="bench-resp-"))
        tab = self.dock.train_tab
        tab.preset.value = preset
        tab.epochs.value = 1000
        tab.steps_per_epoch.value = 20
        tab.batch_size.value = batch
        tab.models_dir.value = str(self.models)
        self.dock.data_tab.patch_size.value = patch
        self.dock.tabs.setCurrentWidget(tab)

        self.beats: list[float] = []
        self.events: list[tuple[float, str, int]] = []
        self.marks: dict[str, float] = {}
        self.heartbeat = QTimer()
        self.heartbeat.setInterval(HEARTBEAT_MS)
        self.heartbeat.timeout.connect(lambda: self.beats.append(time.perf_counter()))
        self.panner = QTimer()
        self.panner.setInterval(50)
        self.panner.timeout.connect(self._pan)
        self._pan_step = 0
        self.job: Any = None
        self.gc_pauses: list[tuple[float, int, float]] = []
        self._gc_start = 0.0
        gc.callbacks.append(self._gc_callback)

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        """Record garbage collections (they hold the GIL: a common cause of stalls)."""
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
        elif now - self._gc_start > 0.02:
            self.gc_pauses.append((self._gc_start, int(info["generation"]), now - self._gc_start))

    def _pan(self) -> None:
        self._pan_step += 1
        angle = self._pan_step / 20.0
        center = self.viewer.camera.center
        self.viewer.camera.center = (
            *center[:-2],
            256 + 60 * np.sin(angle),
            256 + 60 * np.cos(angle),
        )
        if self._pan_step % 40 == 0:
            nz = self.viewer.layers[0].data.shape[0]
            step = list(self.viewer.dims.current_step)
            step[0] = (step[0] + 1) % nz
            self.viewer.dims.current_step = tuple(step)

    def _on_event(self, event: Any) -> None:
        now = time.perf_counter()
        self.events.append((now, event.kind, int(getattr(event, "step", 0))))
        if event.kind == "step" and "first_step" not in self.marks:
            self.marks["first_step"] = now

    def run(self) -> dict[str, Any]:
        from qtpy.QtCore import QTimer

        self.heartbeat.start()
        self.panner.start()
        start_ms = int(self.baseline * 1000)
        QTimer.singleShot(start_ms, self._start_training)
        QTimer.singleShot(int(start_ms + self.seconds * 1000), self._stop_training)
        self.app.exec_()
        return self.report()

    def _start_training(self) -> None:
        self.marks["train_clicked"] = time.perf_counter()
        self.job = self.dock.train_tab.train()
        if self.job is None:
            raise SystemExit("training did not start (see the notification)")
        self.job.worker.yielded.connect(self._on_event)
        self.job.worker.finished.connect(self._finished)

    def _stop_training(self) -> None:
        self.marks["stop_clicked"] = time.perf_counter()
        self.dock.train_tab.stop()

    def _finished(self) -> None:
        from qtpy.QtCore import QTimer

        self.marks["finished"] = time.perf_counter()
        QTimer.singleShot(300, self._quit)

    def _quit(self) -> None:
        self.heartbeat.stop()
        self.panner.stop()
        self.viewer.close()
        self.app.quit()

    def report(self) -> dict[str, Any]:
        beats = np.asarray(self.beats)
        t0 = self.marks["train_clicked"]
        first = self.marks.get("first_step", self.marks.get("finished", beats[-1]))
        end = self.marks.get("finished", beats[-1])
        gaps = np.diff(beats) * 1000.0
        starts = beats[:-1]
        phases = {
            "before_training": (beats[0], t0),
            "startup": (t0, first),
            "training": (first, end),
            "whole_run": (t0, end),
        }
        report: dict[str, Any] = {}
        for name, (a, b) in phases.items():
            report[name] = {
                "seconds": round(float(b - a), 1),
                **_stats(gaps[(starts >= a) & (starts < b)]),
            }
        worst = np.argsort(gaps)[::-1][:8]
        report["gc_pauses_over_20ms"] = [
            {"at_s": round(at - t0, 2), "generation": gen, "ms": round(ms * 1000, 1)}
            for at, gen, ms in self.gc_pauses
        ]
        report["longest_stalls"] = [
            {
                "at_s": round(float(starts[i] - t0), 2),
                "ms": round(float(gaps[i]), 1),
                "last_event": _last_event(self.events, starts[i]),
            }
            for i in sorted(worst, key=lambda i: starts[i])
        ]
        steps = [e for e in self.events if e[1] == "step"]
        report["training"]["step_events"] = len(steps)
        if len(steps) > 1:
            span = steps[-1][0] - steps[0][0]
            report["training"]["steps_per_second"] = round((len(steps) - 1) / span, 3)
        plot = self.dock.train_tab.plot.data
        report["training"]["plot_points"] = len(plot["train_x"])
        stop = self.marks.get("stop_clicked")
        if stop is not None:
            after = [e for e in self.events if e[0] >= stop]
            last_step = max((e[0] for e in after if e[1] == "step"), default=stop)
            final = next((e[0] for e in after if e[1] in ("stopped", "done")), None)
            report["stop"] = {
                "last_step_event_after_stop_s": round(last_step - stop, 2),
                "final_event_after_stop_s": round(final - stop, 2) if final else None,
                "worker_finished_after_stop_s": round(end - stop, 2),
                "note": "after Stop the engine validates the partial epoch, saves the "
                "checkpoints and metadata, then ends",
            }
        return report


def _last_event(events: list[tuple[float, str, int]], at: float) -> str:
    before = [e for e in events if e[0] <= at]
    if not before:
        return "none yet (startup)"
    _, kind, step = before[-1]
    return f"{kind} (step {step})"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time measured")
    parser.add_argument(
        "--baseline",
        type=float,
        default=10.0,
        help="seconds of panning measured before Train is pressed",
    )
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    bench = Bench(args.seconds, args.preset, args.patch, args.batch, args.baseline)
    results = bench.run()
    results["settings"] = {
        "seconds": args.seconds,
        "baseline_seconds": args.baseline,
        "preset": args.preset,
        "patch_size": args.patch,
        "batch_size": args.batch,
        "heartbeat_ms": HEARTBEAT_MS,
        "camera_pan_ms": 50,
        "slice_change_s": 2,
        "data": "shipped ISBI 2012 sample (6 x 512 x 512)",
    }
    results["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "display": os.environ.get("DISPLAY", ""),
    }
    results["target"] = {
        "longest_stall_ms": 100,
        "met_during_training": results["training"].get("longest_ms", 1e9) < 100,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("before_training", "startup", "training")}, indent=2))
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
