"""The synthetic DVPS generator, checked on the PNG files it writes."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from panoptic_depthlab.data.synthetic import generate_synthetic_dvps

CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"
FORMATS = (CITYSCAPES, SEMKITTI)
SPLITS = ("train", "val")
DEFAULT = {"num_sequences": 4, "num_frames": 6, "height": 256, "width": 512}
MAX_DEPTH_PNG = 88 * 256  # 88 m at 256 per meter
CITYSCAPES_THINGS = set(range(11, 19))
SEMKITTI_THINGS = set(range(8))
SKY, VOID = 10, 32  # Cityscapes-DVPS train id of sky; class of void pixels

CITYSCAPES_NAME = re.compile(
    r"(\d{6})_(\d{6})_([a-z]+_\d{6}_\d{6})_(leftImg8bit|gtFine_instanceTrainIds|depth)\.png"
)
CLI = Path(__file__).resolve().parents[2] / "tools" / "make_synthetic_dvps.py"


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _read_split(split_dir: Path, fmt: str) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Per (sequence, frame): RGB ``image`` (H, W, 3), ``cls``, ``inst`` and ``depth`` (H, W)."""
    frames = {}
    for image in sorted(split_dir.glob("*_leftImg8bit.png")):
        prefix = image.name[: -len("_leftImg8bit.png")]
        arrays = {"image": _read(image)[..., ::-1]}
        if fmt == CITYSCAPES:
            panoptic = _read(split_dir / f"{prefix}_gtFine_instanceTrainIds.png").astype(np.int64)
            arrays["cls"], arrays["inst"] = panoptic // 1000, panoptic % 1000
            arrays["depth"] = _read(split_dir / f"{prefix}_depth.png")
        else:
            arrays["cls"] = _read(split_dir / f"{prefix}_gtFine_class.png")
            arrays["inst"] = _read(split_dir / f"{prefix}_gtFine_instance.png")
            (depth,) = split_dir.glob(f"{prefix}_depth_*.png")
            arrays["depth"] = _read(depth)
        frames[int(prefix[:6]), int(prefix[7:13])] = arrays
    return frames


@pytest.fixture(scope="module")
def default_data(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Per (format, split): the frames of a dataset of the default size (seed 0 train, 1 val)."""
    data = {}
    for fmt in FORMATS:
        root = tmp_path_factory.mktemp(fmt)
        for seed, split in enumerate(SPLITS):
            generate_synthetic_dvps(str(root), fmt, split, seed=seed, **DEFAULT)
            data[fmt, split] = _read_split(root / "video_sequence" / split, fmt)
    return data


def _sequences(frames: dict) -> dict[int, list[dict[str, np.ndarray]]]:
    """Sequence id -> its frames' arrays, in frame order."""
    seqs = {}
    for (seq, _), arrays in sorted(frames.items()):
        seqs.setdefault(seq, []).append(arrays)
    return seqs


def _instances(arrays: dict[str, np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    """(class, instance id) -> (H, W) mask, for every labelled thing instance of a frame."""
    cls, inst = arrays["cls"], arrays["inst"]
    pairs = np.unique(np.stack([cls[inst > 0], inst[inst > 0]], 1), axis=0)
    return {(int(c), int(i)): (cls == c) & (inst == i) for c, i in pairs}


# ------------------------------------------------------------------ files


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_arguments_write_identical_files(tmp_path, fmt):
    runs = {"a": ("train", 5), "b": ("train", 5), "other seed": ("train", 6), "val": ("val", 5)}
    files = {}
    for run, (split, seed) in runs.items():
        generate_synthetic_dvps(str(tmp_path / run), fmt, split, 2, 3, 64, 128, seed)
        split_dir = tmp_path / run / "video_sequence" / split
        files[run] = {p.name: p.read_bytes() for p in split_dir.iterdir()}
    assert files["a"] == files["b"]
    for run in ("other seed", "val"):
        assert files[run].keys() == files["a"].keys()
        for name, data in files["a"].items():
            assert files[run][name] != data, (run, name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_file_names_png_modes_and_sizes(tmp_path, fmt):
    seqs, frames, height, width = 2, 3, 64, 96
    images = generate_synthetic_dvps(str(tmp_path), fmt, "val", seqs, frames, height, width, 0)
    split_dir = tmp_path / "video_sequence" / "val"
    names = sorted(p.name for p in split_dir.iterdir())
    pairs = [(s, f) for s in range(seqs) for f in range(frames)]
    if fmt == CITYSCAPES:
        matches = [CITYSCAPES_NAME.fullmatch(name) for name in names]
        assert all(matches), names
        kinds = {}
        for m in matches:
            kinds.setdefault(m.group(1, 2, 3), set()).add(m.group(4))
        assert [(int(s), int(f)) for s, f, _ in sorted(kinds)] == pairs
        assert all(k == {"leftImg8bit", "gtFine_instanceTrainIds", "depth"} for k in kinds.values())
    else:
        focal = f"{718.856 * width / 1242:.3f}"
        suffixes = ("leftImg8bit", "gtFine_class", "gtFine_instance", f"depth_{focal}")
        expected = {f"{s:06d}_{f:06d}_{suffix}.png" for s, f in pairs for suffix in suffixes}
        assert set(names) == expected
    assert images == [str(split_dir / name) for name in names if name.endswith("leftImg8bit.png")]
    for name in names:
        with Image.open(split_dir / name) as im:
            assert im.format == "PNG" and im.size == (width, height), name
            if name.endswith("leftImg8bit.png"):
                assert im.mode == "RGB"
            elif name.endswith("gtFine_class.png"):
                assert im.mode == "L"
            else:
                assert im.mode == "I;16", name


@pytest.mark.parametrize(
    "argument,value",
    [
        ("dataset_format", "kitti"),
        ("split", "test"),
        ("num_sequences", 0),
        ("num_frames", -1),
        ("num_frames", 2.5),
        ("height", 63),
        ("width", 32),
        ("seed", -1),
    ],
)
def test_bad_arguments_are_rejected_before_writing(tmp_path, argument, value):
    args = {"dataset_format": CITYSCAPES, "split": "train", "seed": 0, **DEFAULT}
    args[argument] = value
    with pytest.raises(ValueError, match=re.escape(f"{argument}={value!r}") + ".*expected"):
        generate_synthetic_dvps(str(tmp_path), **args)
    assert list(tmp_path.iterdir()) == []


def test_command_line_tool(tmp_path, capsys):
    main = runpy.run_path(str(CLI))["main"]
    args = ["--format", SEMKITTI, "--out", str(tmp_path), "--split", "val", "--frames", "2"]
    main(args + ["--sequences", "1", "--height", "64", "--width", "80", "--seed", "3"])
    split_dir = tmp_path / "video_sequence" / "val"
    assert f"Wrote 2 frames of {SEMKITTI} val (1 x 2, 64x80) to {split_dir}" in (
        capsys.readouterr().out
    )
    assert len(list(split_dir.glob("*_leftImg8bit.png"))) == 2
    with pytest.raises(SystemExit) as e:
        main(args + ["--sequences", "0"])
    assert e.value.code == 2
    assert "num_sequences=0 is invalid" in capsys.readouterr().err


# ------------------------------------------------------------------ content


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_class_appears(default_data, fmt, split):
    frames = default_data[fmt, split].values()
    classes = set().union(*(np.unique(f["cls"]).tolist() for f in frames))
    assert classes == set(range(19)) | {VOID if fmt == CITYSCAPES else 255}


@pytest.mark.parametrize("split", SPLITS)
def test_cityscapes_void_and_crowd(default_data, split):
    frames = list(default_data[CITYSCAPES, split].values())
    for f in frames:
        assert (f["inst"][f["cls"] == VOID] == 0).all()  # void pixels are exactly 32000
        assert (f["inst"][f["cls"] < 11] == 0).all()  # stuff has instance 0
    crowd = [np.isin(f["cls"], list(CITYSCAPES_THINGS)) & (f["inst"] == 0) for f in frames]
    assert any(c.any() for c in crowd)


@pytest.mark.parametrize("fmt", FORMATS)
def test_instance_ids_persist_within_sequences(default_data, fmt):
    things = CITYSCAPES_THINGS if fmt == CITYSCAPES else SEMKITTI_THINGS
    for seq, frames in _sequences(default_data[fmt, "train"]).items():
        instances = [_instances(f) for f in frames]
        for masks in instances:
            assert masks and {c for c, _ in masks} <= things
        for now, nxt in zip(instances, instances[1:], strict=False):
            shared = now.keys() & nxt.keys()
            assert shared, seq
            assert any((now[k] != nxt[k]).any() for k in shared), seq  # something moves
        ids = [set(masks) for masks in instances]
        assert set.union(*ids) != set.intersection(*ids), seq  # something enters or leaves


def test_cityscapes_depth(default_data):
    for f in default_data[CITYSCAPES, "val"].values():
        cls, depth = f["cls"], f["depth"]
        assert depth.max() <= MAX_DEPTH_PNG
        assert ((depth == 0) == np.isin(cls, [SKY, VOID])).all()
        for (c, i), mask in _instances(f).items():  # upright objects: depth of their foot
            assert len(np.unique(depth[mask])) == 1, (c, i)
        road = cls == 0
        for row in np.flatnonzero(road.any(1)):  # flat ground: depth depends on the row only
            assert len(np.unique(depth[row][road[row]])) == 1, row
        red, _, blue = f["image"][cls == SKY].mean(0)
        assert blue > red  # channels in RGB order


def test_semkitti_labels_and_depth_are_sparse_and_aligned(default_data):
    for f in default_data[SEMKITTI, "val"].values():
        labelled = f["cls"] != 255
        assert ((f["depth"] > 0) == labelled).all()
        assert f["depth"].max() <= MAX_DEPTH_PNG
        assert (~labelled).mean() > 0.8
        assert ((f["inst"] > 0) == np.isin(f["cls"], list(SEMKITTI_THINGS))).all()
