"""Device selection: a no-op without GPUs, the right tf.config calls with (fake) GPUs."""

import argparse
from pathlib import Path

import pytest

from napari_unet.engine.config import Config, DeviceConfig
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.model import devices


class _FakeConfig:
    """Records the tf.config calls that configure_devices makes."""

    def __init__(self, count, fail=False):
        self.gpus = [f"GPU:{i}" for i in range(count)]
        self.calls = []
        self.fail = fail
        self.experimental = self

    def list_physical_devices(self, kind):
        assert kind == "GPU"
        return list(self.gpus)

    def set_visible_devices(self, chosen, kind):
        if self.fail:
            raise RuntimeError("Visible devices cannot be modified after being initialized")
        self.calls.append(("visible", tuple(chosen), kind))

    def set_memory_growth(self, gpu, enabled):
        self.calls.append(("growth", gpu, enabled))

    def set_logical_device_configuration(self, gpu, configs):
        self.calls.append(("limit", gpu, configs[0].memory_limit))

    class LogicalDeviceConfiguration:
        def __init__(self, memory_limit):
            self.memory_limit = memory_limit


@pytest.fixture
def fake_tf(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(devices, "_applied", None)

    def install(count, fail=False):
        fake = _FakeConfig(count, fail)
        monkeypatch.setattr(tf, "config", fake)
        return fake

    return install


def test_no_gpu_is_a_no_op():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    report = devices.configure_devices(DeviceConfig(gpu=1, memory_growth=True))
    assert report == {
        "gpus": 0,
        "visible": [],
        "memory_growth": False,
        "memory_limit_mb": None,
        "applied": False,
    }


def test_gpu_index_and_memory_growth(fake_tf):
    fake = fake_tf(2)
    report = devices.configure_devices(DeviceConfig(memory_growth=True), gpu=1)
    assert fake.calls == [("visible", ("GPU:1",), "GPU"), ("growth", "GPU:1", True)]
    assert report["visible"] == [1] and report["applied"]
    # the same request again changes nothing
    fake.calls.clear()
    assert devices.configure_devices(DeviceConfig(memory_growth=True), gpu=1)["applied"]
    assert fake.calls == []


def test_memory_limit_and_fraction(fake_tf, monkeypatch):
    fake = fake_tf(2)
    devices.configure_devices(DeviceConfig(memory_limit_mb=2048))
    assert fake.calls == [
        ("visible", ("GPU:0", "GPU:1"), "GPU"),
        ("limit", "GPU:0", 2048),
        ("limit", "GPU:1", 2048),
    ]
    fake = fake_tf(1)
    monkeypatch.setattr(devices, "gpu_total_memory_mb", lambda index: 16000)
    report = devices.configure_devices(DeviceConfig(gpu=0, memory_fraction=0.25))
    assert fake.calls[-1] == ("limit", "GPU:0", 4000) and report["memory_limit_mb"] == 4000


def test_bad_index_and_late_calls(fake_tf, caplog):
    fake_tf(1)
    with pytest.raises(UserInputError, match="GPU 3 does not exist"):
        devices.configure_devices(DeviceConfig(gpu=3))
    fake_tf(1, fail=True)
    report = devices.configure_devices(DeviceConfig(memory_growth=True))
    assert report["applied"] is False and "already started" in caplog.text


def test_memory_fraction_needs_nvidia_smi(monkeypatch):
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    with pytest.raises(UserInputError, match="nvidia-smi"):
        devices.gpu_total_memory_mb(0)


def test_config_and_cli():
    with pytest.raises(ValueError, match="choose one"):
        DeviceConfig(memory_growth=True, memory_limit_mb=1000)
    config = Config.model_validate({"train": {"device": {"gpu": 1, "memory_growth": True}}})
    assert config.train.device.gpu == 1
    from napari_unet.cli.main import build_parser
    from napari_unet.cli.options import data_overrides

    args = build_parser().parse_args(["train", "--gpu", "2", "--images", "a.tif"])
    assert data_overrides(args)["train.device.gpu"] == 2
    assert config.with_overrides(data_overrides(args)).train.device.gpu == 2
    args = build_parser().parse_args(["predict", "m", "x.tif", "-o", "o.tif", "--gpu", "0"])
    assert args.gpu == 0
    assert isinstance(args, argparse.Namespace)


def test_dockerfile_runs_the_cli_on_a_gpu_image():
    text = (Path(__file__).parents[1] / "Dockerfile").read_text()
    assert "FROM tensorflow/tensorflow:" in text and "-gpu" in text
    assert 'ENTRYPOINT ["napari-unet"]' in text
    assert "pip install" in text
