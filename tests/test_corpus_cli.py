"""Issue 7.1: the bad-input corpus through every CLI command.

Every corpus entry gets either a correct result (exit 0, a plausible output)
or one clear line on stderr starting with ``napari-unet: error:`` and exit
code 2 — never a traceback (the CLI would exit 1 with "unexpected ...") —
and no input file is changed, removed or added to.

Training is the slow entry point (a model is built and traced each time):
in the normal run every entry that must be refused goes through ``train``
plus a fixed sample of the valid entries (:data:`TRAIN_SAMPLE`, and those marked
``train=True``); ``NAPARI_UNET_FULL_CORPUS=1`` (the nightly
``benchmarks/bench_corpus.py``) trains on every valid entry. Prediction and
evaluation load the model once (model loading itself is exercised by the
``model`` entries). Every command of the CLI is driven here:
:func:`test_every_command_is_driven` fails when one is added without its test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import build_parser, main
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.io.stacks import read_stack

from .corpus import MARKER_NAME, Entry, build_corpus, hash_tree

FULL = bool(os.environ.get("NAPARI_UNET_FULL_CORPUS"))
PREFIX = "napari-unet: error:"

#: CLI commands this module drives with the corpus.
KNOWN_COMMANDS = {
    "train",
    "finetune",
    "predict",
    "evaluate",
    "export-model",
    "lr-find",
    "frames-meta",
    "augment",
}
#: Commands that take no user data (only their output is tried).
NO_DATA_COMMANDS = {"demo"}
#: Valid entries trained on in the normal run (a fixed spread: colour, dtypes, 2D,
#: odd sizes, NaN/inf, sparse and empty masks); all of them with FULL.
TRAIN_SAMPLE = {
    "partly-nan-inf",
    "smaller-than-tile",
    "rgb-stack",
    "uint16",
    "single-2d",
    "odd-size",
    "mask-no-foreground",
    "mask-sparse-0-1-2",
}

#: Corpus masks whose values are ambiguous under ``data.mask_kind: auto``, and the kind they are.
MASK_KIND_NEEDED = {"mask-sparse-0-1-2": "sparse"}

TINY_CONFIG = (
    "model: {depth: 2, base_filters: 4}\n"
    "train: {epochs: 1, steps_per_epoch: 1, batch_size: 1, patch_size: 32,"
    " precision: float32, tensorboard: false, val_em_metrics: false}\n"
    "data: {val_fraction: 0.34}\n"
    "predict: {tile_size: 64, overlap: 8, batch_size: 2}\n"
)


class Corpus:
    """The corpus, an output folder and the digests of every input."""

    def __init__(self, root: Path, trained: Path) -> None:
        self.inputs = root / "in"
        self.out = root / "out"
        self.out.mkdir(parents=True)
        self.trained = Path(trained)
        self.entries = build_corpus(self.inputs, self.trained)
        self.config = self.out / "tiny.yaml"
        self.config.write_text(TINY_CONFIG)
        self.good_image = self.inputs / "images" / "good.tif"
        self.good_mask = next(e.path for e in self.entries if e.name == "mask-0-255")
        self.digests = self._digests()
        self.tried: dict[str, int] = {}

    def _digests(self) -> dict[str, str]:
        digests = {f"in/{k}": v for k, v in hash_tree(self.inputs).items()}
        digests.update({f"model/{k}": v for k, v in hash_tree(self.trained).items()})
        return digests

    def of(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    def check_unchanged(self) -> None:
        """No input changed, vanished or appeared; no input ran code."""
        after = self._digests()
        changed = sorted(k for k in self.digests if after.get(k) != self.digests[k])
        added = sorted(set(after) - set(self.digests))
        assert not changed, f"inputs changed or lost: {changed}"
        assert not added, f"files appeared among the inputs: {added}"
        assert not (self.inputs / MARKER_NAME).exists(), "an input executed code"

    def count(self, command: str, n: int = 1) -> None:
        self.tried[command] = self.tried.get(command, 0) + n


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, trained_model_dir) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("corpus"), trained_model_dir)


@pytest.fixture
def cached_model(monkeypatch):
    """Load each model folder once (keeps the 60 predictions fast)."""
    from napari_unet.engine.model import model_folder

    original = model_folder.load_model
    cache: dict = {}

    def load(folder, prefer="best", safe_mode=True):
        key = (str(folder), prefer, safe_mode)
        if key not in cache:
            cache[key] = original(folder, prefer=prefer, safe_mode=safe_mode)
        return cache[key]

    monkeypatch.setattr(model_folder, "load_model", load)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_outcome(name: str, expect: str, code: int, err: str) -> None:
    """Exit 0, or exit 2 with one clear line; and the expected one of the two."""
    assert "Traceback" not in err, (name, err)
    assert code in (0, 2), f"{name}: exit {code} (an unexpected error): {err.strip()}"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(PREFIX), (name, err)
    if expect == "ok":
        assert code == 0, f"{name}: valid input refused: {err.strip()}"
    elif expect == "error":
        assert code == 2, f"{name}: bad input accepted"


def mask_for_image(corpus: Corpus, entry: Entry) -> Path:
    return entry.mask or corpus.good_mask


def test_corpus_is_large_and_varied(corpus):
    kinds = {kind: len(corpus.of(kind)) for kind in ("image", "mask", "dataset", "config", "model")}
    assert len(corpus.entries) >= 30
    assert kinds["image"] >= 30 and kinds["mask"] >= 12 and kinds["config"] >= 8
    assert kinds["model"] >= 5, kinds


def test_predict_every_image(corpus, capsys, cached_model):
    for entry in corpus.of("image"):
        out = corpus.out / f"predict-{entry.name}.tif"
        code, _, err = run(["predict", corpus.trained, entry.path, "-o", out, "--quiet"], capsys)
        check_outcome(entry.name, entry.read, code, err)
        if code == 0:
            written = tifffile.imread(out)
            expected = read_stack(entry.path).shape
            assert written.reshape(expected).shape == expected, entry.name
            assert written.dtype == np.uint8 and set(np.unique(written)) <= {0, 255}
        else:
            assert not out.exists(), entry.name
    corpus.count("predict", len(corpus.of("image")))
    for entry in corpus.of("dataset"):  # predict takes dataset roots (their test/images)
        out = corpus.out / f"predict-{entry.name}.tif"
        code, _, err = run(["predict", corpus.trained, entry.path, "-o", out, "--quiet"], capsys)
        check_outcome(entry.name, "ok" if entry.name == "dataset-test-only" else "any", code, err)
    corpus.count("predict", len(corpus.of("dataset")))
    # probabilities, and an existing output is never replaced without --overwrite
    out = corpus.out / "probability.tif"
    for entry in [e for e in corpus.of("image") if e.name in ("partly-nan-inf", "one-pixel")]:
        code, _, err = run(
            [
                "predict",
                corpus.trained,
                entry.path,
                "-o",
                out,
                "--probabilities",
                "--overwrite",
                "--quiet",
            ],
            capsys,
        )
        check_outcome(entry.name, entry.read, code, err)
        if code == 0:
            assert np.isfinite(tifffile.imread(out)).all()
    before = out.read_bytes()
    code, _, err = run(["predict", corpus.trained, corpus.good_image, "-o", out], capsys)
    check_outcome("existing output", "error", code, err)
    assert "already exists" in err and out.read_bytes() == before
    corpus.check_unchanged()


#: Valid entries predicted blockwise in the short run (all of them in the full run).
BLOCKWISE_SAMPLE = {
    "smaller-than-tile",
    "partly-nan-inf",
    "rgb-stack",
    "single-2d",
    "odd-size",
    "one-pixel",
    "png-slices-folder",
}
#: Refused only when read whole: blockwise prediction reads lazily, block by block.
BLOCKWISE_ANY = {"all-nan"}


def test_predict_blockwise(corpus, capsys, cached_model):
    entries = [
        e for e in corpus.of("image") if e.read == "error" or FULL or e.name in BLOCKWISE_SAMPLE
    ]
    for entry in entries:
        out = corpus.out / f"blockwise-{entry.name}.zarr"
        code, _, err = run(["predict", corpus.trained, entry.path, "-o", out, "--quiet"], capsys)
        check_outcome(entry.name, "any" if entry.name in BLOCKWISE_ANY else entry.read, code, err)
        if code == 0:
            import zarr

            group = zarr.open_group(str(out), mode="r")
            names = sorted(group.array_keys())
            expected = read_stack(entry.path).shape if entry.read != "error" else None
            assert names and (expected is None or group[names[0]].shape == expected), entry.name
        else:
            assert not out.exists(), entry.name
    corpus.count("predict (blockwise .zarr)", len(entries))
    corpus.check_unchanged()


def test_evaluate_every_image_and_mask(corpus, capsys, cached_model):
    runs = [(e, e.path, mask_for_image(corpus, e)) for e in corpus.of("image")]
    runs += [(e, corpus.good_image, e.path) for e in corpus.of("mask")]
    for entry, images, masks in runs:
        code, out, err = run(["evaluate", corpus.trained, images, masks], capsys)
        check_outcome(entry.name, entry.read, code, err)
        if code == 0:
            scores = json.loads(out)
            assert 0.0 <= scores["pixel_error"] <= 1.0, (entry.name, scores)
    corpus.count("evaluate", len(runs))
    corpus.check_unchanged()


def test_train_refuses_every_bad_input(corpus, capsys):
    runs = [(e, e.path, corpus.good_mask) for e in corpus.of("image") if e.read == "error"]
    runs += [(e, corpus.good_image, e.path) for e in corpus.of("mask") if e.read == "error"]
    for entry, images, masks in runs:
        out = corpus.out / f"train-{entry.name}"
        code, _, err = run(
            ["train", corpus.config, "--images", images, "--masks", masks, "-o", out, "--quiet"],
            capsys,
        )
        check_outcome(entry.name, "error", code, err)
        assert not (out / "best.keras").exists()
    for entry in corpus.of("config"):
        out = corpus.out / f"train-{entry.name}"
        # no --images/--masks: the config's own data paths are used
        code, _, err = run(
            [
                "train",
                entry.path,
                "-o",
                out,
                "--quiet",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--preset",
                "cpu-small",
            ],
            capsys,
        )
        check_outcome(entry.name, "error", code, err)
        runs.append((entry, entry.path, None))
    for entry in corpus.of("dataset"):
        code, _, err = run(
            [
                "train",
                corpus.config,
                "--dataset",
                entry.path,
                "-o",
                corpus.out / f"train-{entry.name}",
                "--quiet",
            ],
            capsys,
        )
        check_outcome(entry.name, "error", code, err)
        runs.append((entry, entry.path, None))
    # validation files are checked like training files
    bad_val = next(e for e in corpus.of("mask") if e.name == "mask-fewer-slices")
    code, _, err = run(
        [
            "train",
            corpus.config,
            "--images",
            corpus.good_image,
            "--masks",
            corpus.good_mask,
            "--val-images",
            corpus.good_image,
            "--val-masks",
            bad_val.path,
            "-o",
            corpus.out / "train-bad-val",
            "--quiet",
        ],
        capsys,
    )
    check_outcome("bad validation masks", "error", code, err)
    corpus.count("train", len(runs) + 1)
    corpus.check_unchanged()


def _sampled(entry: Entry) -> bool:
    return entry.read != "error" and (FULL or entry.train or entry.name in TRAIN_SAMPLE)


def _valid_training_runs(corpus: Corpus) -> list[tuple[Entry, Path, Path]]:
    runs = [(e, e.path, mask_for_image(corpus, e)) for e in corpus.of("image") if _sampled(e)]
    runs += [(e, corpus.good_image, e.path) for e in corpus.of("mask") if _sampled(e)]
    return runs


def test_training_data_from_every_valid_input(corpus):
    """The data half of `train` (read, check, normalize, split, targets) on every
    valid entry, as the CLI does it; the model half runs below on a sample."""
    from napari_unet.engine.config import load_config
    from napari_unet.engine.training.train import prepare_data

    config = load_config(corpus.config)
    runs = [(e, e.path, mask_for_image(corpus, e)) for e in corpus.of("image") if e.read != "error"]
    runs += [(e, corpus.good_image, e.path) for e in corpus.of("mask") if e.read != "error"]
    for entry, images, masks in runs:
        if entry.name in MASK_KIND_NEEDED:  # auto refuses ambiguous values, naming the setting
            with pytest.raises(UserInputError, match=r"data\.mask_kind"):
                prepare_data(config, images, masks)
        kind = MASK_KIND_NEEDED.get(entry.name, "auto")
        try:
            prepared = prepare_data(config.with_overrides({"data.mask_kind": kind}), images, masks)
        except UserInputError as exc:
            assert entry.read == "any", (entry.name, str(exc))
            continue
        assert np.isfinite(prepared.train_images).all(), entry.name
        assert prepared.train_images.dtype == np.float32
        assert set(np.unique(prepared.train_masks)) <= {0, 1}, entry.name
    corpus.count("train (data preparation)", len(runs))
    corpus.check_unchanged()


def test_train_on_awkward_valid_inputs(corpus, capsys):
    from napari_unet.engine.model.model_folder import load_model

    runs = _valid_training_runs(corpus)
    sampled = {e.name for e, _, _ in runs}
    assert TRAIN_SAMPLE <= sampled, (
        f"sample entries missing from the corpus: {TRAIN_SAMPLE - sampled}"
    )
    assert len(runs) >= (30 if FULL else len(TRAIN_SAMPLE))
    for entry, images, masks in runs:
        out = corpus.out / f"train-ok-{entry.name}"
        kind = (
            ["--mask-kind", MASK_KIND_NEEDED[entry.name]] if entry.name in MASK_KIND_NEEDED else []
        )
        code, stdout, err = run(
            [
                "train",
                corpus.config,
                "--images",
                images,
                "--masks",
                masks,
                "-o",
                out,
                "--quiet",
                *kind,
            ],
            capsys,
        )
        check_outcome(entry.name, entry.read, code, err)
        if code == 0:
            assert json.loads(stdout)["stopped"] == "finished", entry.name
            load_model(out)
    corpus.count("train", len(runs))
    corpus.check_unchanged()


def test_model_folders(corpus, capsys):
    for entry in corpus.of("model"):
        out = corpus.out / f"predict-model-{entry.name}.tif"
        code, _, err = run(["predict", entry.path, corpus.good_image, "-o", out, "--quiet"], capsys)
        check_outcome(entry.name, entry.read, code, err)
        code, _, err = run(["evaluate", entry.path, corpus.good_image, corpus.good_mask], capsys)
        check_outcome(entry.name, entry.read, code, err)
        # a broken model is refused before anything is written
        assert code == 0 or not out.exists()
    corpus.count("predict", len(corpus.of("model")))
    corpus.count("evaluate", len(corpus.of("model")))
    corpus.check_unchanged()


# --------------------------------------------------------------------------- lr-find, frames-meta


def test_lr_find_refuses_every_bad_input(corpus, capsys):
    runs = [(e, e.path, corpus.good_mask) for e in corpus.of("image") if e.read == "error"]
    runs += [(e, corpus.good_image, e.path) for e in corpus.of("mask") if e.read == "error"]
    for entry, images, masks in runs:
        out = corpus.out / f"lr-{entry.name}"
        code, _, err = run(
            [
                "lr-find",
                corpus.config,
                "--images",
                images,
                "--masks",
                masks,
                "-o",
                out,
                "--steps",
                "5",
                "--quiet",
            ],
            capsys,
        )
        check_outcome(entry.name, "error", code, err)
    for entry in corpus.of("config"):
        code, _, err = run(
            [
                "lr-find",
                entry.path,
                "--steps",
                "5",
                "--quiet",
                "-o",
                corpus.out / f"lr-{entry.name}",
            ],
            capsys,
        )
        check_outcome(entry.name, "error", code, err)
    corpus.count("lr-find", len(runs) + len(corpus.of("config")))
    corpus.check_unchanged()


def test_lr_find_on_awkward_valid_inputs(corpus, capsys):
    runs = _valid_training_runs(corpus)[: None if FULL else 1]
    for entry, images, masks in runs:
        out = corpus.out / f"lr-ok-{entry.name}"
        code, stdout, err = run(
            [
                "lr-find",
                corpus.config,
                "--images",
                images,
                "--masks",
                masks,
                "-o",
                out,
                "--steps",
                "5",
                "--quiet",
            ],
            capsys,
        )
        check_outcome(entry.name, entry.read, code, err)
        if code == 0:
            json.loads(stdout)
    corpus.count("lr-find", len(runs))
    corpus.check_unchanged()


def test_frames_meta_on_the_corpus(corpus, capsys, tmp_path, monkeypatch):
    """No corpus input is a frames folder: each is refused and nothing is written."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # where the CSV would go by default
    entries = [e for e in corpus.entries if e.kind in ("image", "mask")]
    for entry in entries:
        code, _, err = run(["frames-meta", entry.path], capsys)
        check_outcome(entry.name, "error", code, err)
    corpus.count("frames-meta", len(entries))
    corpus.check_unchanged()
    assert not list(work.iterdir())
    # a real frames folder: the CSV is written beside it, the folder is only read
    frames = tmp_path / "frames"
    frames.mkdir()
    for z in range(2):
        tifffile.imwrite(frames / f"im_c000_z{z:03d}_t000_p000.tif", np.zeros((4, 4), np.uint8))
    before = hash_tree(frames)
    code, out, err = run(["frames-meta", frames], capsys)
    check_outcome("frames folder", "ok", code, err)
    assert hash_tree(frames) == before
    assert json.loads(out)["frames_meta"] == str(work / "frames_frames_meta.csv")


def test_demo_output_that_is_a_file(corpus, capsys):
    """`demo` takes no user data; its only input is the output folder."""
    code, _, err = run(["demo", "-o", corpus.good_image, "--train-minutes", "0"], capsys)
    check_outcome("demo into a file", "error", code, err)
    corpus.count("demo", 1)
    corpus.check_unchanged()


# --------------------------------------------------------------------------- finetune, export-model


def _subcommands() -> dict:
    parser = build_parser()
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return dict(action.choices)
    return {}


def test_every_command_is_driven():
    """A command added to the CLI must get its corpus test here (and its name above)."""
    assert set(_subcommands()) == KNOWN_COMMANDS | NO_DATA_COMMANDS


def test_finetune_refuses_every_bad_input(corpus, capsys):
    runs = [
        (e, e.path, corpus.good_mask, corpus.trained)
        for e in corpus.of("image")
        if e.read == "error"
    ]
    runs += [
        (e, corpus.good_image, e.path, corpus.trained)
        for e in corpus.of("mask")
        if e.read == "error"
    ]
    runs += [
        (e, corpus.good_image, corpus.good_mask, e.path)
        for e in corpus.of("model")
        if e.read == "error"
    ]
    for entry, images, masks, model in runs:
        out = corpus.out / f"finetune-{entry.name}"
        argv = ["finetune", model, "--images", images, "--masks", masks, "-o", out]
        code, _, err = run([*argv, "--max-minutes", "0.2", "--quiet"], capsys)
        check_outcome(entry.name, "error", code, err)
        assert not out.exists(), entry.name
        assert not list(corpus.out.glob(f".finetune-{entry.name}.partial-*")), entry.name
    corpus.count("finetune", len(runs))
    corpus.check_unchanged()


def test_export_model_on_every_model_folder(corpus, capsys):
    for entry in corpus.of("model"):
        out = corpus.out / f"export-{entry.name}.weights.h5"
        argv = ["export-model", entry.path, "--format", "h5", "-o", out, "--quiet"]
        code, stdout, err = run(argv, capsys)
        check_outcome(entry.name, entry.read, code, err)
        if code == 0:
            assert json.loads(stdout)["output"] == str(out) and out.is_file()
            earlier = out.read_bytes()
            code, _, err = run(argv, capsys)  # an existing export is kept without --overwrite
            check_outcome(f"{entry.name} again", "error", code, err)
            assert "already exists" in err and out.read_bytes() == earlier
        else:
            assert not out.exists(), entry.name
    for entry in [e for e in corpus.of("image") if e.read == "error"][:3]:  # not models at all
        out = corpus.out / f"export-{entry.name}.weights.h5"
        code, _, err = run(["export-model", entry.path, "--format", "h5", "-o", out], capsys)
        check_outcome(entry.name, "error", code, err)
    corpus.count("export-model", len(corpus.of("model")) + 3)
    corpus.check_unchanged()


def test_augment_on_the_corpus(corpus, capsys):
    """``augment`` refuses every broken image or mask in one line, writing nothing, and
    writes the asked number of image/mask pairs for valid ones."""
    runs = [(e, e.path, corpus.good_mask) for e in corpus.of("image") if e.read == "error"]
    runs += [(e, corpus.good_image, e.path) for e in corpus.of("mask") if e.read == "error"]
    runs += [(e, e.path, mask_for_image(corpus, e)) for e in corpus.of("image") if e.read == "ok"][
        :5
    ]
    for entry, images, masks in runs:
        out = corpus.out / f"augment-{entry.name}"
        argv = ["augment", corpus.config, "--images", images, "--masks", masks, "-o", out]
        code, _, err = run([*argv, "--samples", "3", "--patch-size", "32", "--quiet"], capsys)
        check_outcome(entry.name, entry.read, code, err)
        if code == 0:
            assert len(list(out.rglob("*.tif"))) == 6, entry.name  # 3 images + 3 masks
        else:
            assert not out.exists(), entry.name
    corpus.count("augment", len(runs))
    corpus.check_unchanged()


#: Commands each driving test gives corpus inputs to, and at least how many (the counts
#: of the normal run); test_report_counts checks the tests that ran reached them.
MINIMUM_RUNS = {
    "test_predict_every_image": ("predict", 40),
    "test_predict_blockwise": ("predict (blockwise .zarr)", 20),
    "test_evaluate_every_image_and_mask": ("evaluate", 60),
    "test_train_refuses_every_bad_input": ("train", 40),
    "test_training_data_from_every_valid_input": ("train (data preparation)", 35),
    "test_lr_find_refuses_every_bad_input": ("lr-find", 35),
    "test_frames_meta_on_the_corpus": ("frames-meta", 60),
    "test_demo_output_that_is_a_file": ("demo", 1),
    "test_finetune_refuses_every_bad_input": ("finetune", 25),
    "test_export_model_on_every_model_folder": ("export-model", 8),
    "test_augment_on_the_corpus": ("augment", 25),
}


def test_report_counts(corpus, request):
    """Every driving test that ran gave its command at least its share of the corpus;
    the counts are kept in ``corpus-counts.json`` (docs/reliability.md quotes them)."""
    ran = {item.name for item in request.session.items if item.module is request.module}
    short = {
        command: (corpus.tried.get(command, 0), least)
        for test, (command, least) in MINIMUM_RUNS.items()
        if test in ran and corpus.tried.get(command, 0) < least
    }
    assert not short, f"commands given fewer corpus inputs than promised: {short}"
    report = Path(os.environ.get("NAPARI_UNET_CORPUS_REPORT", corpus.out / "corpus-counts.json"))
    report.write_text(
        json.dumps({"entries": len(corpus.entries), "full": FULL, "tried": corpus.tried}, indent=2)
    )
    assert json.loads(report.read_text())["tried"] == corpus.tried
    print(f"corpus: {len(corpus.entries)} entries; runs per command {corpus.tried}")
