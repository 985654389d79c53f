"""A slow, literal DVPQ: the oracle for ``panoptic_depthlab.evaluation.dvpq``.

It follows the official ViP-DeepLab scripts step by step, for each (k, lambda) separately:

1. For every window of k consecutive frames of a stream, the k predictions are put side by side
   (``np.concatenate(axis=1)``), and so are the k ground truths, so a segment is a tube.
2. Depth test (lambda > 0) on the concatenation: where the ground-truth depth is > 0 and
   ``|pred - gt| / gt > lambda`` (float64), the prediction becomes (``num_classes``, 0).
3. Areas and overlaps come from ``np.unique`` into Python dicts; a Python loop over the
   overlaps finds true positives (same class, IoU > 0.5; the union leaves out the predicted
   segment's overlap with ground-truth void, i.e. ``ignore_label`` with instance 0); loops over
   the ground-truth and predicted ids count false negatives (never for ``ignore_label``) and false
   positives (not for a prediction with more than half its area on ``ignore_label`` pixels of any
   instance).
4. Per class ``PQ = (sum IoU / TP) * TP / (TP + FP / 2 + FN / 2)``; the extra class
   ``num_classes`` is dropped.

Only the fields of ``DVPQProtocol`` and ``DVPSFrame`` are used, nothing else of ``dvpq.py``.
``protocol.windows_cross_sequences`` is the caller's business: pass one stream per sequence
(Cityscapes-DVPS) or a single stream of all frames sorted by name (SemKITTI-DVPS).

API:
    ``reference_dvpq(streams, protocol)`` -> ``{(k, lambda): {"iou", "tp", "fp", "fn"}}``, each a
    float64 array of shape ``(num_classes + 1,)`` (the last entry is the extra class).
    ``reference_pq(counts, protocol)`` -> per-class PQ and its means for one ``(k, lambda)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from panoptic_depthlab.evaluation.dvpq import DVPQProtocol, DVPSFrame

__all__ = ["reference_dvpq", "reference_pq"]

# Segment id = class * _DIVISOR + instance (instances < 2**16); overlap key = gt id * _OFFSET +
# predicted id. Deliberately not dvpq.py's bit layout.
_DIVISOR = 100_000
_OFFSET = 256 * _DIVISOR


def _ids_to_counts(ids: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(ids, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def _concat(window: Sequence[DVPSFrame], name: str) -> np.ndarray:
    arrays = [getattr(frame, name) for frame in window]
    if any(a is None for a in arrays):
        raise ValueError(f"{name} is missing; depth thresholds > 0 need depth.")
    return np.concatenate(arrays, axis=1)


def _window_counts(
    window: Sequence[DVPSFrame], threshold: float, protocol: DVPQProtocol
) -> dict[str, np.ndarray]:
    """TP/FP/FN and IoU sums of one window at one depth threshold."""
    n = protocol.num_classes
    ignore = protocol.ignore_label
    pred_class = _concat(window, "pred_class").astype(np.int64)
    pred_instance = _concat(window, "pred_instance").astype(np.int64)
    gt_class = _concat(window, "gt_class").astype(np.int64)
    gt_instance = _concat(window, "gt_instance").astype(np.int64)
    if threshold > 0:
        pred_depth = _concat(window, "pred_depth").astype(np.float64)
        gt_depth = _concat(window, "gt_depth").astype(np.float64)
        tested = gt_depth > 0
        failed = np.zeros(gt_depth.shape, bool)
        failed[tested] = (
            np.abs(pred_depth[tested] - gt_depth[tested]) / gt_depth[tested] > threshold
        )
        pred_class[failed] = n
        pred_instance[failed] = 0

    gt_ids = gt_class * _DIVISOR + gt_instance
    pred_ids = pred_class * _DIVISOR + pred_instance
    gt_areas = _ids_to_counts(gt_ids)
    pred_areas = _ids_to_counts(pred_ids)
    intersections = _ids_to_counts(gt_ids * _OFFSET + pred_ids)

    void_id = ignore * _DIVISOR
    pred_void = {}  # predicted id -> pixels on ground-truth void (ignore class, instance 0)
    pred_ignored = {}  # predicted id -> pixels on ground-truth ignore class (any instance)
    for key, overlap in intersections.items():
        gt_id, pred_id = divmod(key, _OFFSET)
        if gt_id == void_id:
            pred_void[pred_id] = pred_void.get(pred_id, 0) + overlap
        if gt_id // _DIVISOR == ignore:
            pred_ignored[pred_id] = pred_ignored.get(pred_id, 0) + overlap

    iou_sum = np.zeros(n + 1)
    tp = np.zeros(n + 1)
    fp = np.zeros(n + 1)
    fn = np.zeros(n + 1)
    gt_matched, pred_matched = set(), set()
    for key, overlap in intersections.items():
        gt_id, pred_id = divmod(key, _OFFSET)
        gt_cat, pred_cat = gt_id // _DIVISOR, pred_id // _DIVISOR
        if gt_cat == ignore or gt_cat != pred_cat:
            continue
        union = gt_areas[gt_id] + pred_areas[pred_id] - overlap - pred_void.get(pred_id, 0)
        iou = overlap / union
        if iou > 0.5:
            tp[gt_cat] += 1
            iou_sum[gt_cat] += iou
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)

    for gt_id in gt_areas:
        gt_cat = gt_id // _DIVISOR
        if gt_id in gt_matched or gt_cat == ignore:
            continue
        fn[gt_cat] += 1
    for pred_id, area in pred_areas.items():
        if pred_id in pred_matched:
            continue
        if pred_ignored.get(pred_id, 0) / area > 0.5:
            continue
        fp[pred_id // _DIVISOR] += 1
    return {"iou": iou_sum, "tp": tp, "fp": fp, "fn": fn}


def reference_dvpq(
    streams: Sequence[Sequence[DVPSFrame]], protocol: DVPQProtocol
) -> dict[tuple[int, float], dict[str, np.ndarray]]:
    """Count DVPQ literally, window by window, for each (k, lambda) of ``protocol``.

    Args:
        streams: lists of frames in order; windows never span two streams.
        protocol: classes, k set, lambdas, ignore label (``windows_cross_sequences`` is not read).

    Returns:
        ``{(k, lambda): {"iou": IoU sums of true positives, "tp", "fp", "fn"}}``, float64 arrays
        of shape ``(num_classes + 1,)`` indexed by class; the last entry is the extra class.
    """
    n = protocol.num_classes
    result = {}
    for k in protocol.window_sizes:
        for threshold in protocol.depth_thresholds:
            totals = {name: np.zeros(n + 1) for name in ("iou", "tp", "fp", "fn")}
            for stream in streams:
                for start in range(len(stream) - k + 1):
                    window = stream[start : start + k]
                    for name, values in _window_counts(window, threshold, protocol).items():
                        totals[name] += values
            result[(k, threshold)] = totals
    return result


def reference_pq(counts: dict[str, np.ndarray], protocol: DVPQProtocol) -> dict[str, object]:
    """PQ of one (k, lambda) entry of :func:`reference_dvpq`, as fractions.

    Returns:
        ``{"per_class": (num_classes,) PQ, "pq": mean, "pq_thing": mean over thing classes,
        "pq_stuff": mean over stuff classes}``. A class without TP, FP or FN is nan and left out
        of the means when ``protocol.absent_class_is_zero`` is False (Cityscapes-DVPS), 0 and kept
        in otherwise (SemKITTI-DVPS; the official 1e-10 guards are left out). A class with FP or FN
        but no TP is 0. A mean over no class is nan.
    """
    n = protocol.num_classes
    per_class = np.zeros(n)
    for c in range(n):
        iou, tp, fp, fn = (float(counts[name][c]) for name in ("iou", "tp", "fp", "fn"))
        if tp + fp + fn == 0:
            per_class[c] = 0.0 if protocol.absent_class_is_zero else float("nan")
        elif tp == 0:
            per_class[c] = 0.0
        else:
            per_class[c] = (iou / tp) * (tp / (tp + fp / 2 + fn / 2))

    def mean(classes: list[int]) -> float:
        values = [per_class[c] for c in classes if not np.isnan(per_class[c])]
        return sum(values) / len(values) if values else float("nan")

    things = [c for c in range(n) if c in protocol.thing_ids]
    stuff = [c for c in range(n) if c not in protocol.thing_ids]
    return {
        "per_class": per_class,
        "pq": mean(list(range(n))),
        "pq_thing": mean(things),
        "pq_stuff": mean(stuff),
    }
