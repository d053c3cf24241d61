"""The correct-and-retrain loop on a domain-shifted EM volume, several seeds.

Run: ``python benchmarks/bench_correct_loop.py [--seeds 3] [--minutes 5] [--shift wide]
[--replay-fraction F] [--no-uncertain] [--ceiling]``
(``--data`` defaults to ``../shared/data/isbi2012``; ``--model`` to the shipped ISBI model).

The "new volume" is ISBI 2012 shifted by ``benchmarks/domain_shift.py``: resampled 1.2x,
lower contrast, gamma 1.4, noise and the boundary class widened by 2 px (``--shift wide``:
another resolution, acquisition and a thicker-membrane labelling style); ``--shift
wide+thin`` also labels the segments thinner than a 12 px radius as boundary (small
processes counted as boundary, a style the image shows by shape, like glia and
extracellular space labelled as boundary in other volumes);
``--shift wide+dark`` also the darkest 15 % of the cells labelled as boundary (a style
defined by mean intensity alone, which the image does not show crisply: the hard case).
Slices 0-19 are the candidates a user corrects, slices 20-26 the test slices every arm is
scored on (24-26 are the ISBI validation slices, whose
content no ISBI model of this project trained on; 20-23 are training content, shifted).

Arms (each fine-tune is ``engine.training.finetune.finetune``, the path of ``napari-unet
finetune`` and the dock, with the same wall-clock budget ``--minutes`` counted from its start):

- ``no correction``: the parent model as it is, with its stored threshold;
- ``2 random slices``: two candidates drawn with the seed;
- ``2 most uncertain slices, spread``: the first two candidates of the order the dock
  suggests (``engine.evaluation.ranking.spread_order`` of the parent's mean binary entropy,
  ``rank_by_uncertainty``: the most uncertain first, then the most uncertain at least a
  quarter of the candidates away; the two most uncertain alone were neighbours);
- ``all 20 candidates (ceiling)``, with ``--ceiling``: every candidate corrected, the same
  budget: what the recipe reaches on this shift in the time with far more corrections than
  a user makes, so the 2-slice arms can be read against what is reachable at all.

Scores: mean Rand F-score and pixel error of the test slices, with the mask ``predict``
writes by default (the version's stored, calibrated threshold). Medians and min-max over
seeds go to docs/bench_correct_loop.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

#: Each ``--shift``: its ``domain_shift.shift_volume`` settings, the suffix of its default
#: output file, and what it adds to the resampling, contrast, gamma, noise and widening.
SHIFTS = {
    "wide": ({"dark_as_boundary": 0.0}, "", ""),
    "wide+thin": (
        {"dark_as_boundary": 0.0, "thin_as_boundary": 12.0},
        "_thin",
        ", segments thinner than a 12 px radius labelled as boundary",
    ),
    "wide+dark": (
        {"dark_as_boundary": 0.15},
        "_dark",
        ", darkest 15 % of the cells labelled as boundary",
    ),
}
CANDIDATES = list(range(20))
TEST = list(range(20, 27))
UNCERTAIN_ARM = "2 most uncertain slices, spread"
CEILING_ARM = "all 20 candidates (ceiling)"
ARMS = ("no correction", "2 random slices", UNCERTAIN_ARM, CEILING_ARM)


def _scores(model_dir: Path, images: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    from napari_unet.engine.evaluation.metrics import evaluate
    from napari_unet.engine.inference.predict import predict
    from napari_unet.engine.model.model_folder import load_model

    threshold = load_model(model_dir).config.predict.threshold
    probability = predict(model_dir, images).probability
    per_slice = [evaluate(probability[z], masks[z], threshold) for z in TEST]
    return {
        "threshold": threshold,
        "rand_fscore": float(np.mean([s["rand_fscore"] for s in per_slice])),
        "pixel_error": float(np.mean([s["pixel_error"] for s in per_slice])),
        "probability": probability,
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "isbi2012"))
    parser.add_argument("--model", default=str(ROOT / "napari_unet" / "sample_data" / "model"))
    parser.add_argument("--work", default="/tmp/napari-unet-loop")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--shift", choices=tuple(SHIFTS), default="wide")
    parser.add_argument(
        "--ceiling", action="store_true", help="also fine-tune on all 20 candidates per seed"
    )
    parser.add_argument(
        "--no-uncertain", action="store_true", help="leave out the uncertain-slices arm"
    )
    parser.add_argument(
        "--replay-fraction",
        type=float,
        default=None,
        help="share of the parent's data in the fine-tuning batches (default: the engine's)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="default docs/bench_correct_loop[_thin|_dark][_replayNN].json",
    )
    args = parser.parse_args(argv)
    shift_settings, suffix, shift_note = SHIFTS[args.shift]
    if args.out is None:
        if args.replay_fraction is not None:
            suffix += f"_replay{round(args.replay_fraction * 100):02d}"
        args.out = str(ROOT / "docs" / f"bench_correct_loop{suffix}.json")
    recipe = {} if args.replay_fraction is None else {"replay_fraction": args.replay_fraction}

    import tifffile
    from bench_machine import machine
    from domain_shift import shift_volume

    from napari_unet.engine.evaluation.ranking import rank_by_uncertainty, spread_order
    from napari_unet.engine.training.finetune import finetune

    data = Path(args.data)
    raw = np.concatenate(
        [tifffile.imread(data / "train-volume.tif"), tifffile.imread(data / "val-volume.tif")]
    )
    labels = np.concatenate(
        [tifffile.imread(data / "train-labels.tif"), tifffile.imread(data / "val-labels.tif")]
    )
    images, masks255 = shift_volume(raw, labels > 0, **shift_settings)
    masks = masks255 > 0
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    parent = _scores(Path(args.model), images, masks)
    ranking = rank_by_uncertainty(parent.pop("probability")[CANDIDATES])
    uncertain = sorted(CANDIDATES[z] for z in spread_order(ranking)[:2])
    runs = [{"arm": "no correction", "seed": None, "slices": [], **parent}]
    for seed in range(args.seeds):
        chosen = sorted(np.random.default_rng(seed).choice(CANDIDATES, 2, replace=False).tolist())
        arms = [("2 random slices", chosen)]
        if not args.no_uncertain:
            arms.append((UNCERTAIN_ARM, uncertain))
        if args.ceiling:
            arms.append((CEILING_ARM, CANDIDATES))
        for arm, slices in arms:
            output = work / f"{arm.split()[1].rstrip(',')}-seed{seed}"
            started = time.perf_counter()
            result = finetune(
                args.model,
                images,
                masks255,
                slices=slices,
                output=output,
                max_minutes=args.minutes,
                overrides={"train.seed": seed},
                started=started,
                **recipe,
            )
            wall = time.perf_counter() - started
            scores = _scores(output, images, masks)
            scores.pop("probability")
            meta = json.loads((output / "metadata.json").read_text())
            timing = {k: meta.get(k) for k in ("seconds_after_last_batch", "calibration_seconds")}
            runs.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "slices": slices,
                    "steps": result.steps,
                    "wall_seconds": wall,
                    **timing,
                    **scores,
                }
            )
            print(json.dumps(runs[-1]), flush=True)

    summary = {}
    for arm in ARMS:
        chosen_runs = [r for r in runs if r["arm"] == arm]
        if not chosen_runs:
            continue
        summary[arm] = {
            "runs": len(chosen_runs),
            "rand_fscore": _spread([r["rand_fscore"] for r in chosen_runs]),
            "pixel_error": _spread([r["pixel_error"] for r in chosen_runs]),
        }
    report = {
        "command": "python benchmarks/bench_correct_loop.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "load_average_at_end": os.getloadavg(),
        "finetune_recipe": _recipe(work),
        "parent_model": str(Path(args.model).name),
        "shift": f"{args.shift}: benchmarks/domain_shift.py with zoom 1.2, contrast 0.7, "
        "gamma 1.4, noise 0.04, boundary widened by 2 px" + shift_note,
        "candidates": CANDIDATES,
        "test_slices": TEST,
        "minutes_per_finetune": args.minutes,
        "summary": summary,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    for arm, values in summary.items():
        print(
            f"{arm:34s} Rand F {values['rand_fscore']['median']:.4f} "
            f"[{values['rand_fscore']['min']:.4f}-{values['rand_fscore']['max']:.4f}]  "
            f"pixel error {values['pixel_error']['median']:.4f} "
            f"[{values['pixel_error']['min']:.4f}-{values['pixel_error']['max']:.4f}]"
        )
    return report


def _recipe(work: Path) -> dict:
    """The fine-tuning settings the runs used, read back from one of their versions."""
    from napari_unet.engine.model.model_folder import ModelFolder

    versions = sorted(p for p in work.iterdir() if (p / "config.yaml").exists())
    if not versions:
        return {}
    folder = ModelFolder(versions[0])
    train = folder.load_config().train
    meta = folder.read_json(folder.metadata_path, default={}) or {}
    return {
        "learning_rate": train.learning_rate,
        "freeze_batch_norm": train.freeze_batch_norm,
        "freeze_encoder": train.freeze_encoder,
        "replay_fraction": meta.get("replay_fraction"),
        "calibration_rule": meta.get("calibration", {}).get("rule"),
    }


if __name__ == "__main__":
    main()
