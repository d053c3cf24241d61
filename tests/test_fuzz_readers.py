"""Fuzzing the file readers and the config loader (hypothesis), with wide inputs.

- TIFF: every dtype tifffile writes, 1-5 slices of up to 600 x 600 pixels, plain
  ``tifffile.imwrite`` (including its planar-RGB layout of 3-4 slice stacks), ImageJ,
  BigTIFF, big-endian, tiled, and compressed (zlib, LZW, zstd, LZMA, PackBits,
  Deflate, LERC), some cut short or with bytes overwritten;
- zarr: arrays and groups (OME-Zarr multiscales, several arrays, none), random
  chunking, some with a chunk deleted or garbled;
- config: random YAML built from the real sections' keys and wrong values, and
  random text.

A reader returns a native-order ``(Z, Y, X)`` stack with the written values (for the
unambiguous layouts) or raises one one-line ``UserInputError`` naming the file; the
loader returns a valid ``Config`` or one ``UserInputError``. The profiles and counts
are those of tests/test_properties.py (50 examples per target; 1,000 in
``benchmarks/bench_properties.py``).
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import tifffile
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_unet.engine.config import Config, load_config, save_config
from napari_unet.engine.data.preprocess import as_stack
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.io.stacks import read_stack

from .test_properties import _TMP, SETTINGS, _record

#: What tifffile writes (complex too: the reader must refuse it clearly).
TIFF_DTYPES = [
    "bool",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]
COMPRESSIONS = [None, "zlib", "lzw", "zstd", "lzma", "packbits", "deflate", "lerc"]


def _data(dtype: np.dtype, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Fast random content (hypothesis picks only the seed): full range for integers,
    NaN and infinities sprinkled into floats."""
    rng = np.random.default_rng(seed)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    values = rng.standard_normal(shape) * 10 ** rng.integers(0, 4)
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    arr = values.astype(dtype)
    if dtype.kind == "f" and arr.size > 4:
        flat = arr.reshape(-1)
        flat[rng.integers(0, flat.size, 3)] = [np.nan, np.inf, -np.inf]
    return arr


@st.composite
def stacks(draw):
    dtype = np.dtype(draw(st.sampled_from(TIFF_DTYPES)))
    slices = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))  # None: a 2D image
    height = draw(st.integers(1, 600))
    width = draw(st.integers(1, 600 if height < 200 else 200))  # ~120k pixels at most
    shape = (height, width) if slices is None else (slices, height, width)
    return _data(dtype, shape, draw(st.integers(0, 2**32 - 1)))


def _check_refusal(exc: UserInputError, name: str) -> None:
    text = str(exc)
    assert "\n" not in text and name in text, text


@settings(SETTINGS)
@given(
    arr=stacks(),
    layout=st.sampled_from(["minisblack", "plain", "imagej", "bigtiff", "big-endian"]),
    compression=st.sampled_from(COMPRESSIONS),
    tile=st.sampled_from([None, None, 16, 64]),
    damage=st.sampled_from([None, None, None, "cut", "garble"]),
    where=st.floats(0.0, 1.0),
)
def test_tiff_reader_fuzz(arr, layout, compression, tile, damage, where):
    path = _TMP / "fuzz.tif"
    path.unlink(missing_ok=True)
    options: dict = {}
    if layout != "plain":
        options["photometric"] = "minisblack"
    if layout == "imagej":
        options["imagej"] = True
    options["bigtiff"] = layout == "bigtiff"
    options["byteorder"] = ">" if layout == "big-endian" else "<"
    if compression:
        options["compression"] = compression
    if tile and min(arr.shape[-2:]) >= tile:
        options["tile"] = (tile, tile)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tifffile.imwrite(path, arr, **options)
        written = True
    except Exception:  # a combination tifffile cannot write (e.g. LERC of complex)
        written = False
        path.write_bytes(path.read_bytes() if path.exists() else b"")
    if written and damage:
        data = bytearray(path.read_bytes())
        at = int(len(data) * where)
        if damage == "cut":
            data = data[:at]
        else:
            data[at : at + 64] = bytes(range(64))[: len(data[at : at + 64])]
        path.write_bytes(bytes(data))
    try:
        out = read_stack(path)
    except UserInputError as exc:
        _check_refusal(exc, "fuzz.tif")
        _record("tiff reader", "refused")
        assert not (written and damage is None and arr.dtype.kind in "biuf" and layout != "plain")
        return
    _record("tiff reader", "ok")
    assert out.ndim == 3 and out.size > 0 and out.dtype.isnative
    if written and damage is None and compression != "lerc":
        expected = as_stack(arr.astype(np.uint8) if arr.dtype == bool else arr, rgb=False)
        if layout != "plain" or arr.ndim == 3:  # plain 2D (Y, X, 3|4) may be colour
            # (tifffile's planar layout of a 3-4 slice stack reads as slices too)
            np.testing.assert_array_equal(out, expected.astype(out.dtype, copy=False))


@st.composite
def zarr_stores(draw):
    dtype = np.dtype(draw(st.sampled_from(TIFF_DTYPES[:-1])))
    height = draw(st.integers(1, 600))
    width = draw(st.integers(1, 600 if height < 200 else 200))
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))  # 2D, stacks, a 4D array
    shape = (*lead, height, width)
    arr = _data(dtype, shape, draw(st.integers(0, 2**32 - 1)))
    parts = draw(st.integers(1, 3))  # chunks: at most 3 x 3 per slice
    chunks = (*(1 for _ in lead), -(-height // parts), -(-width // parts))
    kind = draw(st.sampled_from(["array", "ome", "group-one", "group-several", "group-empty"]))
    return arr, chunks, kind, draw(st.sampled_from([None, None, "delete", "garble"]))


@settings(SETTINGS)
@given(store=zarr_stores())
def test_zarr_reader_fuzz(store):
    import zarr

    arr, chunks, kind, damage = store
    path = _TMP / "fuzz.zarr"
    shutil.rmtree(path, ignore_errors=True)
    if kind == "array":
        target = zarr.create_array(str(path), shape=arr.shape, chunks=chunks, dtype=arr.dtype)
    else:
        group = zarr.open_group(str(path), mode="w")
        if kind == "ome":
            group.attrs["multiscales"] = [{"datasets": [{"path": "0"}, {"path": "1"}]}]
        names = {"ome": ["0"], "group-one": ["data"], "group-several": ["a", "b"]}.get(kind, [])
        target = None
        for name in names:
            target = group.create_array(name, shape=arr.shape, chunks=chunks, dtype=arr.dtype)
            target[...] = arr
    if target is not None:
        target[...] = arr
    chunk_files = sorted(p for p in path.rglob("*") if p.is_file() and p.parent.name == "c")
    chunk_files += sorted(p for p in path.rglob("c/**/*") if p.is_file())
    if damage and chunk_files:
        victim = chunk_files[0]
        if damage == "delete":
            victim.unlink()
        else:
            victim.write_bytes(b"\x00garbled chunk\xff" * 3)
    try:
        out = read_stack(path)
    except UserInputError as exc:
        _check_refusal(exc, "fuzz.zarr")
        _record("zarr reader", "refused")
        return
    _record("zarr reader", "ok")
    assert out.ndim == 3 and out.size > 0
    if damage is None and kind in ("array", "ome", "group-one") and arr.ndim == 3:
        if arr.dtype.kind in "biuf" and arr.shape[-1] == 1:  # (Y, X, 1): one grey image
            np.testing.assert_array_equal(out, arr[np.newaxis, ..., 0])
        elif arr.dtype.kind in "biuf" and arr.shape[-1] not in (3, 4):
            np.testing.assert_array_equal(out, arr)


#: The config's sections and their keys (so most random documents are near misses).
_SECTIONS = {
    name: list(field.annotation.model_fields)
    for name, field in Config.model_fields.items()
    if hasattr(field.annotation, "model_fields")
}
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-5, 600), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)


@st.composite
def config_texts(draw):
    if draw(st.integers(0, 9)) == 0:  # random text, sometimes not even YAML
        return draw(st.text(max_size=200))
    doc: dict = {}
    for section in draw(st.lists(st.sampled_from([*sorted(_SECTIONS), "bogus"]), max_size=4)):
        keys = [*_SECTIONS.get(section, ["x"]), "not_a_key"]
        doc[section] = {
            key: draw(_VALUES) for key in draw(st.lists(st.sampled_from(keys), max_size=4))
        }
    if draw(st.booleans()):
        doc["output"] = draw(st.one_of(st.none(), st.text(max_size=10), st.integers()))
    return yaml.safe_dump(doc, allow_unicode=True)


@settings(SETTINGS)
@given(text=config_texts())
def test_config_loader_fuzz(text):
    path = _TMP / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path, resolve_paths=False)
    except UserInputError as exc:
        _check_refusal(exc, "fuzz.yaml")
        _record("config loader", "refused")
        return
    _record("config loader", "ok")
    assert isinstance(config, Config)
    again = _TMP / "fuzz-again.yaml"
    save_config(config, again)  # what is accepted is saved and read back the same
    assert load_config(again, resolve_paths=False) == config
