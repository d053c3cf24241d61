"""The dock's settings as the CLI's YAML config: load/save, generated Advanced fields,
the dock and ``napari-unet train`` writing the same ``config.yaml``, YAML drops, data
paths (``${NAPARI_UNET_DATA}``). Run under Xvfb: ``xvfb-run -a python -m pytest``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import yaml

from napari_unet.engine.config import Config, load_config, save_config
from napari_unet.engine.errors import UserInputError

ROOT = Path(__file__).parents[1]
ISBI = ROOT / "configs" / "isbi2012.yaml"
TRAIN_TIMEOUT = 600_000  # ms; the machine may be busy
#: The tiny recipe of the dock-vs-CLI comparison: the same overrides on both sides,
#: through the same file.
TINY = {
    "train.epochs": 1,
    "train.steps_per_epoch": 2,
    "train.patch_size": 32,
    "train.batch_size": 2,
    "train.precision": "float32",
}
#: config.yaml fields that differ between the two runs by construction.
BY_CONSTRUCTION = ("output", "data.images", "data.masks", "data.val_images", "data.val_masks")


def _get(values: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        values = values[part]
    return values


def _drop(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    values = yaml.safe_load(yaml.safe_dump(values))
    for key in keys:
        *parents, leaf = key.split(".")
        node = values
        for part in parents:
            node = node[part]
        node.pop(leaf, None)
    return values


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    """Field-by-field differences of two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{where}{key}.")
        return out
    return [] if a == b else [f"{where.rstrip('.')}: {a!r} != {b!r}"]


@pytest.fixture
def plugin_dock(make_napari_viewer, qtbot):
    """The dock opened the way napari opens it for a user (a proxy viewer)."""
    import napari  # noqa: F401  (a test dependency: missing fails)

    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    dock.allow_overwrite = True
    dock.open_config_layers = False
    yield viewer, dock
    dock.shutdown()
    qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=120_000)


# --------------------------------------------------------------------------- data paths


def test_data_root_variable_and_the_sample_fallback(tmp_path, monkeypatch):
    from napari_unet.sample import sample_paths

    monkeypatch.delenv("NAPARI_UNET_DATA", raising=False)
    config = load_config(ISBI)
    assert Path(config.data.images) == sample_paths()["train_images"]
    assert Path(config.data.val_masks) == sample_paths()["test_masks"]
    assert Path(config.output) == (ROOT / "models" / "isbi2012").resolve()
    monkeypatch.setenv("NAPARI_UNET_DATA", str(tmp_path / "data"))
    assert load_config(ISBI).data.masks == str(tmp_path / "data/isbi2012/train-labels.tif")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAPARI_UNET_DATA", "rel")  # relative to the working folder
    assert load_config(ISBI).data.images == str(tmp_path / "rel/isbi2012/train-volume.tif")
    monkeypatch.delenv("NAPARI_UNET_DATA")
    other = tmp_path / "frames.yaml"
    other.write_text("data: {dataset: '${NAPARI_UNET_DATA}/em'}\n")
    with pytest.raises(UserInputError, match="NAPARI_UNET_DATA"):
        load_config(other)


# --------------------------------------------------------------------------- round trips


@pytest.mark.gui
def test_load_then_save_keeps_every_field(plugin_dock, tmp_path, monkeypatch):
    monkeypatch.delenv("NAPARI_UNET_DATA", raising=False)
    _, dock = plugin_dock
    assert dock.load_config(ISBI) is not None
    saved = dock.save_config(tmp_path / "saved")
    assert saved == tmp_path / "saved.yaml"
    assert _diff(load_config(ISBI).to_dict(), load_config(saved).to_dict()) == []
    # values no widget can show exactly, and fields only the base config holds
    exotic = load_config(ISBI).with_overrides(
        {
            "train.learning_rate": 1.23456789e-4,
            "train.schedule.gamma": 0.999937,
            "train.seed": 1234,
            "train.max_minutes": 7.25,
            "data.percentiles": [0.35, 99.95],
            "data.frames": {"channels": [0, 2], "mask_channel": 1},
            "predict.threshold": 0.4321,
        }
    )
    exotic = Config.model_validate(  # a custom network (no preset)
        {**exotic.to_dict(), "model": {**exotic.model.model_dump(), "preset": None, "depth": 3}}
    )
    save_config(exotic, tmp_path / "exotic.yaml")
    dock.load_config(tmp_path / "exotic.yaml")
    assert dock.train_tab.preset.value == "custom"
    dock.save_config(tmp_path / "exotic-saved.yaml")
    again = load_config(tmp_path / "exotic-saved.yaml")
    assert _diff(exotic.to_dict(), again.to_dict()) == []
    # an edit after loading is what gets saved
    dock.train_tab.epochs.value = 3
    dock.save_config(tmp_path / "edited.yaml")
    assert load_config(tmp_path / "edited.yaml").train.epochs == 3


@pytest.mark.gui
def test_bad_config_file_is_one_notification(plugin_dock, tmp_path, notifications):
    _, dock = plugin_dock
    before = dock.build_config().to_dict()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: -3}\n")
    assert dock.load_config(bad) is None
    assert dock.load_config(tmp_path / "missing.yaml") is None
    errors = notifications.messages("error")
    assert any("epochs" in m for m in errors) and any("missing.yaml" in m for m in errors)
    assert dock.build_config().to_dict() == before
    dock.allow_overwrite = False
    (tmp_path / "exists.yaml").write_text("x")
    assert dock.save_config(tmp_path / "exists.yaml") is None
    assert (tmp_path / "exists.yaml").read_text() == "x"


def _candidate(key: str, info: Any, default: Any) -> Any:
    """A valid-looking value for the field that differs from its default (or None)."""
    from napari_unet.widgets.config_fields import _bounds, is_section, optional_of

    if key == "model.preset":
        return "cpu"
    annotation = info.annotation
    inner = optional_of(annotation)
    kind = inner if inner is not None else annotation
    if is_section(kind):
        try:
            return kind().model_dump(mode="json") if default is None else None
        except ValueError:
            return None
    if kind is bool:
        return not default if default is not None else True
    if get_origin(kind) is Literal:
        return next(c for c in get_args(kind) if c != default)
    if kind in (int, float):
        low, high = _bounds(info, kind is int)
        base = default if default is not None else max(low, min(high, 1))
        mid = float(f"{(low + high) / 2:.2g}")
        options = [base + 1, base - 1, mid, round(base / 2, 3), low, high]
        value = next(v for v in options if low <= v <= high and v != default)
        return int(value) if kind is int else float(value)
    if kind is str:
        return "some/value"
    args = get_args(kind)
    if get_origin(kind) is tuple:
        low, high = default if default else (1, 3)
        span = (high - low) * 0.25 or 1
        return [args[0](round(low + span, 2)), args[1](round(high - span, 2))]
    if get_origin(kind) is list:
        return [1, 2] if args and args[0] is int else ["a", "b"]
    return None


def _fields(model: Any, prefix: str = "") -> Any:
    from napari_unet.widgets.config_fields import is_section

    for name, info in model.model_fields.items():
        if is_section(info.annotation):
            yield from _fields(info.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", info


@pytest.mark.gui
def test_every_config_field_has_a_widget_whose_value_round_trips(plugin_dock):
    from napari_unet.widgets.settings import config_values

    _, dock = plugin_dock
    defaults = Config().to_dict()
    checked, validated = [], []
    for key, info in _fields(Config):
        assert key in dock.bindings, f"no widget for {key}"
        value = _candidate(key, info, _get(defaults, key))
        if value is None:
            continue
        bound = dock.bindings[key]
        previous = bound.read()
        bound.show(value)
        shown = _get(config_values(dock), key)
        assert shown == value, (key, shown, value)
        checked.append(key)
        try:
            config = dock.build_config()
        except UserInputError:  # needs other fields too (e.g. model.classes)
            pass
        else:
            assert _get(config.to_dict(), key) == value, key
            validated.append(key)
        bound.show(previous)
    assert len(checked) >= 80 and len(validated) >= 60, (len(checked), len(validated))


@pytest.mark.gui
def test_a_new_config_field_gets_a_generated_editor(qtbot):
    from pydantic import Field

    from napari_unet.engine.config import TrainConfig
    from napari_unet.widgets.advanced_panel import AdvancedPanel

    class NewTrain(TrainConfig):
        new_knob: int = Field(3, ge=1, le=9, description="A knob added later.")
        new_mode: Literal["fast", "careful"] = "fast"
        new_pair: tuple[float, float] | None = None

    class NewConfig(Config):
        train: NewTrain = Field(default_factory=NewTrain)

    panel = AdvancedPanel(["train"], exclude={"train.epochs"}, model=NewConfig)
    qtbot.addWidget(panel)
    assert "train.epochs" not in panel.editors
    knob = panel.editors["train.new_knob"]
    assert (knob.widget.minimum(), knob.widget.maximum(), knob.get()) == (1, 9, 3)
    assert "A knob added later." in knob.widget.toolTip()
    knob.set(7)
    panel.editors["train.new_mode"].set("careful")
    panel.editors["train.new_pair"].set([0.5, 2.0])
    values = {key: editor.get() for key, editor in panel.editors.items()}
    data = NewConfig().to_dict()
    for key, value in values.items():
        section, *rest = key.split(".")
        node = data[section]
        for part in rest[:-1]:
            node = node[part]
        node[rest[-1]] = value
    config = NewConfig.model_validate(data)
    assert (config.train.new_knob, config.train.new_mode) == (7, "careful")
    assert config.train.new_pair == (0.5, 2.0)


# --------------------------------------------------------------------------- dock = CLI


@pytest.mark.gui
def test_dock_and_cli_write_the_same_model_config(plugin_dock, qtbot, tmp_path, monkeypatch):
    """configs/isbi2012.yaml with the same tiny overrides, trained by `napari-unet train`
    and from the dock: the model folders' config.yaml agree except output and data paths."""
    monkeypatch.delenv("NAPARI_UNET_DATA", raising=False)  # the shipped sample: small
    tiny = tmp_path / "isbi-tiny.yaml"
    save_config(load_config(ISBI).with_overrides(TINY), tiny)
    env = {k: v for k, v in os.environ.items() if k != "NAPARI_UNET_DATA"}
    cli_out = tmp_path / "cli-model"
    command = ["train", str(tiny), "-o", str(cli_out), "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli.main", *command],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    _, dock = plugin_dock
    dock.open_config_layers = True
    assert dock.load_config(tiny) is not None
    data = dock.data_tab
    assert data.image.value.name == "em_train_images" and data.mask.value.name == "em_train_masks"
    assert data.explicit_validation and data.val_mask.value.name == "em_test_masks"
    assert type(data.mask.value).__name__ == "Labels"
    tab = dock.train_tab
    tab.models_dir.value = str(tmp_path / "models")
    seen = []
    original = tab._on_event  # record the events as the tab sees them
    tab._on_event = lambda event: (seen.append(event), original(event))[-1]
    job = tab.train()
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=TRAIN_TIMEOUT)
    assert tab.last_event.kind == "done", tab.last_event
    dock_saved = yaml.safe_load((tab.model_dir / "config.yaml").read_text())
    cli_saved = yaml.safe_load((cli_out / "config.yaml").read_text())
    assert _diff(_drop(dock_saved, BY_CONSTRUCTION), _drop(cli_saved, BY_CONSTRUCTION)) == []
    # the differences by construction: where each run wrote, and the dock's layers
    # (kept in the model folder) instead of the files they were opened from
    assert dock_saved["data"]["val_images"] == cli_saved["data"]["val_images"]
    assert dock_saved["data"]["images"] == "data/images.tif"
    # start-up phases come before the engine's start event; the budget is shown
    kinds = [getattr(e, "kind", None) for e in seen]
    assert kinds[:3] == ["phase", "phase", "start"], kinds[:4]
    assert "budget" in tab.status_label.text() or tab.last_event.kind == "done"


# --------------------------------------------------------------------------- drops


@pytest.mark.gui
def test_dropping_a_yaml_loads_it_into_the_open_dock(plugin_dock, qtbot, tmp_path):
    viewer, dock = plugin_dock
    config = Config().with_overrides({"train.loss": "dice", "train.epochs": 7})
    save_config(config, tmp_path / "drop.yml")
    layers_before = len(viewer.layers)
    viewer.open(str(tmp_path / "drop.yml"), plugin="napari-unet")
    qtbot.waitUntil(lambda: dock.build_config().train.epochs == 7, timeout=5000)
    assert dock.train_tab.loss.value == "dice"
    assert len(viewer.layers) == layers_before


@pytest.mark.gui
def test_dropping_a_yaml_without_a_dock_says_how(make_napari_viewer, tmp_path, monkeypatch):
    import weakref

    from napari.utils.notifications import notification_manager

    import napari_unet.widgets.dock as dock_module

    monkeypatch.setattr(dock_module, "_OPEN_DOCKS", weakref.WeakSet())
    viewer = make_napari_viewer()
    save_config(Config(), tmp_path / "c.yaml")
    start = len(notification_manager.records)
    viewer.open(str(tmp_path / "c.yaml"), plugin="napari-unet")
    messages = [str(n.message) for n in notification_manager.records[start:]]
    assert any("open the dock" in m for m in messages), messages
    assert len(viewer.layers) == 0
