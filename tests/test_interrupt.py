"""Stopping a training: the engine's stop event in every phase, Ctrl-C on the command line,
and the refusal to train into a folder that already holds a model.

A stop is honoured within one batch wherever it comes: before or during data
preparation (nothing left is read or computed), while the model is built (no
training stream is made, nothing is traced), in the loop (after the current batch)
and before the final calibration (skipped). Every stopped training leaves a
loadable ``best.keras`` and ``last.keras`` and a ``metadata.json`` saying so.

The command line tests run a real ``napari-unet train`` subprocess with its stderr on
a pseudo-terminal (so step progress is printed as for a user), send SIGINT after
the first step line and check exit code 130, the metadata and both checkpoints.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.model.model_folder import ModelFolder, load_model
from napari_unet.engine.training import build, calibration
from napari_unet.engine.training.train import train

from .conftest import tiny_config

STOPPED = "stopped by the user"


@pytest.fixture(scope="module")
def data():
    return synthetic_em(slices=3, size=48, cells=8, seed=11)


def _check_stopped_folder(folder: Path, steps: int | None = None) -> dict:
    """Both checkpoints load; metadata.json records the stop."""
    model = ModelFolder(folder)
    load_model(folder, prefer="best")
    load_model(folder, prefer="last")
    metadata = json.loads(model.metadata_path.read_text())
    assert metadata["stopped_reason"] == STOPPED and metadata["failed"] is False
    if steps is not None:
        assert metadata["steps"] == steps
    return metadata


# --------------------------------------------------------------------------- engine phases


def test_stop_before_data_preparation(tmp_path, data, monkeypatch):
    images, masks = data
    stop = threading.Event()
    stop.set()
    made = []
    monkeypatch.setattr(build, "_Steps", lambda *a, **k: made.append("steps"))
    result = train(tiny_config(tmp_path), images, masks, stop=stop)
    assert result.stopped_reason == STOPPED and result.steps == 0 and not result.failed
    metadata = _check_stopped_folder(result.model_dir, steps=0)
    assert metadata["data"] == {"stopped_during": "reading the data"}
    assert not made and not (result.model_dir / "data").exists()  # nothing kept or traced


def test_stop_during_data_preparation(tmp_path, data, monkeypatch):
    """A stop while the images are normalized skips the targets, weights and validation."""
    from napari_unet.engine.data import prepare

    images, masks = data
    stop = threading.Event()
    real_load = prepare._load_pair
    loaded = []

    def load_then_stop(*args, **kwargs):
        out = real_load(*args, **kwargs)
        loaded.append(args[2])  # what: "training" or "validation"
        stop.set()  # Ctrl-C while the training pair was read
        return out

    monkeypatch.setattr(prepare, "_load_pair", load_then_stop)
    result = train(tiny_config(tmp_path), images, masks, stop=stop)
    assert loaded == ["training"], "the validation data was read after the stop"
    metadata = _check_stopped_folder(result.model_dir, steps=0)
    assert metadata["data"]["stopped_during"] == "reading the validation data"


def test_stop_while_building_skips_the_training_stream(tmp_path, data, monkeypatch):
    from napari_unet.engine.data import pipeline

    images, masks = data
    stop = threading.Event()
    real_build = build._build_or_load

    def build_then_stop(*args, **kwargs):
        model = real_build(*args, **kwargs)
        stop.set()
        return model

    monkeypatch.setattr(build, "_build_or_load", build_then_stop)
    monkeypatch.setattr(
        pipeline, "make_train_dataset", lambda *a, **k: pytest.fail("stream made after stop")
    )
    events = []
    result = train(tiny_config(tmp_path), images, masks, stop=stop, callback=events.append)
    assert [e.kind for e in events] == ["start", "stopped"]
    assert events[-1].message == STOPPED
    _check_stopped_folder(result.model_dir, steps=0)


def test_stop_in_the_loop_ends_within_one_batch_and_skips_calibration(tmp_path, data, monkeypatch):
    images, masks = data
    stop = threading.Event()
    chosen = []
    real_choose = calibration.choose_threshold
    monkeypatch.setattr(
        calibration, "choose_threshold", lambda *a, **k: chosen.append(1) or real_choose(*a, **k)
    )

    def on_event(event):
        if event.kind == "step":
            stop.set()

    config = tiny_config(tmp_path, epochs=50, steps_per_epoch=4, event_every_steps=1)
    result = train(config, images, masks, stop=stop, callback=on_event)
    assert result.steps == 1, "more than one batch ran after the stop"
    assert len(result.history) == 1  # the stopped epoch is recorded...
    metadata = _check_stopped_folder(result.model_dir, steps=1)
    assert "calibration" not in metadata  # ...but the final calibration is skipped
    assert not chosen


# --------------------------------------------------------------------------- non-empty folders


def test_training_into_a_folder_that_holds_a_model(tmp_path, data):
    images, masks = data
    config = tiny_config(tmp_path, epochs=1, steps_per_epoch=1)
    first = train(config, images, masks)
    before = {p.name: p.stat().st_mtime_ns for p in first.model_dir.iterdir()}
    with pytest.raises(UserInputError, match=r"already holds a model.*--overwrite"):
        train(config, images, masks)
    assert {p.name: p.stat().st_mtime_ns for p in first.model_dir.iterdir()} == before
    # with overwrite, the old run's files go first: a stopped rerun never mixes runs
    stop = threading.Event()
    stop.set()
    again = train(config, images, masks, stop=stop, overwrite=True)
    assert not (again.model_dir / "history.json").exists()
    _check_stopped_folder(again.model_dir, steps=0)
    # config.yaml alone is enough to count as a model
    lonely = tmp_path / "config-only"
    lonely.mkdir()
    (lonely / "config.yaml").write_text("{}\n")
    with pytest.raises(UserInputError, match=r"config\.yaml"):
        train(config.with_overrides({"output": str(lonely)}), images, masks)
    # starting from a model into its own folder is refused even with overwrite
    warm = config.with_overrides({"train.init_from": str(first.model_dir)})
    with pytest.raises(UserInputError, match="--init-from"):
        train(warm, images, masks, overwrite=True)


def test_cli_train_refuses_a_folder_with_a_model(tmp_path, trained_model_dir, capsys):
    images, masks = synthetic_em(slices=2, size=48, cells=8, seed=12)
    tifffile.imwrite(tmp_path / "img.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", masks * 255, photometric="minisblack")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "last.keras").write_bytes(b"an earlier model")
    args = ["--images", tmp_path / "img.tif", "--masks", tmp_path / "mask.tif", "--quiet"]
    code = main([str(a) for a in ["train", *args, "-o", existing]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "already holds a model" in err[0]
    assert "--overwrite" in err[0]
    assert (existing / "last.keras").read_bytes() == b"an earlier model"
    # --init-from X --output X: the fine-tuning path refuses its existing output
    same = ["--init-from", trained_model_dir, "-o", trained_model_dir]
    code = main([str(a) for a in ["train", *args, *same]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]


# --------------------------------------------------------------------------- Ctrl-C in the CLI


_CONFIG = (
    "model: {depth: 2, base_filters: 4}\n"
    "augment: {enabled: false}\n"
    "data: {val_fraction: 0.34}\n"
    "train: {epochs: 100000, steps_per_epoch: 3, batch_size: 1, patch_size: 32,"
    " precision: float32, tensorboard: false, event_every_steps: 1}\n"
    "predict: {tile_size: 64, overlap: 8}\n"
)


def _start_training(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    """A real `napari-unet train` whose stderr is a terminal (step lines are printed)."""
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=13)
    tifffile.imwrite(tmp_path / "img.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", masks * 255, photometric="minisblack")
    (tmp_path / "c.yaml").write_text(_CONFIG)
    model = tmp_path / "model"
    argv = [sys.executable, "-m", "napari_unet.cli.main", "train", str(tmp_path / "c.yaml")]
    argv += ["--images", str(tmp_path / "img.tif"), "--masks", str(tmp_path / "mask.tif")]
    argv += ["-o", str(model)]
    master, slave = pty.openpty()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env
    )
    os.close(slave)
    return proc, master, model


def _read_until(master: int, proc: subprocess.Popen, needle: str, timeout: float) -> str:
    """Terminal output until `needle` appears (or the process ends / times out)."""
    text = ""
    deadline = time.monotonic() + timeout
    while needle not in text and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the process closed the terminal
                break
            text += chunk.decode(errors="replace")
        elif proc.poll() is not None:
            break
    return text


def _finish(proc: subprocess.Popen, master: int, timeout: float = 240) -> tuple[int, str, str]:
    tail = _read_until(master, proc, "\0never\0", timeout=0)  # drain what is there
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tail += _read_until(master, proc, "\0never\0", timeout=1)
    os.close(master)
    return proc.returncode, out.decode(), tail


def test_ctrl_c_after_the_first_step_stops_cleanly(tmp_path):
    proc, master, model = _start_training(tmp_path)
    seen = _read_until(master, proc, " step 1 ", timeout=300)
    assert " step 1 " in seen, f"no step line: {seen[-2000:]}"
    proc.send_signal(signal.SIGINT)
    code, out, tail = _finish(proc, master)
    assert code == 130, (code, tail[-2000:])
    assert "stopping after the current batch" in tail and "Traceback" not in tail + seen
    assert json.loads(out)["stopped"] == STOPPED
    metadata = _check_stopped_folder(model)
    assert 1 <= metadata["steps"] <= 2  # the batch running when Ctrl-C came, at most
    assert "calibration" not in metadata
    assert not [p.name for p in model.iterdir() if ".tmp" in p.name]


def test_second_ctrl_c_aborts(tmp_path):
    proc, master, model = _start_training(tmp_path)
    seen = _read_until(master, proc, " step 1 ", timeout=300)
    assert " step 1 " in seen, f"no step line: {seen[-2000:]}"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code, out, tail = _finish(proc, master)
    assert code == 130, (code, tail[-2000:])
    assert "napari-unet: interrupted" in tail and "Traceback" not in tail
    assert out == ""  # aborted: no result printed
    # whatever was written is whole: no temporary is ever read as a checkpoint
    for name in ("best.keras", "last.keras"):
        if (model / name).exists():
            load_model(model / name)


def test_abort_surfacing_as_another_error_still_exits_130(capsys):
    """A second Ctrl-C whose KeyboardInterrupt a library call turned into another error
    (the flake of test_second_ctrl_c_aborts: exit 1) is still reported as the abort."""
    import argparse

    from napari_unet.cli.common import EXIT_INTERRUPTED, run_command, stop_on_interrupt

    def handler(args: argparse.Namespace) -> int:
        with stop_on_interrupt():
            os.kill(os.getpid(), signal.SIGINT)  # first: the stop request
            time.sleep(0.05)
            try:
                os.kill(os.getpid(), signal.SIGINT)  # second: abort
                time.sleep(5)
            except KeyboardInterrupt as exc:
                raise RuntimeError("wrapped by a library") from exc
        return 0

    assert run_command(handler, argparse.Namespace()) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "napari-unet: interrupted" in err and "unexpected" not in err


def test_an_error_without_abort_is_still_a_fault(capsys):
    import argparse

    from napari_unet.cli.common import EXIT_FAULT, run_command, stop_on_interrupt

    def handler(args: argparse.Namespace) -> int:
        with stop_on_interrupt():
            raise RuntimeError("a real fault")

    assert run_command(handler, argparse.Namespace()) == EXIT_FAULT
    assert "unexpected RuntimeError" in capsys.readouterr().err
