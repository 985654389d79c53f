"""tools/demo.py with a randomly initialized small model on synthetic frames, an MP4 and an
image: the files it writes, their sizes and formats, and its answers to bad input."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from tests.conftest import small_model_cfg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import demo as demo_tool  # noqa: E402

H, W = 64, 128


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A synthetic SemKITTI-DVPS val folder (3 frames), an MP4 of its images, one image, and a
    config file of a small random model."""
    root = tmp_path_factory.mktemp("demo_inputs")
    generate_synthetic_dvps(str(root), "semkitti_dvps", "val", 1, 3, H, W, seed=0)
    folder = root / "video_sequence" / "val"
    images = sorted(folder.glob("*_leftImg8bit.png"))
    video = root / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (W, H))
    for path in images:
        writer.write(cv2.imread(str(path)))
    writer.release()
    cfg = small_model_cfg("synthetic_semkitti_dvps_val", (H, W))
    config = root / "small.yaml"
    config.write_text(cfg.dump())
    return {"folder": folder, "video": video, "image": images[0], "config": config}


def run(inputs, output: Path, *paths, extra=()) -> int:
    return demo_tool.main(
        ["--config-file", str(inputs["config"]), "--input", *map(str, paths)]
        + ["--output", str(output), *extra]
    )


@contextlib.contextmanager
def logged() -> Iterator[list[str]]:
    """The messages panoptic_depthlab logs inside the block, from a handler on its logger (the
    tool's setup_logger keeps them from pytest's caplog, and its stdout handler is bound to the
    stdout of the first test that ran the tool)."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("panoptic_depthlab").addHandler(handler)
    try:
        yield messages
    finally:
        logging.getLogger("panoptic_depthlab").removeHandler(handler)


def read_ply_header(path: Path) -> tuple[int, bytes]:
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    count = int(
        next(line for line in header.split(b"\n") if line.startswith(b"element vertex")).split()[2]
    )
    return count, body


def test_folder_of_frames(inputs, tmp_path):
    with logged() as messages:
        assert run(inputs, tmp_path, inputs["folder"], extra=["--pointcloud"]) == 0
    assert any(m.startswith("MODEL.WEIGHTS is empty") for m in messages)
    root = tmp_path / "val"
    frames = sorted(p.name.removesuffix(".png") for p in inputs["folder"].glob("*_leftImg8bit.png"))
    assert len(frames) == 3
    vis = sorted(root.glob("vis/*.png"))
    assert [p.stem for p in vis] == frames
    picture = cv2.imread(str(vis[0]))
    assert picture.dtype == np.uint8 and picture.shape[0] > 2 * H and picture.shape[1] > 2 * W
    # Official SemKITTI-DVPS files, named after the input frames.
    for frame in frames:
        image_id = frame.removesuffix("_leftImg8bit")
        for suffix, dtype in (("_cat.png", np.uint8), ("_ins.png", np.uint16)):
            png = cv2.imread(str(root / "panoptic" / (image_id + suffix)), cv2.IMREAD_UNCHANGED)
            assert png.shape == (H, W) and png.dtype == dtype, suffix
        depth = cv2.imread(str(root / "depth" / f"{frame}.png"), cv2.IMREAD_UNCHANGED)
        assert depth.shape == (H, W) and depth.dtype == np.uint16
        segments = json.loads((root / "segments" / f"{frame}.json").read_text())
        assert (segments["height"], segments["width"]) == (H, W)
        assert segments["untrained"] == ["panoptic", "depth", "tracking"]  # no MODEL.WEIGHTS
        assert sum(s["area"] for s in segments["segments"]) <= H * W
        assert all({"id", "class", "area", "depth_median"} <= set(s) for s in segments["segments"])
        # Point cloud: the focal length came from the SemKITTI-DVPS depth file name.
        count, body = read_ply_header(root / "pointcloud" / f"{frame}.ply")
        assert (
            count == int((depth > 0).sum()) and len(body) == 21 * count
        )  # 3 float, 3 uchar, ushort, uint
    video = cv2.VideoCapture(str(root / "val.mp4"))
    assert video.isOpened() and video.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    ok, first = video.read()
    assert ok and first.shape == picture.shape
    assert not [p for p in root.rglob("*") if ".tmp" in p.name or ".partial" in p.name]


def test_video_file(inputs, tmp_path):
    assert run(inputs, tmp_path, inputs["video"]) == 0
    root = tmp_path / "clip"
    assert sorted(p.stem for p in root.glob("vis/*.png")) == [f"clip_{i:06d}" for i in range(3)]
    assert sorted(p.name for p in root.glob("depth/*.png")) == [
        f"clip_{i:06d}_leftImg8bit.png" for i in range(3)
    ]
    assert cv2.VideoCapture(str(root / "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 3


def test_single_image(inputs, tmp_path):
    assert run(inputs, tmp_path, inputs["image"]) == 0
    root = tmp_path / "images"
    frame = inputs["image"].stem
    assert [p.stem for p in root.glob("vis/*.png")] == [frame]
    assert (root / "segments" / f"{frame}.json").is_file()
    assert not list(root.glob("*.mp4"))  # no video of a single image


def test_bad_inputs(inputs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"not a video")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "a.png"), np.zeros((H, W, 3), np.uint8))
    cv2.imwrite(str(mixed / "b.png"), np.zeros((H + 32, W, 3), np.uint8))
    cases = [
        ((empty,), (), "no images"),
        ((tmp_path / "missing.png",), (), "no such file or folder"),
        ((broken,), (), "not a readable image"),
        ((bad_video,), (), "cannot open this video"),
        ((mixed,), (), "the frames of one sequence must have one size"),
        ((inputs["video"],), ("--pointcloud",), "needs the focal length"),
    ]
    for paths, extra, message in cases:
        out = tmp_path / "out"
        assert run(inputs, out, *paths, extra=extra) == 2, message
        err = capsys.readouterr().err
        assert message in err, err
        assert str(paths[0]) in err or "clip" in err
    # Every case is found before any work: not even the output folder was made (the mixed
    # folder's first frame used to be written before its second was found to differ).
    assert not (tmp_path / "out").exists()


def test_cuda_device_of_a_config_falls_back_to_cpu_without_cuda(inputs, tmp_path):
    # configs keep Detectron2's default MODEL.DEVICE cuda for GPU users (make demo's config too)
    with logged() as messages:
        code = run(inputs, tmp_path, inputs["image"], extra=["--opts", "MODEL.DEVICE", "cuda"])
    assert code == 0
    assert [p.stem for p in (tmp_path / "images").glob("vis/*.png")] == [inputs["image"].stem]
    if not torch.cuda.is_available():
        assert "CUDA is not available: MODEL.DEVICE cuda -> cpu." in messages
