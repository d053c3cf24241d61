"""Device selection (engine/model/devices.py) against the real TensorFlow.

On a CPU-only machine everything but a GPU's own effect can run for real: the
no-GPU path, that every ``tf.config`` call devices.py makes exists with the
arguments it passes, that TensorFlow really raises the RuntimeError devices.py
catches once it has started, and the logical-device call pattern on the CPU in a
fresh process. Only the GPU side effects are replaced, one real ``tf.config``
function at a time (``monkeypatch`` refuses a name TensorFlow does not have), with
real ``PhysicalDevice`` objects.
"""

import argparse
import subprocess
import sys
import textwrap

import pytest

from napari_unet.engine.config import Config, DeviceConfig
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.model import devices


@pytest.fixture
def tf():
    import tensorflow

    return tensorflow


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(devices, "_applied", None)


def _has_gpu(tf) -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def test_no_gpu_is_a_no_op_for_real(tf, fresh, caplog):
    if _has_gpu(tf):
        pytest.skip("this machine has a GPU: the no-GPU path is not reachable")
    report = devices.configure_devices(DeviceConfig(gpu=1, memory_growth=True))
    assert report == {
        "gpus": 0,
        "visible": [],
        "memory_growth": False,
        "memory_limit_mb": None,
        "applied": False,
    }
    assert "no GPU found; train.device.gpu=1 is ignored" in caplog.text
    assert devices.configure_devices(DeviceConfig(memory_limit_mb=512))["applied"] is False


def test_the_calls_devices_makes_exist_in_tensorflow(tf):
    """The names and keyword devices.py uses (a renamed API would fail here, not on a
    user's GPU)."""
    for name in (
        "list_physical_devices",
        "set_visible_devices",
        "set_logical_device_configuration",
    ):
        assert callable(getattr(tf.config, name)), name
    assert callable(tf.config.experimental.set_memory_growth)
    assert tf.config.LogicalDeviceConfiguration(memory_limit=1024).memory_limit == 1024
    assert tf.config.list_physical_devices("CPU")


def test_tensorflow_raises_what_devices_catches_once_started(tf, fresh, caplog, monkeypatch):
    """After the first operation TensorFlow refuses device changes with RuntimeError;
    devices.py turns exactly that into a warning and keeps the earlier settings."""
    tf.reduce_sum(tf.ones(3))  # TensorFlow has started
    cpu = tf.config.list_physical_devices("CPU")[0]
    with pytest.raises(RuntimeError, match="cannot be modified after being initialized"):
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()])
    # a (pretend) GPU whose configuration hits the real refusal: the CPU's settings call
    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [gpu])
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda *a, **k: None)
    real_set = tf.config.set_logical_device_configuration
    monkeypatch.setattr(  # (the CPU takes no memory limit: the same call without it)
        tf.config,
        "set_logical_device_configuration",
        lambda _gpu, configs: real_set(cpu, [tf.config.LogicalDeviceConfiguration()]),
    )
    report = devices.configure_devices(DeviceConfig(memory_limit_mb=256))
    assert report["applied"] is False and "already started" in caplog.text


def test_logical_devices_on_the_cpu_in_a_fresh_process():
    """The logical-device configuration devices.py applies to GPUs, for real on the CPU."""
    code = textwrap.dedent(
        """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        config = tf.config.LogicalDeviceConfiguration
        tf.config.set_logical_device_configuration(cpu, [config(), config()])
        print(len(tf.config.list_logical_devices("CPU")))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "2"


@pytest.fixture
def gpus(tf, fresh, monkeypatch):
    """Pretend GPUs: real PhysicalDevice objects; only their effects are recorded."""
    calls = []

    def install(count: int):
        found = [
            tf.config.PhysicalDevice(name=f"/physical_device:GPU:{i}", device_type="GPU")
            for i in range(count)
        ]
        monkeypatch.setattr(
            tf.config, "list_physical_devices", lambda kind=None: found if kind == "GPU" else []
        )
        monkeypatch.setattr(
            tf.config, "set_visible_devices", lambda chosen, kind: calls.append(("visible", chosen))
        )
        monkeypatch.setattr(
            tf.config.experimental,
            "set_memory_growth",
            lambda gpu, on: calls.append(("growth", gpu.name, on)),
        )
        monkeypatch.setattr(
            tf.config,
            "set_logical_device_configuration",
            lambda gpu, configs: calls.append(("limit", gpu.name, configs[0].memory_limit)),
        )
        return found

    install.calls = calls
    return install


def test_gpu_index_and_memory_growth(gpus):
    found = gpus(2)
    report = devices.configure_devices(DeviceConfig(memory_growth=True), gpu=1)
    assert gpus.calls == [("visible", [found[1]]), ("growth", found[1].name, True)]
    assert report["visible"] == [1] and report["applied"]
    gpus.calls.clear()  # the same request again changes nothing
    assert devices.configure_devices(DeviceConfig(memory_growth=True), gpu=1)["applied"]
    assert gpus.calls == []


def test_memory_limit_and_fraction(gpus, monkeypatch):
    found = gpus(2)
    devices.configure_devices(DeviceConfig(memory_limit_mb=2048))
    assert gpus.calls == [
        ("visible", found),
        ("limit", found[0].name, 2048),
        ("limit", found[1].name, 2048),
    ]
    monkeypatch.setattr(devices, "gpu_total_memory_mb", lambda index: 16000)
    report = devices.configure_devices(DeviceConfig(gpu=0, memory_fraction=0.25))
    assert gpus.calls[-1] == ("limit", found[0].name, 4000) and report["memory_limit_mb"] == 4000


def test_bad_gpu_index(gpus):
    gpus(1)
    with pytest.raises(UserInputError, match="GPU 3 does not exist"):
        devices.configure_devices(DeviceConfig(gpu=3))


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
