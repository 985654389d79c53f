"""Dataset registration on real files written by the synthetic generator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from panoptic_depthlab.data.datasets import (
    BUILTIN_DVPS_DATASETS,
    dvps_metadata,
    load_dvps_split,
    register_dvps_dataset,
)
from tests.conftest import SMALL

SEQS, FRAMES, HEIGHT, WIDTH = SMALL
CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"


def _split_dir(root: Path, split: str = "train") -> Path:
    return root / "video_sequence" / split


def _one(split_dir: Path, suffix: str) -> Path:
    """The first file (by name) of a split directory that ends with ``suffix``."""
    return sorted(p for p in split_dir.iterdir() if p.name.endswith(suffix))[0]


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_register_and_load_every_record_field(dvps_roots, fmt):
    name = f"test_{fmt}_train_fields"
    register_dvps_dataset(name, str(dvps_roots[fmt]), "train", fmt)
    records = DatasetCatalog.get(name)
    assert len(records) == SEQS * FRAMES
    split_dir = _split_dir(dvps_roots[fmt])
    assert [(r["sequence_id"], r["frame_index"]) for r in records] == [
        (s, f) for s in range(SEQS) for f in range(FRAMES)
    ]
    for r in records:
        prefix = r["image_id"]
        assert prefix.startswith(f"{r['sequence_id']:06d}_{r['frame_index']:06d}")
        assert r["file_name"] == str(split_dir / f"{prefix}_leftImg8bit.png")
        assert (r["height"], r["width"]) == (HEIGHT, WIDTH)
        if fmt == CITYSCAPES:
            assert set(r) == {
                "file_name", "image_id", "sequence_id", "frame_index", "height", "width",
                "panoptic_file_name", "depth_file_name", "next_frame",
            }  # fmt: skip
            panoptic = split_dir / f"{prefix}_gtFine_instanceTrainIds.png"
            assert r["panoptic_file_name"] == str(panoptic)
            assert r["depth_file_name"] == str(split_dir / f"{prefix}_depth.png")
        else:
            assert prefix == f"{r['sequence_id']:06d}_{r['frame_index']:06d}"
            assert set(r) == {
                "file_name", "image_id", "sequence_id", "frame_index", "height", "width",
                "sem_seg_file_name", "instance_file_name", "depth_file_name", "focal_length",
                "next_frame",
            }  # fmt: skip
            assert r["sem_seg_file_name"] == str(split_dir / f"{prefix}_gtFine_class.png")
            assert r["instance_file_name"] == str(split_dir / f"{prefix}_gtFine_instance.png")
            depth_name = os.path.basename(r["depth_file_name"])
            assert depth_name.startswith(f"{prefix}_depth_")
            assert r["focal_length"] == float(depth_name[len(f"{prefix}_depth_") : -len(".png")])
            assert r["focal_length"] > 0
        for key in ("file_name", "depth_file_name"):
            assert os.path.isfile(r[key])


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_next_frame_links_stay_within_sequences(dvps_roots, fmt):
    records = load_dvps_split(str(dvps_roots[fmt]), "val", fmt)
    by_key = {(r["sequence_id"], r["frame_index"]): r for r in records}
    for r in records:
        nxt = by_key.get((r["sequence_id"], r["frame_index"] + 1))
        if r["frame_index"] == FRAMES - 1:
            assert nxt is None and r["next_frame"] is None
            continue
        expected = {
            k: nxt[k] for k in nxt if k.endswith("file_name") or k in ("image_id", "frame_index")
        }
        assert r["next_frame"] == expected


def test_next_frame_skips_gaps_in_frame_numbers(dvps_copy):
    """Frame indices need not be contiguous: the next frame is the next one on disk."""
    root = dvps_copy(CITYSCAPES)
    for path in _split_dir(root).glob("000000_000001_*"):
        path.unlink()
    records = load_dvps_split(str(root), "train", CITYSCAPES)
    first = records[0]
    assert (first["sequence_id"], first["frame_index"]) == (0, 0)
    assert first["next_frame"]["frame_index"] == 2
    assert records[1]["next_frame"] is None  # frame 2 is the last of sequence 0


def test_metadata_cityscapes_dvps():
    register_dvps_dataset("test_meta_cs", "/nonexistent", "val", CITYSCAPES)
    meta = MetadataCatalog.get("test_meta_cs")
    assert meta.stuff_classes[:3] == ["road", "sidewalk", "building"]
    assert meta.stuff_classes[10] == "sky" and len(meta.stuff_classes) == 19
    # Detectron2's convention: thing_classes lists every class, indexed by contiguous id
    assert meta.thing_classes == meta.stuff_classes
    assert [meta.thing_classes[i] for i in meta.thing_ids] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"
    ]  # fmt: skip
    assert meta.thing_ids == list(range(11, 19))
    assert meta.stuff_ids == list(range(11))
    assert meta.thing_dataset_id_to_contiguous_id == {i: i for i in range(11, 19)}
    assert meta.stuff_colors[0] == (128, 64, 128)  # road
    assert meta.thing_colors == meta.stuff_colors and len(meta.stuff_colors) == 19
    assert (meta.ignore_label, meta.label_void_id, meta.label_divisor) == (255, 32, 1000)
    assert (meta.depth_scale, meta.max_depth) == (256.0, 88.0)
    assert meta.dvpq_window_sizes == [1, 2, 3, 4]
    assert meta.dvpq_depth_thresholds == [0.5, 0.25, 0.1]
    assert (meta.dataset_root, meta.split) == ("/nonexistent", "val")
    assert meta.dataset_format == CITYSCAPES


def test_metadata_semkitti_dvps():
    meta = dvps_metadata(SEMKITTI)
    assert meta["thing_classes"] == meta["stuff_classes"]
    assert meta["thing_classes"][:8] == [
        "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
        "motorcyclist",
    ]  # fmt: skip
    assert meta["stuff_classes"][8:] == [
        "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation",
        "trunk", "terrain", "pole", "traffic-sign",
    ]  # fmt: skip
    assert meta["thing_ids"] == list(range(8)) and meta["stuff_ids"] == list(range(8, 19))
    assert (meta["ignore_label"], meta["label_void_id"]) == (255, 255)
    assert meta["dvpq_window_sizes"] == [1, 5, 10, 20]
    assert len(set(meta["stuff_colors"])) == 19


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError, match="'kitti'.*cityscapes_dvps"):
        register_dvps_dataset("test_bad_format", "/tmp", "train", "kitti")


def test_builtin_names_read_detectron2_datasets(dvps_roots, tmp_path):
    """The built-in synthetic names load from $DETECTRON2_DATASETS in a fresh interpreter."""
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "synthetic-semkitti-dvps").symlink_to(dvps_roots[SEMKITTI])
    code = (
        "import panoptic_depthlab\n"
        "from detectron2.data import DatasetCatalog\n"
        "names = sorted(n for n in DatasetCatalog.list() if 'dvps' in n)\n"
        "print(names)\n"
        "print(len(DatasetCatalog.get('synthetic_semkitti_dvps_val')))\n"
        "try:\n"
        "    DatasetCatalog.get('cityscapes_dvps_train')\n"
        "except FileNotFoundError as e:\n"
        "    print(e)\n"
    )
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets))
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    expected = sorted(f"{p}_{s}" for p in BUILTIN_DVPS_DATASETS for s in ("train", "val"))
    assert out[0] == str(expected)
    assert out[1] == str(SEQS * FRAMES)
    assert str(datasets / "cityscapes-dvps" / "video_sequence" / "train") in out[2]
    assert f"$DETECTRON2_DATASETS={datasets}" in out[2]


# ---------------------------------------------------------------- bad input


def test_missing_dataset_directory_names_path_env_and_readme(tmp_path):
    register_dvps_dataset("test_missing_dir", str(tmp_path / "nowhere"), "val", CITYSCAPES)
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("test_missing_dir")
    msg = str(e.value)
    assert "test_missing_dir" in msg
    assert str(tmp_path / "nowhere" / "video_sequence" / "val") in msg
    assert "DETECTRON2_DATASETS" in msg and "datasets/README.md" in msg


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_empty_split(tmp_path, fmt):
    split_dir = tmp_path / "video_sequence" / "train"
    split_dir.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=f"{split_dir}: no frames found.*leftImg8bit"):
        load_dvps_split(str(tmp_path), "train", fmt)


@pytest.mark.parametrize(
    "fmt,suffix",
    [
        (CITYSCAPES, "_gtFine_instanceTrainIds.png"),
        (CITYSCAPES, "_depth.png"),
        (SEMKITTI, "_gtFine_class.png"),
        (SEMKITTI, "_gtFine_instance.png"),
    ],
)
def test_missing_label_or_depth_file(dvps_copy, fmt, suffix):
    root = dvps_copy(fmt)
    victim = _one(_split_dir(root), suffix)
    victim.unlink()
    image = str(victim)[: -len(suffix)] + "_leftImg8bit.png"
    with pytest.raises(FileNotFoundError, match="missing") as e:
        load_dvps_split(str(root), "train", fmt)
    assert str(victim) in str(e.value) and image in str(e.value)


def test_missing_semkitti_depth_file_names_the_image(dvps_copy):
    root = dvps_copy(SEMKITTI)
    victim = sorted(_split_dir(root).glob("*_depth_*.png"))[0]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match="exactly one depth file") as e:
        load_dvps_split(str(root), "train", SEMKITTI)
    assert victim.name.split("_depth_")[0] + "_leftImg8bit.png" in str(e.value)


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_unreadable_png(dvps_copy, fmt):
    root = dvps_copy(fmt)
    victim = sorted(_split_dir(root).glob("*_depth*.png"))[0]
    victim.write_bytes(b"this is not a PNG file")
    with pytest.raises(ValueError, match="not a readable PNG") as e:
        load_dvps_split(str(root), "train", fmt)
    assert str(victim) in str(e.value)


@pytest.mark.parametrize(
    "fmt,suffix", [(CITYSCAPES, "_gtFine_instanceTrainIds.png"), (SEMKITTI, "_gtFine_class.png")]
)
def test_label_size_differs_from_image(dvps_copy, fmt, suffix):
    root = dvps_copy(fmt)
    victim = _one(_split_dir(root), suffix)
    dtype = np.uint16 if fmt == CITYSCAPES else np.uint8
    cv2.imwrite(str(victim), np.zeros((HEIGHT, WIDTH + 2), dtype))
    with pytest.raises(ValueError) as e:
        load_dvps_split(str(root), "train", fmt)
    msg = str(e.value)
    assert str(victim) in msg and f"{(HEIGHT, WIDTH + 2)}" in msg and f"{(HEIGHT, WIDTH)}" in msg


def test_depth_size_differs_from_image(dvps_copy):
    root = dvps_copy(CITYSCAPES)
    victim = _one(_split_dir(root), "_depth.png")
    cv2.imwrite(str(victim), np.zeros((HEIGHT // 2, WIDTH // 2), np.uint16))
    with pytest.raises(ValueError, match="differs from its image") as e:
        load_dvps_split(str(root), "train", CITYSCAPES)
    assert str(victim) in str(e.value)


def test_8bit_depth_png_is_rejected(dvps_copy):
    root = dvps_copy(CITYSCAPES)
    victim = _one(_split_dir(root), "_depth.png")
    cv2.imwrite(str(victim), np.zeros((HEIGHT, WIDTH), np.uint8))
    with pytest.raises(ValueError, match="mode 'L'; expected a 16-bit single-channel depth PNG"):
        load_dvps_split(str(root), "train", CITYSCAPES)


def test_label_without_image(dvps_copy):
    root = dvps_copy(CITYSCAPES)
    image = _one(_split_dir(root), "_leftImg8bit.png")
    image.unlink()
    with pytest.raises(FileNotFoundError, match="has no image") as e:
        load_dvps_split(str(root), "train", CITYSCAPES)
    assert image.name in str(e.value)


def test_misnamed_image(dvps_copy):
    root = dvps_copy(SEMKITTI)
    bad = _split_dir(root) / "seq0_frame7_leftImg8bit.png"
    bad.write_bytes(_one(_split_dir(root), "_leftImg8bit.png").read_bytes())
    with pytest.raises(ValueError, match="does not match <seq:06d>_<frame:06d>_leftImg8bit.png"):
        load_dvps_split(str(root), "train", SEMKITTI)


def test_duplicate_frame_in_sequence(dvps_copy):
    root = dvps_copy(CITYSCAPES)
    split_dir = _split_dir(root)
    for path in split_dir.glob("000000_000000_*"):
        city = path.name.split("_")[2]
        twin = path.name.replace(f"_{city}_", "_othercity_", 1)
        (split_dir / twin).write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="two frames with sequence 0 and frame index 0"):
        load_dvps_split(str(root), "train", CITYSCAPES)
