"""Official DVPS prediction formats and raw ground truth, on real synthetic files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from panoptic_depthlab.data.annotations import read_depth, read_panoptic
from panoptic_depthlab.data.datasets import dvps_metadata, load_dvps_split
from panoptic_depthlab.evaluation.formats import (
    depth_file_name,
    image_id_of,
    prediction_file_names,
    quantize_depth,
    read_ground_truth,
    read_prediction,
    resize_depth_align_corners,
    write_prediction,
)

from .stq_reference import resize_bilinear_align_corners

CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"
CITY_IMAGE = "000000_000000_munster_000105_000004_leftImg8bit.png"
KITTI_IMAGE = "000008_000123_leftImg8bit.png"
IMAGES = {CITYSCAPES: CITY_IMAGE, SEMKITTI: KITTI_IMAGE}
META = {fmt: dvps_metadata(fmt) for fmt in (CITYSCAPES, SEMKITTI)}
H, W = 24, 40


def _random_prediction(fmt: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes with void (255) and out-of-range (40) ids, instances up to the format's limit,
    depth in meters from below 0 to beyond the 16-bit range."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 19, (H, W))
    classes[0, :5] = 255
    classes[1, :5] = 40
    classes[2, :5] = 19
    limit = 255 if fmt == CITYSCAPES else 65535
    instances = rng.integers(0, limit + 1, (H, W))
    instances[3, 0] = limit
    depth = rng.uniform(0.0, 90.0, (H, W))
    depth[4, :3] = (-1.0, 300.0, np.inf)
    return classes, instances, depth


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_prediction_file_names():
    assert prediction_file_names(CITY_IMAGE, META[CITYSCAPES]) == [CITY_IMAGE]
    assert prediction_file_names("/a/b/" + KITTI_IMAGE, META[SEMKITTI]) == [
        "000008_000123_cat.png",
        "000008_000123_ins.png",
    ]
    assert depth_file_name("/x/" + CITY_IMAGE) == CITY_IMAGE
    assert image_id_of(KITTI_IMAGE) == "000008_000123"
    with pytest.raises(ValueError, match="_leftImg8bit.png"):
        image_id_of("000008_000123.png")
    with pytest.raises(ValueError, match="Unknown DVPS dataset format 'kitti'"):
        dvps_metadata("kitti")


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_write_read_round_trip(tmp_path, fmt):
    classes, instances, depth = _random_prediction(fmt)
    pred_dir, depth_dir = tmp_path / "pan", tmp_path / "depth"
    written = write_prediction(
        str(pred_dir), str(depth_dir), "/data/" + IMAGES[fmt], META[fmt], classes, instances, depth
    )
    names = prediction_file_names(IMAGES[fmt], META[fmt])
    assert written == [str(pred_dir / n) for n in names] + [str(depth_dir / IMAGES[fmt])]
    assert _files(pred_dir) == sorted(names) and _files(depth_dir) == [IMAGES[fmt]]

    got_class, got_instance, got_depth = read_prediction(
        str(pred_dir), str(depth_dir), IMAGES[fmt], META[fmt]
    )
    expected_class = np.where(classes >= 19, 19, classes)
    assert got_class.dtype == np.int32 and np.array_equal(got_class, expected_class)
    assert got_instance.dtype == np.int32 and np.array_equal(got_instance, instances)
    assert got_depth.dtype == np.float64 and np.array_equal(got_depth, quantize_depth(depth))
    assert got_depth[4, :3].tolist() == [0.0, 65535 / 256, 65535 / 256]

    # The files as any PNG reader sees them.
    stored_depth = np.array(Image.open(depth_dir / IMAGES[fmt]))
    assert stored_depth.dtype == np.uint16
    assert np.array_equal(stored_depth, np.round(got_depth * 256).astype(np.uint16))
    if fmt == CITYSCAPES:
        with Image.open(pred_dir / CITY_IMAGE) as im:
            assert im.mode == "RGB"
            rgb = np.array(im)
        assert np.array_equal(rgb[..., 0], expected_class)  # red = class
        assert np.array_equal(rgb[..., 1], instances)  # green = instance
        assert not rgb[..., 2].any()
    else:
        cat = cv2.imread(str(pred_dir / names[0]), cv2.IMREAD_UNCHANGED)
        ins = cv2.imread(str(pred_dir / names[1]), cv2.IMREAD_UNCHANGED)
        assert cat.dtype == np.uint8 and np.array_equal(cat, expected_class)
        assert ins.dtype == np.uint16 and np.array_equal(ins, instances)

    # Without a depth directory nothing is written or read for depth.
    write_prediction(str(tmp_path / "p2"), None, IMAGES[fmt], META[fmt], classes, instances, None)
    assert read_prediction(str(tmp_path / "p2"), None, IMAGES[fmt], META[fmt])[2] is None


@pytest.mark.parametrize(("fmt", "official_top"), [(CITYSCAPES, 255), (SEMKITTI, 65535)])
def test_wide_files_hold_instance_ids_beyond_the_official_format(tmp_path, fmt, official_top):
    """Per frame: the official file up to the format's largest id, the wide one above, each
    read back exactly, 2**32 - 1 included."""
    classes, _, depth = _random_prediction(fmt)
    expected_class = np.where(classes >= 19, 19, classes)
    names = prediction_file_names(IMAGES[fmt], META[fmt])
    rng = np.random.default_rng(1)
    for top, wide in ((official_top, False), (official_top + 1, True), (2**32 - 1, True)):
        instances = rng.integers(0, top + 1, (H, W))
        instances[0, 0] = top
        pred_dir = tmp_path / str(top)
        write_prediction(
            str(pred_dir),
            str(tmp_path / f"d{top}"),
            IMAGES[fmt],
            META[fmt],
            classes,
            instances,
            depth,
        )
        got_class, got_instance, _ = read_prediction(
            str(pred_dir), str(tmp_path / f"d{top}"), IMAGES[fmt], META[fmt]
        )
        assert np.array_equal(got_class, expected_class)
        assert got_instance.dtype == (np.int64 if wide else np.int32)
        assert np.array_equal(got_instance, instances)
        # The files as stored: 16-bit RGB, green = low 16 bits, blue = high 16 bits.
        stored = cv2.imread(str(pred_dir / names[-1]), cv2.IMREAD_UNCHANGED)
        if not wide:
            assert stored.dtype == (np.uint8 if fmt == CITYSCAPES else np.uint16)
            continue
        assert stored.dtype == np.uint16 and stored.shape == (H, W, 3)
        assert np.array_equal(stored[..., 1], instances & 0xFFFF)
        assert np.array_equal(stored[..., 0], instances >> 16)
        red = expected_class if fmt == CITYSCAPES else np.zeros_like(classes)
        assert np.array_equal(stored[..., 2], red)
        if fmt == SEMKITTI:
            cat = cv2.imread(str(pred_dir / names[0]), cv2.IMREAD_UNCHANGED)
            assert cat.dtype == np.uint8 and np.array_equal(cat, expected_class)


def test_a_wide_instance_file_with_a_red_channel_is_rejected(tmp_path):
    classes, instances, depth = _random_prediction(SEMKITTI)
    instances[0, 0] = 70000
    write_prediction(str(tmp_path), None, KITTI_IMAGE, META[SEMKITTI], classes, instances, None)
    ins = tmp_path / "000008_000123_ins.png"
    stored = cv2.imread(str(ins), cv2.IMREAD_UNCHANGED)
    stored[3, 4, 2] = 7
    cv2.imwrite(str(ins), stored)
    with pytest.raises(ValueError, match=rf"^{ins}: a 16-bit RGB instance prediction whose red "):
        read_prediction(str(tmp_path), None, KITTI_IMAGE, META[SEMKITTI])
    cv2.imwrite(str(ins), stored[..., :2].copy().view(np.uint8))  # 8-bit, 4 channels
    with pytest.raises(ValueError, match=r"channel\(s\); expected a 16-bit instance prediction"):
        read_prediction(str(tmp_path), None, KITTI_IMAGE, META[SEMKITTI])


def test_quantize_depth():
    depth = np.array([[1.0, 3.14159, 0.0, 1000.0], [-2.0, 0.5 / 256, 1.5 / 256, 87.99]])
    q = quantize_depth(depth.astype(np.float32))
    assert q.dtype == np.float64 and q.shape == depth.shape
    expected = np.array([[256, 804, 0, 65535], [0, 0, 2, 22525]]) / 256  # round half to even
    assert np.array_equal(q, expected)
    assert np.array_equal(quantize_depth(q), q)  # idempotent
    with pytest.raises(ValueError, match="1 NaN pixels"):
        quantize_depth(np.array([[1.0, np.nan]]))


@pytest.mark.parametrize(
    ("fmt", "change", "message"),
    [
        (CITYSCAPES, {"instances": 2**32}, r"pred_instance holds 4294967296; .* 0..4294967295"),
        (SEMKITTI, {"instances": 2**40}, r"store instance ids 0..4294967295 \(2\*\*32 - 1\)"),
        (SEMKITTI, {"instances": -1}, "pred_instance holds -1"),
        (CITYSCAPES, {"classes": -3}, "pred_class holds -3"),
        (CITYSCAPES, {"shape": True}, "depth_m has shape"),
        (SEMKITTI, {"nan": True}, "depth has 1 NaN pixels"),
    ],
)
def test_write_prediction_rejects(tmp_path, fmt, change, message):
    classes, instances, depth = _random_prediction(fmt)
    if "instances" in change:
        instances[5, 5] = change["instances"]
    if "classes" in change:
        classes[5, 5] = change["classes"]
    if "shape" in change:
        depth = depth[:, :-1]
    if "nan" in change:
        depth[7, 7] = np.nan
    with pytest.raises(ValueError, match=message):
        write_prediction(
            str(tmp_path / "p"),
            str(tmp_path / "d"),
            IMAGES[fmt],
            META[fmt],
            classes,
            instances,
            depth,
        )
    for directory in ("p", "d"):  # nothing written, not even part of the frame
        assert not (tmp_path / directory).exists() or not os.listdir(tmp_path / directory)


def test_cityscapes_needs_two_directories(tmp_path):
    classes, instances, depth = _random_prediction(CITYSCAPES)
    with pytest.raises(ValueError, match="two different directories"):
        write_prediction(
            str(tmp_path), str(tmp_path), CITY_IMAGE, META[CITYSCAPES], classes, instances, depth
        )
    # SemKITTI-DVPS names do not collide: one directory may hold both.
    write_prediction(
        str(tmp_path), str(tmp_path), KITTI_IMAGE, META[SEMKITTI], classes, instances, depth
    )
    assert read_prediction(str(tmp_path), str(tmp_path), KITTI_IMAGE, META[SEMKITTI])[2] is not None


def test_read_prediction_errors(tmp_path):
    pan, dep = tmp_path / "pan", tmp_path / "dep"
    classes, instances, depth = _random_prediction(CITYSCAPES)
    write_prediction(str(pan), str(dep), CITY_IMAGE, META[CITYSCAPES], classes, instances, depth)

    def read() -> None:
        read_prediction(str(pan), str(dep), CITY_IMAGE, META[CITYSCAPES])

    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 25  # class 25 > 19
    Image.fromarray(rgb).save(pan / CITY_IMAGE)
    with pytest.raises(ValueError, match=r"predicted class id 25 \(960 pixels above 19\)"):
        read()
    Image.fromarray(rgb[..., 1]).save(pan / CITY_IMAGE)  # grayscale
    with pytest.raises(ValueError, match=r"1 channel\(s\); expected an 8-bit RGB"):
        read()
    (pan / CITY_IMAGE).write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable PNG"):
        read()
    rgb[..., 0] = 3
    Image.fromarray(rgb[:, :-1]).save(pan / CITY_IMAGE)  # a valid prediction, narrower
    with pytest.raises(ValueError, match=r"size \(H, W\) = \(24, 40\) differs"):
        read()
    os.remove(pan / CITY_IMAGE)
    with pytest.raises(FileNotFoundError, match="missing"):
        read()


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_read_ground_truth(dvps_roots, fmt):
    meta = META[fmt]
    records = load_dvps_split(str(dvps_roots[fmt]), "val", fmt)
    seen_void = False
    for record in records:
        gt_class, gt_instance, gt_depth = read_ground_truth(record, meta)
        assert gt_class.dtype == gt_instance.dtype == np.int32
        assert gt_depth.dtype == np.float64
        assert gt_class.shape == (record["height"], record["width"])
        if fmt == CITYSCAPES:
            raw = cv2.imread(record["panoptic_file_name"], cv2.IMREAD_UNCHANGED).astype(int)
            raw_class, raw_instance = raw // 1000, raw % 1000
        else:
            raw_class = cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
            raw_instance = cv2.imread(record["instance_file_name"], cv2.IMREAD_UNCHANGED)
        void = raw_class == meta["label_void_id"]
        seen_void |= bool(void.any())
        assert np.array_equal(gt_class, np.where(void, 255, raw_class))
        assert np.array_equal(gt_instance, raw_instance)  # void keeps its instance id
        # Labelled pixels agree with the training-side reader.
        panoptic = read_panoptic(record, meta)
        labelled = ~void
        assert np.array_equal(panoptic[labelled] // meta["label_divisor"], gt_class[labelled])
        assert np.array_equal(panoptic[labelled] % meta["label_divisor"], gt_instance[labelled])
        raw_depth = cv2.imread(record["depth_file_name"], cv2.IMREAD_UNCHANGED)
        assert np.array_equal(gt_depth, raw_depth.astype(np.float64) / 256)
        assert np.allclose(gt_depth, read_depth(record, meta))
    assert seen_void


def test_read_ground_truth_rejects_unknown_class(dvps_copy):
    root = dvps_copy(CITYSCAPES)
    meta = META[CITYSCAPES]
    record = load_dvps_split(str(root), "val", CITYSCAPES)[0]
    raw = cv2.imread(record["panoptic_file_name"], cv2.IMREAD_UNCHANGED)
    raw[0, :4] = 25 * 1000
    cv2.imwrite(record["panoptic_file_name"], raw)
    with pytest.raises(ValueError, match="class id 25 on 4 pixels"):
        read_ground_truth(record, meta)


def test_resize_depth_align_corners_by_hand():
    # Corners aligned: output rows and columns sample the input at 0, 1/2, 1 -> plain averages.
    depth = np.array([[0.0, 2.0], [4.0, 6.0]])
    expected = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6]], np.float32)
    got = resize_depth_align_corners(depth, 3, 3)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert np.array_equal(resize_depth_align_corners(expected, 3, 3), expected)  # same size


@pytest.mark.parametrize(
    ("src", "dst"), [((7, 11), (16, 40)), ((40, 64), (17, 23)), ((5, 9), (1, 4))]
)
def test_resize_depth_align_corners_equals_the_official_arithmetic(src, dst):
    # The oracle (stq_reference.py) spells out TensorFlow 1's resize_bilinear(align_corners=True),
    # which the official SemKITTI-DVPS eval_dstq.py applies to depth predictions, pixel by pixel
    # in float32; 16-bit PNG values, as the script reads them.
    rng = np.random.default_rng(sum(src) + sum(dst))
    raw = rng.integers(0, 65536, src).astype(np.float32)
    expected = resize_bilinear_align_corners(raw, *dst)
    assert np.array_equal(resize_depth_align_corners(raw, *dst), expected)
    # Meters (PNG / 256) give the same values / 256 exactly.
    assert np.array_equal(resize_depth_align_corners(raw / 256, *dst), expected / 256)
