"""Generator of the bad-input corpus (issue 7): malformed and awkward files that
every entry point (reader, CLI commands, napari reader, widgets) must handle
with either a correct result or one clear message, never a traceback, and
without changing any input file.

:func:`build_corpus` writes the corpus into a folder and returns its entries.
Each :class:`Entry` says what it is (``image``, ``mask``, ``config`` or
``model``), what a correct reader must do with it (``ok``, ``error`` or
``any`` when both a result and a clear refusal are acceptable) and, for
images, a mask of matching shape so training and evaluation can run on it.

Used by tests/test_corpus_cli.py, tests/test_corpus_reader.py and the widget
corpus tests; ``python -m tests.corpus FOLDER`` writes it for manual checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from napari_unet.engine.data.synthetic import synthetic_em

__all__ = ["MARKER_NAME", "Entry", "array_corpus", "build_corpus", "hash_tree"]

#: A file that appears only if some input managed to execute code.
MARKER_NAME = "CODE-WAS-EXECUTED"

#: Shape of the "good" stack the mask entries are paired with.
GOOD_SHAPE = (3, 48, 48)


@dataclass(frozen=True)
class Entry:
    """One corpus input.

    Attributes
    ----------
    name
        Short unique id (used in test ids and messages).
    kind
        ``image``, ``mask``, ``dataset`` (a dataset root), ``config`` or ``model``.
    path
        The file or folder.
    read
        Expected outcome: ``ok``, ``error`` or ``any`` (both acceptable).
        Images: ``read_stack``. Masks: training/evaluating with the good
        stack ``images/good.tif`` (a mask of another shape reads fine but
        must be refused there). Datasets: ``train --dataset``. Configs:
        ``load_config``. Models: ``load_model``.
    mask
        Images only: a {0, 255} mask of matching (Z, Y, X) shape, or None.
    train
        Images/masks: run the real CLI ``train`` on it in the short (CI) run.
        All entries are trained in the full run (``NAPARI_UNET_FULL_CORPUS=1``).
    note
        What makes the input awkward.
    """

    name: str
    kind: str
    path: Path
    read: str
    mask: Path | None = None
    train: bool = False
    note: str = ""


def hash_tree(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root` (relative path -> hex digest)."""
    digests = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


class _Executed:
    """Unpickling this object creates the marker file: proof of code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _tif(path: Path, arr: np.ndarray, **options) -> Path:
    options.setdefault("photometric", "minisblack")
    with warnings.catch_warnings():  # zero-size arrays make "nonconformant" TIFFs on purpose
        warnings.simplefilter("ignore", UserWarning)
        tifffile.imwrite(path, arr, **options)
    return path


def _mask_for(folder: Path, name: str, shape: tuple[int, ...], seed: int = 0) -> Path:
    """A {0, 255} uint8 mask of (Z, Y, X) `shape` with some foreground."""
    rng = np.random.default_rng(seed)
    mask = (rng.random(shape) > 0.5).astype(np.uint8) * 255
    return _tif(folder / f"{name}.mask.tif", mask)


def _images(root: Path) -> list[Entry]:
    folder = root / "images"
    folder.mkdir(parents=True)
    masks = root / "image-masks"
    masks.mkdir()
    rng = np.random.default_rng(7)
    em, _ = synthetic_em(slices=GOOD_SHAPE[0], size=GOOD_SHAPE[1], cells=8, seed=3)
    entries: list[Entry] = []

    def add(name: str, read: str, path: Path, note: str, train: bool = False) -> None:
        mask = None
        if read != "error":
            try:
                from napari_unet.engine.io.stacks import read_stack

                shape = read_stack(path).shape
                mask = _mask_for(masks, name, shape, seed=len(entries))
            except Exception:  # an "any" entry that is refused: no mask needed
                mask = None
        entries.append(Entry(name, "image", path, read, mask, train, note))

    def arr(name: str, read: str, data: np.ndarray, note: str, train: bool = False, **opt) -> None:
        add(name, read, _tif(folder / f"{name}.tif", data, **opt), note, train)

    good = _tif(folder / "good.tif", em)
    # --- broken files
    empty = folder / "empty.tif"
    empty.write_bytes(b"")
    add("empty-file", "error", empty, "0 bytes")
    truncated = folder / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    add("truncated-tiff", "error", truncated, "first third of a valid TIFF")
    header = folder / "header-only.tif"
    header.write_bytes(good.read_bytes()[:6])
    add("truncated-header", "error", header, "6 bytes of TIFF header")
    text = folder / "text.tif"
    text.write_text("this is not an image\n")
    add("text-as-tiff", "error", text, "a text file named .tif")
    junk = folder / "junk.tif"
    junk.write_bytes(b"II*\x00" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    add("junk-with-tiff-magic", "error", junk, "TIFF magic followed by random bytes")
    jpeg_bytes = _jpeg_bytes(em[0])
    broken_jpeg = folder / "broken.jpg"
    broken_jpeg.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    add("truncated-jpeg", "error", broken_jpeg, "half a JPEG")
    png_as_tif = folder / "png-named.tif"
    png_as_tif.write_bytes(_png_bytes(em[0]))
    add("png-named-tif", "any", png_as_tif, "a PNG with a .tif name")
    tif_as_png = folder / "tiff-named.png"
    tif_as_png.write_bytes(good.read_bytes())
    add("tiff-named-png", "any", tif_as_png, "a TIFF with a .png name")
    pickled = folder / "pickled-object.npy"
    with open(pickled, "wb") as handle:
        np.save(handle, np.array([_Executed(root / MARKER_NAME)], dtype=object), allow_pickle=True)
    add("pickled-npy", "error", pickled, "a .npy holding a pickled object that runs code")
    complex_npy = folder / "complex.npy"
    np.save(complex_npy, np.zeros((2, 8, 8), np.complex64))
    add("complex-npy", "error", complex_npy, "complex array in .npy")
    # --- unusable arrays
    arr("zero-size", "error", np.zeros((0, 8, 8), np.uint8), "no pixels")
    one_d = _tif(
        folder / "one-d.tif",
        np.arange(10, dtype=np.uint8).reshape(1, 10),
        description=json.dumps({"shape": [10]}),
        metadata=None,
    )
    add("one-d", "error", one_d, "1-D array (shape metadata (10,))")
    arr("five-d", "error", np.zeros((2, 2, 3, 8, 8), np.uint8), "5-D array, no singleton axes")
    arr(
        "channels-zcyx",
        "error",
        rng.integers(0, 255, (2, 2, 48, 48)).astype(np.uint8),
        "two channels per slice (ImageJ ZCYX)",
        imagej=True,
        metadata={"axes": "ZCYX"},
    )
    arr(
        "complex-tiff",
        "error",
        (rng.random((2, 16, 16)) + 1j).astype(np.complex64),
        "complex-valued TIFF",
    )
    arr("all-nan", "error", np.full((2, 16, 16), np.nan, np.float32), "only NaN")
    # --- awkward but valid
    arr("good", "ok", em, "the reference EM stack")
    part = em.astype(np.float32)
    part[0, :5, :5] = np.nan
    part[1, 10, 10] = np.inf
    part[2, 3, 3] = -np.inf
    arr("partly-nan-inf", "ok", part, "float32 with NaN and +-inf pixels", train=True)
    arr("constant-uint8", "ok", np.full(GOOD_SHAPE, 7, np.uint8), "one value everywhere")
    arr("constant-zero-float", "ok", np.zeros(GOOD_SHAPE, np.float32), "all zeros")
    arr("all-inf", "any", np.full((1, 16, 16), np.inf, np.float32), "only +inf")
    rgb = np.stack([em, em // 2, 255 - em], axis=-1)
    arr("rgb-stack", "ok", rgb, "RGB (Z, Y, X, 3)", photometric="rgb")
    rgba = np.concatenate([rgb[0], np.full((48, 48, 1), 255, np.uint8)], axis=-1)
    arr("rgba-2d", "ok", rgba, "RGBA 2D image", photometric="rgb", extrasamples=["unassalpha"])
    arr("int32", "ok", em.astype(np.int32) * 1000 - 100_000, "int32 with negative values")
    arr("uint16", "ok", em.astype(np.uint16) * 257, "uint16 full range")
    arr("int8", "ok", (em.astype(np.int16) - 128).astype(np.int8), "int8")
    arr("uint64", "ok", em.astype(np.uint64) << 40, "uint64 huge integers")
    arr("float16", "ok", (em / 255).astype(np.float16), "half precision")
    arr("float32-negative", "ok", (em.astype(np.float32) - 128) / 64, "float32 around zero")
    arr("float64-huge", "ok", em.astype(np.float64) * 1e300, "float64 near overflow")
    arr("bool", "ok", em > 128, "boolean image")
    arr("big-endian-uint16", "ok", em.astype(np.uint16) * 100, "big-endian TIFF", byteorder=">")
    arr("smaller-than-tile", "ok", em[:2, :20, :20], "20x20: smaller than a patch/tile", train=True)
    arr("one-pixel", "any", em[:1, :1, :1], "a single pixel")
    arr("thin-strip", "ok", np.ascontiguousarray(em[:1, :4, :]), "4 x 48 strip")
    arr("single-2d", "ok", em[0], "one 2D image")
    arr("single-slice", "ok", em[:1], "one slice (no validation split possible)")
    arr("odd-size", "ok", em[:, :45, :37], "45 x 37 (not a multiple of anything)")
    arr(
        "grey-alpha",
        "ok",
        np.stack([em[0], np.full((48, 48), 255, np.uint8)], -1),
        "grey + alpha samples",
        photometric="minisblack",
        extrasamples=["unassalpha"],
        planarconfig="contig",
    )
    arr("compressed-bigtiff", "ok", em, "zlib BigTIFF", bigtiff=True, compression="zlib")
    arr("ome", "ok", em, "OME-TIFF", ome=True)
    # --- folders
    empty_dir = folder / "empty-folder"
    empty_dir.mkdir()
    add("empty-folder", "error", empty_dir, "a folder without images")
    mixed = folder / "mixed-slices"
    mixed.mkdir()
    _tif(mixed / "s0.tif", em[0])
    _tif(mixed / "s1.tif", em[1, :40])
    add("mixed-slices-folder", "error", mixed, "slices of two sizes")
    slices = folder / "png-slices"
    slices.mkdir()
    for z in range(3):
        (slices / f"slice{z}.png").write_bytes(_png_bytes(em[z]))
    (slices / ".hidden.png").write_bytes(b"not a png")
    add("png-slices-folder", "ok", slices, "folder of PNG slices (plus a hidden junk file)")
    return entries


def _masks(root: Path) -> list[Entry]:
    """Masks to pair with ``images/good.tif`` (shape GOOD_SHAPE)."""
    folder = root / "masks"
    folder.mkdir()
    rng = np.random.default_rng(11)
    _, cells = synthetic_em(slices=GOOD_SHAPE[0], size=GOOD_SHAPE[1], cells=8, seed=3)
    entries: list[Entry] = []

    def arr(name: str, read: str, data: np.ndarray, note: str, train: bool = False, **opt) -> None:
        path = _tif(folder / f"{name}.tif", data, **opt)
        entries.append(Entry(name, "mask", path, read, None, train, note))

    arr("mask-0-255", "ok", cells * 255, "the usual {0, 255} mask")
    arr("mask-0-1", "ok", cells, "{0, 1}")
    arr("mask-bool", "ok", cells.astype(bool), "boolean")
    labels = (rng.integers(0, 5, GOOD_SHAPE) * cells).astype(np.uint16)
    arr("mask-several-classes", "ok", labels, "labels 0..4")
    sparse = np.where(rng.random(GOOD_SHAPE) < 0.7, 0, cells + 1).astype(np.uint8)
    arr("mask-sparse-0-1-2", "ok", sparse, "sparse scribbles: 0 unlabeled, 1 bg, 2 fg")
    arr(
        "mask-no-foreground",
        "ok",
        np.zeros(GOOD_SHAPE, np.uint8),
        "no foreground at all",
        train=True,
    )
    arr("mask-all-foreground", "ok", np.full(GOOD_SHAPE, 255, np.uint8), "only foreground")
    arr("mask-probability", "ok", cells * 0.8 + 0.1, "float probabilities in (0, 1)")
    arr("mask-uint16-65535", "ok", cells.astype(np.uint16) * 65535, "{0, 65535}")
    arr("mask-negative-int32", "ok", cells.astype(np.int32) - 1, "{-1, 0}")
    colour = np.zeros((*GOOD_SHAPE, 3), np.uint8)
    colour[..., 0] = cells * 255
    arr("mask-rgb-red", "ok", colour, "red-on-black colour mask", photometric="rgb")
    arr("mask-other-shape", "error", cells[:, :40], "40 x 48 instead of 48 x 48")
    arr("mask-fewer-slices", "error", cells[:2] * 255, "2 slices for 3 images")
    arr("mask-more-slices", "error", np.concatenate([cells, cells[:1]]) * 255, "4 slices for 3")
    arr("mask-2d-for-stack", "error", cells[0] * 255, "one 2D mask for a 3-slice stack")
    nan_mask = cells.astype(np.float32)
    nan_mask[0, 0, 0] = np.nan
    arr("mask-nan", "error", nan_mask, "a NaN in the mask")
    arr("mask-complex", "error", cells.astype(np.complex64), "complex mask")
    empty = folder / "mask-empty.tif"
    empty.write_bytes(b"")
    entries.append(Entry("mask-empty-file", "mask", empty, "error", note="0 bytes"))
    return entries


def _datasets(root: Path) -> list[Entry]:
    """Dataset roots (``train --dataset``): all incomplete or inconsistent."""
    folder = root / "datasets"
    folder.mkdir()
    em, cells = synthetic_em(slices=GOOD_SHAPE[0], size=GOOD_SHAPE[1], cells=8, seed=4)
    entries = []

    def dataset(name: str, note: str, files: dict[str, np.ndarray]) -> None:
        base = folder / name
        base.mkdir()
        for rel, data in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            _tif(base / rel, data)
        entries.append(Entry(name, "dataset", base, "error", note=note))

    dataset("dataset-empty", "an empty folder", {})
    dataset("dataset-no-masks", "train/images only", {"train/images/a.tif": em})
    dataset("dataset-no-images", "train/masks only", {"train/masks/a.tif": cells * 255})
    dataset(
        "dataset-mismatch",
        "3 image slices, 2 mask slices",
        {"train/images/a.tif": em, "train/masks/a.tif": cells[:2] * 255},
    )
    dataset(
        "dataset-test-only",
        "test/ but no train/",
        {"test/images/a.tif": em, "test/masks/a.tif": cells * 255},
    )
    lonely = folder / "dataset-is-a-file.tif"
    _tif(lonely, em)
    entries.append(Entry("dataset-is-a-file", "dataset", lonely, "error", note="a file"))
    return entries


def _configs(root: Path) -> list[Entry]:
    """Configs for ``train``. `read` is the outcome of ``load_config``; the train
    command must refuse every one of them (the shell-like paths name no file)."""
    folder = root / "configs"
    folder.mkdir()
    marker = root / MARKER_NAME
    texts = {
        "config-python-object": f"!!python/object/apply:os.system ['touch {marker}']\n",
        "config-python-name": "train: !!python/name:os.system\n",
        "config-list": "- train\n- predict\n",
        "config-scalar": "42\n",
        "config-unknown-key": "train: {epochz: 3}\n",
        "config-bad-type": "train: {epochs: many}\n",
        "config-bad-yaml": "train: [unclosed\n",
        "config-patch-not-multiple": "model: {depth: 3}\ntrain: {patch_size: 36}\n",
        "config-negative-lr": "train: {learning_rate: -1}\n",
        "config-shell-path": (  # loads (paths are plain strings); train refuses it
            f"data: {{images: '$(touch {marker})', masks: '`touch {marker}`'}}\n"
        ),
    }
    entries = []
    for name, text in texts.items():
        path = folder / f"{name}.yaml"
        path.write_text(text)
        read = "ok" if name == "config-shell-path" else "error"
        entries.append(Entry(name, "config", path, read, note=text.strip()[:60]))
    binary = folder / "config-binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    entries.append(Entry("config-binary", "config", binary, "error", note="not UTF-8"))
    entries.append(Entry("config-is-folder", "config", folder, "error", note="a folder"))
    entries.append(
        Entry("config-missing", "config", folder / "missing.yaml", "error", note="no such file")
    )
    return entries


def _models(root: Path, trained: Path | None) -> list[Entry]:
    """Model folders for ``predict``/``evaluate`` (built from `trained` when given)."""
    import shutil

    folder = root / "models"
    folder.mkdir()
    entries = [Entry("model-missing", "model", folder / "missing", "error", note="no folder")]
    empty = folder / "empty"
    empty.mkdir()
    entries.append(Entry("model-empty-folder", "model", empty, "error", note="empty folder"))
    if trained is None:
        return entries
    config_only = folder / "config-only"
    config_only.mkdir()
    shutil.copy(trained / "config.yaml", config_only / "config.yaml")
    entries.append(Entry("model-config-only", "model", config_only, "error", note="no weights"))
    truncated = folder / "truncated-weights"
    truncated.mkdir()
    shutil.copy(trained / "config.yaml", truncated / "config.yaml")
    data = (trained / "best.keras").read_bytes()
    (truncated / "best.keras").write_bytes(data[: len(data) // 2])
    entries.append(Entry("model-truncated", "model", truncated, "error", note="half a .keras"))
    garbage = folder / "garbage-weights"
    garbage.mkdir()
    shutil.copy(trained / "config.yaml", garbage / "config.yaml")
    (garbage / "best.keras").write_text("not a zip file")
    entries.append(Entry("model-garbage", "model", garbage, "error", note="text as .keras"))
    bad_config = folder / "bad-config"
    bad_config.mkdir()
    shutil.copy(trained / "best.keras", bad_config / "best.keras")
    (bad_config / "config.yaml").write_text("model: [1, 2\n")
    entries.append(Entry("model-bad-config", "model", bad_config, "error", note="broken YAML"))
    entries.append(
        Entry("model-keras-file", "model", trained / "best.keras", "ok", note="the .keras file")
    )
    return entries


def build_corpus(root: Path, trained_model: Path | None = None) -> list[Entry]:
    """Write the corpus under `root` and return its entries.

    Parameters
    ----------
    root
        Empty or missing folder.
    trained_model
        A model folder written by training; when given, broken copies of it
        are added as ``model`` entries (plus Keras-level oddities).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = _images(root) + _masks(root) + _datasets(root) + _configs(root)
    entries += _models(root, Path(trained_model) if trained_model else None)
    names = [e.name for e in entries]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return entries


def array_corpus() -> list[tuple[str, str, str, np.ndarray, np.ndarray | None]]:
    """In-memory inputs for widget actions (napari layers):
    ``(name, image_expect, pair_expect, image, mask)``.

    `image_expect` is for actions on the image alone (predict), `pair_expect`
    for training/previewing with `mask` as its labels; each ``ok``, ``error``
    or ``any``. Layers must come back unchanged from every action.
    """
    em, cells = synthetic_em(slices=GOOD_SHAPE[0], size=GOOD_SHAPE[1], cells=8, seed=3)
    part = em.astype(np.float32)
    part[0, :5, :5] = np.nan
    part[1, 9, 9] = np.inf
    rng = np.random.default_rng(5)
    labels = (rng.integers(0, 5, GOOD_SHAPE) * cells).astype(np.uint16)
    return [
        ("good", "ok", "ok", em, cells),
        ("all-nan", "error", "error", np.full(GOOD_SHAPE, np.nan, np.float32), cells),
        ("partly-nan-inf", "ok", "ok", part, cells),
        ("constant", "ok", "ok", np.full(GOOD_SHAPE, 7, np.uint8), cells),
        ("int32", "ok", "ok", em.astype(np.int32) * 1000 - 100_000, cells),
        ("uint16", "ok", "ok", em.astype(np.uint16) * 257, cells),
        ("float64-huge", "ok", "ok", em.astype(np.float64) * 1e300, cells),
        ("bool", "ok", "ok", em > 128, cells),
        ("smaller-than-tile", "ok", "ok", em[:2, :20, :20], cells[:2, :20, :20]),
        ("single-2d", "ok", "ok", em[0], cells[0]),
        ("odd-size", "ok", "ok", em[:, :45, :37], cells[:, :45, :37]),
        ("time-series-4d", "any", "any", np.stack([em, em]), None),
        ("mask-several-classes", "ok", "ok", em, labels),
        ("mask-no-foreground", "ok", "any", em, np.zeros(GOOD_SHAPE, np.uint8)),
        ("mask-fewer-slices", "ok", "error", em, cells[:2]),
        ("mask-other-shape", "ok", "error", em, cells[:, :40]),
    ]


def _png_bytes(plane: np.ndarray) -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", plane, extension=".png")


def _jpeg_bytes(plane: np.ndarray) -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", plane, extension=".jpg")


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "napari-unet-corpus")
    for entry in build_corpus(target):
        print(f"{entry.kind:7s} {entry.read:6s} {entry.name:28s} {entry.note}")
