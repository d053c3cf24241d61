"""Dataset layouts: train/images + train/masks + test/images roots, and microDL frames folders."""

import csv
import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine.config import Config, FramesConfig
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.io.frames import (
    META_COLUMNS,
    frame_name,
    load_frame_pair,
    parse_frame_name,
    read_frames_meta,
    select_frames,
    write_frames_meta,
)
from napari_unet.engine.training.train import prepare_data

from .conftest import tiny_config


def _value(c, z, t, p):
    """A pixel value that identifies the frame."""
    return 1 + c * 64 + z * 16 + t * 4 + p


@pytest.fixture
def frames_folder(tmp_path):
    """Channels 0-1 images, channel 2 masks; slices 0-2, times 0-1, positions 0-1; 16x16 PNGs."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for c in range(3):
        for z in range(3):
            for t in range(2):
                for p in range(2):
                    if c == 2:
                        plane = np.zeros((16, 16), np.uint8)
                        plane[: z + 1, : t + p + 1] = 255
                    else:
                        plane = np.full((16, 16), _value(c, z, t, p), np.uint8)
                    iio.imwrite(folder / frame_name(c, z, t, p), plane)
    (folder / "notes.txt").write_text("not a frame")
    return folder


def test_names():
    assert frame_name(1, 2, 3, 4) == "im_c001_z002_t003_p004.png"
    f = parse_frame_name("im_c012_z000_t001_p100.tif")
    assert (f.channel, f.slice, f.time, f.position) == (12, 0, 1, 100)
    assert parse_frame_name("img_c1_z2.png") is None


def test_frames_meta_command_writes_the_csv(frames_folder, capsys):
    assert main(["frames-meta", str(frames_folder), "--in-folder"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 36 and out["frames_meta"] == str(frames_folder / "frames_meta.csv")
    rows = list(csv.DictReader((frames_folder / "frames_meta.csv").open()))
    assert tuple(rows[0]) == META_COLUMNS and len(rows) == 36
    row = next(r for r in rows if r["file_name"] == "im_c001_z002_t001_p000.png")
    assert (row["channel_idx"], row["slice_idx"], row["time_idx"], row["pos_idx"]) == (
        "1",
        "2",
        "1",
        "0",
    )
    assert main(["frames-meta", str(frames_folder / "notes.txt")]) == 2


def test_selection_picks_the_right_files(frames_folder):
    write_frames_meta(frames_folder)
    frames = read_frames_meta(frames_folder)
    chosen = select_frames(frames, channels=[1], slices=[0, 2], times=[1], positions=[0, 1])
    assert [f.file_name for f in chosen] == [
        "im_c001_z000_t001_p000.png",
        "im_c001_z002_t001_p000.png",
        "im_c001_z000_t001_p001.png",
        "im_c001_z002_t001_p001.png",
    ]
    config = FramesConfig(channels=[0, 1], slices=[1], times=[0], positions=[1], mask_channel=2)
    images, masks, used = load_frame_pair(frames_folder, config)
    assert [f.file_name for f in used] == [
        "im_c000_z001_t000_p001.png",
        "im_c001_z001_t000_p001.png",
    ]
    assert images[:, 0, 0].tolist() == [_value(0, 1, 0, 1), _value(1, 1, 0, 1)]
    # each image gets the mask frame of channel 2 at its slice, time and position
    expected = np.zeros((16, 16), np.uint8)
    expected[:2, :2] = 255
    np.testing.assert_array_equal(masks[0], expected)
    np.testing.assert_array_equal(masks[1], expected)


def test_frames_meta_is_authoritative_and_errors(frames_folder):
    # a frames_meta.csv listing only some frames restricts what is read
    (frames_folder / "frames_meta.csv").write_text(
        "channel_idx,slice_idx,time_idx,pos_idx,file_name,channel_name\n"
        "0,0,0,0,im_c000_z000_t000_p000.png,phase\n"
        "2,0,0,0,im_c002_z000_t000_p000.png,mask\n"
        "0,1,0,0,im_c000_z001_t000_p000.png,phase\n"
    )
    _, _, used = load_frame_pair(
        frames_folder, FramesConfig(channels=[0], mask_channel=None), need_masks=False
    )
    assert len(used) == 2
    with pytest.raises(UserInputError, match="no mask frame"):
        load_frame_pair(frames_folder, FramesConfig(channels=[0], mask_channel=2))
    with pytest.raises(UserInputError, match="no frames"):
        load_frame_pair(frames_folder, FramesConfig(channels=[5], mask_channel=2))
    with pytest.raises(UserInputError, match="mask_channel"):
        load_frame_pair(frames_folder, FramesConfig(channels=[0]))
    (frames_folder / "frames_meta.csv").write_text("channel_idx,file_name\n0,x.png\n")
    with pytest.raises(UserInputError, match="lacks"):
        read_frames_meta(frames_folder)


def test_config_frames_feed_training_data(frames_folder, tmp_path):
    write_frames_meta(frames_folder)
    config = Config.model_validate(
        {
            "data": {
                "frames": {
                    "folder": str(frames_folder),
                    "channels": [0],
                    "times": [0, 1],
                    "positions": [0],
                    "mask_channel": 2,
                },
                "val_fraction": 0.0,
            },
            "model": {"depth": 1},
            "train": {"patch_size": 16},
        }
    )
    prepared = prepare_data(config)
    assert prepared.train_images.shape == (6, 16, 16)  # 3 slices x 2 times x 1 position
    assert prepared.train_masks.sum() > 0


def _layout(root, size=48):
    images, masks = synthetic_em(slices=3, size=size, cells=8, seed=4)
    for split in ("train", "test"):
        (root / split / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir()
    for z in range(3):
        iio.imwrite(root / "train" / "images" / f"s{z}.png", images[z])
        iio.imwrite(root / "train" / "masks" / f"s{z}.png", masks[z] * 255)
    for z in range(2):
        iio.imwrite(root / "test" / "images" / f"t{z}.png", images[z])
    return images, masks


def test_dataset_root_in_config(tmp_path):
    _layout(tmp_path / "ds")
    config = tiny_config(tmp_path).with_overrides({"data.dataset": str(tmp_path / "ds")})
    prepared = prepare_data(config)
    assert prepared.train_images.shape[0] + prepared.val_images.shape[0] == 3
    assert prepared.train_images.shape[1:] == (48, 48)
    (tmp_path / "bad").mkdir()
    with pytest.raises(UserInputError, match="train/images"):
        prepare_data(config.with_overrides({"data.dataset": str(tmp_path / "bad")}))


def test_cli_train_and_predict_with_a_dataset_root(tmp_path, capsys):
    _layout(tmp_path / "ds")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {depth: 2, base_filters: 4}\n"
        "train: {epochs: 1, steps_per_epoch: 2, batch_size: 2, patch_size: 32,"
        " precision: float32, tensorboard: false, val_em_metrics: false}\n"
        "predict: {tile_size: 64, overlap: 8}\n"
    )
    model = tmp_path / "model"
    assert (
        main(["train", str(cfg), "--dataset", str(tmp_path / "ds"), "-o", str(model), "--quiet"])
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "pred.tif"
    assert main(["predict", str(model), str(tmp_path / "ds"), "-o", str(out), "--quiet"]) == 0
    assert tifffile.imread(out).shape == (2, 48, 48)  # the two test/images slices
