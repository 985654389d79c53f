"""Monocular depth metrics (Eigen et al., NeurIPS 2014; KITTI's SILog, Uhrig et al., 3DV 2017),
each computed per frame over the pixels with ground-truth depth and then averaged over frames.

Per frame (``g`` ground truth, ``p`` prediction, in meters and float64; each mean runs over the
valid pixels, those with ``g > 0``):

- ``abs_rel``: ``mean(|g - p| / g)``, a fraction;
- ``sq_rel``: ``mean((g - p)**2 / g)``, meters;
- ``rmse``: ``sqrt(mean((g - p)**2))``, meters;
- ``rmse_log``: ``sqrt(mean(e**2))``, ``e = ln max(g, 1e-3) - ln max(p, 1e-3)``, natural log;
- ``silog``: ``100 * sqrt(max(mean(e**2) - mean(e)**2, 0))``, 100 times natural log units;
- ``delta1``, ``delta2``, ``delta3``: share of pixels with ``p > 0`` and
  ``max(p / g, g / p) < 1.25**K`` for K = 1, 2, 3, in percent.

Predictions are used as given by the linear metrics (``abs_rel``, ``sq_rel``, ``rmse``: a
non-positive prediction is just far off). The log metrics clip predictions (and, for
consistency, ground truth) to at least ``LOG_DEPTH_FLOOR`` = 1e-3 m, so that a zero or negative
prediction gives a large finite error instead of inf or nan, and a perfect prediction scores 0.
The delta metrics count a prediction <= 0 as an outlier (without it, the ratio of a negative
prediction would be negative and pass every threshold).

``sq_rel`` follows Eigen et al. and the Monodepth/KITTI tables (squared error over ``g``, in
meters); DeepLab2's ``SqErrorRel`` is ``((g - p) / g)**2`` instead, a different number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DepthMetrics", "LOG_DEPTH_FLOOR"]

LOG_DEPTH_FLOOR = 1e-3  # meters; depths are clipped to this before taking logs
_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "delta1", "delta2", "delta3")
_DELTA_BASE = 1.25


@dataclass
class DepthMetrics:
    """Accumulates per-frame depth metrics; mergeable across processes and picklable.

    Attributes:
        frames: frames with at least one valid pixel (those that enter the means).
        skipped_frames: frames without any valid pixel (left out of the means).
        sums: (8,) float64, the per-frame values of ``abs_rel, sq_rel, rmse, rmse_log, silog,
            delta1, delta2, delta3`` summed over ``frames`` (deltas as fractions here).
    """

    frames: int = 0
    skipped_frames: int = 0
    sums: np.ndarray = field(default_factory=lambda: np.zeros(len(_KEYS)))

    def add(self, pred_depth: np.ndarray, gt_depth: np.ndarray) -> None:
        """Add one frame.

        Args:
            pred_depth: (H, W) predicted depth in meters, any numeric dtype.
            gt_depth: (H, W) ground-truth depth in meters, 0 (or any value <= 0) where there is
                none; any numeric dtype (a uint16 array is converted to float64 before any
                arithmetic, so differences never wrap around).

        Raises:
            ValueError: the two arrays have different shapes.
        """
        if pred_depth.shape != gt_depth.shape:
            raise ValueError(
                f"pred_depth has shape {pred_depth.shape}, gt_depth {gt_depth.shape}; "
                "they must be the same."
            )
        gt = np.asarray(gt_depth, dtype=np.float64)
        valid = gt > 0
        if not valid.any():
            self.skipped_frames += 1
            return
        gt = gt[valid]
        pred = np.asarray(pred_depth, dtype=np.float64)[valid]

        diff = gt - pred
        sq = diff * diff
        floor = LOG_DEPTH_FLOOR
        log_err = np.log(np.maximum(gt, floor)) - np.log(np.maximum(pred, floor))
        mean_log_sq = float(np.mean(log_err * log_err))
        mean_log = float(np.mean(log_err))
        positive = pred > 0
        safe_pred = np.where(positive, pred, 1.0)
        ratio = np.where(positive, np.maximum(pred / gt, gt / safe_pred), np.inf)

        values = [
            float(np.mean(np.abs(diff) / gt)),
            float(np.mean(sq / gt)),
            math.sqrt(float(np.mean(sq))),
            math.sqrt(mean_log_sq),
            100.0 * math.sqrt(max(mean_log_sq - mean_log * mean_log, 0.0)),
        ]
        values += [float(np.mean(ratio < _DELTA_BASE**k)) for k in (1, 2, 3)]
        self.sums += np.asarray(values)
        self.frames += 1

    def merge(self, other: DepthMetrics) -> None:
        """Add another accumulator's frames (e.g. from another process) to this one."""
        self.frames += other.frames
        self.skipped_frames += other.skipped_frames
        self.sums += other.sums

    def summary(self) -> dict[str, float | int | None]:
        """Means over ``frames``: ``abs_rel`` (fraction), ``sq_rel`` and ``rmse`` (meters),
        ``rmse_log`` (natural log), ``silog`` (100 * natural log), ``delta1..3`` (percent);
        each None when no frame had a valid pixel. Also ``frames`` and ``skipped_frames``."""
        result: dict[str, float | int | None] = {}
        for key, total in zip(_KEYS, self.sums, strict=True):
            if self.frames == 0:
                result[key] = None
            else:
                scale = 100.0 if key.startswith("delta") else 1.0
                result[key] = scale * float(total) / self.frames
        result["frames"] = self.frames
        result["skipped_frames"] = self.skipped_frames
        return result
