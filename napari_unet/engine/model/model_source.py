"""A model given as a model folder or as a bioimage.io package, as a model folder.

:func:`model_folder_of` lets every fine-tuning entry (``napari-unet finetune``,
``train --init-from``, the dock's Correct & retrain tab) take a bioimage.io package a
colleague sent (``.zip`` or its ``rdf.yaml``) where a model folder is expected: the package
is imported once (:func:`~.bioimageio_import.import_bioimageio`) into the user's cache,
keyed by the package's content, and that folder is used from then on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .precision import cache_path

__all__ = ["is_bioimageio_package", "model_folder_of"]


def is_bioimageio_package(path: str | Path) -> bool:
    """True for a ``.zip`` file, an ``rdf.yaml`` or a folder holding one but no config."""
    path = Path(path).expanduser()
    if path.is_file():
        return path.suffix.lower() == ".zip" or path.name.endswith("rdf.yaml")
    return (path / "rdf.yaml").is_file() and not (path / "config.yaml").exists()


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        sha.update(file.name.encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()[:12]


def model_folder_of(path: str | Path) -> Path:
    """`path` itself for a model folder; for a bioimage.io package, its imported folder.

    Parameters
    ----------
    path
        A model folder, or a bioimage.io package (``.zip``, ``rdf.yaml`` or its folder).

    Returns
    -------
    Path
        A model folder (``config.yaml`` and weights); an imported package lives in
        ``<cache>/imported/<name>-<content hash>`` and is imported only once.

    Raises
    ------
    UserInputError
        If the package cannot be imported (see ``import_bioimageio``).
    """
    path = Path(path).expanduser()
    if not is_bioimageio_package(path):
        return path
    from .bioimageio_import import import_bioimageio

    source = path.parent if path.name.endswith("rdf.yaml") else path
    stem = source.name.removesuffix(".zip")
    dest = cache_path().parent / "imported" / f"{stem}-{_digest(source)}"
    if (dest / "config.yaml").is_file():
        return dest
    package = path / "rdf.yaml" if path.is_dir() else path
    return import_bioimageio(package, dest, overwrite=dest.exists())
