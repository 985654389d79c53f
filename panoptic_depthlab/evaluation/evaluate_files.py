"""Evaluate DVPS prediction files against a split's ground truth: the core of
``tools/eval_dvpq.py``. A thin driver: it finds each frame's files, reads them and feeds a
:class:`~panoptic_depthlab.evaluation.accumulator.DVPSAccumulator`, the same accumulator the
Detectron2 evaluator feeds, so both compute the same numbers.

Which files belong to a frame. The official scripts pair predictions with the ground truth by
sorted name (SemKITTI-DVPS: every ``*cat.png`` / ``*ins.png`` in the prediction directory and
every file of the depth directory; Cityscapes-DVPS: every file, grouped by the text before its
first ``_``). Here a file belongs to the frame whose id ``<sequence>_<frame>`` (the first two
``_``-separated fields of the ground-truth names, e.g. ``000008_000004``) starts its name, so a
missing file is reported by name instead of shifting every later pair:

* panoptic, ``"rgb"`` layout (Cityscapes-DVPS): any ``<frame id>...png`` in ``pred_dir``, e.g.
  ``000000_000000_munster_000105_000004_leftImg8bit.png`` or ``000000_000000.png``;
* panoptic, ``"class_instance"`` layout (SemKITTI-DVPS): ``<frame id>...cat.png`` and
  ``<frame id>...ins.png`` in ``pred_dir``, e.g. ``000008_000004_cat.png`` or
  ``000008_000004_leftImg8bit_cat.png``;
* either layout, the official 8/16-bit files or the wide 16-bit RGB ones that hold larger
  instance ids (:mod:`~panoptic_depthlab.evaluation.formats`), frame by frame; DVPQ scores
  instance ids up to 65535, a wide file with larger ones is an error naming it;
* panoptic, COCO panoptic (``pred_format="coco_panoptic"``): the PNGs the JSON names, in
  ``pred_dir`` (see :mod:`~panoptic_depthlab.evaluation.coco_panoptic`);
* depth: any ``<frame id>...png`` in ``depth_dir`` (other than panoptic files, when both
  directories are one).

The frame id must be followed by a non-digit. A frame without its files is an error listing the
missing names; two candidates for one file of a frame are an error naming both; files that
belong to no ground-truth frame are ignored with a warning.

Frames are read in fixed chunks of consecutive frames, by worker processes when ``workers > 1``;
the chunks' accumulators are merged in chunk order, so the numbers do not depend on the number of
workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.datasets.dvps import load_dvps_split
from ..data.datasets.metadata import check_dvps_format, dvps_metadata
from .accumulator import DVPSAccumulator
from .coco_panoptic import SegmentTable, load_coco_panoptic, read_coco_panoptic_png
from .dvpq import DVPSFrame
from .formats import (
    RGB,
    frame_id_of,
    read_depth_prediction,
    read_ground_truth,
    read_panoptic_prediction,
    resize_depth_align_corners,
)

__all__ = [
    "CHUNK_FRAMES",
    "DVPSInputError",
    "MAX_EVALUATED_INSTANCE",
    "PRED_FORMATS",
    "evaluate_prediction_files",
]

logger = logging.getLogger(__name__)

CHUNK_FRAMES = 8  # consecutive frames read by one task; fixed, so results ignore the worker count
MAX_EVALUATED_INSTANCE = 65535  # DVPQ's segment ids are class << 16 | instance (dvpq.py)
PRED_FORMATS = ("official", "coco_panoptic")
_LIST_MISSING = 10  # missing files named in the error
_LIST_EXTRA = 5  # extra files named in the warning


class DVPSInputError(ValueError):
    """Bad evaluation input: missing or unreadable directories and files, files that match no
    frame or two frames, sizes or ids that do not fit. The message names the file or directory
    and what was expected."""


@dataclass(frozen=True)
class _FrameFiles:
    """One ground-truth frame and its prediction files."""

    record: dict[str, Any]
    panoptic: tuple[str, ...]  # [rgb], [cat, ins] or [coco png]
    depth: str
    segments: SegmentTable | None  # COCO panoptic only


@dataclass(frozen=True)
class _ChunkTask:
    """Consecutive frames for one worker call."""

    metadata: dict[str, Any]
    window_sizes: tuple[int, ...] | None
    depth_thresholds: tuple[float, ...] | None
    frames: list[_FrameFiles]


def _list_pngs(directory: str, what: str) -> list[str]:
    """Names of the regular, non-hidden files of ``directory``, sorted."""
    if not os.path.isdir(directory):
        raise DVPSInputError(f"{what} directory {directory} does not exist or is not a directory.")
    names = sorted(
        e.name
        for e in os.scandir(directory)
        if e.is_file() and not e.name.startswith(".")  # hidden: e.g. temporary files of writers
    )
    if not names:
        raise DVPSInputError(f"{what} directory {directory} is empty; expected prediction PNGs.")
    return names


class _Matcher:
    """Assigns file names of one directory to ground-truth frames by their frame id."""

    def __init__(self, directory: str, names: Sequence[str], frame_ids: set[str]):
        self.directory = directory
        self.by_frame: dict[tuple[str, str], list[str]] = {}
        self.used: set[str] = set()
        self.names = list(names)
        self.frame_ids = frame_ids

    def add(self, kind: str, predicate) -> None:
        """Candidates of ``kind``: the ``.png`` names accepted by ``predicate``."""
        for name in self.names:
            frame_id = frame_id_of(name)
            if frame_id in self.frame_ids and name.lower().endswith(".png") and predicate(name):
                self.by_frame.setdefault((frame_id, kind), []).append(name)
                self.used.add(name)

    def take(self, frame_id: str, kind: str, expected: str, missing: list[str]) -> str | None:
        """The one file of ``kind`` of a frame; a missing one is appended to ``missing``."""
        names = self.by_frame.get((frame_id, kind), [])
        if len(names) > 1:
            shown = " and ".join(os.path.join(self.directory, n) for n in names[:2])
            raise DVPSInputError(
                f"two {kind} files for the frame {frame_id}: {shown}; expected one per frame "
                "(the file whose name starts with the frame id)."
            )
        if not names:
            missing.append(os.path.join(self.directory, expected))
            return None
        return os.path.join(self.directory, names[0])

    def warn_extra(self) -> None:
        extra = [n for n in self.names if n not in self.used]
        if extra:
            logger.warning(
                "ignoring %d files in %s that belong to no ground-truth frame (first %d: %s)",
                len(extra),
                self.directory,
                min(len(extra), _LIST_EXTRA),
                ", ".join(extra[:_LIST_EXTRA]),
            )


def _is_class_file(name: str) -> bool:
    return name.endswith("cat.png")


def _is_instance_file(name: str) -> bool:
    return name.endswith("ins.png")


def _match_files(
    records: Sequence[dict[str, Any]],
    metadata: Mapping[str, Any],
    pred_dir: str,
    depth_dir: str,
    coco_json: str | None,
) -> list[_FrameFiles]:
    """Each ground-truth frame's prediction files (rules in the module docstring)."""
    same_dir = os.path.realpath(pred_dir) == os.path.realpath(depth_dir)
    if same_dir and (metadata["prediction_files"] == RGB or coco_json is not None):
        raise DVPSInputError(
            f"--pred-dir and --depth-dir are both {pred_dir}; panoptic and depth predictions "
            "of this format cannot be told apart by name, so they need two directories."
        )
    frame_ids = {frame_id_of(os.path.basename(r["file_name"])) for r in records}
    pred_names = _list_pngs(pred_dir, "prediction")
    depth = _Matcher(depth_dir, _list_pngs(depth_dir, "depth prediction"), frame_ids)
    segments: dict[str, SegmentTable] = {}
    if coco_json is not None:
        try:
            segments = load_coco_panoptic(coco_json, metadata, frame_ids)
        except (OSError, ValueError) as e:
            raise DVPSInputError(str(e)) from None
        coco_names = {frame_id_of(name): [name] for name in segments}
        pred = _Matcher(pred_dir, pred_names, frame_ids)
        pred.add("panoptic", lambda name: name in segments)
        kinds = [("panoptic", ".png")]
    elif metadata["prediction_files"] == RGB:
        pred = _Matcher(pred_dir, pred_names, frame_ids)
        pred.add("panoptic", lambda name: True)
        kinds = [("panoptic", "_leftImg8bit.png")]
    else:
        pred = depth if same_dir else _Matcher(pred_dir, pred_names, frame_ids)
        pred.add("class", _is_class_file)
        pred.add("instance", _is_instance_file)
        kinds = [("class", "_cat.png"), ("instance", "_ins.png")]
    depth.add(
        "depth", lambda name: not (same_dir and (_is_class_file(name) or _is_instance_file(name)))
    )

    frames: list[_FrameFiles] = []
    missing: list[str] = []
    frames_missing = 0
    for record in records:
        image = os.path.basename(record["file_name"])
        frame_id = frame_id_of(image)
        before = len(missing)
        stem = image[: -len("_leftImg8bit.png")]
        expected = [stem + suffix for _, suffix in kinds]
        if coco_json is not None:
            expected = coco_names.get(frame_id, [])
            if not expected:
                missing.append(f"{coco_json}: no annotation of the frame {frame_id}")
        panoptic = [
            pred.take(frame_id, kind, name, missing)
            for (kind, _), name in zip(kinds, expected, strict=False)
        ]
        depth_path = depth.take(frame_id, "depth", image, missing)
        frames_missing += len(missing) > before
        if len(missing) == before:
            table = segments[os.path.basename(panoptic[0])] if coco_json is not None else None
            frames.append(_FrameFiles(record, tuple(panoptic), depth_path, table))
    if missing:
        shown = "\n  ".join(missing[:_LIST_MISSING])
        raise DVPSInputError(
            f"{frames_missing} of {len(records)} ground-truth frames have no prediction: "
            f"{len(missing)} files are missing (first {min(len(missing), _LIST_MISSING)}):\n"
            f"  {shown}\nWrite one prediction per ground-truth frame, its name starting with "
            "the frame id (see panoptic_depthlab/evaluation/evaluate_files.py)."
        )
    pred.warn_extra()
    if not same_dir:
        depth.warn_extra()
    return frames


def _read_frame(files: _FrameFiles, metadata: Mapping[str, Any]) -> DVPSFrame:
    """Read one frame's ground truth and prediction files."""
    image = files.record["file_name"]
    gt_class, gt_instance, gt_depth = read_ground_truth(files.record, metadata)
    if files.segments is not None:
        pred_class, pred_instance = read_coco_panoptic_png(
            files.panoptic[0], files.segments, metadata["num_classes"]
        )
    else:
        pred_class, pred_instance = read_panoptic_prediction(files.panoptic, metadata)
        if pred_instance.dtype == np.int64:  # a wide file (formats): its ids may exceed DVPQ's
            _check_wide_instances(files.panoptic[-1], pred_instance)
    _check_size(files.panoptic[0], pred_class, gt_class, image)
    pred_depth = read_depth_prediction(files.depth)
    if pred_depth.shape != gt_class.shape and metadata["resize_depth_prediction"]:
        pred_depth = resize_depth_align_corners(pred_depth, *gt_class.shape)
    _check_size(files.depth, pred_depth, gt_class, image)
    return DVPSFrame(
        pred_class, pred_instance, pred_depth, gt_class, gt_instance, gt_depth, files.panoptic[0]
    )


def _check_wide_instances(path: str, instances: np.ndarray) -> None:
    """Reject instance ids of a wide prediction file that DVPQ cannot score (above 65535)."""
    top = int(instances.max()) if instances.size else 0
    if top > MAX_EVALUATED_INSTANCE:
        count = int((instances > MAX_EVALUATED_INSTANCE).sum())
        raise DVPSInputError(
            f"{path}: instance id {top} ({count} pixels above {MAX_EVALUATED_INSTANCE}); the "
            f"DVPQ evaluation scores instance ids 0..{MAX_EVALUATED_INSTANCE} (segment ids "
            "class << 16 | instance). Renumber the tracks of each sequence (e.g. in order of "
            "appearance) before evaluating."
        )


def _check_size(path: str, prediction: np.ndarray, gt_class: np.ndarray, image: str) -> None:
    if prediction.shape != gt_class.shape:
        raise DVPSInputError(
            f"{path}: size (H, W) = {prediction.shape} differs from its ground truth "
            f"(H, W) = {gt_class.shape} (image {image}); predictions must have the size of the "
            "ground truth."
        )


def _evaluate_chunk(task: _ChunkTask) -> DVPSAccumulator:
    """Read and reduce the frames of one chunk; errors become :class:`DVPSInputError`."""
    accumulator = DVPSAccumulator(task.metadata, task.window_sizes, task.depth_thresholds)
    for files in task.frames:
        try:
            frame = _read_frame(files, task.metadata)
            accumulator.add(frame, files.record["sequence_id"], files.record["frame_index"])
        except (OSError, ValueError) as e:
            raise DVPSInputError(str(e)) from None
    return accumulator


def _load_split(dataset_format: str, gt_dir: str) -> list[dict[str, Any]]:
    """The frame records of ``gt_dir`` (``<root>/video_sequence/<split>``)."""
    gt_dir = os.path.normpath(os.path.abspath(gt_dir))
    if not os.path.isdir(gt_dir):
        raise DVPSInputError(
            f"ground-truth directory {gt_dir} does not exist; expected a split directory "
            "<dataset root>/video_sequence/<split> of the official layout."
        )
    parent = os.path.dirname(gt_dir)
    if os.path.basename(parent) != "video_sequence":
        raise DVPSInputError(
            f"ground-truth directory {gt_dir} is not inside a folder named video_sequence; "
            "expected <dataset root>/video_sequence/<split> of the official layout."
        )
    try:
        return load_dvps_split(os.path.dirname(parent), os.path.basename(gt_dir), dataset_format)
    except (OSError, ValueError) as e:
        raise DVPSInputError(str(e)) from None


def _chunks(frames: Sequence[_FrameFiles], size: int) -> Iterator[list[_FrameFiles]]:
    for start in range(0, len(frames), size):
        yield list(frames[start : start + size])


def evaluate_prediction_files(
    dataset_format: str,
    gt_dir: str,
    pred_dir: str,
    depth_dir: str,
    window_sizes: Sequence[int] | None = None,
    depth_thresholds: Sequence[float] | None = None,
    workers: int = 1,
    progress: bool = False,
    chunk_frames: int = CHUNK_FRAMES,
    pred_format: str = "official",
    pred_json: str | None = None,
) -> dict[str, Any]:
    """Evaluate the prediction files of one split (see the module docstring).

    Args:
        dataset_format: ``cityscapes_dvps`` or ``semkitti_dvps``.
        gt_dir: the split directory ``<dataset root>/video_sequence/<split>``.
        pred_dir: panoptic predictions (the official layout of ``dataset_format``, or the PNGs
            of ``pred_json``).
        depth_dir: depth predictions (16-bit PNG, meters * 256).
        window_sizes: k values in frames; default the dataset's (``dvpq_window_sizes``).
        depth_thresholds: lambda values; default the dataset's plus 0.
        workers: processes reading frames (1: in this process); the results do not depend on it.
        progress: show a progress bar of the frames read (on stderr).
        chunk_frames: consecutive frames per task; results are reproducible for a fixed value.
        pred_format: ``official`` or ``coco_panoptic`` (then ``pred_json`` is required).
        pred_json: the COCO panoptic JSON of ``coco_panoptic`` predictions.

    Returns:
        Results in percent (depth metrics in their own units); keys in
        :mod:`~panoptic_depthlab.evaluation.accumulator`.

    Raises:
        DVPSInputError: missing, empty or unreadable directories and files, frames without a
            prediction, sizes that differ, class or instance ids out of range.
    """
    try:
        check_dvps_format(dataset_format)
    except ValueError as e:
        raise DVPSInputError(str(e)) from None
    if pred_format not in PRED_FORMATS:
        raise DVPSInputError(
            f"unknown pred_format {pred_format!r}; expected one of {PRED_FORMATS}."
        )
    if (pred_format == "coco_panoptic") != (pred_json is not None):
        raise DVPSInputError("pred_json is needed with pred_format 'coco_panoptic', and only then.")
    if not isinstance(workers, int) or workers < 1:
        raise DVPSInputError(f"workers={workers!r}; expected an integer >= 1.")
    if not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise DVPSInputError(f"chunk_frames={chunk_frames!r}; expected an integer >= 1.")
    metadata = dvps_metadata(dataset_format)
    try:
        accumulator = DVPSAccumulator(metadata, window_sizes, depth_thresholds)
    except ValueError as e:
        raise DVPSInputError(str(e)) from None
    records = _load_split(dataset_format, gt_dir)
    frames = _match_files(records, metadata, pred_dir, depth_dir, pred_json)

    protocol = accumulator.protocol
    tasks = [
        _ChunkTask(metadata, protocol.window_sizes, protocol.depth_thresholds, chunk)
        for chunk in _chunks(frames, chunk_frames)
    ]
    with tqdm(total=len(frames), unit="frame", desc="reading frames", disable=not progress) as bar:
        if workers == 1 or len(tasks) == 1:
            results: Iterator[DVPSAccumulator] = map(_evaluate_chunk, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context().Pool(min(workers, len(tasks)))
            results = pool.imap(_evaluate_chunk, tasks)  # in task order
        try:
            for task, result in zip(tasks, results, strict=True):
                accumulator.merge(result)
                bar.update(len(task.frames))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return accumulator.results()
