"""Learning-rate range test: the suggestion brackets the best rate of a synthetic problem;
the U-Net run yields events, writes the plot and the data, and the CLI prints JSON."""

import json
import threading

import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.training.lr_finder import (
    exponential_rates,
    lr_find,
    lr_find_iter,
    range_test,
    suggest_range,
)

from .conftest import tiny_config

# ----------------------------------------------------------------------------- a synthetic case


def _problem(seed, n=2000, d=20):
    """Noisy logistic regression with features of very different scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.2, 3, d)
    y = (x @ rng.normal(size=d) + rng.normal(size=n) * 2 > 0).astype(float)
    return x, y


def _loss_grad(w, x, y):
    z = x @ w
    p = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
    return np.mean(np.logaddexp(0, z) - y * z), x.T @ (p - y) / len(y)


class _AdamRun:
    """Mini-batch Adam (as the U-Net trains) on the synthetic problem: step(lr) -> loss."""

    def __init__(self, x, y, seed):
        self.x, self.y = x, y
        self.rng = np.random.default_rng(seed)
        self.w = np.zeros(x.shape[1])
        self.m = np.zeros_like(self.w)
        self.v = np.zeros_like(self.w)
        self.t = 0

    def __call__(self, lr):
        i = self.rng.integers(0, len(self.y), 32)
        loss, g = _loss_grad(self.w, self.x[i], self.y[i])
        self.t += 1
        self.m = 0.9 * self.m + 0.1 * g
        self.v = 0.999 * self.v + 0.001 * g * g
        mh, vh = self.m / (1 - 0.9**self.t), self.v / (1 - 0.999**self.t)
        self.w = self.w - lr * mh / (np.sqrt(vh) + 1e-7)
        return loss


def _best_constant_rate(x, y, seed, steps=100):
    """The rate with the lowest full-data loss after `steps` batches at that constant rate."""
    grid = np.logspace(-6, 1, 60)
    finals = []
    for lr in grid:
        run = _AdamRun(x, y, seed)
        for _ in range(steps):
            run(lr)
        finals.append(_loss_grad(run.w, x, y)[0])
    return grid[int(np.nanargmin(finals))]


@pytest.mark.parametrize("seed", range(5))
def test_suggested_range_brackets_the_best_rate(seed):
    x, y = _problem(seed + 10)
    events = []
    gen = range_test(_AdamRun(x, y, seed), min_lr=1e-6, max_lr=10.0, steps=100)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as end:
            result = end.value
            break
    best = _best_constant_rate(x, y, seed)
    s = result.suggestion
    assert s.base_lr < s.max_lr < s.min_loss_lr
    assert s.base_lr <= best <= s.max_lr, (s, best)
    # the live curve is fast.ai's bias-corrected moving average of the raw losses
    avg = 0.0
    for i, loss in enumerate(result.losses[:10]):
        avg = 0.98 * avg + 0.02 * loss
        assert result.smoothed[i] == pytest.approx(avg / (1 - 0.98 ** (i + 1)))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and events[-1].suggestion == s


def test_rates_and_suggestion_edge_cases():
    rates = exponential_rates(1e-5, 1e-1, 5)
    np.testing.assert_allclose(rates, [1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    with pytest.raises(UserInputError):
        exponential_rates(1e-2, 1e-3, 10)
    with pytest.raises(UserInputError):
        exponential_rates(1e-3, 1e-2, 2)
    lrs = exponential_rates(1e-4, 1.0, 50)
    rising = suggest_range(lrs, np.linspace(1, 2, 50))
    assert "never fell" in rising.note
    falling = suggest_range(lrs, np.linspace(2, 1, 50))
    assert "still falling" in falling.note
    assert falling.max_lr == pytest.approx(0.25) and falling.base_lr == pytest.approx(0.025)
    # a non-finite loss ends the usable curve
    losses = np.r_[np.linspace(2, 1, 20), np.linspace(1, 3, 10), np.nan, np.ones(19)]
    assert suggest_range(lrs, losses).min_loss_lr == pytest.approx(lrs[19], rel=0.5)


def test_divergence_and_stop():
    result = list_and_value(range_test(lambda lr: 1.0 if lr < 0.01 else 100.0, 1e-4, 1.0, 40))
    assert "diverged" in result.stopped_reason and len(result.learning_rates) < 40
    stop = threading.Event()
    gen = range_test(lambda lr: 1.0, 1e-4, 1.0, 40, stop=stop)
    next(gen)
    next(gen)
    stop.set()
    rest = list(gen)
    assert rest[-1].kind == "stopped" and rest[-1].suggestion is None


def list_and_value(gen):
    while True:
        try:
            next(gen)
        except StopIteration as end:
            return end.value


# ----------------------------------------------------------------------------- the U-Net


def test_unet_range_test_writes_plot_and_data(tmp_path):
    images, masks = synthetic_em(slices=2, size=48, cells=8, seed=3)
    config = tiny_config(tmp_path)
    events = []
    result = lr_find(
        config,
        images,
        masks,
        min_lr=1e-4,
        max_lr=1.0,
        steps=12,
        output=tmp_path / "lr",
        callback=events.append,
    )
    assert events[0].kind == "start"
    steps = [e for e in events if e.kind == "step"]
    assert steps and all(e.learning_rate > 0 and np.isfinite(e.smoothed_loss) for e in steps)
    assert [e.learning_rate for e in steps] == pytest.approx(result.learning_rates[: len(steps)])
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(result.data_path.read_text())
    assert data["suggestion"]["base_lr"] < data["suggestion"]["max_lr"]
    assert len(data["learning_rates"]) == len(data["losses"]) == len(result.learning_rates)
    assert not (tmp_path / "lr" / "best.keras").exists()  # a range test saves no model


def test_lr_find_generator_stops(tmp_path):
    images, masks = synthetic_em(slices=2, size=48, cells=8, seed=3)
    stop = threading.Event()
    gen = lr_find_iter(
        tiny_config(tmp_path), images, masks, steps=30, output=tmp_path / "o", stop=stop
    )
    for event in gen:
        if event.kind == "step" and event.step == 2:
            stop.set()
    assert (tmp_path / "o" / "lr_find.json").exists()


def test_cli_lr_find(tmp_path, capsys):
    images, masks = synthetic_em(slices=2, size=48, cells=8, seed=9)
    tifffile.imwrite(tmp_path / "img.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", masks * 255, photometric="minisblack")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {depth: 2, base_filters: 4}\n"
        "train: {batch_size: 2, patch_size: 32, precision: float32}\n"
    )
    code = main(
        [
            "lr-find",
            str(cfg),
            "--images",
            str(tmp_path / "img.tif"),
            "--masks",
            str(tmp_path / "mask.tif"),
            "--output",
            str(tmp_path / "lr"),
            "--steps",
            "8",
            "--min-lr",
            "1e-4",
            "--max-lr",
            "0.1",
            "--quiet",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["suggestion"]["base_lr"] < out["suggestion"]["max_lr"]
    assert out["plot"].endswith("lr_find.png") and out["steps_run"] <= 8
    assert (
        main(
            [
                "lr-find",
                "--images",
                str(tmp_path / "img.tif"),
                "--masks",
                str(tmp_path / "mask.tif"),
                "--min-lr",
                "1",
                "--max-lr",
                "0.1",
            ]
        )
        == 2
    )
