"""The engine's stages import only the stages below them (docs/architecture.md)."""

import ast
from pathlib import Path

import napari_unet

PACKAGE = Path(napari_unet.__file__).parent
#: Bottom first; a module may import its own stage and any stage listed before it.
STAGES = ["bottom", "io", "data", "model", "evaluation", "inference", "training"]


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["napari_unet", "engine"]:
        return None
    return parts[2] if len(parts) > 2 and parts[2] in STAGES else "bottom"


def _engine_imports():
    for path in (PACKAGE / "engine").rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield module, alias.name, node.lineno
                continue
            else:
                continue
            yield module, target, node.lineno


def test_stages_import_only_stages_below_them():
    upward = []
    for module, target, line in _engine_imports():
        source, dest = _stage(module), _stage(target)
        if dest is None:
            continue
        if STAGES.index(dest) > STAGES.index(source):
            upward.append(f"{module}:{line} imports {target}")
    assert not upward, upward


def test_engine_imports_no_gui_package():
    gui = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")
    found = [
        f"{module}:{line} imports {target}"
        for module, target, line in _engine_imports()
        if target.split(".")[0] in gui
    ]
    assert not found, found
