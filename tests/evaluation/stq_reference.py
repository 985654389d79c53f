"""An oracle for STQ/DSTQ written the way the official SemKITTI-DVPS evaluation feeds its metric.

Source of every rule: ``semkitti-dvps/eval_dstq.py`` of github.com/joe-siyuan-qiao/ViP-DeepLab
(read, not copied), which builds ``gt = cat_gt * 2**16 + ins_gt`` and
``pred = cat_pred * 2**16 + ins_pred`` per frame, keeps only the pixels with ``cat_gt != 255`` in
BOTH, resizes the depth prediction to the ground-truth size with TensorFlow's
``resize_bilinear(align_corners=True)`` in float32, keeps the pixels with ``depth_gt > 0`` and
calls ``DSTQuality(19, range(8), 255, 2**16, 2**16 * 256, [1.25]).update_state(gt, pred,
depth_gt, depth_pred, sequence_id)``; and DeepLab2's ``STQuality``/``DSTQuality`` as defined in
that script: per-sequence dictionaries of tube areas and intersections, per-sequence confusion
matrices whose ignore row is removed, mIoU over the nonzero unions, AQ summed over sequences and
divided by all tubes, DQ pooled over pixels in float32.

Deliberately slow and literal: Python dictionaries and loops, one frame at a time.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

MAX_INSTANCES = 2**16
OFFSET = 2**16 * 256


def resize_bilinear_align_corners(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """TensorFlow 1's ``resize_bilinear(..., align_corners=True)`` of a 2-D float32 map, pixel by
    pixel in float32: ``scale = (in - 1) / (out - 1)``, ``src = dst * scale``,
    ``lerp = src - floor(src)``, ``top = tl + (tr - tl) * x_lerp``, ``out = top + (bottom - top) *
    y_lerp``."""
    image = image.astype(np.float32)
    in_h, in_w = image.shape
    f32 = np.float32

    def scale(n_in: int, n_out: int) -> np.float32:
        return f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(n_in) / f32(n_out)

    sy, sx = scale(in_h, height), scale(in_w, width)
    out = np.zeros((height, width), np.float32)
    for y in range(height):
        src_y = f32(y) * sy
        y0 = int(math.floor(src_y))
        y1 = min(int(math.ceil(src_y)), in_h - 1)
        y_lerp = f32(src_y - f32(y0))
        for x in range(width):
            src_x = f32(x) * sx
            x0 = int(math.floor(src_x))
            x1 = min(int(math.ceil(src_x)), in_w - 1)
            x_lerp = f32(src_x - f32(x0))
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * x_lerp
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * x_lerp
            out[y, x] = top + (bottom - top) * y_lerp
    return out


class OfficialFeedDSTQ:
    """``num_classes`` classes, thing classes ``things``, ignore label 255."""

    def __init__(self, num_classes: int, things: list[int]) -> None:
        self.num_classes = num_classes
        self.things = list(things)
        self.size = num_classes + 1  # ignore_label (255) >= num_classes
        self.confusion: OrderedDict = OrderedDict()
        self.preds: OrderedDict = OrderedDict()
        self.gts: OrderedDict = OrderedDict()
        self.intersections: OrderedDict = OrderedDict()
        self.depth_total: OrderedDict = OrderedDict()
        self.depth_inliers: OrderedDict = OrderedDict()

    def add_frame(
        self,
        sequence_id: object,
        cat_pred: np.ndarray,
        ins_pred: np.ndarray,
        cat_gt: np.ndarray,
        ins_gt: np.ndarray,
        depth_pred: np.ndarray,
        depth_gt: np.ndarray,
    ) -> None:
        """One frame as the script reads it: class / instance maps and raw depth maps."""
        pred = cat_pred.astype(np.int64) * MAX_INSTANCES + ins_pred.astype(np.int64)
        gt = cat_gt.astype(np.int64) * MAX_INSTANCES + ins_gt.astype(np.int64)
        valid = cat_gt != 255
        gt, pred = gt[valid], pred[valid]
        depth_pred = depth_pred.astype(np.float32)
        depth_gt = depth_gt.astype(np.float32)
        if depth_pred.shape != depth_gt.shape:
            depth_pred = resize_bilinear_align_corners(depth_pred, *depth_gt.shape)
        depth_valid = depth_gt > 0
        self._update(sequence_id, gt, pred, depth_gt[depth_valid], depth_pred[depth_valid])

    def _update(self, seq, y_true, y_pred, d_true, d_pred) -> None:
        sem_true = y_true // MAX_INSTANCES
        sem_pred = y_pred // MAX_INSTANCES
        sem_true = np.where(sem_true == 255, self.num_classes, sem_true)
        sem_pred = np.where(sem_pred == 255, self.num_classes, sem_pred)
        if seq not in self.confusion:
            self.confusion[seq] = np.zeros((self.size, self.size), np.int64)
            self.preds[seq], self.gts[seq], self.intersections[seq] = {}, {}, {}
        for t, p in zip(sem_true.tolist(), sem_pred.tolist(), strict=True):
            self.confusion[seq][t, p] += 1
        instance = y_true % MAX_INSTANCES
        label_mask = np.isin(sem_true, self.things)
        pred_mask = np.isin(sem_pred, self.things)
        crowd = (instance == 0) & label_mask
        label_mask &= ~crowd
        pred_mask &= ~crowd
        for table, values in (
            (self.preds[seq], y_pred[pred_mask]),
            (self.gts[seq], y_true[label_mask]),
            (
                self.intersections[seq],
                y_true[label_mask & pred_mask] * OFFSET + y_pred[label_mask & pred_mask],
            ),
        ):
            for v in values.tolist():
                table[v] = table.get(v, 0) + 1
        total = int(d_true.size)
        positive = d_pred > 0
        t, p = d_true[positive], d_pred[positive]
        error = np.maximum(p / t, t / p)  # float32, as TensorFlow divides float32 tensors
        inliers = int(np.sum(error <= np.float32(1.25)))
        self.depth_total[seq] = self.depth_total.get(seq, 0) + total
        self.depth_inliers[seq] = self.depth_inliers.get(seq, 0) + inliers

    def result(self) -> dict[str, float]:
        """STQ, AQ, IoU, DQ, DSTQ as fractions."""
        aq_sum, tubes = 0.0, 0
        for seq, gts in self.gts.items():
            tubes += len(gts)
            for gt_id, gt_size in gts.items():
                inner = 0.0
                for pr_id, pr_size in self.preds[seq].items():
                    tpa = self.intersections[seq].get(OFFSET * gt_id + pr_id)
                    if tpa:
                        inner += tpa * (tpa / (tpa + (pr_size - tpa) + (gt_size - tpa)))
                aq_sum += inner / gt_size
        aq = aq_sum / max(tubes, 1e-15)
        total = np.zeros((self.size, self.size), np.int64)
        for confusion in self.confusion.values():
            kept = confusion.copy()
            kept[self.num_classes :, :] = 0  # only rows 0..num_classes-1 (the ignore row goes)
            total += kept
        inter = total.diagonal()
        unions = inter + (total.sum(0) - inter) + (total.sum(1) - inter)
        iou = float(np.sum(inter / np.maximum(unions, 1e-15)) / np.count_nonzero(unions))
        depth_total = sum(self.depth_total.values())
        dq = sum(self.depth_inliers.values()) / depth_total if depth_total else 0.0
        stq = math.sqrt(aq * iou)
        return {"stq": stq, "aq": aq, "iou": iou, "dq": dq, "dstq": (stq**2 * dq) ** (1 / 3)}
