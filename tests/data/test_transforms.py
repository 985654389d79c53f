"""DVPS augmentations: scale steps, depth under resizing, padding values."""

from __future__ import annotations

import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import transforms as T

from panoptic_depthlab.config import add_panoptic_depthlab_config
from panoptic_depthlab.data.transforms import (
    DepthResizeTransform,
    RandomPadCrop,
    RandomScaleStep,
    build_dvps_augmentations,
)


def test_scale_steps_are_exact():
    assert RandomScaleStep(0.5, 2.0, 0.1).scales.tolist() == [
        0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0
    ]  # fmt: skip
    assert RandomScaleStep(1.0, 1.0, 0.1).scales.tolist() == [1.0]


def test_scale_draws_every_step():
    aug = RandomScaleStep(0.5, 2.0, 0.5)
    image = np.zeros((10, 20, 3), np.uint8)
    np.random.seed(0)
    sizes = {(t.new_h, t.new_w) for t in (aug.get_transform(image) for _ in range(200))}
    assert sizes == {(5, 10), (10, 20), (15, 30), (20, 40)}


def test_bad_scale_range():
    with pytest.raises(ValueError, match="INPUT.MIN_SCALE=2.0, INPUT.MAX_SCALE=1.0"):
        RandomScaleStep(2.0, 1.0, 0.1)


def test_depth_is_divided_by_the_scale():
    depth = np.array([[10.0, 20.0], [0.0, 40.0]], np.float32)
    up = DepthResizeTransform(2, 2, 4, 4).apply_depth(depth)
    assert up.tolist() == [[5, 5, 10, 10], [5, 5, 10, 10], [0, 0, 20, 20], [0, 0, 20, 20]]
    down = DepthResizeTransform(4, 4, 2, 2).apply_depth(up)
    assert down.tolist() == [[10, 20], [0, 40]]


def test_resize_keeps_label_ids_and_interpolates_images():
    labels = np.array([[13001, 255000], [0, 11002]], np.int32)
    t = DepthResizeTransform(2, 2, 4, 4)
    out = t.apply_segmentation(labels)
    assert out.dtype == np.int32 and set(np.unique(out)) == {0, 11002, 13001, 255000}
    image = np.zeros((2, 2, 3), np.uint8)
    image[:, 1] = 200
    assert 0 < t.apply_image(image)[0, 1:3, 0].min() < 200  # bilinear blends the columns


def test_pad_fills_mean_pixel_ignore_and_zero_depth():
    aug = RandomPadCrop((6, 5), pad_value=[10.4, 20.6, 30.0], seg_pad_value=255000)
    image = np.full((4, 3, 3), 7, np.uint8)
    t = aug.get_transform(image)  # the crop equals the padded size: no randomness
    out = t.apply_image(image)
    assert out.shape == (6, 5, 3)
    assert out[:4, :3].tolist() == image.tolist()
    assert out[5, 4].tolist() == [10, 21, 30] and out[0, 4].tolist() == [10, 21, 30]
    seg = t.apply_segmentation(np.zeros((4, 3), np.int32))
    assert seg[4:].tolist() == [[255000] * 5] * 2 and (seg[:4, 3:] == 255000).all()
    depth = t.apply_depth(np.ones((4, 3), np.float32))
    assert depth.sum() == 12 and depth[:4, :3].min() == 1


def test_crop_window_is_random_and_inside():
    aug = RandomPadCrop((4, 4), pad_value=[0, 0, 0], seg_pad_value=0)
    image = np.zeros((10, 12, 3), np.uint8)
    np.random.seed(1)
    corners = {(t.y0, t.x0) for t in (aug.get_transform(image) for _ in range(300))}
    assert len(corners) > 20
    assert all(0 <= y <= 6 and 0 <= x <= 8 for y, x in corners)


def test_build_augmentations_from_config():
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    augs = build_dvps_augmentations(cfg, seg_pad_value=255000)
    assert [type(a) for a in augs] == [RandomScaleStep, RandomPadCrop, T.RandomFlip]
    assert augs[1].crop_size == (512, 1024) and augs[1].pad_value == tuple(cfg.MODEL.PIXEL_MEAN)
    cfg.INPUT.RANDOM_FLIP = "vertical"
    with pytest.raises(ValueError, match="INPUT.RANDOM_FLIP='vertical'"):
        build_dvps_augmentations(cfg, seg_pad_value=255000)
