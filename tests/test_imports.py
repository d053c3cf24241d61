"""Import hygiene: the plugin starts without TensorFlow, the engine without napari/Qt."""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_package_and_light_engine_modules_do_not_import_tensorflow():
    out = _run(
        """
        import sys
        import napari_unet, napari_unet.cli.main, napari_unet.sample
        from napari_unet.engine import atomic, config, errors, events
        from napari_unet.engine.io import stacks
        from napari_unet.engine.evaluation import metrics
        from napari_unet.engine.model import model_folder
        from napari_unet.engine.inference import predict, tiling
        from napari_unet.engine.data import preprocess, synthetic, weights
        from napari_unet.engine.training import train
        print("tensorflow" in sys.modules, "keras" in sys.modules)
        """
    )
    assert out == "False False"


def test_engine_imports_neither_napari_nor_qt():
    out = _run(
        """
        import sys, pkgutil, importlib
        import napari_unet.engine as engine
        for m in pkgutil.walk_packages(engine.__path__, "napari_unet.engine."):
            importlib.import_module(m.name)
        bad = [m for m in sys.modules if m.split(".")[0] in
               ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui")]
        print(bad)
        """
    )
    assert out == "[]"
