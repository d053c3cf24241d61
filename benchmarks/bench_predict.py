"""Tiled vs untiled prediction throughput on a 30 x 512 x 512 stack.

Run: ``python benchmarks/bench_predict.py [--model DIR]``. Both variants run
alternately in one process (timings here are noisy, so we report medians of
several rounds and their ratio) and the figures go to docs/bench_predict.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from napari_unet.engine.config import ModelConfig, PredictConfig
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.events import drain
from napari_unet.engine.inference.predict import predict_normalized


def _model(model_dir: str | None):
    if model_dir:
        from napari_unet.engine.model.model_folder import load_model

        loaded = load_model(model_dir)
        return loaded.keras_model, loaded.multiple, loaded.config.model
    import keras

    from napari_unet.engine.model.unet import build_unet
    from napari_unet.engine.training.train import resolve_precision

    keras.mixed_precision.set_global_policy(resolve_precision("auto"))
    config = ModelConfig(preset="cpu-small")
    return build_unet(config), config.multiple, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: a fresh cpu-small U-Net)")
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", default=str(Path(__file__).parents[1] / "docs" / "bench_predict.json")
    )
    args = parser.parse_args()

    keras_model, multiple, model_config = _model(args.model)
    images, _ = synthetic_em(slices=args.slices, size=512, cells=150, seed=0, dtype=np.float32)
    variants = {
        "untiled": PredictConfig(tile_size=512, overlap=32, batch_size=4),
        "default tiles (512, overlap 32)": PredictConfig(),
        "tiles 256, overlap 32": PredictConfig(tile_size=256, overlap=32, batch_size=8),
        "tiles 384, overlap 32": PredictConfig(tile_size=384, overlap=32, batch_size=4),
    }
    drain(predict_normalized(keras_model, images[:2], variants["untiled"], multiple))  # warm up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, config in variants.items():
            start = time.perf_counter()
            drain(predict_normalized(keras_model, images, config, multiple))
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["untiled"])
    results = {
        name: {
            "median_seconds": statistics.median(t),
            "slices_per_second": args.slices / statistics.median(t),
            "speed_vs_untiled": base / statistics.median(t),
        }
        for name, t in times.items()
    }
    report = {
        "stack": [args.slices, 512, 512],
        "model": model_config.model_dump(),
        "rounds": args.rounds,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    for name, r in results.items():
        print(
            f"{name:34s} {r['median_seconds']:7.2f} s  {r['slices_per_second']:6.2f} slices/s  "
            f"{r['speed_vs_untiled']:.0%} of untiled"
        )


if __name__ == "__main__":
    main()
