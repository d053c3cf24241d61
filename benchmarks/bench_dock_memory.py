"""Resident memory of a dock prediction of a 2 GiB zarr stack (blockwise, lazy layers).

Run under a display: ``xvfb-run -a python benchmarks/bench_dock_memory.py``.

1. A child process writes a 2 GiB uint8 zarr (default 512 x 2048 x 2048, one slice per
   chunk) of real EM texture (the shipped ISBI 2012 slices tiled, shifted per slice) to
   ``/tmp`` (kept for the next run).
2. napari opens it with the plugin's reader, lazily (``NAPARI_UNET_LAZY_BYTES`` is set to
   1 GiB, as on a machine with 4 GiB of memory), and the dock is opened from the Plugins
   menu (``add_plugin_dock_widget``).
3. The Predict tab predicts it with the shipped model (``napari_unet/sample_data/model``):
   block by block into a scratch zarr, shown as dask-backed layers, then the labels are
   thresholded slice by slice into a zarr array.
4. A thread samples this process's resident set size (RSS) every 0.25 s from before the
   viewer opens until the labels are written; a 10 ms heartbeat measures event-loop stalls.

``--tiny-model`` predicts with a depth-2, 4-filter U-Net trained for two steps instead
(memory depends on the network only through its weights and one block's activations,
as in ``bench_memory.py``): the shipped model needs about 10 s per 2048 x 2048 slice on
this 2-core machine when it is busy, so a whole 512-slice run takes hours.

``--max-minutes`` presses Stop after that long (a partial run, reported as such).

Target: peak RSS under 1.5 GiB. Results: ``docs/bench_dock_memory_2gib.json`` (written by
this script).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NAPARI_UNET_LAZY_BYTES", str(2**30))
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_OUT = REPO / "docs" / "bench_dock_memory_2gib.json"
GIB = 2**30


def build(path: Path, slices: int, size: int) -> None:
    """Write the test stack (in its own process, so its memory is not measured)."""
    import numpy as np
    import tifffile
    import zarr

    from napari_unet.sample import sample_paths

    source = tifffile.imread(sample_paths()["train_images"])  # (Z, 512, 512) uint8
    reps = -(-size // source.shape[-1])
    array = zarr.create_array(
        str(path) + ".tmp", shape=(slices, size, size), chunks=(1, size, size), dtype="uint8"
    )
    for z in range(slices):
        plane = np.tile(source[z % source.shape[0]], (reps, reps))[:size, :size]
        array[z] = np.roll(plane, shift=(7 * z, 13 * z), axis=(0, 1))
    os.replace(str(path) + ".tmp", path)


class RssSampler(threading.Thread):
    """Peak and timeline of this process's resident set size."""

    def __init__(self, interval: float) -> None:
        import psutil

        super().__init__(daemon=True, name="rss-sampler")
        self.process = psutil.Process()
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.marks: dict[str, float] = {}
        self.running = True
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while self.running:
            self.samples.append((time.perf_counter() - self.t0, self.process.memory_info().rss))
            time.sleep(self.interval)

    def mark(self, name: str) -> None:
        self.marks[name] = round(time.perf_counter() - self.t0, 2)

    def peak_between(self, start: str, end: str | None = None) -> int:
        a = self.marks.get(start, 0.0)
        b = self.marks.get(end, 1e12) if end else 1e12
        return max((rss for t, rss in self.samples if a <= t <= b), default=0)


def tiny_model(folder: Path) -> Path:
    """A depth-2, 4-filter U-Net trained for two steps (in a child process)."""
    code = (
        "import sys\n"
        "from napari_unet.engine.config import Config\n"
        "from napari_unet.engine.data.synthetic import synthetic_em\n"
        "from napari_unet.engine.training.train import train\n"
        "images, masks = synthetic_em(slices=3, size=64, cells=8, seed=0)\n"
        "config = Config.model_validate({'model': {'depth': 2, 'base_filters': 4},\n"
        "    'train': {'epochs': 1, 'steps_per_epoch': 2, 'batch_size': 2, 'patch_size': 32,\n"
        "              'tensorboard': False}, 'output': sys.argv[1]})\n"
        "train(config, images, masks)\n"
    )
    if not (folder / "config.yaml").exists():
        subprocess.run([sys.executable, "-c", code, str(folder)], check=True)
    return folder


def _kind(layer: Any) -> str | None:
    return None if layer is None else type(layer.data).__module__.split(".")[0]


def _slices_written(folder: Path) -> int:
    """Probability chunks written so far in a scratch folder (one per slice here)."""
    return sum(1 for path in folder.rglob("*") if path.is_file() and "probability" in path.parts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sampler = RssSampler(args.interval)
    sampler.start()
    import napari
    import numpy as np
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_unet.widgets.predict_tab import SOURCE_PRETRAINED

    viewer = napari.Viewer(title="napari-unet 2 GiB prediction")
    app = QApplication.instance()
    sampler.mark("viewer_open")
    layers = viewer.open(str(args.zarr), plugin="napari-unet")
    image = layers[0]
    lazy = type(image.data).__module__.split(".")[0]
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    tab = dock.predict_tab
    if args.model is None:
        tab.source.value = SOURCE_PRETRAINED
    else:
        tab.source.value = "model folder"
        tab.model_folder.value = str(args.model)
    tab.image.value = next(layer for layer in viewer.layers if layer.name == image.name)
    sampler.mark("dock_open")
    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    heartbeat.start()
    state: dict[str, Any] = {}

    def start() -> None:
        sampler.mark("predict_pressed")
        state["job"] = tab.predict()
        state["job"].worker.finished.connect(lambda: sampler.mark("prediction_done"))
        poll.start()

    def check() -> None:
        job = state.get("job")
        if job is None or not job.finished or tab.labels_writer.busy:
            return
        if f"{image.name} prediction" in viewer.layers or "stopped" in state:
            sampler.mark("labels_written" if "stopped" not in state else "stopped_done")
            poll.stop()
            QTimer.singleShot(500, app.quit)

    def stop() -> None:  # --max-minutes: a partial run
        job = state.get("job")
        if job is not None and not job.finished:
            from napari_unet.widgets.predict_jobs import _SCRATCH

            state["stopped"] = _slices_written(_SCRATCH[-1]) if _SCRATCH else None
            sampler.mark("stop_pressed")
            tab._on_stop_clicked()

    poll = QTimer()
    poll.setInterval(200)
    poll.timeout.connect(check)
    QTimer.singleShot(2000, start)
    if args.max_minutes:
        QTimer.singleShot(int(2000 + args.max_minutes * 60_000), stop)
    app.exec_()
    heartbeat.stop()
    sampler.running = False
    sampler.join(2)

    names = (f"{image.name} prediction", f"{image.name} probability")
    pred, prob = (viewer.layers[n] if n in viewer.layers else None for n in names)
    gaps = np.diff(np.asarray(beats)) * 1000 if len(beats) > 1 else np.zeros(1)
    shape = tuple(int(n) for n in image.data.shape)
    marks = sampler.marks
    result = {
        "benchmark": "dock prediction of a 2 GiB zarr stack (Plugins-menu dock, shipped model)",
        "stack": {
            "path": str(args.zarr),
            "shape": shape,
            "dtype": str(image.data.dtype),
            "gib": round(int(np.prod(shape)) / GIB, 2),
            "layer_data": f"{lazy} ({type(image.data).__name__})",
        },
        "outputs": {
            "probability_layer": _kind(prob),
            "prediction_layer": _kind(pred),
            "scratch": str(tab._scratch.get(image.name)),
        },
        "partial_run": None
        if "stopped" not in state
        else {
            "stopped_after_minutes": args.max_minutes,
            "slices_predicted_before_stop": state["stopped"],
            "of_slices": shape[0],
        },
        "rss_gib": {
            "after_viewer_and_dock": round(
                sampler.peak_between("viewer_open", "dock_open") / GIB, 3
            ),
            "peak_while_predicting": round(sampler.peak_between("predict_pressed") / GIB, 3),
            "peak_whole_run": round(max(r for _, r in sampler.samples) / GIB, 3),
        },
        "seconds": {
            "prediction": round(marks.get("prediction_done", 0) - marks["predict_pressed"], 1),
            "thresholding": round(marks["labels_written"] - marks.get("prediction_done", 0), 1)
            if "labels_written" in marks
            else None,
        },
        "event_loop": {
            "longest_stall_ms": round(float(gaps.max()), 1),
            "p99_ms": round(float(np.percentile(gaps, 99)), 1),
            "over_100ms": int((gaps > 100).sum()),
        },
        "rss_timeline_gib": [
            (round(t, 1), round(r / GIB, 3))
            for t, r in sampler.samples[:: max(1, len(sampler.samples) // 200)]
        ],
        "marks_s": marks,
        "target": {
            "peak_rss_gib": 1.5,
            "complete_run": "stopped" not in state,
            "met": max(r for _, r in sampler.samples) < 1.5 * GIB,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "model": "shipped (napari_unet/sample_data/model)"
            if args.model is None
            else f"tiny: depth 2, 4 filters ({args.model})",
            "NAPARI_UNET_LAZY_BYTES": os.environ["NAPARI_UNET_LAZY_BYTES"],
            "tile_size": int(tab.tile_size.value),
            "rss_interval_s": args.interval,
        },
    }
    viewer.close()
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build the stack if needed, measure, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zarr", type=Path, default=Path("/tmp/napari-unet-2gib.zarr"))
    parser.add_argument("--slices", type=int, default=512)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument(
        "--out", type=Path, default=None, help=f"default {DEFAULT_OUT} (_tiny with --tiny-model)"
    )
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tiny-model", action="store_true", help="see the module docstring")
    parser.add_argument(
        "--max-minutes", type=float, default=0.0, help="press Stop after this long (0: never)"
    )
    args = parser.parse_args(argv)
    args.model = tiny_model(Path("/tmp/napari-unet-tiny-model")) if args.tiny_model else None
    if args.out is None:
        args.out = (
            DEFAULT_OUT.with_stem(DEFAULT_OUT.stem + "_tiny") if args.tiny_model else DEFAULT_OUT
        )
    if args.build_only:
        build(args.zarr, args.slices, args.size)
        return {}
    if not args.zarr.exists():
        command = [sys.executable, __file__, "--build-only", "--zarr", str(args.zarr)]
        command += ["--slices", str(args.slices), "--size", str(args.size)]
        subprocess.run(command, check=True)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps({k: result[k] for k in ("stack", "rss_gib", "seconds", "event_loop")}, indent=2)
    )
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
