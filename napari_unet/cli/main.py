"""Command line: ``napari-unet train | predict | evaluate | demo | lr-find | frames-meta``.

The CLI reads the same YAML config as the napari widgets; flags override it.
A user error prints one line on stderr and exits with code 2, never a
traceback. TensorFlow is imported only by the commands that need it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..engine.errors import UserInputError
from .blockwise import add_blockwise_arguments, run_blockwise_predict, wants_blockwise
from .features import FEATURE_COMMANDS, add_feature_parsers, data_overrides

EXIT_USER_ERROR = 2
#: A fault (NaN loss, out of memory, an unexpected error) ended the command.
EXIT_FAULT = 1


_UNSAFE_HELP = "load a model that contains custom code (Lambda layers); only for models you trust"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"napari-unet: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-unet`` console script."""
    parser = _Parser(prog="napari-unet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = sub.add_parser("train", help="train a U-Net and write a model folder")
    train.add_argument("config", nargs="?", help="YAML config (defaults apply without one)")
    train.add_argument("--images", help="image stack, image or folder of slices")
    train.add_argument("--masks", help="masks matching --images")
    train.add_argument("--val-images", help="validation images (else a split of --images)")
    train.add_argument("--val-masks", help="validation masks")
    train.add_argument("--output", "-o", help="model folder to write")
    train.add_argument("--max-minutes", type=float, help="wall-clock training budget")
    train.add_argument("--epochs", type=int)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--patch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--preset", help="model preset (cpu-small, cpu, gpu, gpu-large)")
    train.add_argument("--init-from", help="warm-start from this model folder (fine-tuning)")
    train.add_argument(
        "--freeze-batch-norm",
        action="store_true",
        help="keep batch-norm statistics fixed (recommended with --init-from on a few slices)",
    )
    train.add_argument("--seed", type=int)
    train.add_argument("--dataset", help="dataset root with train/images and train/masks")
    train.add_argument("--gpu", type=int, help="GPU index to use")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    predict = sub.add_parser("predict", help="predict masks or probabilities for a stack")
    predict.add_argument("model", help="model folder written by train")
    predict.add_argument(
        "input", help="image stack, image, folder of slices or dataset root (test/images)"
    )
    predict.add_argument(
        "--output",
        "-o",
        required=True,
        help="output .tif/.tiff, .npy, .csv (run-length encoded) or a folder of PNG slices",
    )
    predict.add_argument("--gpu", type=int, help="GPU index to use")
    predict.add_argument(
        "--probabilities", action="store_true", help="write the float32 probability map"
    )
    predict.add_argument("--threshold", type=float, help="mask threshold (default from model)")
    predict.add_argument("--tile-size", type=int)
    predict.add_argument("--overlap", type=int)
    predict.add_argument("--batch-size", type=int)
    predict.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_blockwise_arguments(predict)
    predict.add_argument("--unsafe-load", action="store_true", help=_UNSAFE_HELP)
    predict.add_argument("--quiet", action="store_true")

    evaluate = sub.add_parser("evaluate", help="print a model's metrics on labelled data as JSON")
    evaluate.add_argument("model", help="model folder")
    evaluate.add_argument("images", help="image stack")
    evaluate.add_argument("masks", help="ground-truth masks")
    evaluate.add_argument("--threshold", type=float)
    evaluate.add_argument("--tta", action="store_true")
    evaluate.add_argument("--per-slice", action="store_true", help="include per-slice metrics")
    evaluate.add_argument("--unsafe-load", action="store_true", help=_UNSAFE_HELP)

    demo = sub.add_parser(
        "demo", help="run the shipped model on the shipped EM sample, fine-tune briefly, report"
    )
    demo.add_argument("--output", "-o", default="napari-unet-demo", help="folder for results")
    demo.add_argument(
        "--train-minutes", type=float, default=1.0, help="fine-tuning budget (0 to skip)"
    )
    add_feature_parsers(sub)
    return parser


def _progress_printer(quiet: bool) -> Any:
    """A callback that prints engine events as a compact progress line."""
    from ..engine.events import PredictEvent, TrainEvent

    is_tty = sys.stderr.isatty()

    def show(event: Any) -> None:
        if quiet:
            return
        if isinstance(event, TrainEvent):
            if event.kind == "start":
                print(event.message, file=sys.stderr)
            elif event.kind == "step" and is_tty:
                bar = _train_bar(event)
                print(
                    f"\r{bar} epoch {event.epoch}/{event.total_epochs} step {event.step} "
                    f"loss {event.loss:.4f} eta {_fmt_eta(event.eta)}   ",
                    end="",
                    file=sys.stderr,
                )
            elif event.kind == "epoch":
                val = " ".join(f"val_{k} {v:.4f}" for k, v in event.val.items())
                end = "\n"
                print(
                    f"\r{_train_bar(event)} epoch {event.epoch}/"
                    f"{event.total_epochs} loss {event.loss:.4f} {val} "
                    f"eta {_fmt_eta(event.eta)} {event.message}",
                    end=end,
                    file=sys.stderr,
                )
            elif event.kind in ("done", "stopped"):
                print(f"training ended: {event.message}", file=sys.stderr)
        elif isinstance(event, PredictEvent) and is_tty:
            print(
                f"\r{_bar(event.done, event.total)} tiles {event.done}/{event.total} "
                f"eta {_fmt_eta(event.eta)}   ",
                end="" if event.done < event.total else "\n",
                file=sys.stderr,
            )

    return show


def _train_bar(event: Any) -> str:
    """Progress by steps, or by time when a wall-clock budget ends training first."""
    if event.eta is not None and event.elapsed > 0:
        return _bar(event.elapsed, event.elapsed + event.eta)
    return _bar(event.step, event.total_steps)


def _bar(done: float, total: float, width: int = 24) -> str:
    fraction = min(done / total, 1.0) if total else 0.0
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}"


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def _cmd_train(args: argparse.Namespace) -> int:
    from ..engine.config import Config, load_config
    from ..engine.training.train import train

    config = load_config(args.config) if args.config else Config()
    overrides = {
        **data_overrides(args),
        "output": _abs(args.output),
        "train.max_minutes": args.max_minutes,
        "train.epochs": args.epochs,
        "train.steps_per_epoch": args.steps_per_epoch,
        "train.batch_size": args.batch_size,
        "train.patch_size": args.patch_size,
        "train.learning_rate": args.learning_rate,
        "train.init_from": _abs(args.init_from),
        "train.seed": args.seed,
        "train.freeze_batch_norm": True if args.freeze_batch_norm else None,
    }
    if args.preset:
        overrides["model"] = {"preset": args.preset}
    config = _with_overrides(config, overrides)
    stop = threading.Event()
    result = train(config, callback=_progress_printer(args.quiet), stop=stop)
    print(json.dumps({"model_dir": str(result.model_dir), "stopped": result.stopped_reason}))
    if getattr(result, "failed", False):  # a fault ended training; checkpoints are kept
        print(f"napari-unet: error: training stopped: {result.stopped_reason}", file=sys.stderr)
        return EXIT_FAULT
    return 0


def _with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    try:
        return config.with_overrides(overrides)
    except ValueError as exc:
        from ..engine.config import _short_validation_message

        raise UserInputError(f"invalid option: {_short_validation_message(exc)}") from None


def _abs(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _predict_config(model: Any, args: argparse.Namespace) -> Any:
    overrides = {
        "threshold": args.threshold,
        "tile_size": getattr(args, "tile_size", None),
        "overlap": getattr(args, "overlap", None),
        "batch_size": getattr(args, "batch_size", None),
        "tta": True if args.tta else None,
    }
    data = model.config.predict.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return type(model.config.predict).model_validate(data)
    except ValueError as exc:
        from ..engine.config import _short_validation_message

        raise UserInputError(f"invalid option: {_short_validation_message(exc)}") from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..engine.inference.predict import predict
    from ..engine.io.export import prediction_target, write_prediction
    from ..engine.io.stacks import read_stack
    from ..engine.model.devices import configure_devices_for_model
    from ..engine.model.model_folder import load_model
    from .features import predict_source, rle_ids

    if wants_blockwise(args):  # .zarr output, --blockwise/--scheduler or a large input
        return run_blockwise_predict(args, _progress_printer(args.quiet))
    output, _ = prediction_target(args.output, args.probabilities, args.overwrite)
    source = predict_source(args.input)
    images = read_stack(source)
    configure_devices_for_model(args.model, args.gpu)
    model = load_model(args.model, safe_mode=not getattr(args, "unsafe_load", False))
    config = _predict_config(model, args)
    result = predict(model, images, config, callback=_progress_printer(args.quiet))
    if args.probabilities:
        write_prediction(args.output, probability=result.probability, overwrite=args.overwrite)
    else:
        ids = rle_ids(source, result.probability.shape[0])
        write_prediction(args.output, mask01=result.mask(), overwrite=args.overwrite, ids=ids)
    if not args.quiet:
        print(f"wrote {output} {result.probability.shape}", file=sys.stderr)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..engine.data.preprocess import as_stack
    from ..engine.evaluation.metrics import evaluate
    from ..engine.inference.predict import predict
    from ..engine.io.stacks import check_pair, read_mask, read_stack
    from ..engine.model.model_folder import load_model

    images = as_stack(read_stack(args.images))
    masks = as_stack(read_mask(args.masks))
    check_pair(images, masks, "images", "masks")
    model = load_model(args.model, safe_mode=not getattr(args, "unsafe_load", False))
    config = _predict_config(model, args)
    result = predict(model, images, config)
    scores = evaluate(result.probability, masks, threshold=config.threshold)
    if not args.per_slice:
        scores = {k: v for k, v in scores.items() if k != "per_slice"}
    print(json.dumps(scores, indent=2, default=float))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.output), train_minutes=args.train_minutes)
    return 0


NEEDS_TENSORFLOW = {"train", "predict", "evaluate", "demo", "lr-find"}

COMMANDS = {
    "train": _cmd_train,
    "predict": _cmd_predict,
    "evaluate": _cmd_evaluate,
    "demo": _cmd_demo,
    **FEATURE_COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-unet`` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage error already reported
        return int(exit_request.code or 0)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        if args.command in NEEDS_TENSORFLOW:
            from ..engine.model.tf_import import import_tensorflow_quietly

            import_tensorflow_quietly()
        return COMMANDS[args.command](args)
    except UserInputError as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"napari-unet: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("napari-unet: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("napari-unet: error: out of memory; use smaller tiles or batches", file=sys.stderr)
        return EXIT_FAULT
    except Exception as exc:  # a bug or an environment fault: one line, no traceback
        if os.environ.get("NAPARI_UNET_DEBUG"):
            raise
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        print(
            f"napari-unet: error: unexpected {type(exc).__name__}: {text} "
            "(set NAPARI_UNET_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAULT


if __name__ == "__main__":
    sys.exit(main())
