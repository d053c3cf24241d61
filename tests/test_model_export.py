"""Model exchange: SavedModel, ONNX and bioimage.io export, and import back.

One tiny untrained U-Net (depth 2, 4 filters) is saved as a model folder and
exported once per format; the bioimage.io package is validated with the
ecosystem's own tools (bioimageio.spec, bioimageio.core.test_model).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_unet.engine.config import Config
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.inference.predict import predict
from napari_unet.engine.model.exchange import (
    EXPORT_FORMATS,
    BioimageioOptions,
    check_bioimageio_package,
    default_output,
    export_model,
    import_bioimageio,
)
from napari_unet.engine.model.model_folder import ModelFolder, load_model

TILE = 64  # test tile (a multiple of 2**depth = 4)


def _tiny_config(**data) -> Config:
    return Config.model_validate(
        {
            "model": {"depth": 2, "base_filters": 4},
            "train": {"patch_size": 32, "precision": "float32", "tensorboard": False},
            "predict": {"tile_size": 64, "overlap": 8, "batch_size": 2},
            "data": data,
        }
    )


def _save_folder(path: Path, config: Config, policy: str = "float32") -> Path:
    """An untrained U-Net saved as a model folder (built under a Keras `policy`)."""
    import keras

    from napari_unet.engine.model.unet import build_unet

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        network = build_unet(config.model)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    rng = np.random.default_rng(0)
    for layer in network.layers:  # non-trivial batch-norm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    folder = ModelFolder(path)
    folder.create()
    folder.save_config(config)
    folder.save_weights_file(network, "best")
    folder.save_json(folder.metadata_path, {"created": "2026-01-01T00:00:00+00:00"})
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return _save_folder(tmp_path_factory.mktemp("tiny") / "model", _tiny_config())


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """A normalized float32 (1, TILE, TILE, 1) batch."""
    return np.random.default_rng(1).normal(0.5, 0.3, (1, TILE, TILE, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def keras_output(model_dir, tile) -> np.ndarray:
    return np.asarray(load_model(model_dir).keras_model(tile, training=False))


@pytest.fixture(scope="module")
def package(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bioimageio") / "tiny.zip"
    options = BioimageioOptions(tile_size=128, authors=("Test Author",))
    return export_model(model_dir, "bioimageio", out, options=options)


def _rewrite_rdf(src: Path, dst: Path, edit) -> Path:
    """Copy a package with its rdf.yaml changed by `edit(rdf)`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "rdf.yaml":
                rdf = yaml.safe_load(data)
                edit(rdf)
                data = yaml.safe_dump(rdf, sort_keys=False).encode()
            zout.writestr(item, data)
    return dst


def _mode_like_mkdir(folder: Path, tmp_path: Path) -> bool:
    reference = tmp_path / "mkdir-reference"
    reference.mkdir(exist_ok=True)
    return folder.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


def _rdf(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


# --------------------------------------------------------------------------- SavedModel, ONNX


def test_savedmodel_reloads_and_reproduces_keras(model_dir, tile, keras_output, tmp_path):
    import tensorflow as tf

    steps = []
    out = export_model(model_dir, "savedmodel", tmp_path / "sm", on_step=steps.append)
    assert out == tmp_path / "sm" and (out / "saved_model.pb").is_file() and steps
    reloaded = tf.saved_model.load(str(out))  # keep a reference: it owns the variables
    served = reloaded.serve(tf.constant(tile)).numpy()
    np.testing.assert_allclose(served, keras_output, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries
    assert _mode_like_mkdir(out, tmp_path)


def test_onnx_runs_in_onnxruntime_like_keras(model_dir, tile, keras_output, tmp_path):
    import onnxruntime

    out = export_model(model_dir, "onnx", tmp_path / "tiny.onnx")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["probability"]
    (result,) = session.run(None, {"image": tile})
    assert result.dtype == np.float32 and result.shape == keras_output.shape
    assert np.abs(result - keras_output).max() < 1e-4
    bigger = np.zeros((2, 96, 32, 1), np.float32)  # any batch and multiple-of-4 size
    assert session.run(None, {"image": bigger})[0].shape == (2, 96, 32, 1)


def test_mixed_precision_model_exports_float32(tmp_path, tile):
    import onnx

    from napari_unet.engine.model.onnx_export import run_onnx
    from napari_unet.engine.model.portable import float32_model, uses_mixed_precision

    folder = _save_folder(tmp_path / "mixed", _tiny_config(), policy="mixed_bfloat16")
    network = load_model(folder).keras_model
    assert uses_mixed_precision(network)
    full = float32_model(network)
    assert not uses_mixed_precision(full)
    reference = np.asarray(full(tile, training=False))
    out = export_model(folder, "onnx", tmp_path / "mixed.onnx")
    graph = onnx.load(str(out))
    dtypes = {init.data_type for init in graph.graph.initializer}
    assert onnx.TensorProto.BFLOAT16 not in dtypes and onnx.TensorProto.FLOAT16 not in dtypes
    assert np.abs(run_onnx(out, tile) - reference).max() < 1e-4


# --------------------------------------------------------------------------- bioimage.io


def test_bioimageio_package_describes_the_model(package, model_dir):
    rdf = _rdf(package)
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5.")
    assert set(rdf["weights"]) == {"keras_v3", "tensorflow_saved_model_bundle", "onnx"}
    (ipt,) = rdf["inputs"]
    assert [a.get("id", a["type"]) for a in ipt["axes"]] == ["batch", "y", "x", "channel"]
    assert ipt["axes"][1]["size"]["step"] == 4 and ipt["axes"][1]["size"]["min"] % 4 == 0
    (scale,) = [step for step in ipt["preprocessing"] if step["id"] == "scale_range"]
    assert ipt["preprocessing"][-1] == {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}
    assert scale["kwargs"]["axes"] == ["batch", "y", "x", "channel"]  # "stack": data-set stats
    assert (scale["kwargs"]["min_percentile"], scale["kwargs"]["max_percentile"]) == (1.0, 99.8)
    assert rdf["license"] == "BSD-3-Clause"
    assert rdf["authors"] == [{"name": "Test Author"}]
    assert "10.1007/978-3-319-24574-4_28" in {c.get("doi") for c in rdf["cite"]}
    from bioimageio.spec import load_description  # YAML 1.2, as bioimage.io tools read it

    ours = load_description(package).config.model_extra["napari_unet"]
    assert ours["config"] == load_model(model_dir).config.to_dict()
    assert {"config.yaml", "README.md", "cover.png"} <= set(zipfile.ZipFile(package).namelist())
    test_input = np.load(zipfile.ZipFile(package).open(ipt["test_tensor"]["source"]))
    assert test_input.shape == (1, 128, 128, 1) and test_input.dtype == np.float32


def test_bioimageio_package_validates_and_passes_test_model(package):
    from bioimageio.spec import load_description

    descr = load_description(package, perform_io_checks=True)
    assert descr.validation_summary.status in ("passed", "valid-format"), descr.validation_summary
    check = check_bioimageio_package(package)  # runs bioimageio.core.test_model
    assert check.test_status == "passed", check.problems
    assert check.passed and check.problems == ()


def test_import_round_trip_predicts_identically(package, model_dir, tmp_path):
    dest = import_bioimageio(package, tmp_path / "imported")
    assert _mode_like_mkdir(dest, tmp_path)
    loaded = load_model(dest)
    assert loaded.config.to_dict() == load_model(model_dir).config.to_dict()
    assert loaded.metadata["imported_from"]["napari_unet_export"] is True
    assert Path(loaded.metadata["imported_from"]["package"]) == package.resolve()
    stack = np.random.default_rng(2).integers(0, 255, (2, 40, 56)).astype(np.uint8)
    before = predict(model_dir, stack).probability
    after = predict(loaded, stack).probability
    np.testing.assert_array_equal(after, before)


def test_import_of_a_foreign_keras_v3_unet_infers_the_config(package, model_dir, tmp_path):
    def drop_our_section(rdf):
        rdf["config"].pop("napari_unet")
        for step in rdf["inputs"][0]["preprocessing"]:
            if step["id"] == "scale_range":
                step["kwargs"]["axes"] = ["y", "x", "channel"]

    foreign = _rewrite_rdf(package, tmp_path / "foreign.zip", drop_our_section)
    loaded = load_model(import_bioimageio(foreign, tmp_path / "imported"))
    model = loaded.config.model
    assert (model.depth, model.base_filters, model.batch_norm) == (2, 4, True)
    assert loaded.config.data.normalization == "slice"
    assert tuple(loaded.config.data.percentiles) == (1.0, 99.8)
    assert loaded.metadata["imported_from"]["napari_unet_export"] is False


def test_import_refuses_packages_without_keras_v3(package, tmp_path):
    def onnx_only(rdf):
        weights = rdf["weights"]
        del weights["keras_v3"], weights["tensorflow_saved_model_bundle"]
        weights["onnx"].pop("parent")

    other = _rewrite_rdf(package, tmp_path / "onnx_only.zip", onnx_only)
    with pytest.raises(UserInputError, match="no keras_v3 weights") as info:
        import_bioimageio(other, tmp_path / "imported")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "imported").exists()
    not_a_package = tmp_path / "junk.zip"
    not_a_package.write_bytes(b"not a zip")
    with pytest.raises(UserInputError):
        import_bioimageio(not_a_package, tmp_path / "imported")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_existing_output_is_kept_unless_overwrite(model_dir, tmp_path, fmt):
    target = default_output(tmp_path / "model", fmt)
    if fmt == "savedmodel":
        target.mkdir()
        (target / "keep.txt").write_text("old")
    else:
        target.write_bytes(b"old")
    with pytest.raises(UserInputError, match="already exists"):
        export_model(model_dir, fmt, target)
    if fmt == "savedmodel":
        assert (target / "keep.txt").read_text() == "old"
    else:
        assert target.read_bytes() == b"old"
    if fmt == "onnx":  # the cheap one: overwriting works
        export_model(model_dir, fmt, target, overwrite=True)
        assert target.stat().st_size > 1000


def test_import_refuses_to_overwrite(package, tmp_path):
    dest = tmp_path / "existing"
    dest.mkdir()
    with pytest.raises(UserInputError, match="already exists"):
        import_bioimageio(package, dest)


def test_bad_requests_are_one_line_errors(model_dir, tmp_path):
    with pytest.raises(UserInputError, match="unknown export format"):
        export_model(model_dir, "tflite", tmp_path / "m.tflite")
    with pytest.raises(UserInputError, match=r"\.onnx file"):
        export_model(model_dir, "onnx", tmp_path / "m.zip")
    with pytest.raises(UserInputError, match=r"not a model folder|does not exist"):
        export_model(tmp_path / "missing", "onnx", tmp_path / "m.onnx")
    with pytest.raises(UserInputError, match="does not validate"):  # the spec's name rule
        options = BioimageioOptions(name="bad/name", include_onnx=False, tile_size=32)
        export_model(model_dir, "bioimageio", tmp_path / "bad.zip", options=options)
    assert not list(tmp_path.glob("*.zip"))
    flat = _save_folder(tmp_path / "flat", _tiny_config(flat_field=True))
    with pytest.raises(UserInputError, match="flat-field"):
        export_model(flat, "bioimageio", tmp_path / "flat.zip")


def test_exchange_module_does_not_import_tensorflow():
    code = (
        "import sys, napari_unet.engine.model.exchange\n"
        "assert 'tensorflow' not in sys.modules and 'bioimageio.spec' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_finetune_takes_a_bioimageio_package(package, tmp_path, monkeypatch, capsys):
    """A package from a colleague fine-tunes like a model folder (imported once, cached)."""
    import tifffile

    from napari_unet.cli.main import main
    from napari_unet.engine.model.model_source import model_folder_of

    monkeypatch.setenv("NAPARI_UNET_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (2, 64, 64)).astype(np.uint8)
    masks = (rng.random((2, 64, 64)) > 0.5).astype(np.uint8) * 255
    tifffile.imwrite(tmp_path / "img.tif", images)
    tifffile.imwrite(tmp_path / "masks.tif", masks)
    out = tmp_path / "v002"
    argv = ["finetune", str(package), "--images", str(tmp_path / "img.tif")]
    argv += ["--masks", str(tmp_path / "masks.tif"), "-o", str(out), "--max-minutes", "0.05"]
    assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err
    assert load_model(out).config.train.init_from is not None
    imported = model_folder_of(package)
    assert imported.parent == tmp_path / "cache" / "imported"
    assert model_folder_of(package) == imported  # imported once, then reused


@pytest.mark.gui
def test_dock_predicts_with_a_bioimageio_package(
    package, make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """The Predict tab takes a package where a model folder goes: imported in the worker,
    then the current model (so Correct & retrain fine-tunes it)."""
    from napari_unet.engine.model.model_source import model_folder_of

    monkeypatch.setenv("NAPARI_UNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    images = np.random.default_rng(4).integers(0, 255, (2, 64, 64)).astype(np.uint8)
    viewer.add_image(images, name="em")
    predict = dock.predict_tab
    predict.source.value = "model folder"
    predict.model_folder.value = str(package)
    predict.image.value = viewer.layers["em"]
    try:
        job = predict.predict()
        assert job is not None
        qtbot.waitUntil(lambda: job.finished, timeout=300_000)
        qtbot.waitUntil(lambda: "em prediction" in viewer.layers, timeout=60_000)
        assert viewer.layers["em prediction"].data.shape == images.shape
        imported = model_folder_of(package)
        assert imported.parent == tmp_path / "cache" / "imported"
        assert dock.model_dir == imported
        assert predict.model_source_dir() == imported  # the next prediction skips the import
    finally:
        dock.shutdown()
        qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=120_000)
