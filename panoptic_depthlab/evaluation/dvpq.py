"""DVPQ: depth-aware video panoptic quality, as the official Cityscapes-DVPS and SemKITTI-DVPS
scripts of ViP-DeepLab compute it, in one pass over the frames.

The official scripts concatenate the k frames of each window side by side and match segments on
the concatenation, once per (k, lambda). The concatenation's statistics are sums of per-frame
statistics, so here each frame is reduced once to a table of (ground-truth id, predicted id)
overlap counts per depth threshold (:func:`frame_statistics`), and a window sums the tables of its
frames (:class:`DVPQAccumulator`). Matching on a window's table is vectorized.

The rules (ids are ``class * 2**16 + instance``; the extra class ``num_classes`` holds pixels
that failed the depth test):

1. Depth test, lambda > 0: where the ground truth has depth (> 0) and
   ``|pred - gt| / gt > lambda`` (in float64), the prediction becomes (``num_classes``, 0).
2. A predicted and a ground-truth segment of the same class with IoU > 0.5 are a true positive;
   the union leaves out the prediction's overlap with ground-truth void (``ignore_label``,
   instance 0).
3. Ground-truth segments of ``ignore_label`` are never false negatives; an unmatched prediction
   whose overlap with ground-truth ``ignore_label`` pixels (any instance) exceeds half its area is
   not a false positive.
4. Per class ``PQ = (sum IoU / TP) * TP / (TP + FP / 2 + FN / 2)``; the extra class is dropped.
   A class without TP, FP or FN is left out of the means (Cityscapes-DVPS, whose script prints nan)
   or counts as 0 (SemKITTI-DVPS, whose script adds 1e-10 to the denominators).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DVPQAccumulator", "DVPQProtocol", "DVPSFrame", "FrameStatistics", "frame_statistics"]

_ID_BITS = 16  # segment id = class << 16 | instance; instances come from 8- or 16-bit PNGs
_PAIR_BITS = 24  # pair key = ground-truth id << 24 | predicted id


@dataclass(frozen=True)
class DVPQProtocol:
    """What a dataset's DVPQ is computed over.

    Attributes:
        num_classes: real classes (train ids ``0..num_classes - 1``); ``num_classes`` itself is
            the extra class of depth-test failures and of void predictions.
        thing_ids: thing train ids; the other real classes are stuff.
        window_sizes: k values, in frames.
        depth_thresholds: lambda values; 0 means no depth test (plain VPQ).
        absent_class_is_zero: False (Cityscapes-DVPS): a class without TP, FP or FN is left out of
            the means; True (SemKITTI-DVPS): it scores 0 and stays in.
        windows_cross_sequences: False (Cityscapes-DVPS): windows lie within each sequence;
            True (SemKITTI-DVPS): windows slide over all frames sorted by name.
        ignore_label: ground-truth class of unlabelled pixels.
    """

    num_classes: int
    thing_ids: tuple[int, ...]
    window_sizes: tuple[int, ...]
    depth_thresholds: tuple[float, ...]
    absent_class_is_zero: bool
    windows_cross_sequences: bool
    ignore_label: int = 255

    def __post_init__(self) -> None:
        if not self.window_sizes or min(self.window_sizes) < 1:
            raise ValueError(f"window sizes must be >= 1 frame; got {self.window_sizes}.")
        if not self.depth_thresholds or min(self.depth_thresholds) < 0:
            raise ValueError(f"depth thresholds must be >= 0; got {self.depth_thresholds}.")
        if not 0 < self.num_classes < self.ignore_label:
            raise ValueError(
                f"num_classes={self.num_classes} must lie in 1..{self.ignore_label - 1} "
                f"(below ignore_label={self.ignore_label})."
            )

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any],
        window_sizes: Sequence[int] | None = None,
        depth_thresholds: Sequence[float] | None = None,
    ) -> DVPQProtocol:
        """The protocol of a DVPS dataset from its metadata (``dvps_metadata`` keys).

        Defaults: the dataset's k set and its lambdas plus 0 (VPQ without the depth test).
        """
        if depth_thresholds is None:
            depth_thresholds = [*metadata["dvpq_depth_thresholds"], 0.0]
        return cls(
            num_classes=metadata["num_classes"],
            thing_ids=tuple(metadata["thing_ids"]),
            window_sizes=tuple(window_sizes or metadata["dvpq_window_sizes"]),
            depth_thresholds=tuple(float(t) for t in depth_thresholds),
            absent_class_is_zero=metadata["dvpq_absent_class_is_zero"],
            windows_cross_sequences=metadata["dvpq_windows_cross_sequences"],
            ignore_label=metadata["ignore_label"],
        )


@dataclass(frozen=True)
class DVPSFrame:
    """Prediction and ground truth of one frame; every array is (H, W).

    Attributes:
        pred_class: predicted train ids, or ``num_classes`` for void (no prediction).
        pred_instance: predicted instance ids (>= 0, < 2**16); 0 for stuff.
        pred_depth: predicted depth in meters, or None when only lambda = 0 is evaluated.
        gt_class: ground-truth train ids, or ``ignore_label`` for unlabelled pixels.
        gt_instance: ground-truth instance ids (>= 0, < 2**16); 0 for stuff and crowd.
        gt_depth: ground-truth depth in meters, 0 where there is none; None without depth.
        name: shown in error messages (e.g. the image file).
    """

    pred_class: np.ndarray
    pred_instance: np.ndarray
    pred_depth: np.ndarray | None
    gt_class: np.ndarray
    gt_instance: np.ndarray
    gt_depth: np.ndarray | None
    name: str = ""


@dataclass(frozen=True)
class FrameStatistics:
    """One frame reduced to overlap counts: for each depth threshold of the protocol,
    ``keys[i]`` (int64, gt id << 24 | pred id, unique and sorted) and ``counts[i]`` (int64 pixels).
    """

    keys: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]


def _check_frame(frame: DVPSFrame, protocol: DVPQProtocol, need_depth: bool) -> None:
    shape = frame.gt_class.shape
    arrays = {
        "pred_class": frame.pred_class,
        "pred_instance": frame.pred_instance,
        "gt_instance": frame.gt_instance,
    }
    if need_depth:
        arrays.update(pred_depth=frame.pred_depth, gt_depth=frame.gt_depth)
    for key, array in arrays.items():
        if array is None:
            raise ValueError(f"{frame.name}: {key} is missing; depth thresholds > 0 need depth.")
        if array.shape != shape:
            raise ValueError(
                f"{frame.name}: {key} has size (H, W) = {array.shape}, the ground truth "
                f"{shape}; predictions must have the ground truth's size."
            )
    low, high = int(frame.pred_class.min()), int(frame.pred_class.max())
    if low < 0 or high > protocol.num_classes:
        raise ValueError(
            f"{frame.name}: predicted class id {low if low < 0 else high}; expected "
            f"0..{protocol.num_classes} ({protocol.num_classes} = void)."
        )
    gt_classes = np.flatnonzero(np.bincount(frame.gt_class.ravel()))
    bad = gt_classes[(gt_classes >= protocol.num_classes) & (gt_classes != protocol.ignore_label)]
    if bad.size:
        raise ValueError(
            f"{frame.name}: ground-truth class id {bad[0]}; expected 0..{protocol.num_classes - 1} "
            f"or the ignore label {protocol.ignore_label}."
        )
    for key in ("pred_instance", "gt_instance"):
        values = arrays[key]
        if values.min() < 0 or values.max() >= 1 << _ID_BITS:
            raise ValueError(f"{frame.name}: {key} outside 0..{(1 << _ID_BITS) - 1}.")


def _segments(classes: np.ndarray, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segment ids present in a frame, ascending, and each pixel's index into them.

    Ids are ``class << 16 | instance`` (validated ranges). Two bincounts over bounded integers
    replace a sort of all pixels: instances are first numbered densely, then (class, instance).

    Returns:
        ids: (S,) int64; index: (H * W,) int64 in ``0..S-1``.
    """
    instances = instances.ravel()
    instance_values = np.flatnonzero(np.bincount(instances))
    instance_index = np.zeros(instance_values[-1] + 1, np.int64)
    instance_index[instance_values] = np.arange(len(instance_values))
    n = len(instance_values)
    code = classes.ravel().astype(np.int64) * n + instance_index[instances]
    codes = np.flatnonzero(np.bincount(code))
    index = np.zeros(codes[-1] + 1, np.int64)
    index[codes] = np.arange(len(codes))
    ids = ((codes // n) << _ID_BITS) | instance_values[codes % n]
    return ids, index[code]


def frame_statistics(frame: DVPSFrame, protocol: DVPQProtocol) -> FrameStatistics:
    """Reduce one frame to its overlap tables, one per depth threshold of ``protocol``.

    Raises:
        ValueError: sizes differ, class or instance ids out of range, or depth is missing while
            a threshold > 0 is asked for; the message names ``frame.name``.
    """
    need_depth = any(t > 0 for t in protocol.depth_thresholds)
    _check_frame(frame, protocol, need_depth)
    gt_ids, gt_index = _segments(frame.gt_class, frame.gt_instance)
    pred_ids, pred_index = _segments(frame.pred_class, frame.pred_instance)
    # The segment of depth-test failures, (num_classes, 0), gets an index even where absent.
    failed_id = protocol.num_classes << _ID_BITS
    failed_index = int(np.searchsorted(pred_ids, failed_id))
    if failed_index == len(pred_ids) or pred_ids[failed_index] != failed_id:
        pred_ids = np.insert(pred_ids, failed_index, failed_id)
        pred_index[pred_index >= failed_index] += 1
    num_pred = len(pred_ids)
    pair_index = gt_index * num_pred + pred_index
    if need_depth:
        gt_depth = frame.gt_depth.astype(np.float64).ravel()
        tested = np.flatnonzero(gt_depth > 0)
        pred_depth = frame.pred_depth.ravel()[tested].astype(np.float64)
        relative_error = np.abs(pred_depth - gt_depth[tested]) / gt_depth[tested]
        failed_base = gt_index[tested] * num_pred + failed_index
    keys, counts = [], []
    for threshold in protocol.depth_thresholds:
        index = pair_index
        if threshold > 0:
            failed = relative_error > threshold
            index = pair_index.copy()
            index[tested[failed]] = failed_base[failed]
        table = np.bincount(index, minlength=len(gt_ids) * num_pred)
        present = np.flatnonzero(table)
        # gt-major order with ascending ids on both sides: the keys come out sorted.
        keys.append((gt_ids[present // num_pred] << _PAIR_BITS) | pred_ids[present % num_pred])
        counts.append(table[present])
    return FrameStatistics(tuple(keys), tuple(counts))


@dataclass
class _Counts:
    """Per (k, lambda, class) sums: IoU of true positives, TP, FP, FN (float64)."""

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray


@dataclass
class DVPQAccumulator:
    """Accumulates DVPQ counts over streams of frames; mergeable across processes.

    ``add_stream`` takes the statistics of one stream in frame order: a sequence for
    Cityscapes-DVPS, all frames sorted by name for SemKITTI-DVPS
    (``protocol.windows_cross_sequences``).
    """

    protocol: DVPQProtocol
    counts: _Counts = field(init=False)

    def __post_init__(self) -> None:
        shape = (
            len(self.protocol.window_sizes),
            len(self.protocol.depth_thresholds),
            self.protocol.num_classes + 1,
        )
        self.counts = _Counts(*(np.zeros(shape) for _ in range(4)))

    def add_stream(self, stream: Sequence[FrameStatistics]) -> None:
        """Count every window of each k that lies in ``stream``."""
        for ki, k in enumerate(self.protocol.window_sizes):
            for start in range(len(stream) - k + 1):
                window = stream[start : start + k]
                for li in range(len(self.protocol.depth_thresholds)):
                    keys = np.concatenate([s.keys[li] for s in window])
                    counts = np.concatenate([s.counts[li] for s in window])
                    if k > 1:
                        keys, inverse = np.unique(keys, return_inverse=True)
                        counts = np.bincount(inverse, weights=counts)
                    self._match(keys, counts, ki, li)

    def _match(self, keys: np.ndarray, counts: np.ndarray, ki: int, li: int) -> None:
        """Match the segments of one window given its unique (gt, pred) pairs and overlaps."""
        protocol = self.protocol
        ncls = protocol.num_classes + 1
        counts = counts.astype(np.float64)
        gt_ids, gt_of_pair = np.unique(keys >> _PAIR_BITS, return_inverse=True)
        pred_ids, pred_of_pair = np.unique(keys & ((1 << _PAIR_BITS) - 1), return_inverse=True)
        gt_area = np.bincount(gt_of_pair, counts, len(gt_ids))
        pred_area = np.bincount(pred_of_pair, counts, len(pred_ids))
        gt_cls = gt_ids >> _ID_BITS
        pred_cls = pred_ids >> _ID_BITS
        ignored = gt_cls[gt_of_pair] == protocol.ignore_label
        void = ignored & (gt_ids[gt_of_pair] & ((1 << _ID_BITS) - 1) == 0)
        void_overlap = np.bincount(pred_of_pair, counts * void, len(pred_ids))
        ignored_overlap = np.bincount(pred_of_pair, counts * ignored, len(pred_ids))

        same = gt_cls[gt_of_pair] == pred_cls[pred_of_pair]
        union = gt_area[gt_of_pair] + pred_area[pred_of_pair] - counts - void_overlap[pred_of_pair]
        iou = np.where(same, counts / np.maximum(union, 1), 0.0)
        tp = iou > 0.5  # IoU > 0.5 matches each segment at most once
        tp_cls = gt_cls[gt_of_pair[tp]]
        matched_gt = np.zeros(len(gt_ids), bool)
        matched_gt[gt_of_pair[tp]] = True
        matched_pred = np.zeros(len(pred_ids), bool)
        matched_pred[pred_of_pair[tp]] = True
        fn = ~matched_gt & (gt_cls != protocol.ignore_label)
        fp = ~matched_pred & (ignored_overlap / pred_area <= 0.5)
        c = self.counts
        c.iou[ki, li] += np.bincount(tp_cls, iou[tp], ncls)
        c.tp[ki, li] += np.bincount(tp_cls, minlength=ncls)
        c.fn[ki, li] += np.bincount(gt_cls[fn], minlength=ncls)[:ncls]
        c.fp[ki, li] += np.bincount(pred_cls[fp], minlength=ncls)[:ncls]

    def merge(self, other: DVPQAccumulator) -> None:
        """Add another accumulator's counts (same protocol), e.g. from another process."""
        if other.protocol != self.protocol:
            raise ValueError("cannot merge DVPQ counts of different protocols.")
        for name in ("iou", "tp", "fp", "fn"):
            getattr(self.counts, name).__iadd__(getattr(other.counts, name))

    def per_class(self, ki: int, li: int) -> dict[str, np.ndarray]:
        """PQ, SQ, RQ (fractions; nan for a class left out) and TP, FP, FN of the real classes
        at window-size index ``ki`` and threshold index ``li``."""
        n = self.protocol.num_classes
        c = self.counts
        iou, tp, fp, fn = (getattr(c, a)[ki, li, :n] for a in ("iou", "tp", "fp", "fn"))
        with np.errstate(divide="ignore", invalid="ignore"):
            sq = np.where(tp > 0, iou / tp, 0.0)
            rq = np.where(tp > 0, tp / (tp + fp / 2 + fn / 2), 0.0)
        absent = tp + fp + fn == 0
        if not self.protocol.absent_class_is_zero:
            sq, rq = np.where(absent, np.nan, sq), np.where(absent, np.nan, rq)
        return {"pq": sq * rq, "sq": sq, "rq": rq, "tp": tp, "fp": fp, "fn": fn}

    def summary(self, class_names: Sequence[str]) -> dict[str, Any]:
        """Results in percent: ``dvpq`` (one entry per (k, lambda)), ``dvpq_mean`` (over the k set
        and the lambdas > 0) and ``per_class`` (PQ/SQ/RQ/TP/FP/FN at k = 1, lambda = 0, when
        both are in the protocol; None for a class left out)."""
        protocol = self.protocol
        things = np.isin(np.arange(protocol.num_classes), protocol.thing_ids)
        table = []
        for ki, k in enumerate(protocol.window_sizes):
            for li, lam in enumerate(protocol.depth_thresholds):
                pq = self.per_class(ki, li)["pq"]
                table.append(
                    {
                        "k": k,
                        "lambda": lam,
                        "pq": _mean(pq),
                        "pq_thing": _mean(pq[things]),
                        "pq_stuff": _mean(pq[~things]),
                    }
                )
        depth_entries = [e for e in table if e["lambda"] > 0]
        result: dict[str, Any] = {"dvpq": table}
        if depth_entries:
            result["dvpq_mean"] = {
                key: _mean(np.array([e[key] for e in depth_entries], dtype=float) / 100)
                for key in ("pq", "pq_thing", "pq_stuff")
            }
        if 1 in protocol.window_sizes and 0.0 in protocol.depth_thresholds:
            stats = self.per_class(
                protocol.window_sizes.index(1), protocol.depth_thresholds.index(0)
            )
            result["per_class"] = {
                name: (
                    None
                    if math.isnan(stats["pq"][i])
                    else {
                        "pq": 100 * float(stats["pq"][i]),
                        "sq": 100 * float(stats["sq"][i]),
                        "rq": 100 * float(stats["rq"][i]),
                        "tp": int(stats["tp"][i]),
                        "fp": int(stats["fp"][i]),
                        "fn": int(stats["fn"][i]),
                    }
                )
                for i, name in enumerate(class_names)
            }
        return result


def _mean(values: np.ndarray) -> float | None:
    """Mean in percent over the values that are not nan; None when all are nan."""
    values = values[~np.isnan(values)]
    return 100 * float(values.mean()) if values.size else None
