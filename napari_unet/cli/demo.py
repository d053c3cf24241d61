"""``napari-unet demo``: the README's main job, on the data and model shipped inside the package.

1. Evaluate the shipped pretrained U-Net on shipped ISBI 2012 slices it was
   not trained on (Rand F-score, VI, pixel error, Dice).
2. Fine-tune it briefly on the shipped training slices through the
   correct-and-retrain loop's one path (``engine.training.finetune``, as
   ``napari-unet finetune`` and the dock), unless ``train_minutes`` is 0.
3. Predict with the fine-tuned model, write the mask and probability TIFFs
   and report the metrics again.

Nothing is replaced without asking: results of an earlier demo in the same
folder are listed first and replaced only after a "y" on the terminal, or with
``--overwrite``; without a terminal the demo refuses. It ends by naming every
file and folder it wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sample import PRETRAINED_MODEL, sample_paths
from .progress import progress_printer

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "run", "run_demo"]

NAME = "demo"
NEEDS_TENSORFLOW = True


def add_parser(sub: SubParsers) -> None:
    """Add the ``demo`` sub-command to `sub`.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of the ``napari-unet`` parser.
    """
    demo = sub.add_parser(
        NAME, help="run the shipped model on the shipped EM sample, fine-tune briefly, report"
    )
    demo.add_argument("--output", "-o", default="napari-unet-demo", help="folder for results")
    demo.add_argument(
        "--train-minutes", type=float, default=1.0, help="fine-tuning budget (0 to skip)"
    )
    demo.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier demo"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo into ``--output``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``demo`` command line.

    Returns
    -------
    int
        The exit code (0).
    """
    ask = _ask_on_terminal if sys.stdin.isatty() else None
    run_demo(
        Path(args.output),
        train_minutes=args.train_minutes,
        overwrite=getattr(args, "overwrite", False),
        ask=ask,
    )
    return 0


def _ask_on_terminal(question: str) -> bool:
    """Ask a yes/no question on the terminal (default no)."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def demo_targets(output: Path, train_minutes: float) -> list[Path]:
    """What the demo writes under `output` (the fine-tuned model only if it trains)."""
    targets = [output / "prediction-mask.tif", output / "prediction-probability.tif"]
    return ([output / "fine-tuned-model"] if train_minutes > 0 else []) + targets


def _may_replace(existing: list[Path], overwrite: bool, ask: Callable[[str], bool] | None) -> bool:
    """May the demo replace `existing`? (``--overwrite``, else the user's answer.)

    Raises
    ------
    UserInputError
        Without ``--overwrite`` and without a terminal to ask on, or when the
        user answers no.
    """
    from ..engine.errors import UserInputError

    if not existing or overwrite:
        return True
    names = ", ".join(str(p) for p in existing)
    if ask is not None and ask(f"The demo would replace {names}. Replace them?"):
        return True
    raise UserInputError(
        f"{names} exist from an earlier demo; pass --overwrite to replace them or choose "
        "another --output"
    )


def _summary(scores: dict[str, Any]) -> dict[str, float]:
    """The headline metrics of `scores`, rounded."""
    overall = scores
    keys = ("rand_fscore", "vi", "pixel_error", "dice")
    return {k: round(float(overall[k]), 4) for k in keys if k in overall}


def run_demo(
    output: Path,
    train_minutes: float = 1.0,
    overwrite: bool = False,
    ask: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Run the demo and write its results under `output`.

    Parameters
    ----------
    output : Path
        Folder for the predicted TIFFs and the fine-tuned model (created).
    train_minutes : float
        Fine-tuning budget; 0 skips fine-tuning.
    overwrite : bool
        Replace the results of an earlier demo without asking.
    ask : callable, optional
        ``ask(question) -> bool`` before replacing anything (the terminal); None:
        refuse to replace without `overwrite`.

    Returns
    -------
    dict
        Metrics of the shipped model and, if trained, of the fine-tuned one, and
        ``written``: the files and folders written.

    Raises
    ------
    UserInputError
        If `output` cannot be created, or holds results that may not be replaced.
    """
    from ..engine.evaluation.metrics import evaluate
    from ..engine.inference.predict import predict
    from ..engine.io.stacks import mask_to_uint8, read_mask, read_stack, write_tiff
    from ..engine.model.model_folder import load_model
    from ..engine.training.finetune import finetune

    paths = sample_paths()
    targets = demo_targets(output, train_minutes)
    replace = _may_replace([t for t in targets if t.exists()], overwrite, ask)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file of that name: one clear line, not a traceback
        from ..engine.errors import UserInputError

        reason = "a file of that name exists" if output.is_file() else (exc.strerror or exc)
        raise UserInputError(f"cannot create the demo folder {output}: {reason}") from None
    test_images = read_stack(paths["test_images"])
    test_masks = read_mask(paths["test_masks"])
    report: dict[str, Any] = {"output": str(output.resolve())}

    print(
        f"1/3 evaluating the shipped model on {test_images.shape[0]} ISBI 2012 slices it was "
        "not trained on (its validation slices)",
        file=sys.stderr,
    )
    model = load_model(PRETRAINED_MODEL)
    shipped = predict(model, test_images, callback=progress_printer(False))
    report["pretrained"] = _summary(evaluate(shipped.probability, test_masks))
    print(json.dumps({"pretrained": report["pretrained"]}), file=sys.stderr)
    final = shipped

    if train_minutes > 0:
        print(
            f"2/3 fine-tuning for {train_minutes:g} min on the shipped training slices",
            file=sys.stderr,
        )
        # The correct-and-retrain loop's one path (as `napari-unet finetune`, `train
        # --init-from` and the dock): here on the shipped training slices, which the model
        # already knows, so it shows the mechanics (replay, calibration, a new version)
        # rather than a gain; correcting slices of a new volume is what raises the score.
        result = finetune(
            PRETRAINED_MODEL,
            read_stack(paths["train_images"]),
            read_mask(paths["train_masks"]),
            output=output / "fine-tuned-model",
            max_minutes=train_minutes,
            overwrite=replace,
            callback=progress_printer(False),
        )
        final = predict(result.model_dir, test_images, callback=progress_printer(False))
        report["fine_tuned"] = _summary(evaluate(final.probability, test_masks))
        report["note"] = (
            "fine-tuned on slices the shipped model was trained on: no new information, so "
            "expect the score to move by a merge or two either way; correcting new slices is "
            "what raises it (docs/benchmarks.md)"
        )
        report["model_dir"] = str(result.model_dir)

    print("3/3 writing the predicted masks", file=sys.stderr)
    write_tiff(targets[-2], mask_to_uint8(final.mask()), overwrite=replace)
    write_tiff(targets[-1], final.probability, overwrite=replace)
    report["written"] = [str(t.resolve()) for t in targets]
    print("wrote:\n" + "\n".join(f"  {t}" for t in report["written"]), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return report
