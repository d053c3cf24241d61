"""Issue 7.6: nothing the user opens can run code.

Models load with Keras safe mode (a Lambda layer is refused unless the user
opts in), configs with ``yaml.safe_load`` (Python tags refused), arrays
without pickle, and paths in configs are resolved against the config's
folder and only ever used as file names.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine.config import load_config
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.model.model_folder import load_model

PACKAGE = Path(__file__).resolve().parents[1] / "napari_unet"
MARKER = "CODE-WAS-EXECUTED"


def _model_folder_with(tmp_path: Path, trained: Path, keras_model, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(trained / "config.yaml", folder / "config.yaml")
    keras_model.save(folder / "best.keras")
    return folder


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory, trained_model_dir):
    """A model folder whose network has a Lambda layer that, if it ever runs,
    creates a marker file."""
    import keras

    tmp = tmp_path_factory.mktemp("lambda")
    marker = tmp / MARKER

    # a real lambda (no defaults, no closure): Keras stores its bytecode, which
    # safe mode refuses to load
    touch_and_pass = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]")

    inputs = keras.Input((None, None, 1))
    x = keras.layers.Lambda(touch_and_pass)(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    folder = _model_folder_with(tmp, Path(trained_model_dir), keras.Model(inputs, outputs), "m")
    marker.unlink(missing_ok=True)  # building the model ran the function once
    return folder, marker


def test_lambda_layer_is_refused_in_safe_mode(lambda_model):
    folder, marker = lambda_model
    with pytest.raises(UserInputError, match="safe mode") as info:
        load_model(folder)
    assert "--unsafe-load" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_cli_refuses_then_loads_with_unsafe_load(lambda_model, tmp_path, capsys):
    folder, marker = lambda_model
    images = np.random.default_rng(0).integers(0, 255, (1, 32, 32)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", images)
    out = tmp_path / "out.tif"
    code = main(["predict", str(folder), str(tmp_path / "img.tif"), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "safe mode" in err and len(err.splitlines()) == 1
    assert not out.exists() and not marker.exists()
    # the user trusts this model: it loads and runs
    code = main(
        [
            "predict",
            str(folder),
            str(tmp_path / "img.tif"),
            "-o",
            str(out),
            "--quiet",
            "--unsafe-load",
        ]
    )
    assert code == 0 and out.exists()
    assert marker.exists()  # the custom code ran only now, after the explicit opt-in
    assert load_model(folder, safe_mode=False).keras_model is not None


def test_model_with_another_input_is_refused(tmp_path, trained_model_dir):
    import keras

    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    folder = _model_folder_with(
        tmp_path, Path(trained_model_dir), keras.Model(inputs, outputs), "rgb"
    )
    with pytest.raises(UserInputError, match="not a napari-unet model"):
        load_model(folder)


def test_model_folder_config_with_python_tag_is_refused(tmp_path, trained_model_dir):
    folder = tmp_path / "model"
    shutil.copytree(trained_model_dir, folder)
    marker = tmp_path / MARKER
    (folder / "config.yaml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UserInputError, match="Python object tags"):
        load_model(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "train: !!python/object/new:subprocess.Popen [['touch', '{marker}']]",
        "model: !!python/name:os.system",
    ],
)
def test_config_python_tags_are_refused(tmp_path, tag):
    marker = tmp_path / MARKER
    path = tmp_path / "c.yaml"
    path.write_text(tag.format(marker=marker) + "\n")
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_config(path)
    assert not marker.exists()


def test_config_paths_are_relative_to_the_config_and_never_run(tmp_path, monkeypatch):
    from napari_unet.engine.training.train import prepare_data

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "configs").mkdir()
    config_path = project / "configs" / "run.yaml"
    config_path.write_text(
        "data: {images: ../data/img.tif, masks: ../data/mask.tif}\noutput: ../models/run1\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working folder does not matter
    config = load_config(config_path)
    assert Path(config.data.images) == (project / "data" / "img.tif").resolve()
    assert Path(config.output) == (project / "models" / "run1").resolve()

    marker = tmp_path / MARKER
    for path in (f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", "~nobody/x"):
        bad = config.with_overrides({"data.images": path, "data.masks": path})
        with pytest.raises(UserInputError, match="cannot read"):
            prepare_data(bad)
    assert not marker.exists()


def test_pickled_arrays_are_never_unpickled(tmp_path):
    from napari_unet.engine.io.stacks import read_stack

    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / MARKER,))

    for suffix in (".npy", ".npz", ".tif"):
        path = tmp_path / f"evil{suffix}"
        with open(path, "wb") as handle:
            if suffix == ".npz":
                np.savez(handle, a=np.array([Boom()], dtype=object))
            else:
                np.save(handle, np.array([Boom()], dtype=object), allow_pickle=True)
        with pytest.raises(UserInputError):
            read_stack(path)
    assert not (tmp_path / MARKER).exists()


# --------------------------------------------------------------------------- source audit

_FORBIDDEN = {
    r"allow_pickle\s*=\s*True": "arrays are loaded without pickle",
    r"\byaml\.(load|unsafe_load|full_load)\(": "configs use yaml.safe_load",
    r"yaml\.(Unsafe|Full)?Loader\b": "configs use yaml.safe_load",
    r"enable_unsafe_deserialization": "Keras safe mode stays on",
    r"safe_mode\s*=\s*False\s*[,)]": "safe mode is only turned off by the user's explicit choice",
    r"^\s*import pickle|\bpickle\.loads?\(": "no pickle",
    r"\beval\(|\bexec\(": "no eval/exec",
    r"shell\s*=\s*True": "no shell",
}


#: The one module allowed to pickle, and why: it talks to the child process it started
#: itself over two anonymous pipes (never a file, a socket or anything a user hands in),
#: as ``multiprocessing`` does.
_PICKLE_ALLOWED = {"napari_unet/engine/child_process.py"}


def test_source_audit_no_unsafe_loading():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern, rule in _FORBIDDEN.items():
                if rule == "no pickle" and relative in _PICKLE_ALLOWED:
                    continue
                if re.search(pattern, code):
                    problems.append(f"{relative}:{number}: {rule}: {line.strip()}")
    assert not problems, "\n".join(problems)


def test_source_audit_np_load_never_pickles():
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"np\.load\(([^)]*)\)", text):
            calls.append((path.name, match.group(1)))
            assert "allow_pickle=False" in match.group(1), (path, match.group(0))
