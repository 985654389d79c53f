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

import panoptic_depthlab.demo as demo_module
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
def logged(level: int = logging.INFO) -> Iterator[list[str]]:
    """The messages panoptic_depthlab logs at ``level`` or above inside the block, from a
    handler on its logger (the tool's setup_logger keeps them from pytest's caplog, and its
    stdout handler is bound to the stdout of the first test that ran the tool)."""
    messages: list[str] = []
    handler = logging.Handler(level)
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


def fourcc(capture: cv2.VideoCapture) -> str:
    """The four characters of the codec OpenCV reads back (``CAP_PROP_FOURCC``)."""
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr(code >> 8 * i & 0xFF) for i in range(4))


def read_video(path: Path) -> tuple[str, int, list[np.ndarray]]:
    """The codec OpenCV reads back, the frame count of the header and the decoded frames."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    codec, count = fourcc(capture), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return codec, count, frames


def test_mp4_is_vp9_which_browsers_play(inputs, tmp_path):
    # mp4v (MPEG-4 Part 2) does not play in Chrome, Firefox or VS Code; VP9 in MP4 does.
    # OpenCV's FFmpeg reads a VP9 stream back as "VP90"; the MP4's sample entry is "vp09".
    with logged(logging.WARNING) as warnings:
        assert run(inputs, tmp_path, inputs["folder"]) == 0
    root = tmp_path / "val"
    assert not [m for m in warnings if "browsers" in m]  # no fallback
    pictures = [cv2.imread(str(p)) for p in sorted(root.glob("vis/*.png"))]
    assert len(pictures) == 3
    codec, count, frames = read_video(root / "val.mp4")
    assert codec == "VP90"
    assert b"vp09" in (root / "val.mp4").read_bytes()
    assert count == len(frames) == len(pictures)
    for frame, picture in zip(frames, pictures, strict=True):
        assert frame.shape == picture.shape and frame.dtype == np.uint8
        # lossy (a mean error of 4 to 8 at this size), but the picture, in BGR order
        error = np.abs(frame.astype(int) - picture.astype(int)).mean()
        swapped = np.abs(frame.astype(int) - picture[..., ::-1].astype(int)).mean()
        assert error < 16 and 3 * error < swapped, (error, swapped)
    assert not [p for p in root.rglob("*") if ".partial" in p.name]


def test_mp4_falls_back_to_mp4v_with_a_warning(inputs, tmp_path, monkeypatch):
    # An OpenCV that cannot open the first codec (no VP9 encoder): "zzzz" opens nowhere.
    monkeypatch.setattr(demo_module, "_MP4_CODECS", ("zzzz", "mp4v"))
    with logged(logging.WARNING) as warnings:
        assert run(inputs, tmp_path, inputs["folder"]) == 0
    video = tmp_path / "val" / "val.mp4"
    fallback = [m for m in warnings if m.startswith(f"{video}: written with codec 'mp4v'")]
    assert len(fallback) == 1, warnings
    assert "browsers" in fallback[0] and "'zzzz'" in fallback[0]
    codec, count, frames = read_video(video)
    assert codec == "FMP4"  # how OpenCV's FFmpeg reads an mp4v stream back
    assert b"mp4v" in video.read_bytes()
    assert count == len(frames) == 3
    assert frames[0].shape == cv2.imread(str(next((tmp_path / "val").glob("vis/*.png")))).shape


def test_mp4_without_any_codec_is_one_line(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_module, "_MP4_CODECS", ("zzzz", "yyyy"))
    assert run(inputs, tmp_path, inputs["folder"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(tmp_path / "val" / "val.mp4") in line and "cannot write" in line, line
    assert not list((tmp_path / "val").glob("*.mp4")) and not list(tmp_path.rglob("*.partial*"))


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


def test_segments_json_says_which_tracks_were_revived():
    """The per-frame JSON keeps every segment key (``revived_after`` of a track the tracker's
    memory revived in this frame), adds the class name and writes NaN depths as null."""
    segments = [
        {"id": 7, "category_id": 0, "isthing": False, "area": 5, "depth_mean": float("nan")}
        | {"depth_median": float("nan"), "depth_valid_pixels": 0},
        {"id": 2**33 + 4, "category_id": 2, "isthing": True, "area": 9, "depth_mean": 12.5}
        | {"depth_median": 12.0, "depth_valid_pixels": 9, "center": [3, 4], "revived_after": 2},
    ]
    rows = json.loads(json.dumps(demo_module._segments_json(segments, ["road", "sky", "car"])))
    assert rows[0] == {
        "id": 7, "category_id": 0, "isthing": False, "area": 5, "depth_valid_pixels": 0,
        "class": "road", "depth_mean": None, "depth_median": None,
    }  # fmt: skip
    assert rows[1]["revived_after"] == 2 and rows[1]["class"] == "car"
    assert "revived_after" not in rows[0]
