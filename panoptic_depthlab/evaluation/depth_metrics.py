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

A frame is reduced in blocks of ``BLOCK_PIXELS`` pixels, whose float64 temporaries stay in the
CPU cache: :func:`depth_errors` gives a block's sums, and a frame's means are the sums of its
blocks divided by its valid pixels. This is the definition above up to the order of the
floating-point additions, with two equivalent forms: without clipping (``g, p >= 1e-3``)
``e = -ln(p / g)``; and the deltas count ``1.25**-K < p / g < 1.25**K``, the same set as
``p > 0 and max(p / g, g / p) < 1.25**K``. For depths that are multiples of 1/256 m (what the
16-bit PNGs store) the counts are exactly those of the ``max`` form, ties included (a ratio of
exactly ``1.25**K`` is an outlier either way); for other floats they can differ only for a
ratio within rounding error of a bound.

``sq_rel`` follows Eigen et al. and the Monodepth/KITTI tables (squared error over ``g``, in
meters); DeepLab2's ``SqErrorRel`` is ``((g - p) / g)**2`` instead, a different number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BLOCK_PIXELS", "DepthMetrics", "LOG_DEPTH_FLOOR", "SUM_FIELDS", "depth_errors"]

LOG_DEPTH_FLOOR = 1e-3  # meters; depths are clipped to this before taking logs
BLOCK_PIXELS = 1 << 15  # pixels per block: a block's float64 temporaries (256 KB each) stay in L2
_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "delta1", "delta2", "delta3")
_DELTA_HIGH = (1.25, 1.5625, 1.953125)  # 1.25**K, exact in binary
_DELTA_LOW = (0.8, 0.64, 0.512)  # 1.25**-K, correctly rounded
# The sums over a frame's valid pixels its metrics are formed from: pixels, |g - p| / g,
# (g - p)**2 / g, (g - p)**2, e**2 and e (the log error), and the pixels inside each delta bound.
SUM_FIELDS = ("pixels", "rel", "sq_rel", "sq", "log_sq", "log", "delta1", "delta2", "delta3")


def depth_errors(
    pred_depth: np.ndarray, gt_depth: np.ndarray, with_sums: bool = True
) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """The relative error ``|p - g| / g`` of each pixel of a block, in float64, and the block's
    sums of the depth metrics over its valid pixels (``g > 0``).

    The DVPQ depth test and ``abs_rel`` use this one quotient, computed as the official DVPS
    scripts compute it (``abs(pred - gt) / gt`` in float64).

    Args:
        pred_depth: (N,) predicted depth, any numeric dtype (converted to float64 first, so a
            uint16 difference never wraps around).
        gt_depth: (N,) ground-truth depth, same unit; pixels with ``g <= 0`` (or nan) are invalid.
        with_sums: False skips the sums (None is returned for them).

    Returns:
        ``(error, sums)``: (N,) float64, the relative error of valid pixels and 0 for the others;
        the values named by ``SUM_FIELDS`` (None without ``with_sums``).
    """
    gt = np.asarray(gt_depth, dtype=np.float64)
    pred = np.asarray(pred_depth, dtype=np.float64)
    valid = gt > 0
    pixels = np.count_nonzero(valid)
    invalid = valid.size - pixels
    if invalid:  # invalid pixels compare 1 with 1: each error below is 0 there, each ratio 1
        gt = np.where(valid, gt, 1.0)
        pred = np.where(valid, pred, 1.0)
    abs_diff = np.subtract(gt, pred)
    np.abs(abs_diff, out=abs_diff)
    error = abs_diff / gt
    if not with_sums:
        return error, None
    ratio = pred / gt
    # max(p / g, g / p) < c  <=>  1 / c < p / g < c; p <= 0 (and nan) falls outside.
    deltas = [
        np.count_nonzero(ratio < high) - np.count_nonzero(ratio <= low) - invalid
        for high, low in zip(_DELTA_HIGH, _DELTA_LOW, strict=True)
    ]
    if min(gt.min(), pred.min()) >= LOG_DEPTH_FLOOR:  # no clipping: -e = ln(p / g)
        neg_log_error = np.log(ratio, out=ratio)
    else:
        neg_log_error = np.log(np.maximum(pred, LOG_DEPTH_FLOOR))
        neg_log_error -= np.log(np.maximum(gt, LOG_DEPTH_FLOOR))
    sums = (
        pixels,
        float(error.sum()),
        float(np.einsum("i,i->", error, abs_diff)),  # (g - p)**2 / g
        float(np.einsum("i,i->", abs_diff, abs_diff)),
        float(np.einsum("i,i->", neg_log_error, neg_log_error)),
        -float(neg_log_error.sum()),
        *deltas,
    )
    return error, sums


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
        pred, gt = np.ravel(pred_depth), np.ravel(gt_depth)
        blocks = range(0, gt.size, BLOCK_PIXELS)
        sums = [
            depth_errors(pred[i : i + BLOCK_PIXELS], gt[i : i + BLOCK_PIXELS])[1] for i in blocks
        ]
        self.add_sums(np.sum(sums, axis=0) if sums else np.zeros(len(SUM_FIELDS)))

    def add_sums(self, sums: np.ndarray) -> None:
        """Add one frame given the sums over its valid pixels (``SUM_FIELDS``, e.g. those of
        :func:`depth_errors` added up over the frame's blocks)."""
        pixels = sums[0]
        if pixels == 0:
            self.skipped_frames += 1
            return
        means = sums[1:] / pixels
        abs_rel, sq_rel, mean_sq, mean_log_sq, mean_log = means[:5]
        values = [
            abs_rel,
            sq_rel,
            math.sqrt(mean_sq),
            math.sqrt(mean_log_sq),
            100.0 * math.sqrt(max(mean_log_sq - mean_log * mean_log, 0.0)),
            *means[5:],
        ]
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
