"""Issue 7.3-7.4: faults during training and during writes.

Training: an exception inside a training step, a NaN loss (real NaN weights),
out of memory and a full disk while saving a checkpoint each end training
with a final ``stopped`` event carrying one clear line, and the best
checkpoint written before the fault stays byte-for-byte the same and
loadable. A real training process killed with SIGKILL while it writes
checkpoints leaves loadable checkpoints (no partial file is ever read).

Writes: a full disk, a read-only file system or a refused permission while
writing give one clear UserInputError (exit 2 in the CLI); the existing
target and the source data stay as they were and no temporary file is left.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine import atomic
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.model.model_folder import ModelFolder, load_model

from .conftest import tiny_config
from .fault_injection import WritePoints

KILL_ROUNDS = int(os.environ.get("NAPARI_UNET_KILL_ROUNDS", "1"))
#: Filled by the tests; docs/reliability.md quotes a full run.
FAULT_LOG: list[dict] = []


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob(".*tmp*"))


@pytest.fixture(scope="module")
def data():
    return synthetic_em(slices=3, size=48, cells=8, seed=5)


def _fast_config(tmp_path, **train):
    """tiny_config without validation: 1 step per epoch, a checkpoint every epoch."""
    settings = {"epochs": 4, "steps_per_epoch": 1, "val_em_metrics": False, **train}
    config = tiny_config(tmp_path, **settings)
    return config.with_overrides({"data.val_fraction": 0.0, "augment.enabled": False})


def _inject(monkeypatch, fault, at_call: int) -> None:
    """Make the `at_call`-th training step run `fault(step, x, y, w)` instead."""
    from napari_unet.engine.training import train as train_module

    original_init = train_module._Steps.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        real_step = self.train_step
        calls = {"n": 0}

        def step(x, y, w):
            calls["n"] += 1
            if calls["n"] == at_call:
                return fault(real_step, x, y, w)
            return real_step(x, y, w)

        self.train_step = step

    monkeypatch.setattr(train_module._Steps, "__init__", init)


def _train_until_fault(config, data, fault_name: str):
    """Run train_iter; hash best.keras at each epoch; return events, hashes, result."""
    from napari_unet.engine.training.train import train_iter

    images, masks = data
    events, best_hashes = [], []
    generator = train_iter(config, images, masks)
    while True:
        try:
            event = next(generator)
        except StopIteration as done:
            result = done.value
            break
        events.append(event)
        if event.kind == "epoch" and event.message == "new best checkpoint":
            best_hashes.append(sha(ModelFolder(config.output).best_path))
    final = events[-1]
    FAULT_LOG.append({"fault": fault_name, "final": final.kind, "message": final.message})
    return events, best_hashes, result


def _check_stopped_and_kept(config, events, best_hashes, result, expect: str) -> None:
    final = events[-1]
    assert final.kind == "stopped", [e.kind for e in events]
    assert expect in final.message, final.message
    assert "\n" not in final.message and "Traceback" not in final.message
    assert result.failed and result.stopped_reason == final.message
    folder = ModelFolder(config.output)
    assert best_hashes, "the fault came before the first checkpoint"
    assert sha(folder.best_path) == best_hashes[-1], "the best checkpoint changed after the fault"
    loaded = load_model(folder.path)
    assert all(np.isfinite(w).all() for w in loaded.keras_model.get_weights())
    metadata = json.loads(folder.metadata_path.read_text())
    assert metadata["failed"] is True and metadata["stopped_reason"] == final.message
    assert not temporaries(folder.path)


def test_exception_in_a_training_step(tmp_path, data, monkeypatch):
    def fault(real_step, x, y, w):
        raise RuntimeError("injected failure in the step\nsecond line of detail")

    _inject(monkeypatch, fault, at_call=3)
    config = _fast_config(tmp_path)
    events, hashes, result = _train_until_fault(config, data, "exception in a step")
    _check_stopped_and_kept(config, events, hashes, result, "RuntimeError: injected failure")
    log = Path(config.output) / "train-error.log"
    assert "Traceback" in log.read_text() and str(log) in events[-1].message


def test_nan_loss_keeps_the_finite_checkpoint(tmp_path, data, monkeypatch):
    def fault(real_step, x, y, w):  # NaN input: a real NaN loss and NaN gradients
        return real_step(x * float("nan"), y, w)

    _inject(monkeypatch, fault, at_call=3)
    config = _fast_config(tmp_path)
    events, hashes, result = _train_until_fault(config, data, "NaN loss")
    _check_stopped_and_kept(config, events, hashes, result, "loss became nan")


def test_out_of_memory_in_the_cli(tmp_path, data, monkeypatch, capsys):
    import tensorflow as tf

    def fault(real_step, x, y, w):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    _inject(monkeypatch, fault, at_call=3)
    images, masks = data
    tifffile.imwrite(tmp_path / "img.tif", images)
    tifffile.imwrite(tmp_path / "mask.tif", masks * 255)
    before = {p: sha(tmp_path / p) for p in ("img.tif", "mask.tif")}
    config = _fast_config(tmp_path)
    config_path = tmp_path / "c.yaml"
    from napari_unet.engine.config import save_config

    save_config(config, config_path)
    code = main(
        [
            "train",
            str(config_path),
            "--images",
            str(tmp_path / "img.tif"),
            "--masks",
            str(tmp_path / "mask.tif"),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-unet: error: training stopped: out of")
    assert json.loads(captured.out)["stopped"].startswith("out of memory")
    load_model(config.output)
    assert {p: sha(tmp_path / p) for p in before} == before
    FAULT_LOG.append({"fault": "out of memory (CLI)", "final": f"exit {code}", "message": lines[0]})


def test_full_disk_while_saving_a_checkpoint(tmp_path, data, monkeypatch):
    real_replace = os.replace
    saves = {"n": 0}

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".keras"):
            saves["n"] += 1
            if saves["n"] > 2:  # epoch 1 wrote last.keras and best.keras
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", replace)
    config = _fast_config(tmp_path)
    events, hashes, result = _train_until_fault(config, data, "full disk while saving")
    _check_stopped_and_kept(config, events, hashes, result, "the disk is full")


# --------------------------------------------------------------------------- SIGKILL


_KILL_CONFIG = (
    "model: {depth: 2, base_filters: 8}\n"
    "augment: {enabled: false}\n"
    "data: {val_fraction: 0.0}\n"
    "train: {epochs: 100000, steps_per_epoch: 1, batch_size: 1, patch_size: 32,"
    " precision: float32, tensorboard: false, lr_decay: none}\n"
)


def _kill_during_a_save(model: Path, argv: list[str], rng: random.Random) -> dict:
    """Start training, wait for checkpoints, SIGKILL it while a .keras is being written."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    last = model / "last.keras"

    def inode(path: Path) -> int | None:
        try:
            return path.stat().st_ino
        except OSError:
            return None

    previous = inode(last)  # a checkpoint of the last round: wait for this process's own
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 240
        best = model / "best.keras"
        while not (best.exists() and inode(last) not in (None, previous)):
            if proc.poll() is not None:
                raise AssertionError(f"training ended early: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise AssertionError("no checkpoint within 240 s")
            time.sleep(0.05)
        # a few more epochs, then catch a checkpoint being written
        time.sleep(rng.uniform(0.2, 1.0))
        during = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = os.listdir(model)
            if any(n.startswith((".best.", ".last.")) and ".tmp" in n for n in names):
                time.sleep(rng.uniform(0.0, 0.01))
                during = True
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return {
        "killed": proc.returncode == -signal.SIGKILL,
        "during_write": during,
        "leftovers": temporaries(model),
    }


def test_sigkill_while_saving_leaves_loadable_checkpoints(tmp_path):
    images, masks = synthetic_em(slices=2, size=48, cells=8, seed=6)
    tifffile.imwrite(tmp_path / "img.tif", images)
    tifffile.imwrite(tmp_path / "mask.tif", masks * 255)
    (tmp_path / "kill.yaml").write_text(_KILL_CONFIG)
    model = tmp_path / "model"
    argv = [
        sys.executable,
        "-m",
        "napari_unet.cli.main",
        "train",
        str(tmp_path / "kill.yaml"),
        "--images",
        str(tmp_path / "img.tif"),
        "--masks",
        str(tmp_path / "mask.tif"),
        "-o",
        str(model),
        "--overwrite",  # each round trains into the folder the last one left
        "--quiet",
    ]
    rng = random.Random(int(os.environ.get("NAPARI_UNET_KILL_SEED", "0")) or None)
    rounds = []
    for _ in range(KILL_ROUNDS):  # each round trains into the folder the last one left
        outcome = _kill_during_a_save(model, argv, rng)
        assert outcome["killed"]
        folder = ModelFolder(model)
        # nothing partial is ever taken as a checkpoint: both load, and the
        # weights file chosen is never a temporary
        assert folder.weights_file("best") == folder.best_path
        load_model(model, prefer="best")
        load_model(model, prefer="last")
        json.loads(folder.history_path.read_text())
        folder.load_config()
        removed = folder.remove_stale_temporaries()  # what the next training run does first
        assert sorted(p.name for p in removed) == outcome["leftovers"]
        assert not temporaries(model)
        load_model(model)
        rounds.append(outcome)
    FAULT_LOG.append(
        {
            "fault": "SIGKILL during checkpoint writes",
            "rounds": len(rounds),
            "during_write": sum(r["during_write"] for r in rounds),
            "partial_files_left": sum(len(r["leftovers"]) for r in rounds),
            "final": "all checkpoints loadable",
        }
    )
    assert any(r["during_write"] for r in rounds), "never caught a checkpoint being written"


# --------------------------------------------------------------------------- writes


@pytest.fixture
def stack_file(tmp_path):
    images, _ = synthetic_em(slices=2, size=48, cells=6, seed=8)
    path = tmp_path / "source.tif"
    tifffile.imwrite(path, images)
    return path


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "where, errno_code, expect",
    [
        ("rename", errno.ENOSPC, "the disk is full"),
        ("writer", errno.ENOSPC, "the disk is full"),
        ("writer", errno.EDQUOT, "quota"),
        ("tempfile", errno.EROFS, "read-only file system"),
        ("tempfile", errno.EACCES, "permission denied"),
    ],
)
def test_write_faults_are_one_clear_error(tmp_path, where, errno_code, expect, monkeypatch):
    from napari_unet.engine.io.stacks import write_png_slices, write_tiff

    target = tmp_path / "out.tif"
    target.write_bytes(b"previous export")
    folder = tmp_path / "slices"
    error = OSError(errno_code, os.strerror(errno_code))

    def fail(*args, **kwargs):
        raise error

    if where == "rename":  # every rename: os.replace, no-replace renames, folder exchanges
        WritePoints(monkeypatch, "rename", 1, code=errno_code, every=True)
    elif where == "tempfile":
        monkeypatch.setattr(atomic.tempfile, "mkstemp", fail)
        monkeypatch.setattr(atomic.tempfile, "mkdtemp", fail)
    else:
        import imageio.v3 as iio

        def half_then_fail(path, *args, **kwargs):
            with open(path, "wb") as handle:  # a partial file, then the disk is full
                handle.write(b"half")
            raise error

        monkeypatch.setattr(tifffile, "imwrite", half_then_fail)
        monkeypatch.setattr(iio, "imwrite", half_then_fail)
        monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    data = np.zeros((2, 8, 8), np.uint8)
    for write in (
        lambda: write_tiff(target, data, overwrite=True),
        lambda: write_png_slices(folder, data),
        lambda: atomic.atomic_write_text(tmp_path / "history.json", "{}"),
    ):
        with pytest.raises(UserInputError, match=expect) as info:
            write()
        assert "\n" not in str(info.value)
    assert target.read_bytes() == b"previous export"
    assert not folder.exists() and not (tmp_path / "history.json").exists()
    assert sorted(os.listdir(tmp_path)) == ["out.tif"], "temporary files were left"


@pytest.mark.parametrize(
    "name, extra",
    [
        ("prediction.tif", []),
        ("prediction.npy", ["--probabilities"]),
        ("prediction.csv", []),
        ("prediction", []),  # a folder of PNG slices
        ("prediction.zarr", []),  # blockwise
        ("prediction.tif", ["--blockwise"]),
    ],
)
def test_cli_predict_on_a_full_disk(
    tmp_path, stack_file, trained_model_dir, monkeypatch, capsys, name, extra
):
    out = tmp_path / name
    earlier = None
    if not name.endswith(".zarr") and "." in name:  # an earlier export, replaced with --overwrite
        out.write_bytes(b"earlier prediction")
        earlier = out.read_bytes()
    source = sha(stack_file)
    before = sorted(os.listdir(tmp_path))
    WritePoints(monkeypatch, "rename", 1, every=True)  # every rename point, whatever the format
    code = main(
        [
            "predict",
            str(trained_model_dir),
            str(stack_file),
            "-o",
            str(out),
            "--overwrite",
            "--quiet",
            *extra,
        ]
    )
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("napari-unet: error: cannot write") and "disk is full" in err
    assert sha(stack_file) == source
    if earlier is not None:
        assert out.read_bytes() == earlier
    assert sorted(os.listdir(tmp_path)) == before, "partial or temporary files were left"


def test_cli_predict_into_a_read_only_folder(tmp_path, stack_file, trained_model_dir, capsys):
    """A folder that refuses new files even to root (immutable; tests/fs_faults.py)."""
    from .fs_faults import unwritable_folder

    folder = tmp_path / "locked"
    folder.mkdir()
    with unwritable_folder(folder):
        for out in (folder / "p.tif", folder / "p.zarr", folder / "slices"):
            code = main(
                ["predict", str(trained_model_dir), str(stack_file), "-o", str(out), "--quiet"]
            )
            err = capsys.readouterr().err.strip()
            assert code == 2 and len(err.splitlines()) == 1, err
            assert "not writable" in err or "permission denied" in err, err
        assert os.listdir(folder) == []
    # the folder turns read-only after the check: the write itself is refused cleanly
    target = tmp_path / "late" / "x.txt"
    target.parent.mkdir()
    with pytest.raises(UserInputError, match=r"permission denied|read-only") as info:
        with atomic.atomic_path(target) as tmp, unwritable_folder(target.parent):
            tmp.write_text("late")
    assert "\n" not in str(info.value) and not target.exists()


def test_cli_train_on_a_full_disk_at_start(tmp_path, stack_file, monkeypatch, capsys):
    _, masks = synthetic_em(slices=2, size=48, cells=6, seed=8)
    tifffile.imwrite(tmp_path / "mask.tif", masks * 255)
    monkeypatch.setattr(atomic.os, "replace", _disk_full)
    code = main(
        [
            "train",
            "--images",
            str(stack_file),
            "--masks",
            str(tmp_path / "mask.tif"),
            "-o",
            str(tmp_path / "model"),
            "--quiet",
            "--preset",
            "cpu-small",
            "--patch-size",
            "32",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "disk is full" in err and len(err.splitlines()) == 1
    assert not temporaries(tmp_path)


def test_existing_outputs_are_never_replaced_silently(tmp_path):
    from napari_unet.engine.io.stacks import write_png_slices, write_tiff

    target = tmp_path / "keep.tif"
    target.write_bytes(b"keep me")
    with pytest.raises(UserInputError, match="already exists"):
        write_tiff(target, np.zeros((1, 4, 4), np.uint8), overwrite=False)
    folder = tmp_path / "slices"
    write_png_slices(folder, np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(UserInputError, match="already exists"):
        write_png_slices(folder, np.ones((1, 4, 4), np.uint8))
    assert target.read_bytes() == b"keep me" and len(os.listdir(folder)) == 1


#: What each fault test leaves in FAULT_LOG: the fault's name and the final outcome.
EXPECTED_LOG = {
    "test_exception_in_a_training_step": ("exception in a step", "stopped"),
    "test_nan_loss_keeps_the_finite_checkpoint": ("NaN loss", "stopped"),
    "test_out_of_memory_in_the_cli": ("out of memory (CLI)", "exit 1"),
    "test_full_disk_while_saving_a_checkpoint": ("full disk while saving", "stopped"),
    "test_sigkill_while_saving_leaves_loadable_checkpoints": (
        "SIGKILL during checkpoint writes",
        "all checkpoints loadable",
    ),
}


def test_fault_log_written_for_the_docs(request):
    """The log docs/reliability.md quotes: one record per fault test that ran, each with
    the outcome it promises and a one-line message; written to
    ``$NAPARI_UNET_FAULT_LOG/faults.json``."""
    ran = {item.name for item in request.session.items if item.module is request.module}
    expected = {faults: outcome for name, (faults, outcome) in EXPECTED_LOG.items() if name in ran}
    logged = {record["fault"]: record for record in FAULT_LOG}
    missing = sorted(set(expected) - set(logged))
    assert not missing, f"fault tests ran but left no record: {missing}"
    for fault, outcome in expected.items():
        record = logged[fault]
        assert record["final"] == outcome, record
        assert "\n" not in record.get("message", "") and "Traceback" not in str(record)
    out = Path(os.environ.get("NAPARI_UNET_FAULT_LOG", tempfile.gettempdir())) / "faults.json"
    out.write_text(json.dumps(FAULT_LOG, indent=2))
    assert json.loads(out.read_text()) == FAULT_LOG
