"""Cityscapes with depth from disparity: the conversion, camera files, and the split loader.

The rules are cityscapesScripts' (README, "disparity"): d = (p - 1) / 256 pixels for p > 0,
p = 0 invalid, depth = baseline * fx / d; the camera values are those of a real Cityscapes
camera file (``camera/train/aachen/aachen_000000_000019_camera.json``). The split layout is the
one Detectron2's ``load_cityscapes_panoptic`` reads (``createPanopticImgs`` output: segment id =
R + 256 G + 65536 B, categories as Cityscapes label ids).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from panoptic_depthlab.data.annotations import read_depth, read_panoptic
from panoptic_depthlab.data.datasets.cityscapes_depth import (
    cityscapes_depth_metadata,
    load_cityscapes_depth,
)
from panoptic_depthlab.data.disparity import CameraError, disparity_to_depth, read_camera
from panoptic_depthlab.data.errors import DatasetError

AACHEN_CAMERA = {
    "extrinsic": {
        "baseline": 0.209313,
        "pitch": 0.038,
        "roll": 0.0,
        "x": 1.7,
        "y": 0.1,
        "yaw": -0.0195,
        "z": 1.22,
    },
    "intrinsic": {"fx": 2262.52, "fy": 2265.3017905988554, "u0": 1096.98, "v0": 513.137},
}


def test_disparity_to_depth_by_hand():
    samples = np.array([[0, 1, 257, 2561, 65535]], np.uint16)
    depth = disparity_to_depth(samples, 0.209313, 2262.52)
    assert depth.dtype == np.float32
    assert depth[0, 0] == 0  # p = 0: no disparity
    assert depth[0, 1] == 0  # p = 1: d = 0, a point at infinity: no depth, no division by zero
    # p = 257: d = 1 px, depth = baseline * fx = 0.209313 * 2262.52 = 473.57484876 m
    assert depth[0, 2] == pytest.approx(473.57484876, abs=1e-4)
    # p = 2561: d = 10 px (a typical car distance): 47.357484876 m
    assert depth[0, 3] == pytest.approx(47.357484876, abs=1e-5)
    # p = 65535: d = 255.99609375 px: 1.84993... m
    assert depth[0, 4] == pytest.approx(473.57484876 / (65534 / 256), rel=1e-6)


def test_read_camera_of_a_real_cityscapes_file(tmp_path):
    path = tmp_path / "aachen_000000_000019_camera.json"
    path.write_text(json.dumps(AACHEN_CAMERA))
    assert read_camera(str(path)) == {"baseline": 0.209313, "fx": 2262.52}


@pytest.mark.parametrize(
    "content, message",
    [
        ({"intrinsic": {"fx": 2262.52}}, "no number at extrinsic.baseline"),
        ({"extrinsic": {"baseline": 0.2}, "intrinsic": {}}, "no number at intrinsic.fx"),
        ({"extrinsic": {"baseline": 0.2}, "intrinsic": {"fx": 0}}, "intrinsic.fx = 0"),
        ({"extrinsic": {"baseline": "0.2"}, "intrinsic": {"fx": 1}}, "extrinsic.baseline"),
        ("not json {", "not a readable JSON camera file"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_camera_files(tmp_path, content, message):
    path = tmp_path / "x_camera.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(CameraError, match=message) as error:
        read_camera(str(path))
    assert str(path) in str(error.value)
    with pytest.raises(CameraError, match="missing"):
        read_camera(str(tmp_path / "none.json"))


ROAD, CAR_LABEL_ID, CAR = 7, 26, 13  # Cityscapes label ids and the car's train id


def _write_split(root: Path, names: list[str], size=(6, 8)) -> dict[str, np.ndarray]:
    """A Cityscapes split as createPanopticImgs leaves it, with disparity and camera files:
    road on the top rows, two cars and an unlabelled corner. Returns each image's disparity."""
    h, w = size
    annotations, disparities = [], {}
    for index, name in enumerate(names):
        city = name.split("_")[0]
        for folder in ("leftImg8bit", "gtFine", "disparity", "camera"):
            (root / folder / "val" / city).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "leftImg8bit" / "val" / city / f"{name}_leftImg8bit.png"),
                    np.full((h, w, 3), 100 + index, np.uint8))  # fmt: skip
        ids = np.full((h, w), ROAD, np.int32)
        ids[3:, :4] = CAR_LABEL_ID * 1000 + 1
        ids[3:, 4:] = CAR_LABEL_ID * 1000 + 2
        ids[0, 0] = 0  # unlabelled
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
        pan_dir = root / "gtFine" / "cityscapes_panoptic_val"
        pan_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(pan_dir / f"{name}_gtFine_panoptic.png"), rgb[..., ::-1])
        train_ids = np.where(ids == ROAD, 0, np.where(ids == 0, 255, CAR)).astype(np.uint8)
        cv2.imwrite(
            str(root / "gtFine" / "val" / city / f"{name}_gtFine_labelTrainIds.png"), train_ids
        )
        segments = [
            {"id": int(i), "category_id": int(i // 1000 if i >= 1000 else i), "iscrowd": 0}
            for i in (ROAD, CAR_LABEL_ID * 1000 + 1, CAR_LABEL_ID * 1000 + 2)
        ]
        annotations.append(
            {
                "image_id": name,
                "file_name": f"{name}_gtFine_panoptic.png",
                "segments_info": segments,
            }
        )
        disparity = (np.arange(h * w).reshape(h, w) * 100).astype(np.uint16)  # 0, 100, 200, ...
        disparity[:, 0] = 0
        cv2.imwrite(str(root / "disparity" / "val" / city / f"{name}_disparity.png"), disparity)
        (root / "camera" / "val" / city / f"{name}_camera.json").write_text(
            json.dumps(AACHEN_CAMERA)
        )
        disparities[name] = disparity
    (root / "gtFine" / "cityscapes_panoptic_val.json").write_text(
        json.dumps({"annotations": annotations, "images": [], "categories": []})
    )
    return disparities


NAMES = ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"]


def test_load_and_read_a_split(tmp_path):
    disparities = _write_split(tmp_path, NAMES)
    records = load_cityscapes_depth(str(tmp_path), "val")
    assert [r["image_id"] for r in records] == NAMES
    assert [r["sequence_id"] for r in records] == [0, 1, 2]
    assert all(r["frame_index"] == 0 and "next_frame" not in r for r in records)
    meta = cityscapes_depth_metadata()
    record = records[2]
    assert (record["height"], record["width"]) == (6, 8)
    assert record["camera"] == {"baseline": 0.209313, "fx": 2262.52}
    assert record["disparity_file_name"].endswith(
        "disparity/val/bochum/" + NAMES[2] + "_disparity.png"
    )
    panoptic = read_panoptic(record, meta, (6, 8))
    expected = np.full((6, 8), 0, np.int32)  # road: train id 0, instance 0
    expected[3:, :4] = CAR * 1000 + 1
    expected[3:, 4:] = CAR * 1000 + 2
    expected[0, 0] = 255 * 1000  # unlabelled -> ignore_label * label_divisor
    np.testing.assert_array_equal(panoptic, expected)
    depth = read_depth(record, meta, (6, 8))
    np.testing.assert_array_equal(
        depth, disparity_to_depth(disparities[NAMES[2]], 0.209313, 2262.52)
    )
    assert (depth[:, 0] == 0).all() and (depth[:, 1:] > 0).all()


def test_missing_disparity_files_are_counted(tmp_path):
    _write_split(tmp_path, NAMES)
    for name in NAMES[1:]:
        city = name.split("_")[0]
        (tmp_path / "disparity" / "val" / city / f"{name}_disparity.png").unlink()
    with pytest.raises(DatasetError, match="2 of the 3 images .* have no disparity file"):
        load_cityscapes_depth(str(tmp_path), "val")


def test_missing_camera_and_8bit_disparity(tmp_path):
    _write_split(tmp_path, NAMES)
    camera = tmp_path / "camera" / "val" / "aachen" / f"{NAMES[0]}_camera.json"
    camera.unlink()
    with pytest.raises(DatasetError, match="1 of the 3 images .* have no camera file"):
        load_cityscapes_depth(str(tmp_path), "val")
    camera.write_text(json.dumps(AACHEN_CAMERA))
    disparity = tmp_path / "disparity" / "val" / "bochum" / f"{NAMES[2]}_disparity.png"
    cv2.imwrite(str(disparity), np.zeros((6, 8), np.uint8))
    with pytest.raises(DatasetError, match="PNG mode L; expected a 16-bit"):
        load_cityscapes_depth(str(tmp_path), "val")


def test_missing_panoptic_json_names_the_tool(tmp_path):
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    with pytest.raises(DatasetError, match="createPanopticImgs"):
        load_cityscapes_depth(str(tmp_path), "val")


def test_synthetic_cityscapes_reads_as_the_same_scene_as_cityscapes_dvps(tmp_path):
    """The generator's Cityscapes layout, through the registered loader and our readers, gives
    the Cityscapes-DVPS scene of the same arguments: classes, instance partition, depth."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from panoptic_depthlab.data.datasets import load_dvps_split, register_cityscapes_depth
    from panoptic_depthlab.data.datasets.metadata import dvps_metadata
    from panoptic_depthlab.data.synthetic import generate_synthetic_dvps

    args = ("val", 2, 2, 64, 128, 5)
    generate_synthetic_dvps(str(tmp_path / "cs"), "cityscapes", *args)
    generate_synthetic_dvps(str(tmp_path / "dvps"), "cityscapes_dvps", *args)
    register_cityscapes_depth("test_synthetic_cityscapes_depth_val", str(tmp_path / "cs"), "val")
    records = DatasetCatalog.get("test_synthetic_cityscapes_depth_val")
    meta = MetadataCatalog.get("test_synthetic_cityscapes_depth_val").as_dict()
    dvps = load_dvps_split(str(tmp_path / "dvps"), "val", "cityscapes_dvps")
    dvps_meta = dvps_metadata("cityscapes_dvps")
    assert len(records) == len(dvps) == 4
    for record, reference in zip(records, dvps, strict=True):
        ours = read_panoptic(record, meta)
        theirs = read_panoptic(reference, dvps_meta)
        np.testing.assert_array_equal(ours // 1000, theirs // 1000)
        pairs = np.unique(np.stack([ours.ravel(), theirs.ravel()]), axis=1)
        assert len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]  # same partition
        depth, expected = read_depth(record, meta), read_depth(reference, dvps_meta)
        valid = depth > 0
        assert valid.mean() > 0.5
        np.testing.assert_allclose(depth[valid], expected[valid], rtol=0.01)


def test_table_lookup_equals_the_formula_for_every_16_bit_value():
    """uint16 samples are converted through a per-camera table: the same float32 values."""
    samples = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    looked_up = disparity_to_depth(samples, 0.209313, 2262.52)
    computed = disparity_to_depth(samples.astype(np.int32), 0.209313, 2262.52)
    assert looked_up.dtype == computed.dtype == np.float32
    np.testing.assert_array_equal(looked_up, computed)
