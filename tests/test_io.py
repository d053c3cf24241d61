"""Reading, checking and writing image stacks (napari_unet.engine.io.stacks)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_unet.engine.errors import UserInputError
from napari_unet.engine.io import files, writers
from napari_unet.engine.io.stacks import (
    binarize_mask,
    check_image,
    check_pair,
    find_dataset_layout,
    mask_to_uint8,
    open_lazy,
    read_mask,
    read_stack,
    write_png_slices,
    write_tiff,
)


def ramp(shape: tuple[int, ...], dtype: str | type = np.uint8) -> np.ndarray:
    """Deterministic non-constant test data."""
    values = np.arange(int(np.prod(shape))) % 200
    return values.reshape(shape).astype(dtype)


STACK = ramp((3, 20, 24))


# --------------------------------------------------------------------------- TIFF flavours


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"imagej": True, "metadata": {"axes": "ZYX"}},
        {"ome": True},
        {"bigtiff": True},
        {"compression": "zlib"},
        {"compression": "lzw"},
        {"tile": (16, 16), "compression": "deflate"},
    ],
    ids=["plain", "imagej", "ome", "bigtiff", "zlib", "lzw", "tiled-deflate"],
)
def test_read_tiff_flavours(tmp_path: Path, options: dict) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, STACK, photometric="minisblack", **options)
    out = read_stack(path)
    assert out.shape == (3, 20, 24)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, STACK)


@pytest.mark.parametrize(
    "dtype", ["uint8", "uint16", "int16", "int32", "float16", "float32", "float64"]
)
def test_read_tiff_keeps_dtype(tmp_path: Path, dtype: str) -> None:
    data = ramp((2, 8, 9), dtype)
    path = tmp_path / "d.tif"
    tifffile.imwrite(path, data)
    out = read_stack(path)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, data)


def test_read_big_endian_tiff_is_native(tmp_path: Path) -> None:
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, ramp((2, 8, 8), np.uint16), byteorder=">")
    out = read_stack(path)
    assert out.dtype.byteorder in ("=", "|") or out.dtype.isnative
    np.testing.assert_array_equal(out, ramp((2, 8, 8), np.uint16))


def test_single_2d_tiff_becomes_one_slice(tmp_path: Path) -> None:
    path = tmp_path / "one.tiff"
    tifffile.imwrite(path, STACK[0])
    out = read_stack(path)
    assert out.shape == (1, 20, 24)
    np.testing.assert_array_equal(out[0], STACK[0])


def test_plain_imwrite_of_a_three_slice_stack_reads_as_slices(tmp_path: Path) -> None:
    # tifffile's default for a (3, Y, X) uint8 array is *planar RGB*, but its shape record
    # says a (3, Y, X) array was written: it reads as the 3 grey slices it was, and as one
    # colour image (grey by luminance) only when asked.
    path = tmp_path / "planar.tif"
    with pytest.warns(DeprecationWarning):
        tifffile.imwrite(path, STACK)
    np.testing.assert_array_equal(read_stack(path), STACK)
    assert read_stack(path, planes="colour").shape == (1, 20, 24)


def test_rgb_tiff_becomes_grey(tmp_path: Path) -> None:
    rgb = np.zeros((2, 6, 7, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 200, 50
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    out = read_stack(path)
    assert out.shape == (2, 6, 7) and out.dtype == np.uint8
    expected = round(0.2125 * 100 + 0.7154 * 200 + 0.0721 * 50)
    assert np.all(out == expected)


def test_hyperstack_singleton_axes_squeezed(tmp_path: Path) -> None:
    data = ramp((1, 4, 1, 8, 9), np.uint16)  # TZCYX with T = C = 1
    path = tmp_path / "h.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    out = read_stack(path)
    assert out.shape == (4, 8, 9)
    np.testing.assert_array_equal(out, data[0, :, 0])


def test_multichannel_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "multi.tif"
    tifffile.imwrite(path, ramp((3, 2, 8, 9)), imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(UserInputError, match=r"multi\.tif"):
        read_stack(path)


def test_pages_appended_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "appended.tif"
    for plane in STACK:
        tifffile.imwrite(path, plane, append=True)
    np.testing.assert_array_equal(read_stack(path), STACK)


# ------------------------------------------------------------------ PNG, JPEG, folders, zarr


def test_png_and_jpeg_single_images(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "a.png", STACK[0])
    out = read_stack(tmp_path / "a.png")
    assert out.shape == (1, 20, 24)
    np.testing.assert_array_equal(out[0], STACK[0])
    iio.imwrite(tmp_path / "a.jpg", np.full((16, 16), 128, np.uint8))
    out = read_stack(tmp_path / "a.jpg")
    assert out.shape == (1, 16, 16) and abs(int(out.mean()) - 128) <= 2


def test_png_rgb_and_uint16(tmp_path: Path) -> None:
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 1] = 100
    iio.imwrite(tmp_path / "rgb.png", rgb)
    out = read_stack(tmp_path / "rgb.png")
    assert out.shape == (1, 6, 7) and np.all(out == round(0.7154 * 100))
    data = ramp((6, 7), np.uint16) * 300
    iio.imwrite(tmp_path / "deep.png", data)
    out = read_stack(tmp_path / "deep.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[0], data)


def test_png_folder_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in (1, 2, 10, 11):
        iio.imwrite(folder / f"slice{z}.png", np.full((5, 6), z, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    (folder / ".hidden.png").write_bytes(b"ignored")
    out = read_stack(folder)
    assert out.shape == (4, 5, 6)
    assert out[:, 0, 0].tolist() == [1, 2, 10, 11]


def test_tiff_folder_and_shape_mismatch(tmp_path: Path) -> None:
    folder = tmp_path / "tifs"
    folder.mkdir()
    for z in range(3):
        tifffile.imwrite(folder / f"s{z}.tif", STACK[z])
    np.testing.assert_array_equal(read_stack(folder), STACK)
    tifffile.imwrite(folder / "s3.tif", np.zeros((5, 5), np.uint8))
    with pytest.raises(UserInputError, match=r"s3\.tif"):
        read_stack(folder)


def test_folder_with_one_multipage_tiff(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "volume.tif", STACK, photometric="minisblack")
    np.testing.assert_array_equal(read_stack(folder), STACK)


def test_empty_folder_and_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"no TIFF/PNG/JPEG"):
        read_stack(tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(UserInputError, match=r"dataset folder"):
        read_stack(tmp_path)


def test_zarr_array_and_group(tmp_path: Path) -> None:
    import zarr

    data = ramp((3, 8, 9), np.uint16)
    arr = zarr.create_array(
        tmp_path / "a.zarr", shape=data.shape, chunks=(1, 8, 9), dtype=data.dtype
    )
    arr[:] = data
    np.testing.assert_array_equal(read_stack(tmp_path / "a.zarr"), data)
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("0", shape=(1, 1, 3, 8, 9), dtype=data.dtype)[:] = data[None, None]
    np.testing.assert_array_equal(read_stack(tmp_path / "g.zarr"), data)


# --------------------------------------------------------------------------- lazy


def test_open_lazy_tiff(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, STACK, compression="zlib", tile=(16, 16), photometric="minisblack")
    lazy = open_lazy(path)
    assert lazy.shape == STACK.shape and lazy.dtype == STACK.dtype
    assert lazy.chunks[0] == (1, 1, 1)
    np.testing.assert_array_equal(lazy[1].compute(), STACK[1])
    np.testing.assert_array_equal(np.asarray(lazy), STACK)


def test_open_lazy_rgb_2d_zarr_and_folder(tmp_path: Path) -> None:
    import zarr

    rgb = np.zeros((2, 6, 7, 3), np.uint8)
    rgb[..., 0] = 100
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(
        open_lazy(tmp_path / "rgb.tif").compute(), read_stack(tmp_path / "rgb.tif")
    )

    tifffile.imwrite(tmp_path / "flat.tif", STACK[0])
    assert open_lazy(tmp_path / "flat.tif").shape == (1, 20, 24)

    arr = zarr.create_array(tmp_path / "z.zarr", shape=STACK.shape, chunks=(1, 20, 24), dtype="u1")
    arr[:] = STACK
    np.testing.assert_array_equal(open_lazy(tmp_path / "z.zarr").compute(), STACK)

    folder = tmp_path / "slices"
    folder.mkdir()
    for z, plane in enumerate(STACK):
        iio.imwrite(folder / f"s{z}.png", plane)
    lazy = open_lazy(folder)
    assert lazy.shape == STACK.shape
    np.testing.assert_array_equal(lazy.compute(), STACK)


def test_open_lazy_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"missing\.tif"):
        open_lazy(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(UserInputError, match=r"bad\.tif"):
        open_lazy(bad)


# --------------------------------------------------------------------------- dataset layout


def test_find_dataset_layout(tmp_path: Path) -> None:
    for sub in ("train/images", "train/labels", "test/images"):
        (tmp_path / sub).mkdir(parents=True)
    layout = find_dataset_layout(tmp_path)
    assert layout["train_images"] == tmp_path / "train" / "images"
    assert layout["train_masks"] == tmp_path / "train" / "labels"
    assert layout["test_images"] == tmp_path / "test" / "images"
    assert layout["test_masks"] is None
    assert layout["val_images"] is None and layout["val_masks"] is None


def test_find_dataset_layout_variants(tmp_path: Path) -> None:
    (tmp_path / "Train" / "image").mkdir(parents=True)
    (tmp_path / "Train" / "label").mkdir()
    layout = find_dataset_layout(tmp_path)
    assert layout["train_images"] == tmp_path / "Train" / "image"
    assert layout["train_masks"] == tmp_path / "Train" / "label"
    assert layout["test_images"] is None
    (tmp_path / "other" / "masks.tif").parent.mkdir()
    tifffile.imwrite(tmp_path / "other" / "masks.tif", STACK, photometric="minisblack")
    assert find_dataset_layout(tmp_path / "other")["train_masks"] is None
    (tmp_path / "other" / "train").mkdir()
    tifffile.imwrite(tmp_path / "other" / "train" / "masks.tif", STACK, photometric="minisblack")
    assert find_dataset_layout(tmp_path / "other")["train_masks"] == (
        tmp_path / "other" / "train" / "masks.tif"
    )
    with pytest.raises(UserInputError, match=r"nowhere"):
        find_dataset_layout(tmp_path / "nowhere")


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize(
    "mask",
    [
        np.array([[0, 1], [1, 0]], np.uint8),
        np.array([[0, 255], [255, 0]], np.uint8),
        np.array([[False, True], [True, False]]),
        np.array([[0, 65535], [65535, 0]], np.uint16),
        np.array([[0.0, 1.0], [1.0, 0.0]], np.float32),
        np.array([[0.1, 0.9], [0.5, 0.49]], np.float64),  # probability map
        np.array([[0, 7], [3, 0]], np.int32),  # instance labels
        np.array([[0.0, 255.0], [255.0, 0.0]], np.float32),
    ],
    ids=["01", "0-255", "bool", "0-65535", "float01", "probability", "labels", "float255"],
)
def test_binarize_mask_encodings(mask: np.ndarray) -> None:
    out = binarize_mask(mask)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 1], [1, 0]])


def test_binarize_mask_refuses_nan() -> None:
    with pytest.raises(UserInputError, match=r"NaN"):
        binarize_mask(np.array([[0.0, np.nan]]))


def test_read_mask_encodings(tmp_path: Path) -> None:
    mask = np.zeros((2, 6, 6), np.uint8)
    mask[:, 2:4, 2:4] = 255
    tifffile.imwrite(tmp_path / "m255.tif", mask)
    out = read_mask(tmp_path / "m255.tif")
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
    np.testing.assert_array_equal(out, mask // 255)
    # a colour mask with foreground only in red still counts
    colour = np.zeros((6, 6, 3), np.uint8)
    colour[1:3, 1:3, 0] = 1
    iio.imwrite(tmp_path / "red.png", colour)
    assert read_mask(tmp_path / "red.png").sum() == 4


def test_mask_to_uint8() -> None:
    out = mask_to_uint8(np.array([[0, 1], [3, 0]]))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 255], [255, 0]])


# --------------------------------------------------------------------------- read errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"nothere\.tif.*no such file"):
        read_stack(tmp_path / "nothere.tif")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    with pytest.raises(UserInputError, match=r"empty\.tif.*empty"):
        read_stack(path)


def test_non_tiff_bytes_with_tif_extension(tmp_path: Path) -> None:
    path = tmp_path / "fake.tif"
    path.write_bytes(b"this is just some text, not an image\n" * 10)
    with pytest.raises(UserInputError, match=r"fake\.tif.*not a readable TIFF") as info:
        read_stack(path)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_not_an_image(tmp_path: Path) -> None:
    for name in ("fake.png", "notes.dat"):
        path = tmp_path / name
        path.write_bytes(b"hello world")
        with pytest.raises(UserInputError, match=name) as info:
            read_stack(path)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "options",
    [{}, {"imagej": True}, {"compression": "zlib"}, {"bigtiff": True}, {"ome": True}],
    ids=["plain", "imagej", "zlib", "bigtiff", "ome"],
)
def test_truncated_tiff(tmp_path: Path, options: dict) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, ramp((5, 64, 64)), **options)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError, match=r"cut\.tif: .*(truncated|corrupted)"):
        read_stack(path)
    with pytest.raises(UserInputError, match=r"cut\.tif: .*(truncated|corrupted)"):
        open_lazy(path)


def test_permission_denied_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.tif"
    tifffile.imwrite(path, STACK, photometric="minisblack")
    monkeypatch.setattr(files.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(UserInputError, match=r"locked\.tif.*permission denied"):
        read_stack(path)


def test_permission_denied(tmp_path: Path) -> None:
    """A real refusal, also for root: the reader runs in a process that obeys file
    permissions (tests/fs_faults.py drops root's DAC capabilities)."""
    from .fs_faults import read_without_privilege

    path = tmp_path / "locked.tif"
    tifffile.imwrite(path, STACK, photometric="minisblack")
    path.chmod(0)
    code = (
        "from napari_unet.engine.errors import UserInputError\n"
        "from napari_unet.engine.io.stacks import read_stack\n"
        f"try:\n    read_stack({str(path)!r})\nexcept UserInputError as exc:\n    print(exc)\n"
        "else:\n    print('READ')\n"
        f"print(open({str(path)!r}, 'rb').read(1))\n"
    )
    proc = read_without_privilege(code)
    message = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    assert "locked.tif" in message and "permission" in message, (proc.stdout, proc.stderr)
    assert "PermissionError" in proc.stderr  # the file really is unreadable to that process


# ------------------------------------------------------------------ check_image / check_pair


@pytest.mark.parametrize(
    ("arr", "words"),
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros(7), "at least 2D"),
        (np.zeros((2, 2, 2, 2, 2)), "at most"),
        (np.zeros((3, 4), np.complex64), "complex"),
        (np.array([["a", "b"]]), "numeric"),
        (np.empty((2, 2), object), "numeric"),
        (np.full((2, 3, 3), np.nan), "only NaN"),
    ],
    ids=["zero-size", "1d", "5d", "complex", "str", "object", "all-nan"],
)
def test_check_image_rejects(arr: np.ndarray, words: str) -> None:
    with pytest.raises(UserInputError, match=f"layer x.*{words}"):
        check_image(arr, "layer x")


@pytest.mark.parametrize(
    "arr",
    [
        np.array([[np.nan, 1.0], [2.0, 3.0]]),
        np.full((3, 5, 5), 7, np.uint8),
        np.zeros((1, 1)),
        np.zeros((3, 17, 33), np.int32),
        np.zeros((1, 1, 1, 4, 4)),
        np.zeros((2, 4, 4, 3), np.uint8),
        np.zeros((4, 4), bool),
    ],
    ids=["some-nan", "constant", "tiny", "odd", "singletons", "rgb-stack", "bool"],
)
def test_check_image_accepts(arr: np.ndarray) -> None:
    check_image(arr, "ok")


def test_read_refuses_all_nan_file(tmp_path: Path) -> None:
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.full((2, 4, 4), np.nan, np.float32), photometric="minisblack")
    with pytest.raises(UserInputError, match=r"nan\.tif.*only NaN"):
        read_stack(path)


def test_check_pair() -> None:
    check_pair(np.zeros((3, 4, 5)), np.zeros((3, 4, 5), np.uint8))
    check_pair(np.zeros((3, 4, 5)), np.zeros((3, 4, 5), np.uint8), "a", "b")  # empty mask ok
    with pytest.raises(UserInputError, match=r"masks.*3 slices.*images.*5"):
        check_pair(np.zeros((5, 4, 4)), np.zeros((3, 4, 4)))
    with pytest.raises(UserInputError, match=r"m\.tif.*4x6.*i\.tif.*4x5"):
        check_pair(np.zeros((2, 4, 5)), np.zeros((2, 4, 6)), "i.tif", "m.tif")
    with pytest.raises(UserInputError, match=r"\(4, 5\)"):
        check_pair(np.zeros((4, 5)), np.zeros((1, 4, 5)))


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "int32", "float64"])
def test_write_tiff_round_trip(tmp_path: Path, dtype: str) -> None:
    data = ramp((3, 10, 11), dtype)
    path = write_tiff(tmp_path / "out.tif", data)
    np.testing.assert_array_equal(read_stack(path), data)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej == (dtype in ("uint8", "uint16", "float32"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]  # no temporary left


def test_write_tiff_compressed_2d_and_bool(tmp_path: Path) -> None:
    write_tiff(tmp_path / "c.tif", STACK, compression="zlib")
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    np.testing.assert_array_equal(read_stack(tmp_path / "c.tif"), STACK)
    write_tiff(tmp_path / "flat.tif", STACK[0])
    assert read_stack(tmp_path / "flat.tif").shape == (1, 20, 24)
    write_tiff(tmp_path / "b.tif", STACK > 100)
    np.testing.assert_array_equal(read_mask(tmp_path / "b.tif"), STACK > 100)


def test_write_tiff_bigtiff_above_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers, "BIGTIFF_THRESHOLD", 100)
    write_tiff(tmp_path / "big.tif", STACK)
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff
    np.testing.assert_array_equal(read_stack(tmp_path / "big.tif"), STACK)


def test_write_tiff_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    write_tiff(path, STACK)
    write_tiff(path, STACK[:1])  # overwrite=True by default
    assert read_stack(path).shape == (1, 20, 24)
    with pytest.raises(UserInputError, match=r"already exists"):
        write_tiff(path, STACK, overwrite=False)
    assert read_stack(path).shape == (1, 20, 24)


def test_write_tiff_failure_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    write_tiff(path, STACK)
    with pytest.raises(UserInputError, match=r"x\.tif"):
        write_tiff(path, STACK, compression="no-such-codec")
    np.testing.assert_array_equal(read_stack(path), STACK)
    assert [p.name for p in tmp_path.iterdir()] == ["x.tif"]


def test_write_png_slices_round_trip(tmp_path: Path) -> None:
    data = ramp((12, 5, 6), np.uint8)
    folder = write_png_slices(tmp_path / "pngs", data)
    names = sorted(p.name for p in folder.iterdir())
    assert names[0] == "slice0000.png" and names[-1] == "slice0011.png" and len(names) == 12
    np.testing.assert_array_equal(read_stack(folder), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pngs"]  # no temporary left


def test_write_png_slices_overwrite_and_dtypes(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    write_png_slices(folder, ramp((2, 5, 6), np.uint16), prefix="z")
    assert read_stack(folder).dtype == np.uint16
    with pytest.raises(UserInputError, match=r"already exists"):
        write_png_slices(folder, ramp((3, 5, 6)))
    write_png_slices(folder, ramp((3, 5, 6)) > 50, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == [f"slice000{i}.png" for i in range(3)]
    assert set(np.unique(read_stack(folder))) <= {0, 255}
    with pytest.raises(UserInputError, match=r"uint8 or uint16"):
        write_png_slices(tmp_path / "f", np.zeros((2, 4, 4), np.float32))
