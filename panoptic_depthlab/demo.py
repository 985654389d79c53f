"""The demo behind ``tools/demo.py``: predict images, folders of frames and videos, and write
pictures, official prediction files, per-frame JSON, an MP4 and optional point clouds.

Inputs become *sequences*: a folder of frames (sorted by name) or a video file is one sequence,
tracked by :meth:`PanopticDepthLab.inference_sequence`; each loose image is a sequence of one.
In a folder of a DVPS split (images beside their labels and depth), only the
``*_leftImg8bit.png`` images are frames.
Outputs of a sequence go to ``OUTPUT/<name>/`` (loose images share ``OUTPUT/images/``):

=========================  =================================================================
``vis/<frame>.png``        input, labelled panoptic overlay, depth map with scale bar, and
                           panoptic-depth view (:func:`.visualization.visualize_frame`)
``panoptic/``, ``depth/``  the official prediction files of the model's dataset format, named
                           ``<frame>_leftImg8bit.png`` (inputs named so keep their name), ready
                           for ``tools/eval_dvpq.py``
``segments/<frame>.json``  every segment: id, class, area, depth mean / median (m), center
``<name>.mp4``             the ``vis`` pictures as a video (folders and videos only)
``pointcloud/<frame>.ply`` with ``--pointcloud``: xyz (m), color, class and instance per pixel
=========================  =================================================================

Every file is written to a temporary name and renamed; a bad input stops the run with a
:class:`DemoInputError` naming it, leaving complete files only.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from tqdm import tqdm

from .checkpoint import PanopticDepthLabCheckpointer
from .data.datasets.dvps import SEMKITTI_DEPTH_NAME
from .evaluation.formats import IMAGE_SUFFIX, write_prediction
from .files import write_json_atomic, write_png_atomic
from .panoptic_ids import split_panoptic
from .pointcloud import frame_point_cloud
from .visualization import visualize_frame

__all__ = ["DemoInputError", "Sequence", "find_sequences", "run_demo"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# Frames per second of the MP4 made from a folder of frames.
FOLDER_FPS = 10.0


class DemoInputError(ValueError):
    """An input the demo cannot use: the message names it and says what was expected."""


@dataclass
class Sequence:
    """Frames tracked together.

    Attributes:
        name: output folder name.
        frames: yields (frame name, (H, W, 3) uint8 RGB image, source file or None).
        length: number of frames (a video's count is its container's estimate).
        fps: frames per second of its MP4; None writes no MP4 (loose images).
    """

    name: str
    frames: Callable[[], Iterator[tuple[str, np.ndarray, str | None]]]
    length: int
    fps: float | None


def _read_image(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DemoInputError(f"{path}: not a readable image (OpenCV could not decode it).")
    return image[..., ::-1]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path.rstrip(os.sep)))[0]


def _folder_frames(files: list[str]) -> Callable[[], Iterator[tuple[str, np.ndarray, str]]]:
    def frames() -> Iterator[tuple[str, np.ndarray, str]]:
        size = None
        for path in files:
            image = _read_image(path)
            if size is not None and image.shape[:2] != size:
                raise DemoInputError(
                    f"{path}: size (H, W) = {image.shape[:2]} differs from {size} of "
                    f"{files[0]}; the frames of one sequence must have one size."
                )
            size = image.shape[:2]
            yield _stem(path), image, path

    return frames


def _video_frames(path: str) -> Callable[[], Iterator[tuple[str, np.ndarray, None]]]:
    def frames() -> Iterator[tuple[str, np.ndarray, None]]:
        capture = cv2.VideoCapture(path)
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield f"{_stem(path)}_{index:06d}", image[..., ::-1], None
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise DemoInputError(f"{path}: no frame could be decoded from this video.")

    return frames


def find_sequences(paths: list[str]) -> list[Sequence]:
    """Turn the demo's input paths into sequences, checking that each exists and is usable.

    Args:
        paths: image files, folders of frames, or video files (by extension:
            ``VIDEO_EXTENSIONS``).

    Raises:
        DemoInputError: a path that does not exist, an empty folder, a video OpenCV cannot open,
            a file that is neither an image nor a video.
    """
    sequences, images = [], []
    for path in paths:
        if os.path.isdir(path):
            files = sorted(
                os.path.join(path, f)
                for f in os.listdir(path)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
            dvps_images = [f for f in files if f.endswith(IMAGE_SUFFIX)]
            files = dvps_images or files
            if not files:
                raise DemoInputError(
                    f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder."
                )
            sequences.append(Sequence(_stem(path), _folder_frames(files), len(files), FOLDER_FPS))
        elif not os.path.isfile(path):
            raise DemoInputError(f"{path}: no such file or folder.")
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            capture = cv2.VideoCapture(path)
            opened = capture.isOpened()
            length = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = capture.get(cv2.CAP_PROP_FPS)
            capture.release()
            if not opened:
                raise DemoInputError(f"{path}: OpenCV cannot open this video.")
            sequences.append(Sequence(_stem(path), _video_frames(path), length, fps or 10.0))
        elif path.lower().endswith(IMAGE_EXTENSIONS):
            images.append(path)
        else:
            raise DemoInputError(
                f"{path}: neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                f"({', '.join(VIDEO_EXTENSIONS)})."
            )
    sequences += [Sequence("images", _folder_frames([p]), 1, None) for p in images]
    return sequences


def focal_length_of(image_file: str | None) -> float | None:
    """The focal length (pixels) a SemKITTI-DVPS frame's depth file name carries, if any:
    ``<id>_depth_<focal>.png`` beside ``<id>_leftImg8bit.png``."""
    if image_file is None or not image_file.endswith(IMAGE_SUFFIX):
        return None
    prefix = image_file[: -len(IMAGE_SUFFIX)]
    for candidate in sorted(glob.glob(glob.escape(prefix) + "_depth_*.png")):
        match = SEMKITTI_DEPTH_NAME.match(os.path.basename(candidate))
        if match:
            return float(match["focal"])
    return None


def _official_name(frame: str) -> str:
    """The image name the official prediction files are named after."""
    return (
        frame + ".png"
        if frame.endswith(IMAGE_SUFFIX.removesuffix(".png"))
        else frame + IMAGE_SUFFIX
    )


def _model_inputs(
    sequence: Sequence, bgr: bool, pending: list[tuple[str, np.ndarray, str | None]]
) -> Iterator[dict[str, Any]]:
    """Model inputs of a sequence's frames; each frame is also appended to ``pending``."""
    for frame in sequence.frames():
        pending.append(frame)
        image = frame[1][..., ::-1] if bgr else frame[1]
        yield {"image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)}


def _segments_json(
    segments_info: list[dict[str, Any]], class_names: list[str]
) -> list[dict[str, Any]]:
    """Segments for JSON: class names added, NaN depths as null."""
    rows = []
    for s in segments_info:
        row = {k: v for k, v in s.items() if k not in ("depth_mean", "depth_median")}
        row["class"] = class_names[s["category_id"]]
        for key in ("depth_mean", "depth_median"):
            row[key] = None if np.isnan(s[key]) else s[key]
        rows.append(row)
    return rows


class _VideoWriter:
    """An MP4 written under a temporary name, renamed when complete, removed on failure."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps
        self.tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.partial.mp4")
        self.writer: cv2.VideoWriter | None = None

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            size = (rgb.shape[1], rgb.shape[0])
            self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not self.writer.isOpened():
                raise RuntimeError(f"{self.tmp}: OpenCV cannot write an MP4 (mp4v) here.")
        self.writer.write(np.ascontiguousarray(rgb[..., ::-1]))

    def close(self, complete: bool) -> None:
        if self.writer is not None:
            self.writer.release()
        if complete and self.writer is not None:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def build_demo_model(cfg: CfgNode) -> torch.nn.Module:
    """The config's model in eval mode, with ``MODEL.WEIGHTS`` loaded; a warning without."""
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        PanopticDepthLabCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning(
            "MODEL.WEIGHTS is empty: the model is randomly initialized and its outputs are "
            "random. Pass trained weights with --opts MODEL.WEIGHTS path/to/model_final.pth."
        )
    return model


def run_demo(
    cfg: CfgNode,
    sequences: list[Sequence],
    output_dir: str,
    pointcloud: bool = False,
    focal_length: float | None = None,
) -> int:
    """Predict every frame of the sequences and write the outputs (module docstring).

    Args:
        cfg: a PanopticDepthLab config (``MODEL.WEIGHTS``, ``MODEL.DEVICE``, ``INPUT.FORMAT``).
        sequences: from :func:`find_sequences`.
        output_dir: root of the outputs.
        pointcloud: also write a PLY per frame; needs ``focal_length`` or SemKITTI-DVPS input
            file names that carry it.
        focal_length: pixels; overrides the one in file names.

    Returns:
        The number of frames written.
    """
    model = build_demo_model(cfg)
    meta = model.meta
    if getattr(meta, "dataset_format", None) is None:
        raise DemoInputError(
            f"DATASETS.TEST[0] / DATASETS.TRAIN[0] = {cfg.DATASETS.TRAIN[0]!r} is not a "
            "registered DVPS dataset; the demo needs its classes and prediction format."
        )
    bgr = cfg.INPUT.FORMAT == "BGR"
    total = sum(s.length for s in sequences)
    written = 0
    with tqdm(total=total, unit="frame", desc="demo") as bar:
        for sequence in sequences:
            root = os.path.join(output_dir, sequence.name)
            video = (
                _VideoWriter(os.path.join(root, f"{sequence.name}.mp4"), sequence.fps)
                if sequence.fps is not None
                else None
            )
            pending: list[tuple[str, np.ndarray, str | None]] = []
            complete = False
            try:
                os.makedirs(root, exist_ok=True)
                for output in model.inference_sequence(_model_inputs(sequence, bgr, pending)):
                    name, image, source = pending.pop(0)
                    panoptic = output["panoptic_seg"][0].cpu().numpy()
                    segments_info = output["panoptic_seg"][1]
                    depth = output["depth"].cpu().numpy()
                    picture = _write_frame(
                        root, name, image, source, panoptic, segments_info, depth, meta
                    )
                    if video is not None:
                        video.write(picture)
                    if pointcloud:
                        focal = focal_length or focal_length_of(source)
                        if focal is None:
                            raise DemoInputError(
                                f"{source or name}: --pointcloud needs the focal length; pass "
                                "--focal-length (pixels) or use SemKITTI-DVPS frames whose "
                                "depth file names carry it."
                            )
                        frame_point_cloud(
                            os.path.join(root, "pointcloud", f"{name}.ply"),
                            image,
                            *split_panoptic(panoptic, meta.label_divisor, meta.num_classes),
                            depth,
                            focal,
                        )
                    written += 1
                    bar.update(1)
                complete = True
            finally:
                if video is not None:
                    video.close(complete)
    logger.info("Wrote %d frames to %s", written, output_dir)
    return written


def _write_frame(
    root: str,
    name: str,
    image: np.ndarray,
    source: str | None,
    panoptic: np.ndarray,
    segments_info: list[dict[str, Any]],
    depth: np.ndarray,
    meta: Any,
) -> np.ndarray:
    """Write one frame's picture, official files and JSON; return the picture (RGB).

    Args:
        panoptic: (H, W) int64 sequence ids, -1 = void; ``depth``: (H, W) meters.
    """
    picture = visualize_frame(image, panoptic, segments_info, depth, meta)
    write_png_atomic(os.path.join(root, "vis", f"{name}.png"), picture[..., ::-1])
    write_prediction(
        os.path.join(root, "panoptic"),
        os.path.join(root, "depth"),
        _official_name(name),
        meta.as_dict(),
        *split_panoptic(panoptic, meta.label_divisor, meta.num_classes),
        depth,
    )
    height, width = panoptic.shape
    write_json_atomic(
        os.path.join(root, "segments", f"{name}.json"),
        {
            "frame": name,
            "file_name": source,
            "height": height,
            "width": width,
            "segments": _segments_json(segments_info, meta.stuff_classes),
        },
    )
    return picture
