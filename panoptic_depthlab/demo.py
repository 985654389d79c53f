"""The demo behind ``tools/demo.py``: predict images, folders of frames and videos, and write
pictures, official prediction files, per-frame JSON, an MP4 and optional point clouds.

Inputs become *sequences*: a video file is one sequence, tracked by a
:class:`~panoptic_depthlab.Predictor` (the eager model of a config, or an exported folder's
graphs: ``--exported``); so is a folder of frames (sorted by name), unless
its frames are those of several DVPS sequences (names ``<sequence>_<frame>_...``, as in a split
folder ``video_sequence/val``): then each sequence id is tracked on its own. In a folder of a
DVPS split (images beside their labels and depth), only the ``*_leftImg8bit.png`` images are
frames. Each loose image is a sequence of one. Input paths may be glob patterns
(``'clips/*.mp4'``), expanded in sorted order.

Outputs of a sequence go to ``OUTPUT/<name>/`` (loose images share ``OUTPUT/images/``), one
folder per sequence, never shared: a name already taken (two inputs ``c1/cam`` and ``c2/cam``)
becomes ``cam_2``, ``cam_3``, ... with a log line, and so does a loose image's frame name.

=========================  =================================================================
``vis/<frame>.png``        input, labelled panoptic overlay, depth map with scale bar, and
                           panoptic-depth view (:func:`.visualization.visualize_frame`)
``panoptic/``, ``depth/``  the official prediction files of the model's dataset format, named
                           ``<frame>_leftImg8bit.png`` (inputs named so keep their name), ready
                           for ``tools/eval_dvpq.py``
``segments/<frame>.json``  every segment: id, class, area, depth mean / median (m), center,
                           and ``revived_after`` (frames missing) on a thing whose track the
                           tracker's memory revived in this frame; ``untrained``: the outputs
                           no trained weights were loaded for
``<name>.mp4``             the ``vis`` pictures as a video (folders and videos only); VP9,
                           which browsers play, or MPEG-4 Part 2 (``mp4v``, desktop players
                           only) with a warning where OpenCV cannot encode VP9
``pointcloud/<frame>.ply`` with ``--pointcloud``: xyz (m), color, class and instance per pixel
=========================  =================================================================

Honest outputs: the checkpointer's per-part table is logged, and an output whose branch was not
loaded from ``MODEL.WEIGHTS`` (``depth``, ``tracking``, ``panoptic``; all of them without
weights) is warned about and marked ``UNTRAINED`` in the pictures and the JSON.

Checked before any frame is decoded or the model built, each a :class:`DemoInputError` naming
the input: paths, globs, image sizes (from the PNG / JPEG / BMP headers), the minimum frame
size, the focal length of ``--pointcloud``, the dataset's metadata; then the checkpoint file
(:class:`~panoptic_depthlab.checkpoint.CheckpointError`) and the output folder
(:class:`~panoptic_depthlab.files.OutputError`). Every file is written to a temporary name and
renamed; a failure during the run (a full disk: ``OutputError``) also removes the files of the
frame it interrupted and the MP4 being written, so complete frames only are left.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import PIL.Image
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from tqdm import tqdm

from .checkpoint import check_checkpoint_file, download_checkpoint
from .data.datasets.dvps import SEMKITTI_DEPTH_NAME
from .evaluation.formats import (
    IMAGE_SUFFIX,
    depth_file_name,
    frame_id_of,
    prediction_file_names,
    write_prediction,
)
from .files import (
    OutputError,
    check_writable,
    output_errors,
    remove_stale_temporaries,
    write_json_atomic,
    write_png_atomic,
)
from .panoptic_ids import TRACK_LABEL_DIVISOR, split_panoptic
from .pointcloud import frame_point_cloud
from .runtime.exported import ExportedMetadata, read_manifest
from .runtime.predictor import Predictor
from .visualization import visualize_frame

__all__ = [
    "DemoInputError",
    "Sequence",
    "DemoModel",
    "check_sequences",
    "expand_inputs",
    "find_sequences",
    "run_demo",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# Frames per second of the MP4 made from a folder of frames.
FOLDER_FPS = 10.0
# Smallest frame height the pictures can be drawn at: the depth scale bar of
# visualization.depth_scale_bar needs 7 rows at its smallest font (found by trying 2..7).
MIN_PICTURE_HEIGHT = 7
# Folders of a sequence's outputs (beside its MP4).
_OUTPUT_FOLDERS = ("vis", "panoptic", "depth", "segments", "pointcloud")
#: OpenCV fourccs of the demo's MP4, tried in order: VP9 (``vp09``) plays in browsers (Chrome,
#: Firefox, VS Code); MPEG-4 Part 2 (``mp4v``), for an OpenCV whose FFmpeg has no VP9 encoder,
#: plays in desktop players (VLC, mpv) only.
_MP4_CODECS = ("vp09", "mp4v")
# A config key, as a user may leave one among the inputs: "MODEL.WEIGHTS".
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


class DemoInputError(ValueError):
    """An input the demo cannot use: the message names it and says what was expected."""


@dataclass
class Sequence:
    """Frames tracked together.

    Attributes:
        name: output folder name, unique among the sequences of one run.
        input: the input path it comes from (a folder, a video or an image).
        frames: yields (frame name, (H, W, 3) uint8 RGB image, source file or None).
        length: number of frames (a video's count is its container's estimate).
        fps: frames per second of its MP4; None writes no MP4 (loose images).
        size: (H, W) of every frame, pixels, read from the file headers (videos: the container).
        files: the frame files of a folder or an image, in order; None for a video.
    """

    name: str
    input: str
    frames: Callable[[], Iterator[tuple[str, np.ndarray, str | None]]]
    length: int
    fps: float | None
    size: tuple[int, int]
    files: list[str] | None = None


def _read_image(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DemoInputError(f"{path}: not a readable image (OpenCV could not decode it).")
    return image[..., ::-1]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path.rstrip(os.sep)))[0]


def image_size(path: str) -> tuple[int, int]:
    """(H, W) of an image in pixels, read by Pillow from the file's header without decoding
    the pixels (formats Pillow does not know are decoded by OpenCV).

    Raises:
        DemoInputError: not an image OpenCV can read.
    """
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
        return height, width
    except (OSError, SyntaxError, ValueError):  # unknown or damaged: OpenCV decides
        return _read_image(path).shape[:2]


def _folder_frames(
    files: list[str], names: list[str]
) -> Callable[[], Iterator[tuple[str, np.ndarray, str]]]:
    def frames() -> Iterator[tuple[str, np.ndarray, str]]:
        size = None
        for path, name in zip(files, names, strict=True):
            image = _read_image(path)
            # the headers were checked; this catches what they may not say (EXIF rotation)
            if size is not None and image.shape[:2] != size:
                raise DemoInputError(
                    f"{path}: size (H, W) = {image.shape[:2]} differs from {size} of "
                    f"{files[0]}; the frames of one sequence must have one size."
                )
            size = image.shape[:2]
            yield name, image, path

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


def expand_inputs(paths: Iterable[str]) -> list[str]:
    """The input paths with glob patterns (``*``, ``?``, ``[...]``) expanded, each pattern's
    matches sorted by name, in the order given. A path that exists is taken as it is.

    Raises:
        DemoInputError: a pattern that matches nothing.
    """
    expanded = []
    for path in paths:
        if os.path.exists(path) or not glob.has_magic(path):
            expanded.append(path)
            continue
        matches = sorted(glob.glob(path))
        if not matches:
            raise DemoInputError(f"{path}: no file or folder matches this pattern.")
        expanded += matches
    return expanded


def _check_one_size(files: list[str]) -> tuple[int, int]:
    """The common (H, W) of ``files`` from their headers; an error names the first that
    differs from the first file."""
    size = image_size(files[0])
    for path in files[1:]:
        other = image_size(path)
        if other != size:
            raise DemoInputError(
                f"{path}: size (H, W) = {other} differs from {size} of {files[0]}; the frames "
                "of one sequence must have one size."
            )
    return size


def _folder_sequences(path: str) -> list[Sequence]:
    """The sequences of a folder of frames: one, or one per DVPS sequence id."""
    files = sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS)
    )
    dvps_images = [f for f in files if f.endswith(IMAGE_SUFFIX)]
    files = dvps_images or files
    if not files:
        raise DemoInputError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder.")
    frame_ids = [frame_id_of(os.path.basename(f)) for f in files]
    groups: dict[str, list[str]] = {}
    if all(frame_ids):
        for file, frame_id in zip(files, frame_ids, strict=True):
            groups.setdefault(frame_id.split("_")[0], []).append(file)
    if len(groups) <= 1:
        groups = {"": files}
    else:
        logger.info(
            f"{path}: frames of {len(groups)} sequences ({', '.join(groups)}), each tracked "
            "on its own."
        )
    sequences = []
    for sequence_id, group in groups.items():
        name = f"{_stem(path)}_{sequence_id}" if sequence_id else _stem(path)
        frames = _folder_frames(group, [_stem(f) for f in group])
        size = _check_one_size(group)
        sequences.append(Sequence(name, path, frames, len(group), FOLDER_FPS, size, group))
    return sequences


def _video_sequence(path: str) -> Sequence:
    capture = cv2.VideoCapture(path)
    opened = capture.isOpened()
    length = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    capture.release()
    if not opened or min(size) <= 0:
        raise DemoInputError(f"{path}: OpenCV cannot open this video.")
    return Sequence(_stem(path), path, _video_frames(path), length, fps or 10.0, size)


def _claim(name: str, taken: dict[str, str], what: str) -> str:
    """``name``, or ``name_2``, ``name_3``, ... if taken; records it as ``what``'s."""
    unique, count = name, 1
    while unique in taken:
        count += 1
        unique = f"{name}_{count}"
    if unique != name:
        logger.info(f"{what}: written as {unique} ({name} is already that of {taken[name]}).")
    taken[unique] = what
    return unique


def find_sequences(paths: list[str]) -> list[Sequence]:
    """Turn the demo's input paths into sequences, checking that each exists and is usable,
    without decoding any frame (sizes come from the file headers).

    Args:
        paths: image files, folders of frames, or video files (by extension:
            ``VIDEO_EXTENSIONS``), or glob patterns of them.

    Returns:
        Folders and videos in the order given, then one sequence per loose image (all named
        ``images``: they share that folder, under distinct frame names). Sequence names are
        unique: a repeated one gets ``_2``, ``_3``, ... (logged).

    Raises:
        DemoInputError: a path that does not exist, a pattern that matches nothing, an empty
            folder, a video OpenCV cannot open, a file that is neither an image nor a video, an
            unreadable image, frames of one sequence with different sizes.
    """
    sequences, images = [], []
    for path in expand_inputs(paths):
        if os.path.isdir(path):
            sequences += _folder_sequences(path)
        elif not os.path.isfile(path):
            hint = (
                " (a config override? Put KEY VALUE pairs last, after the other options, or "
                "after --opts)"
                if _CONFIG_KEY.match(path)
                else ""
            )
            raise DemoInputError(f"{path}: no such file or folder{hint}.")
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            sequences.append(_video_sequence(path))
        elif path.lower().endswith(IMAGE_EXTENSIONS):
            images.append(path)
        else:
            raise DemoInputError(
                f"{path}: neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                f"({', '.join(VIDEO_EXTENSIONS)})."
            )
    taken: dict[str, str] = {}
    for sequence in sequences:
        sequence.name = _claim(sequence.name, taken, sequence.input)
    if images:
        folder = _claim("images", taken, "the loose images")
        frame_names: dict[str, str] = {}
        for path in images:
            name = _claim(_stem(path), frame_names, path)
            size = image_size(path)
            frames = _folder_frames([path], [name])
            sequences.append(Sequence(folder, path, frames, 1, None, size, [path]))
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


def _focal_lengths(files: Iterable[str]) -> dict[str, float]:
    """Per frame file, the focal length its SemKITTI-DVPS depth file name carries (frames
    without one are left out); each folder is listed once."""
    by_folder: dict[str, dict[str, float]] = {}
    focal = {}
    for path in files:
        folder = os.path.dirname(path)
        if folder not in by_folder:
            by_folder[folder] = {}
            for name in sorted(os.listdir(folder or "."), reverse=True):  # first name wins
                match = SEMKITTI_DEPTH_NAME.match(name)
                if match:
                    by_folder[folder][match["prefix"]] = float(match["focal"])
        name = os.path.basename(path)
        if name.endswith(IMAGE_SUFFIX) and name[: -len(IMAGE_SUFFIX)] in by_folder[folder]:
            focal[path] = by_folder[folder][name[: -len(IMAGE_SUFFIX)]]
    return focal


def _dataset_metadata(cfg: CfgNode) -> Any:
    """The metadata the model reads (``DATASETS.TRAIN[0]``), checked to be a DVPS dataset's."""
    name = cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else ""
    meta = MetadataCatalog.get(name) if name else None
    if meta is None or getattr(meta, "dataset_format", None) is None:
        raise DemoInputError(
            f"DATASETS.TRAIN[0] = {name!r} is not a registered DVPS dataset; the demo needs its "
            "classes and prediction format (e.g. cityscapes_dvps_val, semkitti_dvps_val)."
        )
    return meta


def check_sequences(
    sequences: list[Sequence],
    model: DemoModel,
    pointcloud: bool = False,
    focal_length: float | None = None,
) -> dict[str, float]:
    """Everything about the inputs that can fail later, checked before any work.

    * Frame size: the instance center search keeps the ``model.top_k``
      (``MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE``) best of the H x W center map, so a frame needs
      H x W >= that many pixels (200: at least 15 x 15) and at least 2 pixels each way
      (smaller frames fail inside Detectron2); the picture's depth scale bar needs
      H >= ``MIN_PICTURE_HEIGHT`` (7).
    * ``--pointcloud``: every frame needs a focal length: ``focal_length``, else the one in its
      SemKITTI-DVPS depth file name, else the dataset metadata's ``focal_length`` if it has one.

    Returns:
        Per frame file, the focal length of its file name (empty without ``pointcloud``).

    Raises:
        DemoInputError: naming the first input that fails.
    """
    top_k = model.top_k
    side = max(MIN_PICTURE_HEIGHT, math.isqrt(max(top_k, 1) - 1) + 1)
    for sequence in sequences:
        height, width = sequence.size
        if height < MIN_PICTURE_HEIGHT or width < 2 or height * width < top_k:
            where = sequence.files[0] if sequence.files else sequence.input
            raise DemoInputError(
                f"{where}: frames of {height} x {width} pixels (H x W) are too small; the demo "
                f"needs H >= {MIN_PICTURE_HEIGHT}, W >= 2 and H x W >= {top_k} pixels "
                f"(MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE), e.g. {side} x {side}."
            )
    if not pointcloud or focal_length is not None:
        return {}
    focal = _focal_lengths(f for s in sequences for f in (s.files or []))
    default = getattr(model.metadata, "focal_length", None)
    if default is None:
        for sequence in sequences:
            lacking = [f for f in sequence.files or [sequence.input] if f not in focal]
            if lacking:
                raise DemoInputError(
                    f"{lacking[0]}: --pointcloud needs the focal length, and this input's file "
                    "name does not carry it (SemKITTI-DVPS frames do, in their depth file "
                    "names: <id>_depth_<focal>.png); pass --focal-length PIXELS."
                )
    return focal


def _official_name(frame: str) -> str:
    """The image name the official prediction files are named after."""
    return (
        frame + ".png"
        if frame.endswith(IMAGE_SUFFIX.removesuffix(".png"))
        else frame + IMAGE_SUFFIX
    )


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


def _open_mp4_writer(tmp: str, path: str, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """An OpenCV writer of an MP4 at ``tmp`` (the final file: ``path``) with the first codec of
    :data:`_MP4_CODECS` that OpenCV can open; a warning when it is not the first.

    Args:
        size: ``(width, height)`` of the frames.

    Raises:
        OutputError: no codec opens (an unwritable folder, or no MP4 encoder in OpenCV).
    """
    failed = []
    for codec in _MP4_CODECS:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            if failed:
                logger.warning(
                    f"{path}: written with codec {codec!r}, which browsers (Chrome, Firefox, "
                    f"VS Code) cannot play (desktop players such as VLC can): OpenCV cannot "
                    f"open a writer of codec {', '.join(map(repr, failed))} here, most likely "
                    f"because its FFmpeg has no encoder of it (the opencv-python 4.10 wheels from "
                    f"PyPI encode VP9, 'vp09')."
                )
            return writer
        writer.release()
        failed.append(codec)
    raise OutputError(
        f"{path}: cannot write (OpenCV cannot write an MP4 here with any of the codecs "
        f"{', '.join(map(repr, _MP4_CODECS))})."
    )


class _VideoWriter:
    """An MP4 written under a temporary name, checked, flushed to disk and renamed when
    complete; removed when not. Its codec: the first of :data:`_MP4_CODECS` that OpenCV opens.

    OpenCV's writer does not report failed writes (a full disk), so the finished file is
    reopened and its frame count compared with the frames written before it is renamed.
    """

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps
        self.tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.partial.mp4")
        self.writer: cv2.VideoWriter | None = None
        self.count = 0

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            self.writer = _open_mp4_writer(
                self.tmp, self.path, self.fps, (rgb.shape[1], rgb.shape[0])
            )
        self.writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.count += 1

    def close(self, complete: bool) -> None:
        """Finish the MP4 (``complete``) or remove it.

        Raises:
            OutputError: the finished file does not hold every frame, or cannot be flushed or
                renamed; it is removed.
        """
        if self.writer is not None:
            self.writer.release()
        try:
            if complete and self.writer is not None:
                capture = cv2.VideoCapture(self.tmp)
                frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
                capture.release()
                if frames != self.count:
                    raise OutputError(
                        f"{self.path}: cannot write (the video holds {frames} of its "
                        f"{self.count} frames; is the disk full?)."
                    )
                with output_errors(self.path):
                    fd = os.open(self.tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.replace(self.tmp, self.path)
        finally:
            with contextlib.suppress(OSError):
                os.remove(self.tmp)


@dataclass
class DemoModel:
    """What the demo runs, known before any work: a config's eager model or an exported folder.

    Attributes:
        metadata: the dataset metadata (classes, colors, prediction format, focal length).
        top_k: ``MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE`` (the smallest frame has that many pixels).
        build: makes the :class:`~panoptic_depthlab.Predictor` (loads weights or graphs).
        weights: ``MODEL.WEIGHTS`` of the eager model, checked (and downloaded) before work.
    """

    metadata: Any
    top_k: int
    build: Callable[[], Predictor]
    weights: str = ""

    @classmethod
    def from_config(cls, cfg: CfgNode) -> DemoModel:
        """The eager model of ``cfg`` (``MODEL.WEIGHTS``, ``MODEL.DEVICE``, ``INPUT.FORMAT``)."""
        top_k = int(cfg.MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE)
        return cls(_dataset_metadata(cfg), top_k, lambda: Predictor(cfg), cfg.MODEL.WEIGHTS)

    @classmethod
    def from_exported(cls, folder: str, device: str = "cpu") -> DemoModel:
        """The graphs of an exported folder (tools/export_model.py), run on ``device``.

        Raises:
            ExportedModelError: a folder that cannot be run (checked here, before any work).
        """
        manifest = read_manifest(folder)
        return cls(
            ExportedMetadata(**manifest["metadata"]),
            int(manifest["panoptic_settings"]["top_k"]),
            lambda: Predictor.from_exported(folder, device),
        )


def run_demo(
    model: DemoModel,
    sequences: list[Sequence],
    output_dir: str,
    pointcloud: bool = False,
    focal_length: float | None = None,
) -> int:
    """Predict every frame of the sequences and write the outputs (module docstring).

    Before any frame is decoded: :func:`check_sequences`, the checkpoint file of an eager model
    (:func:`~panoptic_depthlab.checkpoint.check_checkpoint_file`; a URL is downloaded) and the
    output folder (:func:`~panoptic_depthlab.files.check_writable`). Each sequence is tracked
    by a :class:`~panoptic_depthlab.Predictor`, reset between sequences.

    Args:
        model: :meth:`DemoModel.from_config` or :meth:`DemoModel.from_exported`.
        sequences: from :func:`find_sequences`.
        output_dir: root of the outputs.
        pointcloud: also write a PLY per frame; needs ``focal_length``, SemKITTI-DVPS input
            file names that carry it, or a ``focal_length`` in the dataset metadata.
        focal_length: pixels; overrides the one in file names.

    Returns:
        The number of frames written (each with all its files).

    Raises:
        DemoInputError: a bad input (see :func:`find_sequences`, :func:`check_sequences`).
        CheckpointError: a missing, unloadable or undownloadable ``MODEL.WEIGHTS``.
        ExportedModelError: graphs of an exported folder that do not load.
        OutputError: an output that cannot be written (read-only folder, full disk); the frame
            it interrupted and the sequence's MP4 are removed.
    """
    focal = check_sequences(sequences, model, pointcloud, focal_length)
    default_focal = getattr(model.metadata, "focal_length", None)
    if model.weights:
        check_checkpoint_file(model.weights)
        download_checkpoint(model.weights)
    check_writable(output_dir)
    predictor = model.build()
    meta, untrained = predictor.metadata, predictor.untrained
    total = sum(s.length for s in sequences)
    written = 0
    cleaned: set[str] = set()
    with tqdm(total=total, unit="frame", desc="demo") as bar:
        for sequence in sequences:
            root = os.path.join(output_dir, sequence.name)
            logger.info(f"{sequence.input} -> {root}/")
            if root not in cleaned:  # what a killed run of the demo left there
                cleaned.add(root)
                for folder in _OUTPUT_FOLDERS:
                    for path in remove_stale_temporaries(os.path.join(root, folder)):
                        logger.info(f"Removed {path}, a temporary file left by a killed run.")
            video = (
                _VideoWriter(os.path.join(root, f"{sequence.name}.mp4"), sequence.fps)
                if sequence.fps is not None
                else None
            )
            complete = False
            predictor.reset()
            try:
                os.makedirs(root, exist_ok=True)
                for name, image, source in sequence.frames():
                    output = predictor(np.ascontiguousarray(image[..., ::-1]))  # RGB -> BGR
                    panoptic = output["panoptic_seg"][0].cpu().numpy()
                    segments_info = output["panoptic_seg"][1]
                    depth = output["depth"].cpu().numpy()
                    files = _frame_files(root, name, meta, pointcloud)
                    try:
                        picture = _write_frame(
                            root, name, image, source, panoptic, segments_info, depth, meta,
                            untrained,
                        )  # fmt: skip
                        if video is not None:
                            video.write(picture)
                        if pointcloud:
                            frame_point_cloud(
                                files[-1],
                                image,
                                *split_panoptic(panoptic, TRACK_LABEL_DIVISOR, meta.num_classes),
                                depth,
                                focal_length or focal.get(source or "") or default_focal,
                            )
                    except BaseException:
                        for path in files:  # a frame is written whole or not at all
                            with contextlib.suppress(OSError):
                                os.remove(path)
                        raise
                    written += 1
                    bar.update(1)
                complete = True
                predictor.reset()  # logs the tracker's links, revivals and new ids
            finally:
                if video is not None:
                    video.close(complete)
    logger.info("Wrote %d frames of %d sequence(s) to %s", written, len(sequences), output_dir)
    if untrained:
        logger.warning(
            f"Untrained outputs, marked UNTRAINED in the pictures and segments JSON: "
            f"{', '.join(untrained)}."
        )
    return written


def _frame_files(root: str, name: str, meta: Any, pointcloud: bool) -> list[str]:
    """The files of one frame: picture, panoptic and depth predictions, JSON and (last) PLY."""
    image_file = _official_name(name)
    files = [os.path.join(root, "vis", f"{name}.png")]
    files += [
        os.path.join(root, "panoptic", f) for f in prediction_file_names(image_file, meta.as_dict())
    ]
    files.append(os.path.join(root, "depth", depth_file_name(image_file)))
    files.append(os.path.join(root, "segments", f"{name}.json"))
    if pointcloud:
        files.append(os.path.join(root, "pointcloud", f"{name}.ply"))
    return files


def _write_frame(
    root: str,
    name: str,
    image: np.ndarray,
    source: str | None,
    panoptic: np.ndarray,
    segments_info: list[dict[str, Any]],
    depth: np.ndarray,
    meta: Any,
    untrained: list[str],
) -> np.ndarray:
    """Write one frame's picture, official files and JSON; return the picture (RGB).

    Args:
        panoptic: (H, W) int64 sequence ids, -1 = void; ``depth``: (H, W) meters.
        untrained: outputs to mark as untrained (picture and JSON).
    """
    picture = visualize_frame(image, panoptic, segments_info, depth, meta, untrained)
    write_png_atomic(os.path.join(root, "vis", f"{name}.png"), picture[..., ::-1])
    write_prediction(
        os.path.join(root, "panoptic"),
        os.path.join(root, "depth"),
        _official_name(name),
        meta.as_dict(),
        *split_panoptic(panoptic, TRACK_LABEL_DIVISOR, meta.num_classes),
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
            "untrained": list(untrained),
            "segments": _segments_json(segments_info, meta.stuff_classes),
        },
    )
    return picture
