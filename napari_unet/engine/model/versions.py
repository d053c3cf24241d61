"""Model versions: every training or fine-tuning run is a new folder v001, v002...

A project folder holds the versions side by side and a ``current.json``
naming the version in use, so the user can go back to an earlier one. Each
version's ``metadata.json`` (written by training) records its parent, the
data it saw and its metrics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import UserInputError

__all__ = ["VersionInfo", "VersionStore"]

_NAME = re.compile(r"^v(\d{3,})$")


@dataclass(frozen=True)
class VersionInfo:
    """One model version."""

    name: str
    path: Path
    parent: str | None
    created: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return int(self.name[1:])


class VersionStore:
    """The versions in one project folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[VersionInfo]:
        """Finished versions (with a checkpoint), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            if not (child.is_dir() and _NAME.match(child.name)):
                continue
            if not ((child / "best.keras").exists() or (child / "last.keras").exists()):
                continue
            found.append(self._info(child))
        return sorted(found, key=lambda info: info.number)

    def _info(self, path: Path) -> VersionInfo:
        meta: dict[str, Any] = {}
        meta_path = path / "metadata.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {}
        parent = meta.get("parent")
        final = meta.get("final") or {}
        metrics = {k: v for k, v in final.items() if k.startswith(("val_", "loss"))}
        return VersionInfo(
            name=path.name,
            path=path,
            parent=Path(parent).name if parent else None,
            created=meta.get("created"),
            metrics=metrics,
            data=meta.get("data") or {},
        )

    def next_path(self) -> Path:
        """Folder for the next version (not created)."""
        numbers = [
            int(m.group(1))
            for child in (self.root.iterdir() if self.root.is_dir() else [])
            if (m := _NAME.match(child.name))
        ]
        return self.root / f"v{max(numbers, default=0) + 1:03d}"

    def get(self, name: str) -> VersionInfo:
        for info in self.versions():
            if info.name == name:
                return info
        raise UserInputError(f"no model version {name!r} in {self.root}")

    def current(self) -> VersionInfo | None:
        """The version in use: the one set with :meth:`set_current`, else the latest."""
        marker = self.root / "current.json"
        if marker.exists():
            try:
                name = json.loads(marker.read_text(encoding="utf-8")).get("current")
                return self.get(name)
            except (OSError, ValueError, UserInputError):
                pass
        versions = self.versions()
        return versions[-1] if versions else None

    def set_current(self, name: str) -> VersionInfo:
        """Make `name` the version in use (e.g. go back to an earlier one)."""
        info = self.get(name)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / "current.json", json.dumps({"current": name}))
        return info
