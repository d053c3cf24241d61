"""precision: auto measures instead of guessing from CPU flags."""

import json

import pytest

from napari_unet.engine.config import ModelConfig
from napari_unet.engine.model import precision as P


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "precision.json"


def test_the_faster_policy_wins_on_both_cpu_kinds():
    # AMD EPYC (AVX512-BF16): bfloat16 trained 1.9x faster
    assert P.choose_policy({"float32": 0.38, "mixed_bfloat16": 0.20}) == "mixed_bfloat16"
    # Intel Xeon (AVX512-BF16, no AMX): bfloat16 at 0.7x of float32
    assert P.choose_policy({"float32": 0.20, "mixed_bfloat16": 0.29}) == "float32"
    # within the noise margin float32 (exact) is kept
    assert P.choose_policy({"float32": 0.20, "mixed_bfloat16": 0.195}) == "float32"
    assert P.choose_policy({"mixed_bfloat16": 0.2}) == "mixed_bfloat16"  # float32 failed
    assert P.choose_policy({}) == "float32"


def test_auto_measures_once_per_machine_and_network(cache):
    calls = []

    def fake(policy, model_config, size, batch, mode, channels):
        calls.append((policy, size, batch, mode))
        return {"float32": 0.3, "mixed_bfloat16": 0.1}[policy]

    small = ModelConfig(depth=2, base_filters=4)
    assert P.resolve_precision("auto", small, 256, 4, "train", measure=fake) == "mixed_bfloat16"
    assert [c[0] for c in calls] == ["float32", "mixed_bfloat16"]
    assert P.resolve_precision("auto", small, 256, 4, "train", measure=fake) == "mixed_bfloat16"
    assert len(calls) == 2  # cached
    entry = next(iter(json.loads(cache.read_text()).values()))
    assert entry["timings"] == {"float32": 0.3, "mixed_bfloat16": 0.1}
    P.resolve_precision("auto", ModelConfig(depth=3, base_filters=4), 256, 4, measure=fake)
    assert len(calls) == 4  # another network is measured again
    P.resolve_precision("auto", small, 256, 4, "predict", measure=fake)
    assert len(calls) == 6 and calls[-1][3] == "predict"
    assert P.resolve_precision("float32", small, measure=fake) == "float32"  # explicit: no probe
    assert len(calls) == 6


def test_a_failing_policy_is_not_a_candidate(cache):
    def fake(policy, *args):
        if policy != "float32":
            raise RuntimeError("no bfloat16 kernels")
        return 0.2

    choice = P.choose_precision("auto", ModelConfig(depth=2, base_filters=4), measure=fake)
    assert choice.policy == "float32" and "float32" in choice.message


def test_the_real_probe_times_a_training_step(cache):
    seconds = P.measure_policy("float32", ModelConfig(depth=2, base_filters=4), 32, 2, "train")
    assert 0 < seconds < 30


def test_prediction_runs_in_the_measured_policy(cache, trained_model_dir, monkeypatch):
    from napari_unet.engine.model.model_folder import load_model

    loaded = load_model(trained_model_dir)  # trained in float32
    monkeypatch.setattr(
        P, "measure_policy", lambda policy, *a, **_: {"float32": 0.3, "mixed_bfloat16": 0.1}[policy]
    )
    converted = P.for_prediction(loaded, "auto")
    assert converted.keras_model.dtype_policy.name == "mixed_bfloat16"
    assert converted.keras_model.layers[-1].dtype_policy.name == "float32"  # exact output
    assert P.for_prediction(loaded, "float32") is loaded


def test_a_model_that_is_not_the_configs_unet_predicts_as_saved(tmp_path):
    """A custom or foreign network cannot be rebuilt from the config in another policy:
    prediction keeps it as saved instead of failing (seen with a Lambda model whose
    measured prediction policy differed from its own)."""
    import keras

    from napari_unet.engine.config import Config
    from napari_unet.engine.model.model_folder import LoadedModel
    from napari_unet.engine.model.precision import for_prediction

    inputs = keras.Input((None, None, 1))
    network = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    loaded = LoadedModel(keras_model=network, config=Config(), folder=tmp_path, metadata={})
    assert for_prediction(loaded, "mixed_bfloat16").keras_model is network


def test_a_policy_slower_than_the_limit_is_timed_once(cache, monkeypatch):
    """On a CPU that emulates bfloat16 a step takes seconds: the probe gives up after the
    first timed step beyond the limit instead of timing all of them."""
    clock = iter(range(0, 10_000, 5))  # every perf_counter call is 5 s later
    monkeypatch.setattr(P.time, "perf_counter", lambda: next(clock))
    small = ModelConfig(depth=2, base_filters=4)
    assert P.measure_policy("float32", small, 32, 2, "predict", give_up_above=1.0) == 5
    consumed_once = next(clock)
    P.measure_policy("float32", small, 32, 2, "predict")
    assert next(clock) - consumed_once == 5 * (2 * P.PROBE_STEPS + 1)
