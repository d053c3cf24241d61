"""Every writer of napari-unet as a target that holds one of several known versions.

Each :class:`Target` writes version ``v`` of its content to one path (replacing
what is there) and tells which version a path holds, raising ``AssertionError`` if
the content is none of them (a partial or mixed file). With that, a fault test can
say after any failure "the target is the old version or the complete new one".

``python -m tests.write_targets NAME FOLDER`` writes versions 0, 1, 0, 1, ... to one
target forever (printing ``ready``, then ``wrote N`` after each), each write point
slowed down, for tests that kill it with SIGKILL
(tests/test_write_faults.py, benchmarks/bench_faults.py).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["NAMES", "TF_NAMES", "Target", "make_target"]

SHAPE = (2, 24, 20)
#: Every writer covered.
NAMES = (
    "prediction-tiff",
    "prediction-npy",
    "prediction-png",
    "prediction-csv",
    "model-export",
    "checkpoint",
    "current-version",
    "autosave",
    "zarr",
    "frames-meta",
    "config",
)
#: The ones that need TensorFlow.
TF_NAMES = ("model-export", "checkpoint")


@dataclass
class Target:
    """One writer, one path.

    Attributes
    ----------
    name
        One of :data:`NAMES`.
    path
        The file or folder written.
    write
        ``write(v)`` writes version `v` (replacing the previous one).
    version
        ``version()`` is the version at `path` (None if there is nothing); raises
        AssertionError for any other content.
    """

    name: str
    path: Path
    write: Callable[[int], None]
    version: Callable[[], int | None]


def _mask(v: int) -> np.ndarray:
    rng = np.random.default_rng(100 + v)
    return (rng.random(SHAPE) > 0.5).astype(np.uint8)


def _probability(v: int) -> np.ndarray:
    return np.random.default_rng(200 + v).random(SHAPE).astype(np.float32)


def _which(found: np.ndarray, expected: Callable[[int], np.ndarray]) -> int:
    for v in (0, 1):
        want = expected(v)
        if found.shape == want.shape and np.array_equal(found, want):
            return v
    raise AssertionError(f"content is neither version: shape {found.shape}")


def _prediction(root: Path, name: str) -> Target:
    from napari_unet.engine.io.export import read_rle_csv, write_prediction
    from napari_unet.engine.io.stacks import read_stack

    suffix = {"tiff": ".tif", "npy": ".npy", "csv": ".csv", "png": ""}[name]
    path = root / f"prediction{suffix}"

    def write(v: int) -> None:
        if name == "npy":
            write_prediction(path, probability=_probability(v % 2), overwrite=True)
        else:
            write_prediction(path, mask01=_mask(v % 2), overwrite=True)

    def version() -> int | None:
        if not path.exists():
            return None
        if name == "npy":
            return _which(np.load(path, allow_pickle=False), _probability)
        if name == "csv":
            return _which(read_rle_csv(path, SHAPE[1:])[1], _mask)
        return _which(read_stack(path) // 255, _mask)

    return Target(f"prediction-{name}", path, write, version)


def _model_folder(root: Path, v: int) -> Path:
    """A tiny model folder whose every weight is ``v + 1``."""
    from napari_unet.engine.config import Config, save_config
    from napari_unet.engine.model.model_folder import ModelFolder
    from napari_unet.engine.model.unet import build_unet

    folder = ModelFolder(root / f"model-v{v}")
    if folder.best_path.exists():
        return folder.path
    config = Config.model_validate({"model": {"depth": 2, "base_filters": 4}})
    model = build_unet(config.model)
    model.set_weights([np.full(w.shape, v + 1, w.dtype) for w in model.get_weights()])
    folder.create()
    save_config(config, folder.config_path)
    folder.save_weights_file(model, "best")
    return folder.path


def _weights_version(weights: list[np.ndarray]) -> int:
    values = {float(np.unique(w)[0]) for w in weights if np.unique(w).size == 1}
    if len(values) != 1 or any(np.unique(w).size != 1 for w in weights):
        raise AssertionError("weights of two versions mixed")
    return int(values.pop()) - 1


def _model_export(root: Path) -> Target:
    import h5py

    from napari_unet.engine.model.exchange import export_model

    folders = [_model_folder(root, v) for v in (0, 1)]
    path = root / "export.weights.h5"

    def write(v: int) -> None:
        export_model(folders[v % 2], "h5", path, overwrite=True)

    def version() -> int | None:
        if not path.exists():
            return None
        weights: list[np.ndarray] = []
        with h5py.File(path, "r") as handle:
            handle.visititems(
                lambda _, obj: weights.append(obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        return _weights_version(weights)

    return Target("model-export", path, write, version)


def _checkpoint(root: Path) -> Target:
    import keras

    from napari_unet.engine.model.model_folder import ModelFolder

    folder = ModelFolder(root / "run")
    folder.create()
    models = [keras.saving.load_model(_model_folder(root, v) / "best.keras") for v in (0, 1)]

    def write(v: int) -> None:
        folder.save_weights_file(models[v % 2], "best")

    def version() -> int | None:
        if not folder.best_path.exists():
            return None
        model = keras.saving.load_model(folder.best_path, compile=False)
        return _weights_version(model.get_weights())

    return Target("checkpoint", folder.best_path, write, version)


def _current_version(root: Path) -> Target:
    from napari_unet.engine.model.versions import VersionStore

    store = VersionStore(root / "project")
    for name in ("v001", "v002"):
        (store.root / name).mkdir(parents=True, exist_ok=True)
        (store.root / name / "best.keras").write_bytes(b"")
    path = store.root / "current.json"

    def version() -> int | None:
        if not path.exists():
            return None
        current = json.loads(path.read_text())["current"]
        return {"v001": 0, "v002": 1}[current]

    return Target("current-version", path, lambda v: store.set_current(f"v00{v % 2 + 1}"), version)


def _autosave(root: Path) -> Target:
    from napari_unet.engine.autosave import Autosaver

    saver = Autosaver(root / "project", keep=3)

    def version() -> int | None:
        latest = saver.latest("layer")
        if latest is None:
            return None
        return _which(saver.restore(latest).labels, _mask)

    def write(v: int) -> None:
        saver.save("layer", _mask(v % 2), force=True)

    return Target("autosave", saver.folder, write, version)


def _zarr(root: Path) -> Target:
    import zarr

    from napari_unet.engine.inference.block_store import atomic_zarr

    path = root / "prediction.zarr"

    def write(v: int) -> None:
        with atomic_zarr(path, overwrite=True) as tmp:
            group = zarr.open_group(str(tmp), mode="w")
            group.create_array("mask", shape=SHAPE, chunks=(1, *SHAPE[1:]), dtype="uint8")
            group["mask"][...] = _mask(v % 2)

    def version() -> int | None:
        if not path.exists():
            return None
        return _which(np.asarray(zarr.open_group(str(path), mode="r")["mask"][...]), _mask)

    return Target("zarr", path, write, version)


def _frames_meta(root: Path) -> Target:
    import tifffile

    from napari_unet.engine.io.frames import frame_name, write_frames_meta

    folders = []
    for v in (0, 1):  # version v lists 2 + v frames
        folder = root / f"frames-v{v}"
        folder.mkdir(exist_ok=True)
        for z in range(2 + v):
            tifffile.imwrite(folder / frame_name(0, z, 0, 0, "tif"), np.zeros((4, 4), np.uint8))
        folders.append(folder)
    path = root / "frames_meta.csv"

    def version() -> int | None:
        if not path.exists():
            return None
        lines = path.read_text().splitlines()
        assert lines[0].startswith("channel_idx,") and len(lines) in (3, 4), lines
        return len(lines) - 3

    write = lambda v: write_frames_meta(folders[v % 2], overwrite=True, target=path)  # noqa: E731
    return Target("frames-meta", path, write, version)


def _config(root: Path) -> Target:
    from napari_unet.engine.config import Config, load_config, save_config

    path = root / "config.yaml"

    def write(v: int) -> None:
        save_config(Config.model_validate({"train": {"seed": 1000 + v % 2}}), path)

    def version() -> int | None:
        if not path.exists():
            return None
        seed = load_config(path, resolve_paths=False).train.seed
        assert seed in (1000, 1001), seed
        return seed - 1000

    return Target("config", path, write, version)


def make_target(name: str, root: str | Path) -> Target:
    """The target `name` writing under `root` (created)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if name.startswith("prediction-"):
        return _prediction(root, name.split("-", 1)[1])
    makers = {
        "model-export": _model_export,
        "checkpoint": _checkpoint,
        "current-version": _current_version,
        "autosave": _autosave,
        "zarr": _zarr,
        "frames-meta": _frames_meta,
        "config": _config,
    }
    return makers[name](root)


def _slow_writes(delay: float) -> None:
    """Make every write point take `delay` seconds longer (so a kill lands inside)."""
    from .fault_injection import WritePoints

    class _Patch:
        @staticmethod
        def setattr(owner, name, value):
            setattr(owner, name, value)

    points = WritePoints(_Patch())
    original = points.hit

    def hit(kind: str) -> None:
        original(kind)
        time.sleep(delay)

    points.hit = hit  # type: ignore[method-assign]


if __name__ == "__main__":  # pragma: no cover - run by the kill tests
    target = make_target(sys.argv[1], sys.argv[2])
    target.write(0)
    print("ready", flush=True)
    _slow_writes(float(sys.argv[3]) if len(sys.argv) > 3 else 0.002)
    for i in itertools.count(1):
        target.write(i)
        print(f"wrote {i}", flush=True)
