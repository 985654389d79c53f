"""Cityscapes-VPS in its authors' video panoptic layout (``<split>/img``,
``<split>/panoptic_video``, ``panoptic_gt_<split>_city_vps.json``, no depth): the loader, the
COCO-PNG label reader with instance ids stable over a video, the builtin names, and the
synthetic generator's ``cityscapes_vps`` format, which must be the Cityscapes-DVPS scene of the
same arguments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from panoptic_depthlab.data.annotations import read_labels, read_panoptic
from panoptic_depthlab.data.datasets import (
    cityscapes_vps_metadata,
    dvps_metadata,
    load_cityscapes_vps,
    load_dvps_split,
    register_cityscapes_vps,
)
from panoptic_depthlab.data.errors import DatasetError
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "tools" / "make_synthetic_dvps.py"
SPLIT, SEED, SEQS, FRAMES, HEIGHT, WIDTH = "val", 3, 2, 3, 128, 256
ARGS = (SPLIT, SEQS, FRAMES, HEIGHT, WIDTH, SEED)
THINGS = tuple(range(11, 19))


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """The split in format ``cityscapes_vps`` and, from the same arguments, ``cityscapes_dvps``."""
    roots = {}
    for fmt in ("cityscapes_vps", "cityscapes_dvps"):
        roots[fmt] = tmp_path_factory.mktemp(fmt)
        generate_synthetic_dvps(str(roots[fmt]), fmt, *ARGS)
    return roots


@pytest.fixture
def vps_copy(written, tmp_path) -> Path:
    """A private, modifiable copy of the synthetic Cityscapes-VPS root."""
    dst = tmp_path / "cityscapes_vps"
    shutil.copytree(written["cityscapes_vps"], dst)
    return dst


def test_metadata_is_vpq_only_with_cityscapes_classes():
    meta, dvps = cityscapes_vps_metadata(), dvps_metadata("cityscapes_dvps")
    assert meta["dataset_format"] == "cityscapes_vps"
    assert meta["has_depth"] is False and meta["evaluate_stq"] is False
    assert meta["dvpq_depth_thresholds"] == [] and meta["dvpq_window_sizes"] == [1, 2, 3, 4]
    assert meta["dvpq_windows_cross_sequences"] is False
    assert meta["stuff_classes"] == dvps["stuff_classes"] and meta["num_classes"] == 19
    assert sorted(meta["thing_ids"]) == list(THINGS)
    assert meta["label_void_id"] == 255


def test_layout_and_json(written):
    root = written["cityscapes_vps"]
    images = sorted(os.listdir(root / SPLIT / "img"))
    labels = sorted(os.listdir(root / SPLIT / "panoptic_video"))
    assert len(images) == len(labels) == SEQS * FRAMES
    assert images[0] == "0000_0005_synth_000000_000004_leftImg8bit.png"
    assert labels[-1] == f"0001_{5 * FRAMES:04d}_synth_000001_{5 * FRAMES - 1:06d}_gtFine_color.png"
    data = json.loads((root / f"panoptic_gt_{SPLIT}_city_vps.json").read_text())
    assert set(data) == {"images", "annotations", "categories"}
    assert [c["id"] for c in data["categories"]] == list(range(19))
    assert [c["id"] for c in data["categories"] if c["isthing"]] == list(THINGS)
    assert [a["file_name"] for a in data["annotations"]] == labels
    for ann in data["annotations"]:
        assert {"id", "category_id", "iscrowd", "area"} <= set(ann["segments_info"][0])
    assert not (root / "video_sequence").exists()  # no depth, no DVPS files


def test_loader_records_and_links(written):
    records = load_cityscapes_vps(str(written["cityscapes_vps"]), SPLIT)
    assert len(records) == SEQS * FRAMES
    assert len({r["image_id"] for r in records}) == len(records)
    for i, r in enumerate(records):
        assert (r["height"], r["width"]) == (HEIGHT, WIDTH)
        assert r["sequence_id"] == i // FRAMES and r["frame_index"] == 5 * (i % FRAMES + 1)
        assert "depth_file_name" not in r
        nxt = r["next_frame"]
        if i % FRAMES == FRAMES - 1:
            assert nxt is None  # never across videos
        else:
            following = records[i + 1]
            assert nxt["image_id"] == following["image_id"]
            assert nxt["pan_seg_file_name"] == following["pan_seg_file_name"]
            assert nxt["segments_info"] == following["segments_info"]


def test_panoptic_equals_cityscapes_dvps_scene_with_stable_instances(written):
    meta, dvps_meta = cityscapes_vps_metadata(), dvps_metadata("cityscapes_dvps")
    vps = load_cityscapes_vps(str(written["cityscapes_vps"]), SPLIT)
    dvps = load_dvps_split(str(written["cityscapes_dvps"]), SPLIT, "cityscapes_dvps")
    assert len(vps) == len(dvps)
    for video in range(SEQS):
        mapping: dict[tuple[int, int], int] = {}  # (class, DVPS instance) -> VPS instance
        frames = slice(video * FRAMES, (video + 1) * FRAMES)
        for a, b in zip(vps[frames], dvps[frames], strict=True):
            assert a["sequence_id"] == video
            a_img = cv2.imread(a["file_name"], cv2.IMREAD_UNCHANGED)
            assert np.array_equal(a_img, cv2.imread(b["file_name"], cv2.IMREAD_UNCHANGED))
            pa = read_panoptic(a, meta, (HEIGHT, WIDTH))
            pb = read_panoptic(b, dvps_meta, (HEIGHT, WIDTH))
            assert np.array_equal(pa // 1000, pb // 1000)  # classes (void 255 in both)
            classes, inst_a = pa // 1000, pa % 1000
            inst_b = pb % 1000
            thing = np.isin(classes, THINGS)
            assert np.array_equal(inst_a[~thing], np.zeros_like(inst_a[~thing]))
            assert np.array_equal(inst_a[thing] == 0, inst_b[thing] == 0)  # crowd
            pairs = np.unique(np.stack([classes[thing], inst_b[thing], inst_a[thing]]), axis=1)
            for cls, ib, ia in pairs.T.tolist():
                assert mapping.setdefault((cls, ib), ia) == ia  # same object, same id
        by_class: dict[int, list[int]] = {}
        for (cls, ib), ia in mapping.items():
            if ib:
                by_class.setdefault(cls, []).append(ia)
        for ids in by_class.values():
            assert len(set(ids)) == len(ids)  # distinct objects keep distinct ids
    assert any(len(ids) > 1 for ids in by_class.values())


def test_per_frame_numbering_would_break_identity(written):
    """Without the loader's ``instance_id`` the reader numbers a frame's objects anew: an object
    that is first in one frame and second in the next changes id (why the ids are per video)."""
    meta = cityscapes_vps_metadata()
    records = load_cityscapes_vps(str(written["cityscapes_vps"]), SPLIT)
    for r in records:
        for s in r["segments_info"]:
            if s["category_id"] in THINGS and not s["iscrowd"]:
                assert 1 <= s["instance_id"] < 1000
    changed = False
    for r in records:
        plain = dict(
            r,
            segments_info=[
                {k: v for k, v in s.items() if k != "instance_id"} for s in r["segments_info"]
            ],
        )
        _, stable = read_labels(r, meta)
        _, per_frame = read_labels(plain, meta)
        changed |= not np.array_equal(stable, per_frame)
    assert changed


def test_missing_panoptic_png_is_named_and_counted(vps_copy):
    folder = vps_copy / SPLIT / "panoptic_video"
    gone = sorted(folder.iterdir())[:2]
    for path in gone:
        path.unlink()
    with pytest.raises(DatasetError, match=rf"{gone[0].name}: missing, and 2 of the 6 images"):
        load_cityscapes_vps(str(vps_copy), SPLIT)


def test_missing_annotation_and_missing_json(vps_copy):
    path = vps_copy / f"panoptic_gt_{SPLIT}_city_vps.json"
    data = json.loads(path.read_text())
    dropped = data["annotations"].pop(1)["image_id"]
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"{dropped}_leftImg8bit.png: has no annotation"):
        load_cityscapes_vps(str(vps_copy), SPLIT)
    path.unlink()
    with pytest.raises(DatasetError, match="panoptic_gt_val_city_vps.json: missing"):
        load_cityscapes_vps(str(vps_copy), SPLIT)


def test_wrong_png_kind_and_size(vps_copy):
    label = sorted((vps_copy / SPLIT / "panoptic_video").iterdir())[0]
    assert cv2.imwrite(str(label), np.zeros((HEIGHT, WIDTH), np.uint16))
    with pytest.raises(DatasetError, match=rf"{label.name}: a 16-bit gray PNG; expected a Cit"):
        load_cityscapes_vps(str(vps_copy), SPLIT)
    assert cv2.imwrite(str(label), np.zeros((HEIGHT // 2, WIDTH, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"256 x 64 pixels \(W x H\)"):
        load_cityscapes_vps(str(vps_copy), SPLIT)


def test_bad_names_and_missing_split(vps_copy, tmp_path):
    image = sorted((vps_copy / SPLIT / "img").iterdir())[0]
    image.rename(image.with_name("frame_leftImg8bit.png"))
    with pytest.raises(DatasetError, match="frame_leftImg8bit.png: the name does not match"):
        load_cityscapes_vps(str(vps_copy), SPLIT)
    with pytest.raises(DatasetError, match="Dataset 'nothing' not found"):
        load_cityscapes_vps(str(tmp_path / "absent"), SPLIT, "nothing")


def test_registration_and_builtin_names(written):
    name = "test_cityscapes_vps_registered_val"
    register_cityscapes_vps(name, str(written["cityscapes_vps"]), SPLIT)
    try:
        assert len(DatasetCatalog.get(name)) == SEQS * FRAMES
        meta = MetadataCatalog.get(name)
        assert meta.dataset_format == "cityscapes_vps" and meta.has_depth is False
        assert meta.split_dir == str(written["cityscapes_vps"] / SPLIT / "img")
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    for prefix, directory in (
        ("cityscapes_vps", "cityscapes_vps"),
        ("synthetic_cityscapes_vps", "synthetic-cityscapes-vps"),
    ):
        for split in ("train", "val"):
            meta = MetadataCatalog.get(f"{prefix}_{split}")
            assert meta.dataset_format == "cityscapes_vps"
            assert meta.split_dir.endswith(os.path.join(directory, split, "img"))


def test_generator_rejects_too_many_frames(tmp_path):
    with pytest.raises(ValueError, match="cityscapes_vps"):
        generate_synthetic_dvps(str(tmp_path), "cityscapes_vps", "val", 1, 2000, 64, 64, 0)
    assert not any(tmp_path.iterdir())


def test_cli_writes_the_layout_byte_identically(written, tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, str(CLI), "--format", "cityscapes_vps", "--out", str(out)]
    cmd += ["--split", SPLIT, "--sequences", str(SEQS), "--frames", str(FRAMES)]
    cmd += ["--height", str(HEIGHT), "--width", str(WIDTH), "--seed", str(SEED)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    assert f"the dataset loader reads back {SEQS * FRAMES} frames" in result.stdout
    assert _files(out) == _files(written["cityscapes_vps"])


def test_other_seed_differs_and_train_split_loads(written, tmp_path):
    generate_synthetic_dvps(str(tmp_path), "cityscapes_vps", "train", 1, 2, 64, 128, SEED)
    records = load_cityscapes_vps(str(tmp_path), "train")
    assert [r["frame_index"] for r in records] == [5, 10]
    other = tmp_path / "other"
    generate_synthetic_dvps(str(other), "cityscapes_vps", SPLIT, SEQS, FRAMES, HEIGHT, WIDTH, 4)
    assert _files(other) != _files(written["cityscapes_vps"])
