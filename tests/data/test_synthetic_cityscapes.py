"""The synthetic generator's plain Cityscapes layout (format ``cityscapes``), checked on its files
and through Detectron2's own Cityscapes panoptic loader."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES
from detectron2.data.datasets.cityscapes_panoptic import load_cityscapes_panoptic
from PIL import Image

from panoptic_depthlab.data.synthetic import cityscapes_panoptic_paths, generate_synthetic_dvps

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "tools" / "make_synthetic_dvps.py"
SPLIT, SEED, SEQS, FRAMES, HEIGHT, WIDTH = "val", 3, 2, 3, 128, 256
CITIES = ("aachen", "bochum")
LABEL_TO_TRAIN = {c["id"]: c["trainId"] for c in CITYSCAPES_CATEGORIES}
THING_LABELS = {c["id"] for c in CITYSCAPES_CATEGORIES if c["isthing"]}
DVPS_VOID = 32  # Cityscapes-DVPS class of unlabelled pixels
CAMERA_KEYS = {
    "extrinsic": {"baseline", "pitch", "roll", "x", "y", "yaw", "z"},
    "intrinsic": {"fx", "fy", "u0", "v0"},
}


def _name(seq: int, frame: int) -> str:
    return f"{CITIES[seq % 2]}_{seq:06d}_{frame:06d}"


def _frame_files(root: Path, split: str, name: str) -> dict[str, Path]:
    city = name.split("_")[0]
    return {
        "image": root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png",
        "train_ids": root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png",
        "panoptic": root
        / "gtFine"
        / f"cityscapes_panoptic_{split}"
        / f"{name}_gtFine_panoptic.png",
        "disparity": root / "disparity" / split / city / f"{name}_disparity.png",
        "camera": root / "camera" / split / city / f"{name}_camera.json",
    }


def _segment_ids(path: Path) -> np.ndarray:
    """(H, W) int64 segment ids of a panoptic PNG: R + 256 G + 256 * 256 B."""
    with Image.open(path) as im:
        assert im.mode == "RGB"
        rgb = np.asarray(im).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _detectron2_meta() -> dict[str, dict[int, int]]:
    """The two id maps of ``register_all_cityscapes_panoptic``'s metadata."""
    things, stuff = {}, {}
    for c in CITYSCAPES_CATEGORIES:
        (things if c["isthing"] == 1 else stuff)[c["id"]] = c["trainId"]
    return {"thing_dataset_id_to_contiguous_id": things, "stuff_dataset_id_to_contiguous_id": stuff}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """The split in format ``cityscapes`` and, from the same arguments, in ``cityscapes_dvps``."""
    root = tmp_path_factory.mktemp("cityscapes")
    dvps_root = tmp_path_factory.mktemp("cityscapes_dvps")
    args = (SPLIT, SEQS, FRAMES, HEIGHT, WIDTH, SEED)
    seen = []
    images = generate_synthetic_dvps(str(root), "cityscapes", *args, on_frame_written=seen.append)
    generate_synthetic_dvps(str(dvps_root), "cityscapes_dvps", *args)
    dvps = {}  # (seq, frame) -> file prefix of the Cityscapes-DVPS frame
    for path in sorted((dvps_root / "video_sequence" / SPLIT).glob("*_leftImg8bit.png")):
        prefix = str(path)[: -len("_leftImg8bit.png")]
        dvps[int(path.name[:6]), int(path.name[7:13])] = prefix
    gt_json = Path(cityscapes_panoptic_paths(str(root), SPLIT)[2])
    return {
        "root": root,
        "images": images,
        "seen": seen,
        "dvps": dvps,
        "json": json.loads(gt_json.read_text()),
    }


def _frames() -> list[tuple[int, int]]:
    return [(s, f) for s in range(SEQS) for f in range(FRAMES)]


# ------------------------------------------------------------------ layout


def test_files_are_where_detectron2_expects_them(written):
    root = written["root"]
    expected = {}
    for seq, frame in _frames():
        expected.update(
            {k: p for k, p in _frame_files(root, SPLIT, _name(seq, frame)).items() if k != "image"}
        )
    image_paths = [_frame_files(root, SPLIT, _name(s, f))["image"] for s, f in _frames()]
    assert written["images"] == [str(p) for p in image_paths]  # (sequence, frame) order
    assert written["seen"] == written["images"]
    gt_json = root / "gtFine" / f"cityscapes_panoptic_{SPLIT}.json"
    all_files = {root / name for name in _all_files(root)}
    expected_files = set(image_paths) | {
        p for s, f in _frames() for p in _frame_files(root, SPLIT, _name(s, f)).values()
    }
    assert all_files == expected_files | {gt_json}  # nothing else, no temporary file
    assert cityscapes_panoptic_paths(str(root), SPLIT) == (
        str(root / "leftImg8bit" / SPLIT),
        str(root / "gtFine" / f"cityscapes_panoptic_{SPLIT}"),
        str(gt_json),
    )
    for seq, frame in _frames():
        files = _frame_files(root, SPLIT, _name(seq, frame))
        for kind, mode in (("image", "RGB"), ("train_ids", "L"), ("panoptic", "RGB")):
            with Image.open(files[kind]) as im:
                assert (im.format, im.mode, im.size) == ("PNG", mode, (WIDTH, HEIGHT)), kind
        disparity = _read(files["disparity"])
        assert disparity.dtype == np.uint16 and disparity.shape == (HEIGHT, WIDTH)


def test_json_follows_create_panoptic_imgs(written):
    data = written["json"]
    names = [_name(s, f) for s, f in _frames()]
    assert data["images"] == [
        {"id": n, "file_name": f"{n}_leftImg8bit.png", "width": WIDTH, "height": HEIGHT}
        for n in names
    ]
    assert [a["image_id"] for a in data["annotations"]] == names
    assert [a["file_name"] for a in data["annotations"]] == [
        f"{n}_gtFine_panoptic.png" for n in names
    ]
    categories = {c["id"]: c for c in data["categories"]}
    assert list(categories) == sorted(LABEL_TO_TRAIN)  # the 19 evaluated label ids
    for c in CITYSCAPES_CATEGORIES:
        mine = categories[c["id"]]
        assert (mine["name"], tuple(mine["color"]), mine["isthing"]) == (
            c["name"],
            tuple(c["color"]),
            c["isthing"],
        )
        assert isinstance(mine["supercategory"], str) and mine["supercategory"]
    assert categories[7]["name"] == "road" and categories[26]["name"] == "car"
    crowds = 0
    for annotation in data["annotations"]:
        instances = {}  # label id -> instance indices
        for s in annotation["segments_info"]:
            assert set(s) == {"id", "category_id", "iscrowd", "area", "bbox"}
            assert s["category_id"] in categories
            if s["id"] < 1000:  # stuff, or a crowd region of a thing class
                assert s["id"] == s["category_id"]
                assert s["iscrowd"] == int(s["category_id"] in THING_LABELS)
                crowds += s["iscrowd"]
            else:  # a thing instance
                assert s["id"] // 1000 == s["category_id"] and s["category_id"] in THING_LABELS
                assert s["iscrowd"] == 0
                instances.setdefault(s["category_id"], []).append(s["id"] % 1000)
        for indices in instances.values():  # numbered 0, 1, ... per class and image
            assert sorted(indices) == list(range(len(indices)))
        assert instances
    assert crowds > 0  # the crowd region of the even sequences


def test_detectron2_loader_reads_every_frame(written):
    root = written["root"]
    image_dir, gt_dir, gt_json = cityscapes_panoptic_paths(str(root), SPLIT)
    records = load_cityscapes_panoptic(image_dir, gt_dir, gt_json, _detectron2_meta())
    assert [r["image_id"] for r in records] == [_name(s, f) for s, f in _frames()]
    raw = {a["image_id"]: a["segments_info"] for a in written["json"]["annotations"]}
    for record in records:
        files = _frame_files(root, SPLIT, record["image_id"])
        assert record["file_name"] == str(files["image"])
        assert record["sem_seg_file_name"] == str(files["train_ids"])
        assert record["pan_seg_file_name"] == str(files["panoptic"])
        segment = _segment_ids(files["panoptic"])
        train_ids = _read(files["train_ids"])
        infos = record["segments_info"]
        assert sorted(s["id"] for s in infos) == sorted(set(np.unique(segment).tolist()) - {0})
        for info, raw_info in zip(infos, raw[record["image_id"]], strict=True):
            mask = segment == info["id"]
            assert info["area"] == mask.sum()
            rows, cols = np.nonzero(mask)
            x, y = cols.min(), rows.min()
            assert info["bbox"] == [x, y, cols.max() - x + 1, rows.max() - y + 1]
            # the loader maps label ids to train ids (= contiguous ids)
            assert info["category_id"] == LABEL_TO_TRAIN[raw_info["category_id"]]
            assert (train_ids[mask] == info["category_id"]).all(), info
        assert ((segment == 0) == (train_ids == 255)).all()
        assert set(np.unique(train_ids).tolist()) <= set(range(19)) | {255}


def test_same_scene_as_cityscapes_dvps(written):
    """Equal arguments: the images of ``cityscapes_dvps``, its classes, and its instances as
    segments (one Cityscapes segment per Cityscapes-DVPS (class, instance) pair)."""
    root = written["root"]
    for (seq, frame), prefix in written["dvps"].items():
        files = _frame_files(root, SPLIT, _name(seq, frame))
        assert files["image"].read_bytes() == Path(prefix + "_leftImg8bit.png").read_bytes()
        panoptic = _read(Path(prefix + "_gtFine_instanceTrainIds.png")).astype(np.int64)
        cls = panoptic // 1000
        assert (_read(files["train_ids"]) == np.where(cls == DVPS_VOID, 255, cls)).all()
        segment = _segment_ids(files["panoptic"])
        pairs = np.unique(np.stack([panoptic.ravel(), segment.ravel()], 1), axis=0)
        assert len(pairs) == len(np.unique(panoptic)) == len(np.unique(segment))  # a bijection


# ------------------------------------------------------------------ disparity and camera


def test_disparity_encodes_the_scene_depth(written):
    root = written["root"]
    border = math.ceil(0.05 * WIDTH)
    for (seq, frame), prefix in written["dvps"].items():
        files = _frame_files(root, SPLIT, _name(seq, frame))
        camera = json.loads(files["camera"].read_text())
        baseline, fx = camera["extrinsic"]["baseline"], camera["intrinsic"]["fx"]
        p = _read(files["disparity"]).astype(np.float64)
        depth = _read(Path(prefix + "_depth.png")) / 256.0  # meters; 0 = no depth (sky, hood)
        band = np.zeros(p.shape, bool)
        band[:, :border] = True
        assert ((p == 0) == ((depth == 0) | band)).all()
        valid = p > 0
        assert valid.mean() > 0.3
        from_disparity = baseline * fx / ((p[valid] - 1) / 256)
        assert np.abs(from_disparity / depth[valid] - 1).max() < 0.01
        # Tighter, in pixels: p - 1 = round(256 * d) and the depth PNG rounds meters to 1/256,
        # so |(p - 1) / 256 - baseline * fx / depth| <= 1/512 + (its share of the depth error).
        expected = baseline * fx / depth[valid]
        bound = 1 / 512 + expected / (512 * (depth[valid] - 1 / 512)) + 1e-6
        assert (np.abs((p[valid] - 1) / 256 - expected) <= bound).all()


def test_camera_files(written):
    root = written["root"]
    cameras = []
    for seq, frame in _frames():
        camera = json.loads(_frame_files(root, SPLIT, _name(seq, frame))["camera"].read_text())
        assert {k: set(v) for k, v in camera.items()} == CAMERA_KEYS
        extrinsic, intrinsic = camera["extrinsic"], camera["intrinsic"]
        assert all(isinstance(v, float) for v in (*extrinsic.values(), *intrinsic.values()))
        assert extrinsic["baseline"] == pytest.approx(0.209313)
        assert intrinsic["fx"] == pytest.approx(2262.52 * WIDTH / 2048)
        assert intrinsic["fy"] > 0
        assert abs(intrinsic["u0"] - WIDTH / 2) < 0.1 * WIDTH
        assert abs(intrinsic["v0"] - HEIGHT / 2) < 0.1 * HEIGHT
        assert extrinsic["z"] > 0  # camera height above the ground
        cameras.append(camera)
    assert all(c == cameras[0] for c in cameras)  # one camera


# ------------------------------------------------------------------ determinism and CLI


def test_same_arguments_write_identical_files(tmp_path):
    runs = {"a": 5, "b": 5, "other seed": 6}
    files = {}
    for run, seed in runs.items():
        generate_synthetic_dvps(str(tmp_path / run), "cityscapes", "train", 2, 2, 64, 128, seed)
        files[run] = _all_files(tmp_path / run)
    assert files["a"] == files["b"]
    assert files["other seed"].keys() == files["a"].keys()
    images = [name for name in files["a"] if name.startswith("leftImg8bit")]
    assert len(images) == 4
    assert all(files["other seed"][name] != files["a"][name] for name in images)


def test_command_line_tool(tmp_path):
    out = tmp_path / "cli"
    args = ["--split", "train", "--sequences", "2", "--frames", "2", "--height", "64"]
    args += ["--width", "96", "--seed", "2"]
    result = subprocess.run(
        [sys.executable, str(CLI), "--format", "cityscapes", "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"Wrote 4 frames of cityscapes train (2 x 2, 64x96) to {out / 'leftImg8bit' / 'train'}"
        in result.stdout
    )
    assert "the dataset loader reads back 4 frames." in result.stdout
    assert "Warning" not in result.stdout
    generate_synthetic_dvps(str(tmp_path / "api"), "cityscapes", "train", 2, 2, 64, 96, 2)
    assert _all_files(out) == _all_files(tmp_path / "api")
    assert (
        out / "gtFine" / "train" / "bochum" / "bochum_000001_000001_gtFine_labelTrainIds.png"
    ).is_file()
