import json
import threading

import numpy as np
import pytest

from napari_unet.engine.config import Config
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.model.model_folder import ModelFolder, load_model
from napari_unet.engine.training.train import split_labels, train, train_iter

from .conftest import tiny_config


def test_training_lowers_the_loss_and_writes_the_folder(tmp_path):
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=3)
    config = tiny_config(tmp_path, epochs=4, steps_per_epoch=8, learning_rate=0.01)
    events = []
    result = train(config, images, masks, callback=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("epoch") == 4
    history = result.history
    assert history[-1]["loss"] < history[0]["loss"]
    folder = ModelFolder(result.model_dir)
    for path in (
        folder.config_path,
        folder.best_path,
        folder.last_path,
        folder.history_path,
        folder.metadata_path,
    ):
        assert path.exists(), path
    assert len(json.loads(folder.history_path.read_text())) == 4
    epoch_events = [e for e in events if e.kind == "epoch"]
    assert {"loss", "dice", "rand_fscore"} <= set(epoch_events[-1].val)
    assert not list(result.model_dir.glob(".*tmp*"))  # no temporary files left


def test_stop_within_one_batch_keeps_a_checkpoint(tmp_path):
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=3)
    config = tiny_config(tmp_path, epochs=50, steps_per_epoch=4)
    stop = threading.Event()
    gen = train_iter(config, images, masks, stop=stop)
    steps_seen = 0
    for event in gen:
        if event.kind == "step":
            steps_seen = event.step
            if event.epoch == 2:
                stop.set()
                break
    rest = list(gen)
    assert rest[-1].kind == "stopped" and "user" in rest[-1].message
    assert max([e.step for e in rest] + [steps_seen]) <= steps_seen + 1
    load_model(config.output)  # best checkpoint is loadable


def test_resume_fine_tune_from_saved_model(tmp_path, trained_model_dir):
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=4)
    parent = load_model(trained_model_dir)
    config = parent.config.with_overrides(
        {
            "train.init_from": str(trained_model_dir),
            "output": str(tmp_path / "child"),
            "train.epochs": 1,
            "train.steps_per_epoch": 1,
            "train.learning_rate": 1e-9,
        }
    )
    result = train(Config.model_validate(config.to_dict()), images, masks)
    child = load_model(result.model_dir)
    meta = child.metadata
    assert meta["parent"] == str(trained_model_dir)
    # the child started from the parent's weights (a negligible step changed nothing)
    kernel = child.keras_model.get_layer("down0_conv1").kernel.numpy()
    parent_kernel = parent.keras_model.get_layer("down0_conv1").kernel.numpy()
    np.testing.assert_allclose(kernel, parent_kernel, atol=1e-6)
    fresh = train(
        Config.model_validate(
            {
                **config.to_dict(),
                "output": str(tmp_path / "fresh"),
                "train": {**config.train.model_dump(), "init_from": None},
            }
        ),
        images,
        masks,
    )
    fresh_kernel = load_model(fresh.model_dir).keras_model.get_layer("down0_conv1").kernel.numpy()
    assert np.abs(fresh_kernel - parent_kernel).max() > 1e-3


def test_time_budget_ends_training(tmp_path):
    images, masks = synthetic_em(slices=2, size=48, cells=8, seed=3)
    config = tiny_config(tmp_path, epochs=10_000, steps_per_epoch=5, max_minutes=0.05)
    result = train(config, images, masks)
    assert result.stopped_reason == "time budget reached"
    assert result.elapsed < 60


def test_sparse_labels_split():
    sparse = np.array([[0, 1, 2], [2, 0, 1]], np.uint8)
    with pytest.raises(UserInputError, match="mask_kind"):  # {0, 1, 2}: sparse or 2 objects?
        split_labels(sparse)
    target, weight = split_labels(sparse, "sparse")
    np.testing.assert_array_equal(target, [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(weight, [[0, 1, 1], [1, 0, 1]])
    dense = np.array([[0, 255]], np.uint8)
    target, weight = split_labels(dense)
    np.testing.assert_array_equal(target, [[0, 1]])
    assert weight.min() == 1
    two_cells = np.array([[1, 1, 2, 2, 0]], np.uint8)  # two touching objects on background
    target, weight = split_labels(two_cells, "instances")
    np.testing.assert_array_equal(target, [[1, 0, 0, 1, 0]])
    assert weight.min() == 1
    cells = np.array([[0, 3, 3, 7, 0, 5]], np.uint16)  # more than 2 objects: instances by auto
    np.testing.assert_array_equal(split_labels(cells)[0], [[0, 1, 0, 0, 0, 1]])
    one_two = np.array([[1, 2, 2]], np.uint8)  # two values: the lower is background
    np.testing.assert_array_equal(split_labels(one_two)[0], [[0, 1, 1]])


def test_validation_steps_bound_each_validation(tmp_path, monkeypatch):
    from napari_unet.engine.training import steps as steps_module

    calls = []
    original = steps_module._Steps.__init__

    def counting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        val_step = self.val_step

        def counted(*a):
            calls.append(1)
            return val_step(*a)

        self.val_step = counted

    monkeypatch.setattr(steps_module._Steps, "__init__", counting)
    images, masks = synthetic_em(slices=6, size=96, cells=12, seed=5)
    config = tiny_config(tmp_path, epochs=1, validation_steps=1, val_em_metrics=False)
    config = config.with_overrides({"data.val_fraction": 0.5})
    train(config, images, masks)
    assert len(calls) == 1  # 3 validation slices = several batches, bounded to one
