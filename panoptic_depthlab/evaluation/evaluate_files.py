"""Evaluate DVPS prediction files in the official ViP-DeepLab formats against a split's ground
truth: DVPQ for every (k, lambda), per-class PQ, depth metrics and, for SemKITTI-DVPS, STQ and
DSTQ. The core of ``tools/eval_dvpq.py``; the Detectron2 evaluator computes the same numbers.

Each frame is read once (ground truth, panoptic prediction, depth prediction) and reduced to its
DVPQ overlap tables (:func:`~panoptic_depthlab.evaluation.dvpq.frame_statistics`) and to its
depth (:class:`~panoptic_depthlab.evaluation.depth_metrics.DepthMetrics`) and STQ
(:class:`~panoptic_depthlab.evaluation.stq.STQAccumulator`) statistics. Frames are read in fixed
chunks of consecutive frames, by worker processes when ``workers > 1``; the chunks' results are
merged in chunk order, so the numbers do not depend on the number of workers. Windows are then
matched in the calling process: per sequence for Cityscapes-DVPS, over all frames sorted by name
for SemKITTI-DVPS (``DVPQProtocol.windows_cross_sequences``).

Results are in percent except the depth metrics, whose units are those of
:meth:`DepthMetrics.summary`:

``{"dataset", "dvpq": [{"k", "lambda", "pq", "pq_thing", "pq_stuff"}, ...],
"dvpq_mean": {"pq", "pq_thing", "pq_stuff"}, "per_class": {name: {...} | None},
"depth": {...}, "stq", "dstq"}`` (the last two for SemKITTI-DVPS only; ``None`` where a mean has
no class to average).
"""

from __future__ import annotations

import io
import logging
import math
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tabulate import tabulate
from tqdm import tqdm

from ..data.datasets.dvps import load_dvps_split
from ..data.datasets.metadata import CITYSCAPES_DVPS, DVPS_FORMATS, SEMKITTI_DVPS, dvps_metadata
from ..files import write_bytes_atomic
from .depth_metrics import DepthMetrics
from .dvpq import DVPQAccumulator, DVPQProtocol, DVPSFrame, FrameStatistics, frame_statistics
from .formats import (
    depth_file_name,
    prediction_file_names,
    read_depth_prediction,
    read_ground_truth,
    read_panoptic_prediction,
)
from .stq import STQAccumulator

__all__ = [
    "CHUNK_FRAMES",
    "DVPSInputError",
    "dvps_results",
    "evaluate_prediction_files",
    "new_stq",
    "reduce_frame",
    "format_results_table",
    "plot_results",
]

logger = logging.getLogger(__name__)

CHUNK_FRAMES = 8  # consecutive frames read by one task; fixed, so results ignore the worker count
_LIST_MISSING = 10  # missing files named in the error
_LIST_EXTRA = 5  # extra files named in the warning


class DVPSInputError(ValueError):
    """Bad evaluation input: missing or unreadable files or directories, sizes or ids that do not
    fit. The message names the file or directory and what was expected."""


@dataclass(frozen=True)
class _ChunkTask:
    """Consecutive frames for one worker call."""

    dataset_format: str
    metadata: dict[str, Any]
    protocol: DVPQProtocol
    pred_dir: str
    depth_dir: str
    records: list[dict[str, Any]]


@dataclass
class _ChunkResult:
    """What one chunk of frames reduces to."""

    statistics: list[FrameStatistics]  # in the chunk's frame order
    depth: DepthMetrics
    stq: STQAccumulator | None


def new_stq(dataset_format: str, metadata: Mapping[str, Any]) -> STQAccumulator | None:
    """An STQ/DSTQ accumulator for SemKITTI-DVPS; None for the other formats."""
    if dataset_format != SEMKITTI_DVPS:
        return None
    return STQAccumulator(metadata["num_classes"], metadata["thing_ids"], metadata["ignore_label"])


def reduce_frame(
    frame: DVPSFrame,
    sequence_id: int,
    protocol: DVPQProtocol,
    depth: DepthMetrics,
    stq: STQAccumulator | None,
) -> FrameStatistics:
    """Add one frame to the depth and STQ accumulators and return its DVPQ statistics."""
    statistics = frame_statistics(frame, protocol)
    depth.add(frame.pred_depth, frame.gt_depth)
    if stq is not None:
        stq.add_frame(
            sequence_id,
            frame.pred_class,
            frame.pred_instance,
            frame.gt_class,
            frame.gt_instance,
            frame.pred_depth,
            frame.gt_depth,
        )
    return statistics


def _check_prediction_size(
    path: str, prediction: np.ndarray, gt_class: np.ndarray, image: str
) -> None:
    if prediction.shape != gt_class.shape:
        raise DVPSInputError(
            f"{path}: size (H, W) = {prediction.shape} differs from its ground truth "
            f"(H, W) = {gt_class.shape} (image {image}); predictions must have the size of the "
            "ground truth."
        )


def _evaluate_chunk(task: _ChunkTask) -> _ChunkResult:
    """Read and reduce the frames of one chunk; errors become :class:`DVPSInputError`."""
    result = _ChunkResult([], DepthMetrics(), new_stq(task.dataset_format, task.metadata))
    for record in task.records:
        image = record["file_name"]
        pred_path = os.path.join(
            task.pred_dir, prediction_file_names(image, task.dataset_format)[0]
        )
        depth_path = os.path.join(task.depth_dir, depth_file_name(image))
        try:
            gt_class, gt_instance, gt_depth = read_ground_truth(record, task.metadata)
            pred_class, pred_instance = read_panoptic_prediction(
                task.pred_dir, image, task.dataset_format
            )
            _check_prediction_size(pred_path, pred_class, gt_class, image)
            pred_depth = read_depth_prediction(task.depth_dir, image)
            _check_prediction_size(depth_path, pred_depth, gt_class, image)
        except (OSError, ValueError) as e:
            raise DVPSInputError(str(e)) from None
        frame = DVPSFrame(
            pred_class, pred_instance, pred_depth, gt_class, gt_instance, gt_depth, name=pred_path
        )
        try:
            stats = reduce_frame(
                frame, record["sequence_id"], task.protocol, result.depth, result.stq
            )
        except ValueError as e:
            raise DVPSInputError(str(e)) from None
        result.statistics.append(stats)
    return result


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


def _list_files(directory: str, what: str) -> set[str]:
    """Names of the regular, non-hidden files of ``directory``."""
    if not os.path.isdir(directory):
        raise DVPSInputError(f"{what} directory {directory} does not exist or is not a directory.")
    names = {
        e.name
        for e in os.scandir(directory)
        if e.is_file() and not e.name.startswith(".")  # hidden: e.g. temporary files of writers
    }
    if not names:
        raise DVPSInputError(f"{what} directory {directory} is empty; expected prediction PNGs.")
    return names


def _check_prediction_files(
    records: Sequence[Mapping[str, Any]], dataset_format: str, pred_dir: str, depth_dir: str
) -> None:
    """Every frame needs its files; extra files are ignored with a warning."""
    same_dir = os.path.realpath(pred_dir) == os.path.realpath(depth_dir)
    if same_dir and dataset_format == CITYSCAPES_DVPS:
        raise DVPSInputError(
            f"--pred-dir and --depth-dir are both {pred_dir}; Cityscapes-DVPS panoptic and depth "
            "predictions have the same file names, so they need two different directories."
        )
    pred_files = _list_files(pred_dir, "prediction")
    depth_files = pred_files if same_dir else _list_files(depth_dir, "depth prediction")
    expected_pred: set[str] = set()
    expected_depth: set[str] = set()
    missing: list[str] = []
    frames_missing = 0
    for record in records:
        names = prediction_file_names(record["file_name"], dataset_format)
        depth_name = depth_file_name(record["file_name"])
        expected_pred.update(names)
        expected_depth.add(depth_name)
        lost = [os.path.join(pred_dir, n) for n in names if n not in pred_files]
        if depth_name not in depth_files:
            lost.append(os.path.join(depth_dir, depth_name))
        frames_missing += bool(lost)
        missing += lost
    if missing:
        shown = "\n  ".join(missing[:_LIST_MISSING])
        raise DVPSInputError(
            f"{frames_missing} of {len(records)} ground-truth frames have no prediction: "
            f"{len(missing)} files are missing (first {min(len(missing), _LIST_MISSING)}):\n"
            f"  {shown}\nWrite one prediction per ground-truth frame, named as "
            f"panoptic_depthlab.evaluation.formats describes ({dataset_format})."
        )
    for directory, files, expected in (
        (pred_dir, pred_files, expected_pred | (expected_depth if same_dir else set())),
        (depth_dir, depth_files, expected_depth | (expected_pred if same_dir else set())),
    ):
        extra = sorted(files - expected)
        if extra:
            logger.warning(
                "ignoring %d files in %s that belong to no ground-truth frame (first %d: %s)",
                len(extra),
                directory,
                min(len(extra), _LIST_EXTRA),
                ", ".join(extra[:_LIST_EXTRA]),
            )
        if same_dir:
            break


def _chunks(task: _ChunkTask, records: Sequence[dict[str, Any]], size: int) -> Iterator[_ChunkTask]:
    for start in range(0, len(records), size):
        yield _ChunkTask(
            task.dataset_format,
            task.metadata,
            task.protocol,
            task.pred_dir,
            task.depth_dir,
            list(records[start : start + size]),
        )


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
) -> dict[str, Any]:
    """Evaluate the prediction files of one split (see the module docstring).

    Args:
        dataset_format: ``cityscapes_dvps`` or ``semkitti_dvps``.
        gt_dir: the split directory ``<dataset root>/video_sequence/<split>``.
        pred_dir: panoptic predictions (official format of ``dataset_format``).
        depth_dir: depth predictions (16-bit PNG, meters * 256, named like the images).
        window_sizes: k values in frames; default the dataset's (``dvpq_window_sizes``).
        depth_thresholds: lambda values; default the dataset's plus 0.
        workers: processes reading frames (1: in this process); the results do not depend on it.
        progress: show a progress bar of the frames read (on stderr).
        chunk_frames: consecutive frames per task; results are reproducible for a fixed value.

    Returns:
        Results in percent (depth metrics in their own units); keys in the module docstring.

    Raises:
        DVPSInputError: missing, empty or unreadable directories and files, frames without a
            prediction, sizes that differ, class or instance ids out of range.
    """
    if dataset_format not in DVPS_FORMATS:
        raise DVPSInputError(
            f"unknown dataset format {dataset_format!r}; expected one of {DVPS_FORMATS}."
        )
    if not isinstance(workers, int) or workers < 1:
        raise DVPSInputError(f"workers={workers!r}; expected an integer >= 1.")
    if not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise DVPSInputError(f"chunk_frames={chunk_frames!r}; expected an integer >= 1.")
    metadata = dvps_metadata(dataset_format)
    try:
        protocol = DVPQProtocol.from_metadata(metadata, window_sizes, depth_thresholds)
    except ValueError as e:
        raise DVPSInputError(str(e)) from None
    records = _load_split(dataset_format, gt_dir)
    _check_prediction_files(records, dataset_format, pred_dir, depth_dir)
    if protocol.windows_cross_sequences:  # one stream: all frames sorted by name
        records = sorted(records, key=lambda r: os.path.basename(r["file_name"]))
    # else: load_dvps_split sorts by (sequence_id, frame_index); each sequence is a stream

    base = _ChunkTask(dataset_format, metadata, protocol, pred_dir, depth_dir, [])
    tasks = list(_chunks(base, records, chunk_frames))
    statistics: list[FrameStatistics] = []
    depth = DepthMetrics()
    stq = new_stq(dataset_format, metadata)
    with tqdm(total=len(records), unit="frame", desc="reading frames", disable=not progress) as bar:
        if workers == 1 or len(tasks) == 1:
            results: Iterator[_ChunkResult] = map(_evaluate_chunk, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context().Pool(min(workers, len(tasks)))
            results = pool.imap(_evaluate_chunk, tasks)  # in task order
        try:
            for task, result in zip(tasks, results, strict=True):
                statistics += result.statistics
                depth.merge(result.depth)
                if stq is not None:
                    stq.merge(result.stq)
                bar.update(len(task.records))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()

    if protocol.windows_cross_sequences:
        streams = [statistics]
    else:
        streams, start = [], 0
        for end in range(1, len(records) + 1):
            if end == len(records) or records[end]["sequence_id"] != records[start]["sequence_id"]:
                streams.append(statistics[start:end])
                start = end
    return dvps_results(dataset_format, protocol, streams, depth, stq)


def dvps_results(
    dataset_format: str,
    protocol: DVPQProtocol,
    streams: Sequence[Sequence[FrameStatistics]],
    depth: DepthMetrics,
    stq: STQAccumulator | None,
) -> dict[str, Any]:
    """The results dictionary (keys in the module docstring, JSON-safe) from the frames'
    statistics, grouped in streams as ``protocol`` wants, and the merged accumulators."""
    longest = max(len(s) for s in streams)
    too_long = [k for k in protocol.window_sizes if k > longest]
    if too_long:
        logger.warning(
            "no window of k = %s frames fits in the %s (longest: %d frames); those entries "
            "count no segment (%s)",
            ", ".join(map(str, too_long)),
            "frames" if protocol.windows_cross_sequences else "sequences",
            longest,
            "PQ 0" if protocol.absent_class_is_zero else "PQ None",
        )
    dvpq = DVPQAccumulator(protocol)
    for stream in streams:
        dvpq.add_stream(stream)
    results_dict: dict[str, Any] = {
        "dataset": dataset_format,
        **dvpq.summary(dvps_metadata(dataset_format)["stuff_classes"]),
        "depth": depth.summary(),
    }
    if stq is not None:
        stq_summary = stq.summary()
        results_dict["stq"], results_dict["dstq"] = stq_summary["stq"], stq_summary["dstq"]
    return _json_safe(results_dict)


def _json_safe(value: Any) -> Any:
    """Copy of ``value`` with nan/inf floats replaced by None and numpy scalars made Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_results_table(results: Mapping[str, Any]) -> str:
    """Plain-text tables: PQ / PQ_th / PQ_st per (k, lambda) and their mean over lambda > 0,
    then the depth metrics and, when present, STQ and DSTQ."""
    rows = [
        [e["k"], f"{e['lambda']:g}", _fmt(e["pq"]), _fmt(e["pq_thing"]), _fmt(e["pq_stuff"])]
        for e in results["dvpq"]
    ]
    if "dvpq_mean" in results:
        mean = results["dvpq_mean"]
        rows.append(["DVPQ", "mean", *(_fmt(mean[key]) for key in ("pq", "pq_thing", "pq_stuff"))])
    text = tabulate(rows, headers=["k", "lambda", "PQ", "PQ_th", "PQ_st"], tablefmt="github")
    metrics = [
        [key, value if isinstance(value, int) else _fmt(value)]
        for key, value in results["depth"].items()
    ]
    metrics += [[key.upper(), _fmt(results[key])] for key in ("stq", "dstq") if key in results]
    return text + "\n\n" + tabulate(metrics, headers=["metric", "value"], tablefmt="github")


def _save_figure(figure: Any, path: str) -> None:
    """Render a matplotlib figure to PNG in memory and write it atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_bytes_atomic(path, buffer.getvalue())


def plot_results(results: Mapping[str, Any], plot_dir: str) -> list[str]:
    """PNG charts of the results: ``per_class_pq.png`` (PQ per class at k = 1, lambda = 0, when
    both were evaluated; classes without TP, FP or FN are marked n/a) and ``dvpq_vs_k.png``
    (PQ against k, one line per lambda). Uses the Agg canvas; no global matplotlib state.

    Returns:
        The written paths.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    os.makedirs(plot_dir, exist_ok=True)
    written = []
    per_class = results.get("per_class")
    if per_class:
        names = list(per_class)
        values = [0.0 if v is None else v["pq"] for v in per_class.values()]
        figure = Figure(figsize=(max(6.0, 0.45 * len(names)), 4.0))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        bars = ax.bar(range(len(names)), values, color="tab:blue")
        for bar, stats in zip(bars, per_class.values(), strict=True):
            if stats is None:
                ax.text(bar.get_x() + bar.get_width() / 2, 1, "n/a", ha="center", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("PQ (%)")
        ax.set_title(f"{results['dataset']}: per-class PQ, k = 1, lambda = 0")
        figure.tight_layout()
        written.append(os.path.join(plot_dir, "per_class_pq.png"))
        _save_figure(figure, written[-1])
    else:
        logger.warning("no per-class PQ chart: k = 1 and lambda = 0 were not both evaluated")

    figure = Figure(figsize=(6.0, 4.0))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    lambdas = sorted({e["lambda"] for e in results["dvpq"]}, reverse=True)
    for lam in lambdas:
        entries = sorted((e for e in results["dvpq"] if e["lambda"] == lam), key=lambda e: e["k"])
        ks = [e["k"] for e in entries]
        pqs = [math.nan if e["pq"] is None else e["pq"] for e in entries]
        ax.plot(ks, pqs, marker="o", label=f"lambda = {lam:g}")
    ax.set_xticks(sorted({e["k"] for e in results["dvpq"]}))
    ax.set_xlabel("k (frames per window)")
    ax.set_ylabel("DVPQ (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{results['dataset']}: DVPQ against window size")
    ax.legend()
    figure.tight_layout()
    written.append(os.path.join(plot_dir, "dvpq_vs_k.png"))
    _save_figure(figure, written[-1])
    return written
