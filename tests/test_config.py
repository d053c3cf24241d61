import pytest
import yaml

from napari_unet.engine.config import MODEL_PRESETS, Config, load_config, save_config
from napari_unet.engine.errors import UserInputError


def test_yaml_round_trip(tmp_path):
    config = Config.model_validate(
        {"model": {"preset": "cpu"}, "train": {"epochs": 3, "loss": "dice"}}
    )
    path = tmp_path / "c.yaml"
    save_config(config, path)
    again = load_config(path, resolve_paths=False)
    assert again == config
    assert again.model.base_filters == MODEL_PRESETS["cpu"]["base_filters"]


def test_relative_paths_resolve_against_config_folder(tmp_path):
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"data": {"images": "../img.tif"}, "output": "out"}))
    config = load_config(path)
    assert config.data.images == str((tmp_path / "img.tif").resolve())
    assert config.output == str((path.parent / "out").resolve())


def test_patch_size_must_fit_depth():
    with pytest.raises(ValueError, match="multiple of"):
        Config.model_validate({"model": {"depth": 4}, "train": {"patch_size": 40}})


def test_unknown_key_and_bad_yaml_are_user_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epoch: 3}\n")
    with pytest.raises(UserInputError, match=r"train\.epoch"):
        load_config(bad)
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(UserInputError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("train: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(UserInputError):
        load_config(evil)


def test_overrides_and_presets():
    config = Config().with_overrides({"train.epochs": 7, "model": {"preset": "gpu"}})
    assert config.train.epochs == 7
    assert config.model.base_filters == MODEL_PRESETS["gpu"]["base_filters"]
    with pytest.raises(ValueError, match="unknown model preset"):
        Config.model_validate({"model": {"preset": "nope"}})


def test_shipped_isbi_config_is_valid():
    from pathlib import Path

    config = load_config(Path(__file__).parents[1] / "configs" / "isbi2012.yaml")
    # ${NAPARI_UNET_DATA}/isbi2012/train-volume.tif, or the shipped sample when it is unset
    assert config.data.images.endswith(("train-volume.tif", "em_train_images.tif"))
    assert config.train.patch_size % config.model.multiple == 0


def test_explicit_model_fields_win_over_the_preset():
    config = Config.model_validate({"model": {"preset": "cpu-small", "depth": 2}})
    assert config.model.depth == 2 and config.model.base_filters == 16  # the rest from preset
    overridden = Config.model_validate({"model": {"preset": "cpu-small"}}).with_overrides(
        {"model.depth": 3}
    )
    assert overridden.model.depth == 3
    # a saved config rebuilds the same network even if the preset table changes later
    saved = Config.model_validate({"model": {"preset": "gpu"}}).to_dict()
    from napari_unet.engine import config_sections

    original = dict(config_sections.MODEL_PRESETS["gpu"])
    config_sections.MODEL_PRESETS["gpu"]["base_filters"] = 8
    try:
        assert Config.model_validate(saved).model.base_filters == original["base_filters"]
    finally:
        config_sections.MODEL_PRESETS["gpu"].update(original)


def test_a_task_of_the_wrong_type_is_one_clear_error(tmp_path):
    """Found by the config fuzzer: ``task: [0]`` raised TypeError instead of a user error."""
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  task:\n  - 0\n")
    with pytest.raises(UserInputError, match="task"):
        load_config(path)
