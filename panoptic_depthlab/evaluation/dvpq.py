"""DVPQ: depth-aware video panoptic quality, as the official Cityscapes-DVPS and SemKITTI-DVPS
scripts of ViP-DeepLab compute it, in one pass over the frames.

The official scripts concatenate the k frames of each window side by side and match segments on
the concatenation, once per (k, lambda). The concatenation's statistics are sums of per-frame
statistics, so here each frame is reduced once to a table of (ground-truth id, predicted id)
overlap counts per depth threshold (:func:`frame_statistics`), and a window sums the tables of its
frames (:class:`DVPQAccumulator`). Matching on a window's table is vectorized.

:func:`frame_statistics` reads a frame once, in blocks of pixels that stay in the CPU cache: it
counts (ground-truth segment, predicted segment, depth level) triples, a pixel's level being the
number of thresholds its relative depth error exceeds, and forms each threshold's table from
these counts; the depth metrics share the relative error.

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
   or counts as 0 (SemKITTI-DVPS, whose script adds 1e-10 to the denominators; that guard is left
   out here, which moves its numbers by about 1e-9 points). The Cityscapes-DVPS script adds no
   guard, so any class without TP makes its printed mean nan; here such a class scores 0 when it
   has FP or FN, as in the SemKITTI-DVPS script.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from .depth_metrics import BLOCK_PIXELS, DepthMetrics, depth_errors

__all__ = ["DVPQAccumulator", "DVPQProtocol", "DVPSFrame", "FrameStatistics", "frame_statistics"]

_ID_BITS = 16  # segment id = class << 16 | instance; instances come from 8- or 16-bit PNGs
_PAIR_BITS = 24  # pair key = ground-truth id << 24 | predicted id
_COUNT_PIXELS = 1 << 18  # codes counted per bincount call (8 blocks of BLOCK_PIXELS)
_LANES = 4  # counters per code that consecutive pixels take turns in
_MAX_CODE_BINS = 1 << 22  # most codes of one side; above, instance ids are numbered first
_MAX_PRED_BINS = 1 << 10  # most (pred code, level) pairs; above, pred segments are numbered


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


def _check_frame(frame: DVPSFrame, protocol: DVPQProtocol, need_depth: bool) -> tuple[int, int]:
    """Check sizes and instance ids; class ids are checked block by block (:func:`_check_ids`).

    Returns:
        The largest ground-truth and predicted instance ids.
    """
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
    gt_top, pred_top = _largest_unsigned(frame.gt_instance), _largest_unsigned(frame.pred_instance)
    if max(gt_top, pred_top) >> _ID_BITS:
        _report_bad_ids(frame, protocol)
    return gt_top, pred_top


def _check_ids(ids: np.ndarray, limit: int, frame: DVPSFrame, protocol: DVPQProtocol) -> None:
    """Check that the ids of a block lie in 0..limit, else report the frame's first bad id."""
    if _largest_unsigned(ids) > limit:
        _report_bad_ids(frame, protocol)


def _largest_unsigned(ids: np.ndarray) -> int:
    """The largest value of integer ``ids`` read as unsigned: negative ids count as huge, so that
    one maximum checks both bounds of a range 0..limit."""
    if ids.dtype.kind == "i":
        ids = ids.view(ids.dtype.str.replace("i", "u"))
    return int(ids.max())


def _report_bad_ids(frame: DVPSFrame, protocol: DVPQProtocol) -> None:
    """Raise the error of the frame's first bad id: predicted classes, then ground-truth
    classes, then instances (a frame with a bad id only)."""
    low, high = int(frame.pred_class.min()), int(frame.pred_class.max())
    if low < 0 or high > protocol.num_classes:
        raise ValueError(
            f"{frame.name}: predicted class id {low if low < 0 else high}; expected "
            f"0..{protocol.num_classes} ({protocol.num_classes} = void)."
        )
    _check_gt_classes(frame, protocol, np.unique(frame.gt_class))
    for key in ("pred_instance", "gt_instance"):
        if _largest_unsigned(getattr(frame, key)) >> _ID_BITS:
            raise ValueError(f"{frame.name}: {key} outside 0..{(1 << _ID_BITS) - 1}.")
    raise AssertionError(f"{frame.name}: no bad id found")


def _check_gt_classes(frame: DVPSFrame, protocol: DVPQProtocol, classes: np.ndarray) -> None:
    """Reject ground-truth classes (``classes``: those present, ascending) that are neither real
    classes nor the ignore label."""
    real = (classes >= 0) & (classes < protocol.num_classes)
    bad = classes[~real & (classes != protocol.ignore_label)]
    if bad.size:
        raise ValueError(
            f"{frame.name}: ground-truth class id {bad[0]}; expected 0..{protocol.num_classes - 1} "
            f"or the ignore label {protocol.ignore_label}."
        )


def _run_values(values: np.ndarray) -> np.ndarray:
    """The last value of each run of equal values of ``values`` (1-D, not empty): every value
    present, from few pixels when the values are piecewise constant, as label maps are."""
    return values[np.append(np.flatnonzero(values[1:] != values[:-1]), values.size - 1)]


@dataclass(frozen=True)
class _SegmentCodes:
    """How one side of a frame (ground truth or prediction) numbers its segments.

    A pixel's code is ``class * width + slot``: the slot is the instance id itself when
    ``classes * (largest id + 1)`` codes are few (at most ``_MAX_CODE_BINS``), else the rank of
    the id among those present (instance 0 always has slot 0). Codes ascend with segment ids
    ``class << 16 | instance``.

    Attributes:
        classes: class ids 0..classes - 1.
        width: slots per class.
        slot_ids: (width,) int64 instance id of each slot, or None when slot = id.
        slot_of: (largest id + 1,) int32 slot of each instance id, or None when slot = id.
    """

    classes: int
    width: int
    slot_ids: np.ndarray | None = None
    slot_of: np.ndarray | None = None

    @classmethod
    def of(
        cls, classes: int, instances: np.ndarray, top: int, blocks: Sequence[slice]
    ) -> _SegmentCodes:
        """The coding of ``classes`` classes and of the instance ids ``instances`` (1-D, at most
        ``top``) whose ``blocks`` cover the frame."""
        if classes * (top + 1) <= _MAX_CODE_BINS:
            return cls(classes, top + 1)
        present = np.zeros(top + 1, bool)
        present[0] = True  # the segment of depth-test failures is (num_classes, 0)
        for b in blocks:
            present[_run_values(instances[b])] = True
        slot_ids = np.flatnonzero(present)
        slot_of = np.zeros(top + 1, np.int32)
        slot_of[slot_ids] = np.arange(len(slot_ids))
        return cls(classes, len(slot_ids), slot_ids, slot_of)

    @property
    def bins(self) -> int:
        """The number of codes."""
        return self.classes * self.width

    def codes(self, classes: np.ndarray, instances: np.ndarray) -> np.ndarray:
        """The int32 codes of the pixels of ``classes`` and ``instances`` (1-D, checked)."""
        codes = np.multiply(classes, self.width, dtype=np.int32)
        codes += instances if self.slot_of is None else self.slot_of.take(instances)
        return codes

    def present(
        self,
        classes: np.ndarray,
        instances: np.ndarray,
        blocks: Sequence[slice],
        check: Callable[[np.ndarray], None],
    ) -> np.ndarray:
        """The codes present in the frame (ascending int64), given its class and instance ids
        (1-D) and the ``blocks`` that cover them; ``check`` is called on each block's classes
        first."""
        seen = np.zeros(self.bins, bool)
        for b in blocks:
            check(classes[b])
            seen[_run_values(self.codes(classes[b], instances[b]))] = True
        return np.flatnonzero(seen)

    def ids(self, codes: np.ndarray) -> np.ndarray:
        """Segment ids ``class << 16 | instance`` (int64) of ``codes``."""
        classes, slots = np.divmod(codes, self.width)
        instances = slots if self.slot_ids is None else self.slot_ids[slots]
        return (classes << _ID_BITS) | instances


class _Rows:
    """Numbers the codes of one side in the order they first appear, block by block, and gives
    each pixel the offset ``row * stride`` of its code's row in the count."""

    def __init__(self, bins: int, stride: int):
        self.codes: list[int] = []  # the code of each row
        self._offsets = np.full(bins, -1, np.int32)
        self._stride = stride

    def offsets(self, codes: np.ndarray) -> np.ndarray:
        """(N,) int32 row offsets of ``codes`` (1-D int32), numbering the codes not seen yet."""
        offsets = self._offsets.take(codes)
        if offsets.min() < 0:
            runs = _run_values(codes)
            new = np.unique(runs[self._offsets[runs] < 0])
            self._offsets[new] = (len(self.codes) + np.arange(len(new))) * self._stride
            self.codes += new.tolist()
            offsets = self._offsets.take(codes)
        return offsets


class _Counter:
    """Counts of non-negative int codes given block by block, their range growing as they come.
    The codes of several blocks are counted with one bincount; consecutive pixels go to
    ``_LANES`` separate counters of each code, so that a run of equal codes does not wait on
    one counter."""

    def __init__(self, pixels: int):
        self._counts = np.zeros(0, np.int64)  # code * _LANES + lane
        self._buffer = np.empty(min(pixels, _COUNT_PIXELS), np.int64)
        self._lanes = np.tile(np.arange(_LANES, dtype=np.int64), BLOCK_PIXELS // _LANES)
        self._used = 0

    def add(self, codes: np.ndarray) -> None:
        """Count ``codes`` (1-D, at most ``BLOCK_PIXELS``)."""
        if self._used + codes.size > self._buffer.size:
            self._flush()
        out = self._buffer[self._used : self._used + codes.size]
        np.multiply(codes, _LANES, out=out)
        out += self._lanes[: codes.size]
        self._used += codes.size

    def counts(self, bins: int) -> np.ndarray:
        """(bins,) int64 counts of the codes ``0..bins - 1`` (all codes added are below)."""
        self._flush()
        counts = np.zeros(bins * _LANES, np.int64)
        counts[: self._counts.size] = self._counts
        return counts.reshape(bins, _LANES).sum(axis=1)

    def _flush(self) -> None:
        counts = np.bincount(self._buffer[: self._used])
        if counts.size > self._counts.size:
            counts[: self._counts.size] += self._counts
            self._counts = counts
        else:
            self._counts[: counts.size] += counts
        self._used = 0


def frame_statistics(
    frame: DVPSFrame, protocol: DVPQProtocol, depth_metrics: DepthMetrics | None = None
) -> FrameStatistics:
    """Reduce one frame to its overlap tables, one per depth threshold of ``protocol``.

    One count of (ground-truth segment, predicted segment, depth level) serves every threshold:
    a pixel's level is the number of thresholds its relative depth error exceeds, so it fails
    the thresholds of ascending rank 1..level, and a threshold's table is a sum over levels. The
    pixels are read once, in blocks of ``BLOCK_PIXELS`` whose temporaries stay in cache;
    ground-truth segments get rows as they appear.

    Args:
        frame: the frame.
        protocol: the window sizes and depth thresholds.
        depth_metrics: when given, the frame's depth metrics are added to it as well, from the
            same relative errors (``frame`` must then have depth).

    Raises:
        ValueError: sizes differ, class or instance ids out of range, or depth is missing while
            a threshold > 0 (or depth metrics) is asked for; the message names ``frame.name``.
    """
    thresholds = np.unique([t for t in protocol.depth_thresholds if t > 0])
    levels = thresholds.size + 1
    need_depth = thresholds.size > 0 or depth_metrics is not None
    gt_instance_max, pred_instance_max = _check_frame(frame, protocol, need_depth)
    gt_class, gt_instance = np.ravel(frame.gt_class), np.ravel(frame.gt_instance)
    pred_class, pred_instance = np.ravel(frame.pred_class), np.ravel(frame.pred_instance)
    if need_depth:
        pred_depth, gt_depth = np.ravel(frame.pred_depth), np.ravel(frame.gt_depth)
    pixels = gt_class.size
    blocks = [slice(start, start + BLOCK_PIXELS) for start in range(0, pixels, BLOCK_PIXELS)]
    num_classes = protocol.num_classes
    check_gt = partial(_check_ids, limit=protocol.ignore_label, frame=frame, protocol=protocol)
    check_pred = partial(_check_ids, limit=num_classes, frame=frame, protocol=protocol)
    gt = _SegmentCodes.of(protocol.ignore_label + 1, gt_instance, gt_instance_max, blocks)
    pred = _SegmentCodes.of(num_classes + 1, pred_instance, pred_instance_max, blocks)

    # Predicted segments: their codes as they are, or numbered first (one more pass) when the
    # codes are many.
    pred_index = None
    if pred.bins * levels <= _MAX_PRED_BINS:
        pred_ids = pred.ids(np.arange(pred.bins))
    else:
        pred_present = pred.present(pred_class, pred_instance, blocks, check_pred)
        failed_code = num_classes * pred.width  # (num_classes, 0), the segment of failed pixels
        pred_present = np.union1d(pred_present, [failed_code])
        pred_index = np.zeros(pred.bins, np.int32)
        pred_index[pred_present] = np.arange(len(pred_present)) * levels
        pred_ids = pred.ids(pred_present)
    num_pred = len(pred_ids)
    failed_index = int(np.searchsorted(pred_ids, num_classes << _ID_BITS))

    # Count (gt row, pred segment, level) and, on the way, the depth metrics' sums.
    rows = _Rows(gt.bins, num_pred * levels)
    counter = _Counter(pixels)
    depth_sums = []
    for b in blocks:
        check_gt(gt_class[b])
        check_pred(pred_class[b])
        pair = pred.codes(pred_class[b], pred_instance[b])
        if pred_index is None:
            pair *= levels
        else:
            pair = pred_index.take(pair)
        pair += rows.offsets(gt.codes(gt_class[b], gt_instance[b]))
        if need_depth:
            error, sums = depth_errors(pred_depth[b], gt_depth[b], depth_metrics is not None)
            depth_sums.append(sums)
            if thresholds.size:
                level = (error > thresholds[0]).view(np.int8)
                for threshold in thresholds[1:]:
                    level += (error > threshold).view(np.int8)
                pair += level
        counter.add(pair)
    table = counter.counts(len(rows.codes) * num_pred * levels)
    order = np.argsort(rows.codes)  # rows by ascending code, i.e. ascending segment id
    gt_ids = gt.ids(np.asarray(rows.codes)[order])
    table = table.reshape(len(rows.codes), num_pred, levels)[order]
    _check_gt_classes(frame, protocol, np.unique(gt_ids >> _ID_BITS))
    if depth_metrics is not None:
        depth_metrics.add_sums(np.sum(depth_sums, axis=0))

    # A pixel of level l fails the thresholds of rank <= l and moves to (gt, failed segment).
    kept_by_rank = np.cumsum(table, axis=2)
    total = kept_by_rank[..., -1]
    keys, counts = [], []
    for threshold in protocol.depth_thresholds:
        if threshold > 0:
            rank = int(np.searchsorted(thresholds, threshold))  # level <= rank: kept
            pair_counts = kept_by_rank[..., rank].copy()
            pair_counts[:, failed_index] += (total - kept_by_rank[..., rank]).sum(axis=1)
        else:
            pair_counts = total
        present = np.flatnonzero(pair_counts)
        gt_of, pred_of = np.divmod(present, num_pred)
        # gt-major order with ascending ids on both sides: the keys come out sorted.
        keys.append((gt_ids[gt_of] << _PAIR_BITS) | pred_ids[pred_of])
        counts.append(pair_counts.ravel()[present])
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
