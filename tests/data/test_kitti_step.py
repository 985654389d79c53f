"""KITTI-STEP in DeepLab2's layout (``images/`` and ``panoptic_maps/``, R = class, G * 256 + B =
instance, tracks on person and car only, no depth): the loader, the label reader, the builtin
names, and the synthetic generator's ``kitti_step`` format, which must be the Cityscapes-DVPS
scene of the same arguments."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from PIL import Image

from panoptic_depthlab.data.annotations import read_depth, read_labels, read_panoptic
from panoptic_depthlab.data.datasets import (
    check_dvps_dataset,
    dvps_metadata,
    kitti_step_metadata,
    load_dvps_split,
    load_kitti_step,
    register_kitti_step,
)
from panoptic_depthlab.data.errors import DatasetError
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.evaluation.accumulator import DVPSAccumulator
from panoptic_depthlab.evaluation.dvpq import DVPSFrame
from panoptic_depthlab.evaluation.formats import read_ground_truth

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "tools" / "make_synthetic_dvps.py"
SPLIT, SEED, SEQS, FRAMES, HEIGHT, WIDTH = "val", 3, 2, 3, 128, 256
ARGS = (SPLIT, SEQS, FRAMES, HEIGHT, WIDTH, SEED)
PERSON, CAR = 11, 13
UNTRACKED_THINGS = (12, 14, 15, 16, 17, 18)  # rider, truck, bus, train, motorcycle, bicycle
VOID = 255
SPLITS = ("train", "val")


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im).astype(np.int64)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """The split in format ``kitti_step`` and, from the same arguments, in ``cityscapes_dvps``."""
    roots = {}
    for fmt in ("kitti_step", "cityscapes_dvps"):
        roots[fmt] = tmp_path_factory.mktemp(fmt)
        generate_synthetic_dvps(str(roots[fmt]), fmt, *ARGS)
    return roots


@pytest.fixture
def kitti_copy(written, tmp_path) -> Path:
    """A private, modifiable copy of the synthetic KITTI-STEP root."""
    dst = tmp_path / "kitti-step"
    shutil.copytree(written["kitti_step"], dst)
    return dst


# ------------------------------------------------------------------ metadata


def test_metadata_is_deeplab2_kitti_step_protocol():
    meta, cityscapes = kitti_step_metadata(), dvps_metadata("cityscapes_dvps")
    assert meta["dataset_format"] == "kitti_step"
    assert meta["stuff_classes"] == cityscapes["stuff_classes"]
    assert meta["stuff_colors"] == cityscapes["stuff_colors"]
    assert meta["num_classes"] == 19
    assert meta["thing_ids"] == [PERSON, CAR]
    assert meta["thing_dataset_id_to_contiguous_id"] == {PERSON: PERSON, CAR: CAR}
    assert meta["stuff_ids"] == [i for i in range(19) if i not in (PERSON, CAR)]
    assert meta["label_void_id"] == VOID and meta["ignore_label"] == VOID
    assert meta["label_divisor"] == 1000
    assert meta["has_depth"] is False
    assert meta["dvpq_depth_thresholds"] == []
    assert meta["dvpq_window_sizes"] == [1, 2, 3, 4]
    assert meta["evaluate_stq"] is True
    assert not meta["dvpq_windows_cross_sequences"]
    assert "has_depth" in cityscapes and cityscapes["has_depth"] is True  # untouched


# ------------------------------------------------------------------ loader


def test_loader_records_links_and_sizes(written):
    root = written["kitti_step"]
    records = load_kitti_step(str(root), SPLIT)
    assert [(r["sequence_id"], r["frame_index"]) for r in records] == [
        (s, f) for s in range(SEQS) for f in range(FRAMES)
    ]
    for record in records:
        seq, frame = record["sequence_id"], record["frame_index"]
        name = f"{seq:04d}/{frame:06d}.png"
        assert record["file_name"] == str(root / "images" / SPLIT / name)
        assert record["step_panoptic_file_name"] == str(root / "panoptic_maps" / SPLIT / name)
        assert record["image_id"] == f"{seq:04d}_{frame:06d}"
        assert (record["height"], record["width"]) == (HEIGHT, WIDTH)
        assert not any("depth" in key or "disparity" in key for key in record)
        nxt = record["next_frame"]
        if frame == FRAMES - 1:
            assert nxt is None  # never across sequences
            continue
        following = records[records.index(record) + 1]
        assert following["sequence_id"] == seq
        assert nxt == {
            "file_name": following["file_name"],
            "image_id": following["image_id"],
            "frame_index": frame + 1,
            "step_panoptic_file_name": following["step_panoptic_file_name"],
        }


def test_panoptic_is_the_cityscapes_dvps_scene_with_person_and_car_tracks(written):
    kitti, dvps = kitti_step_metadata(), dvps_metadata("cityscapes_dvps")
    kitti_records = load_kitti_step(str(written["kitti_step"]), SPLIT)
    dvps_records = load_dvps_split(str(written["cityscapes_dvps"]), SPLIT, "cityscapes_dvps")
    assert len(kitti_records) == len(dvps_records) == SEQS * FRAMES
    untracked_in_dvps = wide_instances = 0
    for k, d in zip(kitti_records, dvps_records, strict=True):
        assert (k["sequence_id"], k["frame_index"]) == (d["sequence_id"], d["frame_index"])
        size = (k["height"], k["width"])
        image_k = cv2.imread(k["file_name"], cv2.IMREAD_UNCHANGED)
        assert np.array_equal(image_k, cv2.imread(d["file_name"], cv2.IMREAD_UNCHANGED))
        pk, pd = read_panoptic(k, kitti, size), read_panoptic(d, dvps, size)
        assert np.array_equal(pk // 1000, pd // 1000)  # classes, void (255) included
        tracked = np.isin(pk // 1000, (PERSON, CAR))
        assert np.array_equal(pk[tracked], pd[tracked])  # the same track ids, so partition
        assert tracked.any()
        untracked = np.isin(pk // 1000, UNTRACKED_THINGS)
        assert (pk[untracked] % 1000 == 0).all()  # one segment per class and frame
        untracked_in_dvps += int(np.count_nonzero(pd[untracked] % 1000))
        assert (pk[~tracked] % 1000 == 0).all()
        # The file's encoding: R = class, G = instance // 256, B = instance % 256.
        rgb = _rgb(Path(k["step_panoptic_file_name"]))
        assert np.array_equal(rgb[..., 0], pk // 1000)
        assert np.array_equal(rgb[..., 1] * 256 + rgb[..., 2], pk % 1000)
        wide_instances += int(np.count_nonzero(rgb[..., 1]))
    assert untracked_in_dvps > 0  # the scene has instances of the other thing classes
    assert wide_instances > 0  # some track id > 255: the green channel is exercised


def test_ground_truth_scores_itself_without_depth(written):
    """The evaluation's reader (no depth: zeros) and protocol (VPQ, STQ) on the split."""
    meta = kitti_step_metadata()
    accumulator = DVPSAccumulator(meta)
    for record in load_kitti_step(str(written["kitti_step"]), SPLIT):
        gt_class, gt_instance, gt_depth = read_ground_truth(record, meta)
        assert not gt_depth.any()
        pred_class = np.where(gt_class == VOID, meta["num_classes"], gt_class)
        frame = DVPSFrame(pred_class, gt_instance, gt_depth, gt_class, gt_instance, gt_depth)
        accumulator.add(frame, record["sequence_id"], record["frame_index"])
    results = accumulator.results()
    assert [(e["k"], e["lambda"]) for e in results["dvpq"]] == [(k, 0.0) for k in (1, 2, 3, 4)]
    assert results["dvpq"][0]["pq"] == pytest.approx(100.0)
    assert results["stq"] == pytest.approx(100.0) and results["aq"] == pytest.approx(100.0)
    assert "depth" not in results


# ------------------------------------------------------------------ bad input


def test_frames_without_panoptic_map_are_counted_and_the_first_named(kitti_copy):
    maps = kitti_copy / "panoptic_maps" / SPLIT
    (maps / "0001" / "000002.png").unlink()
    (maps / "0000" / "000001.png").unlink()
    with pytest.raises(DatasetError) as e:
        load_kitti_step(str(kitti_copy), SPLIT)
    msg = str(e.value)
    assert msg.startswith(f"{maps / '0000' / '000001.png'}: missing, and 2 of the 6 images")
    shutil.rmtree(kitti_copy / "panoptic_maps")
    with pytest.raises(DatasetError, match="and 6 of the 6 images"):
        load_kitti_step(str(kitti_copy), SPLIT)


@pytest.mark.parametrize(
    "kind, expected",
    [("rgb16", "16-bit RGB PNG"), ("gray8", "8-bit gray PNG"), ("gray16", "16-bit gray PNG")],
)
def test_panoptic_map_must_be_8bit_rgb(kitti_copy, kind, expected):
    path = kitti_copy / "panoptic_maps" / SPLIT / "0001" / "000001.png"
    rgb = _rgb(path)
    array = {
        "rgb16": rgb[..., ::-1].astype(np.uint16) * 257,
        "gray8": rgb[..., 0].astype(np.uint8),
        "gray16": (rgb[..., 0] * 1000 + rgb[..., 1] * 256 + rgb[..., 2]).astype(np.uint16),
    }[kind]
    assert cv2.imwrite(str(path), array)
    with pytest.raises(DatasetError) as e:
        load_kitti_step(str(kitti_copy), SPLIT)
    assert str(e.value).startswith(f"{path}: a {expected}; expected a KITTI-STEP panoptic map")
    # The reader refuses it too, for records made elsewhere.
    record = {"step_panoptic_file_name": str(path)}
    with pytest.raises(ValueError, match="expected an 8-bit RGB panoptic map"):
        read_labels(record, kitti_step_metadata())


def test_panoptic_map_of_another_size(kitti_copy):
    path = kitti_copy / "panoptic_maps" / SPLIT / "0000" / "000002.png"
    _write_rgb(path, _rgb(path)[:, :-2])
    with pytest.raises(DatasetError, match=f"{path}: {WIDTH - 2} x {HEIGHT} pixels"):
        load_kitti_step(str(kitti_copy), SPLIT)


@pytest.mark.parametrize("class_id", [19, 254])
def test_class_id_outside_train_ids_and_void(kitti_copy, class_id):
    path = kitti_copy / "panoptic_maps" / SPLIT / "0000" / "000000.png"
    rgb = _rgb(path)
    rgb[:3, :5, 0] = class_id
    _write_rgb(path, rgb)
    record = load_kitti_step(str(kitti_copy), SPLIT)[0]  # headers are fine
    with pytest.raises(ValueError) as e:
        read_panoptic(record, kitti_step_metadata(), (HEIGHT, WIDTH))
    assert str(e.value) == (
        f"{path}: class id {class_id} on 15 pixels; expected train ids 0..18 or the void id 255."
    )


def test_instance_id_at_the_label_divisor(kitti_copy):
    path = kitti_copy / "panoptic_maps" / SPLIT / "0000" / "000000.png"
    rgb = _rgb(path)
    rgb[:2, :2] = (CAR, 1000 // 256, 1000 % 256)
    _write_rgb(path, rgb)
    record = load_kitti_step(str(kitti_copy), SPLIT)[0]
    with pytest.raises(ValueError, match=f"{path}: instance id 1000 on 4 pixels.*divisor 1000"):
        read_panoptic(record, kitti_step_metadata())


def test_panoptic_map_without_image(kitti_copy):
    extra = kitti_copy / "panoptic_maps" / SPLIT / "0001" / "000007.png"
    shutil.copy(extra.parent / "000000.png", extra)
    image = kitti_copy / "images" / SPLIT / "0001" / "000007.png"
    with pytest.raises(DatasetError, match=f"{extra}: has no image; expected {image}"):
        load_kitti_step(str(kitti_copy), SPLIT)


@pytest.mark.parametrize(
    "relative, message",
    [
        ("0000/frame1.png", "the name does not match <frame:06d>.png"),
        ("0000/00001.png", "the name does not match <frame:06d>.png"),
        ("seq_a/000000.png", "not a sequence folder"),
    ],
)
def test_names_outside_the_layout(kitti_copy, relative, message):
    path = kitti_copy / "images" / SPLIT / relative
    path.parent.mkdir(exist_ok=True)
    shutil.copy(kitti_copy / "images" / SPLIT / "0000" / "000000.png", path)
    bad = path if "/0000/" in str(path) else path.parent
    with pytest.raises(DatasetError, match=f"{bad}: {message}"):
        load_kitti_step(str(kitti_copy), SPLIT)


def test_image_that_is_not_a_png(kitti_copy):
    path = kitti_copy / "images" / SPLIT / "0000" / "000001.png"
    path.write_bytes(b"JFIF not a png")
    with pytest.raises(DatasetError, match=f"{path}: not a PNG file"):
        load_kitti_step(str(kitti_copy), SPLIT)


def test_missing_split_names_path_env_and_readme(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_kitti_step(str(tmp_path / "nowhere"), "val", "my_kitti_val")
    msg = str(e.value)
    assert "my_kitti_val" in msg and str(tmp_path / "nowhere" / "images" / "val") in msg
    assert "DETECTRON2_DATASETS" in msg and "datasets/README.md" in msg
    register_kitti_step("test_kitti_step_missing", str(tmp_path / "nowhere"), "val")
    with pytest.raises(FileNotFoundError, match="test_kitti_step_missing"):
        check_dvps_dataset("test_kitti_step_missing")  # the launch check reads split_dir


def test_depth_of_a_record_without_depth_is_a_clear_error(written):
    record = load_kitti_step(str(written["kitti_step"]), SPLIT)[0]
    with pytest.raises(ValueError, match=f"{record['file_name']}: the frame record has neither"):
        read_depth(record, kitti_step_metadata())


# ------------------------------------------------------------------ registration, generator


def test_register_kitti_step_reads_lazily_with_metadata(written):
    from detectron2.data import MetadataCatalog

    root = str(written["kitti_step"])
    register_kitti_step("test_kitti_step_registered", root, SPLIT)
    meta = MetadataCatalog.get("test_kitti_step_registered")
    assert meta.split_dir == os.path.join(root, "images", SPLIT)
    assert meta.has_depth is False and meta.thing_ids == [PERSON, CAR]
    assert len(DatasetCatalog.get("test_kitti_step_registered")) == SEQS * FRAMES


def test_builtin_names_read_detectron2_datasets(written, tmp_path):
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "synthetic-kitti-step").symlink_to(written["kitti_step"])
    code = (
        "import panoptic_depthlab\n"
        "from detectron2.data import DatasetCatalog, MetadataCatalog\n"
        "print(sorted(n for n in DatasetCatalog.list() if 'kitti_step' in n))\n"
        "print(len(DatasetCatalog.get('synthetic_kitti_step_val')))\n"
        "print(MetadataCatalog.get('kitti_step_train').split_dir)\n"
        "try:\n"
        "    DatasetCatalog.get('kitti_step_train')\n"
        "except ValueError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets))
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.splitlines()
    names = [f"{prefix}kitti_step_{split}" for prefix in ("", "synthetic_") for split in SPLITS]
    assert out[0] == str(names)
    assert out[1] == str(SEQS * FRAMES)
    assert out[2] == str(datasets / "kitti-step" / "images" / "train")
    assert out[3].startswith("DatasetError Dataset 'kitti_step_train' not found")


def test_cli_writes_the_layout(tmp_path, capsys):
    main = runpy.run_path(str(CLI))["main"]
    out = tmp_path / "cli"
    args = ["--format", "kitti_step", "--out", str(out), "--split", "train", "--frames", "2"]
    assert main(args + ["--sequences", "2", "--height", "64", "--width", "96", "--seed", "1"]) == 0
    stdout = capsys.readouterr().out
    assert f"Wrote 4 frames of kitti_step train (2 x 2, 64x96) to {out / 'images' / 'train'}" in (
        stdout
    )
    assert "the dataset loader reads back 4 frames." in stdout
    names = [f"{seq:04d}/{frame:06d}.png" for seq in range(2) for frame in range(2)]
    expected = [f"{kind}/train/{n}" for kind in ("images", "panoptic_maps") for n in names]
    assert sorted(_files(out)) == sorted(expected)  # no depth, nothing else
    with pytest.raises(SystemExit) as e:
        main(args + ["--sequences", "10001"])
    assert e.value.code == 2
    assert "num_sequences=10001 is invalid for kitti_step" in capsys.readouterr().err


def test_equal_arguments_write_byte_identical_files(written, tmp_path):
    generate_synthetic_dvps(str(tmp_path / "again"), "kitti_step", *ARGS)
    assert _files(tmp_path / "again") == _files(written["kitti_step"])
    other = tmp_path / "other_seed"
    generate_synthetic_dvps(str(other), "kitti_step", SPLIT, SEQS, FRAMES, HEIGHT, WIDTH, SEED + 1)
    first = "images/val/0000/000000.png"
    assert _files(other)[first] != _files(written["kitti_step"])[first]
