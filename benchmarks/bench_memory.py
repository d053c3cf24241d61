"""Peak resident memory of blockwise prediction with the shipped model, per case.

Every case runs in a **fresh subprocess** that reports its own peak resident
memory (``getrusage(RUSAGE_SELF).ru_maxrss`` read inside that process), while
the parent also polls that one process with psutil every 0.1 s. Cases:

* ``baseline``: import TensorFlow, load the model, predict 4 slices in memory
  (what any prediction costs before blocks enter the picture);
* ``FORMAT:SLICES`` or ``FORMAT:SLICES:PREDICT``: a uint8 volume of SLICES
  slices of 512 x 512 (2 GiB = 8192 slices, 8 GiB = 32768) stored as zarr (one
  slice per chunk) or as a BigTIFF stack (one page per slice), predicted from
  disk to a zarr output (uint8 probability + mask) by ``predict_blockwise``;
  with PREDICT only the first PREDICT slices are predicted (``z_range``), while
  the normalization statistics still sample the whole volume and the reader
  opens all of it.

The volumes are built from the 57 real ISBI 2012 slices (train, unlabeled and
validation volumes, cycled and shifted along x) and written chunk by chunk. The
network is the shipped model (``napari_unet/sample_data/model``, the cpu-small
U-Net trained on ISBI 2012), run in one fixed precision (``--precision``,
default the policy it was trained in). Cases run ``--repeats`` times, in an
order rotated every repeat; the median and min-max of the peak RSS are
reported. Inside each blockwise child the peak RSS is also recorded when 10 %,
20 %, ... 100 % of the tiles are done (median over repeats in the summary),
which shows whether memory grows with the number of slices predicted.

Run (the command behind docs/bench_memory.json)::

    python benchmarks/bench_memory.py

Options: ``--cases zarr:1024 ...``, ``--repeats N``, ``--keep-data`` (keep the
written volumes in ``--data`` for the next run).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_machine import machine  # benchmarks/ is on sys.path when run as a script

SLICE = 512
ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "napari_unet" / "sample_data" / "model"
ISBI = Path("/work/shared/data/isbi2012")
DEFAULT_CASES = ["baseline", "zarr:1024", "zarr:8192:64", "tiff:8192:64", "zarr:32768:64"]


def real_slices() -> np.ndarray:
    """The 57 real ISBI 2012 EM slices (train, unlabeled, validation), uint8."""
    import tifffile

    names = ("train-volume.tif", "unlabeled-volume.tif", "val-volume.tif")
    return np.concatenate([tifffile.imread(ISBI / name) for name in names]).astype(np.uint8)


def volume_slice(base: np.ndarray, z: int) -> np.ndarray:
    """Slice `z` of a synthetic-length volume made of real slices, shifted per cycle."""
    return np.roll(base[z % len(base)], 7 * (z // len(base)), axis=1)


def make_volume(path: Path, slices: int, fmt: str) -> float:
    """Write a (slices, 512, 512) uint8 volume chunk by chunk; seconds spent (0 if cached)."""
    if path.exists():
        return 0.0
    started = time.perf_counter()
    base = real_slices()
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    if fmt == "zarr":
        import zarr

        out = zarr.create_array(
            str(tmp), shape=(slices, SLICE, SLICE), chunks=(1, SLICE, SLICE), dtype="uint8"
        )
        for z0 in range(0, slices, 256):
            out[z0 : z0 + 256] = np.stack(
                [volume_slice(base, z) for z in range(z0, min(z0 + 256, slices))]
            )
    else:
        import tifffile

        with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
            for z in range(slices):
                tif.write(volume_slice(base, z), contiguous=True, photometric="minisblack")
    tmp.rename(path)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- child side


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB


def _load(precision: str):
    """The shipped model in `precision`, its own ``predict.precision`` pinned to it
    (``predict_blockwise`` converts a model to that setting; pinned, it does not)."""
    import dataclasses

    from napari_unet.engine.model.model_folder import load_model
    from napari_unet.engine.model.precision import for_prediction

    loaded = for_prediction(load_model(MODEL), precision)
    assert loaded.keras_model.dtype_policy.name == precision, loaded.keras_model.dtype_policy
    config = loaded.config.model_copy(deep=True)
    config.predict.precision = precision
    return dataclasses.replace(loaded, config=config)


def child(spec: dict) -> dict:
    """Run one case inside this (fresh) process and report its own peak RSS."""
    from napari_unet.engine.config import PredictConfig

    config = PredictConfig(precision=spec["precision"])  # 512 tiles, overlap 32, batch 4
    loaded = _load(spec["precision"])
    after_load = _peak_gib()
    started = time.perf_counter()
    if spec["case"] == "baseline":
        from napari_unet.engine.inference.predict import predict

        predict(loaded, real_slices()[:4], config)
        seconds = time.perf_counter() - started
        return {"peak_rss_gib_self": _peak_gib(), "after_load_gib": after_load, "seconds": seconds}

    from napari_unet.engine.inference.blockwise import BlockwiseOptions, predict_blockwise

    marks: list[float] = []  # peak RSS when 10 %, 20 %, ... 100 % of the tiles are done

    def on_event(event) -> None:
        while len(marks) < 10 and event.done >= (len(marks) + 1) / 10 * event.total:
            marks.append(_peak_gib())

    predicted = spec["predict"]
    options = BlockwiseOptions(z_range=(0, predicted), overwrite=True)
    result = predict_blockwise(
        loaded, spec["volume"], spec["output"], config, options, callback=on_event
    )
    seconds = time.perf_counter() - started
    assert result.shape[0] == predicted, result.shape
    return {
        "peak_rss_gib_self": _peak_gib(),
        "after_load_gib": after_load,
        "peak_rss_gib_by_tenth_of_tiles_done": marks,
        "seconds": seconds,
        "predicted_slices": int(result.shape[0]),
        "blocks": result.blocks,
        "tiles": result.tiles,
        "mpixel_per_second": predicted * SLICE * SLICE / 1e6 / seconds,
    }


# ----------------------------------------------------------------------------- parent side


def run_child(spec: dict, log: Path) -> dict:
    """Run `spec` in a fresh subprocess; poll that process's RSS with psutil."""
    import psutil

    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        handle = psutil.Process(proc.pid)
        polled = 0
        while proc.poll() is None:
            try:
                polled = max(polled, handle.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.1)
        stdout = proc.stdout.read() if proc.stdout else ""
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['case']} failed ({proc.returncode}); see {log}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["peak_rss_gib_polled"] = polled / 2**30
    result["wall_seconds"] = time.perf_counter() - started
    return result


def parse_case(case: str) -> dict:
    if case == "baseline":
        return {"case": case}
    fmt, *numbers = case.split(":")
    if fmt not in ("zarr", "tiff") or not 1 <= len(numbers) <= 2:
        raise SystemExit(f"bad case {case!r}: use baseline, FORMAT:SLICES or FORMAT:SLICES:N")
    slices = int(numbers[0])
    predict = int(numbers[1]) if len(numbers) == 2 else slices
    return {"case": case, "format": fmt, "slices": slices, "predict": min(predict, slices)}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default=None, help="default: the model's training policy")
    parser.add_argument("--data", default="/tmp/napari-unet-bench-memory", help="scratch folder")
    parser.add_argument("--keep-data", action="store_true", help="keep the written volumes")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_memory.json"))
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    command = "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:])
    precision = args.precision or json.loads((MODEL / "metadata.json").read_text())["precision"]
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    cases = [parse_case(case) for case in args.cases]
    written = {}
    for spec in cases:
        if spec["case"] != "baseline":
            suffix = ".zarr" if spec["format"] == "zarr" else ".tif"
            spec["volume"] = str(data / f"volume-{spec['slices']}{suffix}")
            spec["output"] = str(data / "prediction.zarr")
            seconds = make_volume(Path(spec["volume"]), spec["slices"], spec["format"])
            written[spec["volume"]] = seconds
        spec["precision"] = precision
    runs: dict[str, list[dict]] = {spec["case"]: [] for spec in cases}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        shift = repeat % len(cases)
        for spec in cases[shift:] + cases[:shift]:
            result = run_child(spec, data / "child-stderr.log")
            runs[spec["case"]].append(result)
            shutil.rmtree(data / "prediction.zarr", ignore_errors=True)
            print(
                f"repeat {repeat + 1}: {spec['case']:16s} peak RSS "
                f"{result['peak_rss_gib_self']:.3f} GiB "
                f"(polled {result['peak_rss_gib_polled']:.3f}), "
                f"{result['seconds']:.0f} s",
                flush=True,
            )
    summary = {}
    for spec in cases:
        values = runs[spec["case"]]
        entry = {
            "peak_rss_gib_self": _spread([r["peak_rss_gib_self"] for r in values]),
            "peak_rss_gib_polled": _spread([r["peak_rss_gib_polled"] for r in values]),
            "seconds": _spread([r["seconds"] for r in values]),
        }
        if spec["case"] != "baseline":
            gib = spec["slices"] * SLICE * SLICE / 2**30
            entry.update(
                {
                    "format": spec["format"],
                    "volume_shape": [spec["slices"], SLICE, SLICE],
                    "volume_gib": gib,
                    "predicted_slices": spec["predict"],
                    "predicted_fraction": spec["predict"] / spec["slices"],
                    "mpixel_per_second": _spread([r["mpixel_per_second"] for r in values]),
                    "peak_rss_gib_by_tenth_of_tiles_done": [
                        statistics.median(
                            r["peak_rss_gib_by_tenth_of_tiles_done"][i] for r in values
                        )
                        for i in range(10)
                    ],
                }
            )
        summary[spec["case"]] = entry
    report = {
        "benchmark": "peak resident memory of one prediction process per case (fresh subprocess)",
        "command": command.strip(),
        "machine": machine(),
        "model": "napari_unet/sample_data/model (shipped cpu-small U-Net, depth 4, 16 filters)",
        "precision": precision,
        "tiles": "512 x 512, overlap 32, batch 4 (PredictConfig defaults)",
        "data": "uint8 volumes of the 57 real ISBI 2012 slices, cycled and shifted along x",
        "memory_measure": (
            "peak_rss_gib_self = getrusage(RUSAGE_SELF).ru_maxrss inside the case's own "
            "process; peak_rss_gib_polled = psutil RSS of that process polled every 0.1 s"
        ),
        "repeats": args.repeats,
        "total_seconds": time.perf_counter() - started,
        "volume_write_seconds": written,
        "cases": summary,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not args.keep_data:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
