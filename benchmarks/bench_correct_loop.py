"""The correct-and-retrain loop on ISBI 2012, without a person.

Run: ``python benchmarks/bench_correct_loop.py [--data ../shared/data/isbi2012]``.

1. Train a model on 3 training slices for a fixed CPU budget (the "first model").
2. Predict the other 21 training slices; take the 2 the model is least sure of
   (mean binary entropy of the probabilities).
3. Give their ground truth as the user's "correction" and fine-tune the first
   model on them (mixed with the 3 original slices) for a fixed CPU budget.
4. Control: fine-tune the first model for the same budget on the 3 original
   slices only, so the gain of step 3 is not just "more training".
Rand F-score (ISBI 2012 style, threshold 0.5) on the 3 validation slices
before and after, and the CPU time spent, go to docs/bench_correct_loop.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "isbi2012"))
    parser.add_argument("--work", default="/tmp/napari-unet-loop")
    parser.add_argument("--first-cpu-minutes", type=float, default=8.0)
    parser.add_argument("--finetune-cpu-minutes", type=float, default=5.0)
    parser.add_argument("--train-slices", default="0,1,2")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_correct_loop.json"))
    args = parser.parse_args(argv)

    from napari_unet.engine.config import load_config
    from napari_unet.engine.evaluation.metrics import evaluate
    from napari_unet.engine.evaluation.ranking import rank_by_uncertainty
    from napari_unet.engine.inference.postprocess import to_sparse_annotation
    from napari_unet.engine.inference.predict import predict
    from napari_unet.engine.io.stacks import read_mask, read_stack
    from napari_unet.engine.training.finetune import finetune
    from napari_unet.engine.training.train import train

    data = Path(args.data)
    work = Path(args.work)
    images = read_stack(data / "train-volume.tif")
    masks = read_mask(data / "train-labels.tif")
    val_images = read_stack(data / "val-volume.tif")
    val_masks = read_mask(data / "val-labels.tif")
    first = [int(s) for s in args.train_slices.split(",")]
    rest = [z for z in range(len(images)) if z not in first]

    def score(model_dir: Path) -> float:
        return float(evaluate(predict(model_dir, val_images).probability, val_masks)["rand_fscore"])

    config = load_config(ROOT / "configs" / "isbi2012.yaml").with_overrides(
        {
            "output": str(work / "v001"),
            "train.max_minutes": None,
            "train.max_cpu_minutes": args.first_cpu_minutes,
            "train.monitor": "last",
            "train.tensorboard": False,
            "data.val_fraction": 0.0,
        }
    )
    config = config.model_copy(
        update={"data": config.data.model_copy(update={"val_images": None, "val_masks": None})}
    )
    cpu0 = time.process_time()
    first_model = train(config, images[first], masks[first]).model_dir
    first_cpu = time.process_time() - cpu0
    before = score(first_model)

    probability = predict(first_model, images[rest]).probability
    ranking = rank_by_uncertainty(probability)
    worst = [rest[r["slice"]] for r in ranking[:2]]
    corrections = np.zeros(images.shape, np.uint8)
    corrections[worst] = to_sparse_annotation(masks[worst])

    results = {}
    for name, slices, correction in (
        ("corrected 2 worst slices", worst, corrections),
        ("control: original 3 slices only", first, to_sparse_annotation(masks)),
    ):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        child = finetune(
            first_model,
            images,
            correction,
            slices=slices,
            output=work / ("v002" if "corrected" in name else "control"),
            max_minutes=None,
            max_cpu_minutes=args.finetune_cpu_minutes,
            replay_images=images[first],
            replay_masks=masks[first],
        ).model_dir
        results[name] = {
            "slices": slices,
            "cpu_minutes": (time.process_time() - cpu0) / 60,
            "wall_minutes": (time.perf_counter() - wall0) / 60,
            "rand_fscore_after": score(child),
        }
    report = {
        "first_model": {
            "train_slices": first,
            "cpu_minutes": first_cpu / 60,
            "rand_fscore": before,
        },
        "most_uncertain_slices": worst,
        "uncertainty_ranking_top5": ranking[:5],
        "finetuning": results,
        "validation": "ISBI 2012 slices 24-26, Rand F-score (foreground-restricted, threshold 0.5)",
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
