"""STQ (Weber et al., "STEP: Segmenting and Tracking Every Pixel", 2021) and DSTQ (ViP-DeepLab,
Qiao et al., CVPR 2021) as the official SemKITTI-DVPS script computes them
(``semkitti-dvps/eval_dstq.py`` of the ViP-DeepLab repository, which feeds DeepLab2's
``STQuality``/``DSTQuality`` with ``num_classes=19``, things ``0..7``, ``ignore_label=255`` and a
depth threshold of 1.25), in one pass over the frames with small, mergeable state.

Ids are ``class << 16 | instance``. The rules:

0. The feed: every pixel whose ground-truth class is ``ignore_label`` (unlabelled) is removed
   from BOTH ground truth and prediction before anything is counted (the script's
   ``valid_mask = cat_gt != 255``), so a prediction on unlabelled ground truth changes neither
   the mIoU nor any predicted tube. Depth is not masked by this (rule 4).
1. IoU: one confusion matrix over all frames of all sequences, rows ground truth, columns
   prediction, both of size ``num_classes + 1``; the last column holds void predictions (class
   ``num_classes`` or ``ignore_label``). Per class ``IoU = TP / (TP + FP + FN)``; mIoU averages
   over the columns whose union is > 0 (a class absent from both ground truth and prediction is
   left out). As in DeepLab2, the void column is one of those as soon as a void prediction falls
   on a labelled pixel: it adds a 0 to the mean. A void prediction on a labelled pixel is also
   a false negative of the pixel's class.
2. AQ: ground-truth tubes are the ids of thing pixels with instance > 0 in a sequence; thing
   pixels with instance 0 are crowd and are removed from both ground truth and prediction.
   Predicted tubes are the ids of predicted thing pixels outside crowd (on stuff ground truth
   too). Overlaps ``TPA(p, g)`` need no class agreement. Per sequence
   ``sum_g 1/|g| sum_p TPA(p, g) * IoU(p, g)``, summed over the sequences and divided by the
   number of ground-truth tubes of all sequences (not a mean of per-sequence AQs); 0 without any
   ground-truth tube.
3. STQ = sqrt(AQ * mIoU).
4. DQ: over all frames given depth, the share of pixels with ground-truth depth (> 0, whatever
   their class) whose prediction is > 0 and ``max(pred / gt, gt / pred) <= 1.25``, pooled over
   pixels; 0 when no pixel has ground-truth depth. The ratio is computed in float32, as the
   script's TensorFlow does (exactly the ratio of the 16-bit PNG values for PNG depths).
5. DSTQ = (AQ * mIoU * DQ) ** (1/3) = (STQ**2 * DQ) ** (1/3).

DeepLab2's own KITTI-STEP evaluation feeds whole frames instead (rule 0 does not hold there).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["STQAccumulator"]

_ID_BITS = 16  # id = class << 16 | instance
_PAIR_BITS = 24  # pair key = ground-truth id << 24 | predicted id
_INSTANCE_LIMIT = 1 << _ID_BITS
DQ_THRESHOLD = 1.25  # a depth prediction is an inlier if max(pred / gt, gt / pred) <= this


@dataclass
class _Counts:
    """A sparse pixel count table: ``keys`` (N,) int64, unique and sorted; ``counts`` (N,) int64
    pixels."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """Add counts (N,) int64 for keys (N,) int64 (need not be unique or sorted)."""
        all_keys = np.concatenate([self.keys, keys.astype(np.int64)])
        all_counts = np.concatenate([self.counts, counts.astype(np.int64)])
        self.keys, inverse = np.unique(all_keys, return_inverse=True)
        self.counts = np.zeros(len(self.keys), np.int64)
        np.add.at(self.counts, inverse.ravel(), all_counts)

    def add_ids(self, ids: np.ndarray) -> None:
        """Count the pixels of each id in ``ids`` (any shape, int64)."""
        keys, counts = np.unique(ids, return_counts=True)
        self.add(keys, counts)


@dataclass
class _Tubes:
    """AQ statistics of one sequence: pixel areas of ground-truth tubes (crowd removed), of
    predicted tubes (crowd removed) and of their overlaps, summed over the sequence's frames."""

    gt: _Counts = field(default_factory=_Counts)
    pred: _Counts = field(default_factory=_Counts)
    pairs: _Counts = field(default_factory=_Counts)
    frames: int = 0

    def merge(self, other: _Tubes) -> None:
        """Add another part of the same sequence."""
        self.gt.add(other.gt.keys, other.gt.counts)
        self.pred.add(other.pred.keys, other.pred.counts)
        self.pairs.add(other.pairs.keys, other.pairs.counts)
        self.frames += other.frames

    def association_sum(self) -> float:
        """``sum_g 1/|g| sum_p TPA(p, g) * IoU(p, g)`` over this sequence's tubes."""
        if self.pairs.keys.size == 0:
            return 0.0
        gt_ids = self.pairs.keys >> _PAIR_BITS
        pred_ids = self.pairs.keys & ((1 << _PAIR_BITS) - 1)
        gt_area = self.gt.counts[np.searchsorted(self.gt.keys, gt_ids)].astype(np.float64)
        pred_area = self.pred.counts[np.searchsorted(self.pred.keys, pred_ids)].astype(np.float64)
        tpa = self.pairs.counts.astype(np.float64)
        iou = tpa / (gt_area + pred_area - tpa)
        return float(np.sum(tpa * iou / gt_area))


@dataclass
class STQAccumulator:
    """Accumulates STQ and DSTQ statistics over frames; mergeable across processes, picklable.

    The state is a confusion matrix, per-sequence tube tables and depth inlier counts; frames are
    not kept. Frames of one sequence may be split across accumulators that are merged later.

    Attributes:
        num_classes: real classes (train ids ``0..num_classes - 1``); a predicted class
            ``num_classes`` (or ``ignore_label``) is void.
        thing_ids: thing train ids.
        ignore_label: ground-truth class of unlabelled pixels (> ``num_classes``).
        confusion: (num_classes + 1, num_classes + 1) int64 pixels, rows ground truth (the last
            row, unlabelled pixels, is dropped by :meth:`summary`), columns prediction (the last
            one void).
        tubes: per sequence id, its tube tables.
        depth_frames: frames given depth.
        depth_pixels: pixels with ground-truth depth > 0 in those frames.
        depth_inliers: pixels among those whose prediction is within the DQ threshold.
    """

    num_classes: int
    thing_ids: Sequence[int]
    ignore_label: int = 255
    confusion: np.ndarray = field(init=False)
    tubes: dict[Hashable, _Tubes] = field(init=False, default_factory=dict)
    depth_frames: int = field(init=False, default=0)
    depth_pixels: int = field(init=False, default=0)
    depth_inliers: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.thing_ids = tuple(int(c) for c in self.thing_ids)
        if not 0 < self.num_classes < self.ignore_label:
            raise ValueError(
                f"num_classes={self.num_classes} must lie in 1..{self.ignore_label - 1} "
                f"(below ignore_label={self.ignore_label})."
            )
        if self.num_classes >= 1 << (_PAIR_BITS - _ID_BITS):
            raise ValueError(f"num_classes={self.num_classes} must be below 256.")
        if any(not 0 <= c < self.num_classes for c in self.thing_ids):
            raise ValueError(f"thing ids {self.thing_ids} outside 0..{self.num_classes - 1}.")
        size = self.num_classes + 1
        self.confusion = np.zeros((size, size), np.int64)

    def _config(self) -> tuple:
        return (self.num_classes, self.thing_ids, self.ignore_label)

    def add_frame(
        self,
        sequence_id: Hashable,
        pred_class: np.ndarray,
        pred_instance: np.ndarray,
        gt_class: np.ndarray,
        gt_instance: np.ndarray,
        pred_depth: np.ndarray | None = None,
        gt_depth: np.ndarray | None = None,
    ) -> None:
        """Add one frame of sequence ``sequence_id``; every array is (H, W).

        Args:
            sequence_id: the frame's sequence; tubes are matched within a sequence only.
            pred_class: predicted train ids, ``num_classes`` or ``ignore_label`` for void.
            pred_instance: predicted instance (track) ids, 0..65535.
            gt_class: ground-truth train ids, ``ignore_label`` for unlabelled pixels (left out of
                everything but DQ).
            gt_instance: ground-truth instance (track) ids, 0..65535; 0 on a thing is crowd.
            pred_depth: predicted depth in meters (float32 or exactly representable in it, as
                16-bit PNG values / 256 are), or None (then ``gt_depth`` must be None too and the
                frame does not enter DQ).
            gt_depth: ground-truth depth in meters, <= 0 where there is none; any numeric dtype.

        Raises:
            ValueError: sizes differ, ids out of range, or only one of the depths is given.
        """
        self._check(pred_class, pred_instance, gt_class, gt_instance, pred_depth, gt_depth)
        nc = self.num_classes
        labelled = np.flatnonzero(gt_class.ravel() != self.ignore_label)  # rule 0
        gt_cls = gt_class.ravel()[labelled].astype(np.int64)
        pred_cls = pred_class.ravel()[labelled].astype(np.int64)
        pred_cls[pred_cls == self.ignore_label] = nc
        size = nc + 1
        self.confusion += np.bincount(gt_cls * size + pred_cls, minlength=size * size).reshape(
            size, size
        )

        is_thing = np.zeros(size, bool)
        is_thing[list(self.thing_ids)] = True
        gt_inst = gt_instance.ravel()[labelled].astype(np.int64)
        gt_thing = is_thing[gt_cls]
        crowd = gt_thing & (gt_inst == 0)
        gt_tube = gt_thing & ~crowd
        pred_tube = is_thing[pred_cls] & ~crowd
        gt_ids = (gt_cls << _ID_BITS) | gt_inst
        pred_ids = (pred_cls << _ID_BITS) | pred_instance.ravel()[labelled].astype(np.int64)
        both = gt_tube & pred_tube
        tubes = self.tubes.setdefault(sequence_id, _Tubes())
        tubes.gt.add_ids(gt_ids[gt_tube])
        tubes.pred.add_ids(pred_ids[pred_tube])
        tubes.pairs.add_ids((gt_ids[both] << _PAIR_BITS) | pred_ids[both])
        tubes.frames += 1

        if gt_depth is not None and pred_depth is not None:
            valid = np.asarray(gt_depth) > 0
            gt_d = np.asarray(gt_depth, dtype=np.float32)[valid]
            pred_d = np.asarray(pred_depth, dtype=np.float32)[valid]
            positive = pred_d > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.maximum(pred_d / gt_d, gt_d / pred_d)
            self.depth_inliers += int(np.count_nonzero(positive & (ratio <= DQ_THRESHOLD)))
            self.depth_pixels += int(gt_d.size)
            self.depth_frames += 1

    def _check(
        self,
        pred_class: np.ndarray,
        pred_instance: np.ndarray,
        gt_class: np.ndarray,
        gt_instance: np.ndarray,
        pred_depth: np.ndarray | None,
        gt_depth: np.ndarray | None,
    ) -> None:
        if (pred_depth is None) != (gt_depth is None):
            raise ValueError("give both pred_depth and gt_depth, or neither.")
        shape = gt_class.shape
        arrays = {"pred_class": pred_class, "pred_instance": pred_instance}
        arrays.update(gt_instance=gt_instance, pred_depth=pred_depth, gt_depth=gt_depth)
        for key, array in arrays.items():
            if array is not None and array.shape != shape:
                raise ValueError(
                    f"{key} has size {array.shape}, gt_class {shape}; all must be the same."
                )
        nc, ignore = self.num_classes, self.ignore_label
        pred = _present(pred_class)
        bad = pred[((pred < 0) | (pred > nc)) & (pred != ignore)]
        if bad.size:
            raise ValueError(
                f"predicted class id {bad[0]}; expected 0..{nc} or {ignore} ({nc}, {ignore}: void)."
            )
        gt = _present(gt_class)
        bad = gt[((gt < 0) | (gt >= nc)) & (gt != ignore)]
        if bad.size:
            raise ValueError(
                f"ground-truth class id {bad[0]}; expected 0..{nc - 1} or the ignore label "
                f"{ignore}."
            )
        for key, values in (("pred_instance", pred_instance), ("gt_instance", gt_instance)):
            if values.size and (values.min() < 0 or values.max() >= _INSTANCE_LIMIT):
                raise ValueError(f"{key} outside 0..{_INSTANCE_LIMIT - 1}.")

    def merge(self, other: STQAccumulator) -> None:
        """Add another accumulator's statistics (same settings), e.g. from another process.
        A sequence present in both is one sequence: its tube tables are summed."""
        if other._config() != self._config():
            raise ValueError("cannot merge STQ statistics computed with different settings.")
        self.confusion += other.confusion
        for sequence_id, tubes in other.tubes.items():
            self.tubes.setdefault(sequence_id, _Tubes()).merge(tubes)
        self.depth_frames += other.depth_frames
        self.depth_pixels += other.depth_pixels
        self.depth_inliers += other.depth_inliers

    def summary(self) -> dict[str, float | None]:
        """``stq``, ``aq``, ``iou`` (mIoU), ``dq`` and ``dstq``, in percent.

        ``iou`` and ``stq`` are None when no labelled pixel was seen; ``dq`` and ``dstq`` are
        None when no frame was given depth.
        """
        nc = self.num_classes
        num_tubes = sum(len(t.gt.keys) for t in self.tubes.values())
        association = sum(t.association_sum() for t in self.tubes.values())
        aq = association / num_tubes if num_tubes else 0.0

        confusion = self.confusion.copy()
        confusion[nc, :] = 0  # unlabelled ground truth
        tp = np.diag(confusion).astype(np.float64)
        union = confusion.sum(0) + confusion.sum(1) - tp
        present = union > 0
        iou = float(np.mean(tp[present] / union[present])) if present.any() else None

        dq = None
        if self.depth_frames:
            dq = self.depth_inliers / max(self.depth_pixels, 1)

        stq = math.sqrt(aq * iou) if iou is not None else None
        dstq = (aq * iou * dq) ** (1.0 / 3.0) if iou is not None and dq is not None else None
        return {
            "stq": _percent(stq),
            "aq": _percent(aq),
            "iou": _percent(iou),
            "dq": _percent(dq),
            "dstq": _percent(dstq),
        }


def _present(classes: np.ndarray) -> np.ndarray:
    """The distinct values of a class map, ascending (a bincount: no sort of all pixels)."""
    low = int(classes.min()) if classes.size else 0
    if low < 0:  # only for the error message
        return np.unique(classes)
    return np.flatnonzero(np.bincount(classes.ravel()))


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value
