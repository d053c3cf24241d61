"""Tiled vs untiled prediction speed, the shipped model on real ISBI 2012 slices.

Run (the command behind docs/bench_predict.json)::

    python benchmarks/bench_predict.py

For each slice size (``--mosaic 1 2``: the 512 x 512 ISBI slices, and 1024 x
1024 slices made of 2 x 2 different ISBI slices) the arms are

* ``untiled``: the network runs once on each whole (padded) slice, ``--batch``
  slices per call (at most the slices there are), with the same runner the tiler calls
  (``inference.predict._Runner``) and no tiler code at all;
* ``tiles T``: ``predict_normalized`` (the engine's tiler and blending) with
  ``PredictConfig(tile_size=T, overlap=32, batch_size=--batch)``; T = 512 is the
  default configuration;
* ``tiles T, pixels per call as untiled``: the same tiles with the batch raised
  so that one network call holds about as many pixels as an untiled call
  (only where T splits the slice).

All arms use the same model object in the same precision (``--precision``,
default the policy the model was trained in), the same normalized float32
stack, and return the same float32 probability. After one warm-up call of
every arm, each round runs every tiled arm back to back with an untiled run
(untiled first in even rounds, second in odd ones; arm order rotated each
round), so each ratio untiled seconds / arm seconds compares two runs a few
seconds apart on this shared machine. The median and min-max of those ratios
are reported with the network pixels per slice of each arm, and how far each
arm's probability is from the untiled one (max and mean absolute difference,
share of pixels on the other side of 0.5).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from bench_machine import machine  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "napari_unet" / "sample_data" / "model"
ISBI = Path("/work/shared/data/isbi2012")


def stack_for(mosaic: int, slices: int) -> np.ndarray:
    """`slices` uint8 slices of 512*mosaic px, each a mosaic of different ISBI slices."""
    import tifffile

    names = ("unlabeled-volume.tif", "train-volume.tif")
    base = np.concatenate([tifffile.imread(ISBI / name) for name in names])
    need = slices * mosaic * mosaic
    if need > len(base):
        raise SystemExit(f"{need} ISBI slices needed, {len(base)} available")
    tiles = base[:need].reshape(slices, mosaic, mosaic, 512, 512)
    return tiles.transpose(0, 1, 3, 2, 4).reshape(slices, 512 * mosaic, 512 * mosaic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mosaic", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pixels", type=int, default=16 * 512 * 512, help="pixels per arm")
    parser.add_argument("--tiles", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--batch", type=int, default=4, help="network inputs per call")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--precision", default=None, help="default: the model's training policy")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_predict.json"))
    args = parser.parse_args()
    command = "python benchmarks/bench_predict.py " + " ".join(sys.argv[1:])

    from napari_unet.engine.config import PredictConfig
    from napari_unet.engine.data.preprocess import apply_normalization, normalization_stats
    from napari_unet.engine.events import drain
    from napari_unet.engine.inference.predict import _Runner, predict_normalized
    from napari_unet.engine.inference.tiling import pad_to_multiple, tile_grid
    from napari_unet.engine.model.model_folder import load_model
    from napari_unet.engine.model.precision import for_prediction

    precision = args.precision or json.loads((MODEL / "metadata.json").read_text())["precision"]
    loaded = for_prediction(load_model(MODEL), precision)
    keras_model, multiple = loaded.keras_model, loaded.multiple
    assert keras_model.dtype_policy.name == precision
    runner = _Runner(keras_model, tta=False)
    low, high = loaded.config.data.percentiles

    def untiled(stack: np.ndarray) -> np.ndarray:
        height, width = stack.shape[-2:]
        out = np.empty(stack.shape, np.float32)
        for z0 in range(0, len(stack), args.batch):
            batch = pad_to_multiple(stack[z0 : z0 + args.batch], multiple)[0]
            out[z0 : z0 + args.batch] = runner(np.ascontiguousarray(batch))[:, :height, :width]
        return out

    def tiled(config: PredictConfig):
        return lambda stack: drain(predict_normalized(keras_model, stack, config, multiple))

    sizes = {}
    for mosaic in args.mosaic:
        side = 512 * mosaic
        slices = max(1, args.pixels // (side * side))
        raw = stack_for(mosaic, slices)
        stack = apply_normalization(raw, *normalization_stats(raw, low, high))
        padded = pad_to_multiple(stack[:1], multiple)[0].shape[-2:]
        arms = {"untiled": (untiled, 1, padded[0], args.batch)}
        for tile in args.tiles:
            grid = tile_grid(padded, tile, 32, multiple)
            count, size = len(grid), grid[0].height
            config = PredictConfig(tile_size=tile, overlap=32, batch_size=args.batch)
            name = f"tiles {tile}" + (" (default)" if tile == 512 else "")
            arms[name] = (tiled(config), count, size, args.batch)
            if count > 1:
                per_call = min(args.batch, slices) * padded[0] * padded[1]  # untiled call
                batch = max(1, round(per_call / size**2))
                config = config.model_copy(update={"batch_size": batch})
                arms[f"tiles {tile}, pixels per call as untiled"] = (
                    tiled(config),
                    count,
                    size,
                    batch,
                )
        outputs = {name: arm[0](stack) for name, arm in arms.items()}  # warm up every arm
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        paired: dict[str, list[float]] = {name: [] for name in arms}
        names = [name for name in arms if name != "untiled"]

        def timed(name: str, arms=arms, seconds=seconds, stack=stack) -> float:
            start = time.perf_counter()
            arms[name][0](stack)
            seconds[name].append(time.perf_counter() - start)
            return seconds[name][-1]

        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                if r % 2 == 0:  # the arm and an untiled run back to back, order alternating
                    base, arm = timed("untiled"), timed(name)
                else:
                    arm, base = timed(name), timed("untiled")
                paired[name].append(base / arm)
        paired["untiled"] = [1.0]
        results = {}
        untiled_p = outputs["untiled"]
        for name, (_, count, size, batch) in arms.items():
            ratios = paired[name]
            results[name] = {
                "tiles_per_slice": count,
                "tile_side": int(size),
                "batch_size": batch,
                "pixels_per_call": batch * int(size) ** 2,
                "network_pixels_vs_untiled": count * size**2 / (padded[0] * padded[1]),
                "median_seconds": statistics.median(seconds[name]),
                "seconds": seconds[name],
                "mpixel_per_second": slices * side * side / 1e6 / statistics.median(seconds[name]),
                "speed_vs_untiled": {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                },
                "max_abs_diff_vs_untiled": float(np.abs(outputs[name] - untiled_p).max()),
                "mean_abs_diff_vs_untiled": float(np.abs(outputs[name] - untiled_p).mean()),
                "mask_pixels_differing_from_untiled": float(
                    np.mean((outputs[name] > 0.5) != (untiled_p > 0.5))
                ),
            }
            print(
                f"{side} px {name:40s} {results[name]['mpixel_per_second']:5.2f} Mpx/s  "
                f"{results[name]['speed_vs_untiled']['median']:.0%} of untiled "
                f"[{min(ratios):.0%}-{max(ratios):.0%}]",
                flush=True,
            )
        sizes[f"{side} x {side}"] = {"slices": slices, "results": results}
    report = {
        "benchmark": "tiled vs untiled prediction, same model, precision, data and batch size",
        "command": command.strip(),
        "machine": machine(),
        "model": "napari_unet/sample_data/model (shipped cpu-small U-Net)",
        "precision": precision,
        "overlap": 32,
        "data": "ISBI 2012 unlabeled + train slices; 1024 px slices are 2 x 2 mosaics",
        "rounds": args.rounds,
        "ratio": (
            "speed_vs_untiled = untiled seconds / arm seconds of an untiled run and an arm run "
            "back to back (order alternating by round); median and min-max over rounds"
        ),
        "sizes": sizes,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
