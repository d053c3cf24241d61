"""Learning-rate schedules: Smith's cyclical formula exactly, decays, config migration."""

import math

import numpy as np
import pytest

from napari_unet.engine.config import Config, TrainConfig, load_config, save_config
from napari_unet.engine.training.schedules import cosine_lr, cyclical_lr, lr_at, step_decay_lr


def smith_clr(iterations, base_lr, max_lr, stepsize, mode, gamma=1.0):
    """Smith (2017), "Cyclical Learning Rates for Training Neural Networks", eq. (1)
    and Section 3.1, written out independently of the module under test."""
    cycle = np.floor(1 + iterations / (2 * stepsize))
    x = np.abs(iterations / stepsize - 2 * cycle + 1)
    scale = {
        "triangular": 1.0,
        "triangular2": 1 / (2 ** (cycle - 1)),
        "exp_range": gamma**iterations,
    }[mode]
    return base_lr + (max_lr - base_lr) * np.maximum(0, 1 - x) * scale


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("stepsize", [1, 3, 7.5, 2000])
def test_cyclical_matches_smiths_formula(mode, stepsize):
    base, peak, gamma = 0.001, 0.006, 0.9994
    for it in range(0, int(6 * stepsize) + 5):
        expected = smith_clr(float(it), base, peak, stepsize, mode, gamma)
        assert cyclical_lr(it, base, peak, stepsize, mode, gamma) == pytest.approx(
            float(expected), rel=1e-12, abs=1e-15
        )


def test_cyclical_shape():
    base, peak, s = 0.1, 0.5, 4
    assert cyclical_lr(0, base, peak, s) == base
    assert cyclical_lr(s, base, peak, s) == pytest.approx(peak)
    assert cyclical_lr(2 * s, base, peak, s) == pytest.approx(base)
    assert cyclical_lr(s / 2, base, peak, s) == pytest.approx((base + peak) / 2)
    # triangular2 halves the amplitude each cycle
    amplitude = peak - base
    assert cyclical_lr(3 * s, base, peak, s, "triangular2") == pytest.approx(base + amplitude / 2)
    assert cyclical_lr(5 * s, base, peak, s, "triangular2") == pytest.approx(base + amplitude / 4)
    # exp_range scales by gamma ** iterations
    assert cyclical_lr(3 * s, base, peak, s, "exp_range", 0.9) == pytest.approx(
        base + (peak - base) * 0.9 ** (3 * s)
    )
    with pytest.raises(ValueError):
        cyclical_lr(1, base, peak, s, "zigzag")


def _train(**schedule):
    return TrainConfig(learning_rate=0.002, schedule=schedule)


def test_lr_at_units_and_defaults():
    # step size in epochs = step_size * steps_per_epoch iterations
    cfg = _train(kind="triangular", max_lr=0.01, step_size=2, step_unit="epochs")
    values = [lr_at(i, 5, 100, cfg) for i in range(40)]
    expected = smith_clr(np.arange(40.0), 0.002, 0.01, 10, "triangular")
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    cfg = _train(kind="exp_range", max_lr=0.01, step_size=3, step_unit="iterations", gamma=0.99)
    values = [lr_at(i, 5, 100, cfg) for i in range(30)]
    expected = smith_clr(np.arange(30.0), 0.002, 0.01, 3, "exp_range", 0.99)
    np.testing.assert_allclose(values, expected)
    # max_lr defaults to 4 x learning_rate
    cfg = _train(kind="triangular", step_size=1, step_unit="iterations")
    assert lr_at(1, 10, 100, cfg) == pytest.approx(0.008)
    # a whole Config works too
    assert lr_at(1, 10, 100, Config(train=cfg)) == pytest.approx(0.008)


def test_cosine_step_and_constant():
    cfg = _train(kind="cosine")
    assert lr_at(0, 10, 100, cfg) == pytest.approx(0.002)
    assert lr_at(100, 10, 100, cfg) == pytest.approx(0.002 * 0.02)
    assert lr_at(50, 10, 100, cfg) == pytest.approx(0.002 * (0.02 + 0.98 * 0.5))
    # time-aware: progress overrides the step count
    assert lr_at(10, 10, 100, cfg, progress=1.0) == pytest.approx(0.002 * 0.02)
    old = 0.002 * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * 0.3)))  # the former formula
    assert cosine_lr(0.002, 0.3) == pytest.approx(old)
    cfg = _train(kind="step", drop=0.5, drop_every=2, step_unit="epochs")
    assert [lr_at(i * 10, 10, 100, cfg) for i in range(6)] == pytest.approx(
        [0.002, 0.002, 0.001, 0.001, 0.0005, 0.0005]
    )
    assert step_decay_lr(1.0, 7, 0.1, 3) == pytest.approx(0.01)
    assert lr_at(77, 10, 100, _train(kind="constant")) == 0.002
    assert TrainConfig().schedule.kind == "cosine"  # the default behaviour is unchanged


def test_legacy_lr_decay_is_migrated(tmp_path):
    assert TrainConfig.model_validate({"lr_decay": "none"}).schedule.kind == "constant"
    assert TrainConfig.model_validate({"lr_decay": "cosine"}).schedule.kind == "cosine"
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig.model_validate({"lr_decay": "linear"})
    # an old model folder's config.yaml (with lr_decay) still loads
    path = tmp_path / "old.yaml"
    path.write_text("train: {lr_decay: none, epochs: 3}\n")
    config = load_config(path)
    assert config.train.schedule.kind == "constant" and "lr_decay" not in config.to_dict()["train"]
    save_config(config, tmp_path / "new.yaml")
    assert load_config(tmp_path / "new.yaml") == config
    with pytest.raises(ValueError):
        TrainConfig.model_validate({"schedule": {"kind": "sawtooth"}})


def test_training_follows_the_schedule(tmp_path):
    from napari_unet.engine.data.synthetic import synthetic_em
    from napari_unet.engine.training.train import train

    from .conftest import tiny_config

    images, masks = synthetic_em(slices=2, size=32, cells=6, seed=5)
    config = tiny_config(
        tmp_path,
        epochs=2,
        steps_per_epoch=3,
        val_em_metrics=False,
        schedule={
            "kind": "triangular2",
            "step_size": 1,
            "step_unit": "iterations",
            "max_lr": 0.005,
        },
    )
    events = []
    train(config, images, masks, callback=events.append)
    rates = [e.learning_rate for e in events if e.kind == "step"]
    np.testing.assert_allclose(rates, smith_clr(np.arange(6.0), 1e-3, 0.005, 1, "triangular2"))
