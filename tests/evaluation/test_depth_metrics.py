"""Known-value tests of the per-frame depth metrics, computed by hand in the comments."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from panoptic_depthlab.evaluation.depth_metrics import LOG_DEPTH_FLOOR, DepthMetrics

LN2 = math.log(2.0)


def _summary(pred: list[float], gt: list[float]) -> dict:
    metrics = DepthMetrics()
    metrics.add(np.array([pred], np.float64), np.array([gt], np.float64))
    return metrics.summary()


def test_each_metric_on_two_pixels() -> None:
    # gt [2, 4], pred [1, 4]: errors g - p = [1, 0].
    s = _summary([1.0, 4.0], [2.0, 4.0])
    assert s["abs_rel"] == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert s["sq_rel"] == pytest.approx(0.25)  # (1**2/2 + 0) / 2
    assert s["rmse"] == pytest.approx(math.sqrt(0.5))  # sqrt((1 + 0) / 2)
    # e = ln g - ln p = [ln 2, 0]: rmse_log = sqrt(ln2**2 / 2) = ln2 / sqrt(2).
    assert s["rmse_log"] == pytest.approx(LN2 / math.sqrt(2.0))
    # silog = 100 sqrt(ln2**2 / 2 - (ln2 / 2)**2) = 100 sqrt(ln2**2 / 4) = 50 ln2.
    assert s["silog"] == pytest.approx(50.0 * LN2)
    # ratios max(p/g, g/p) = [2, 1]: 1 < 1.25, 1.5625, 1.953125; 2 passes none.
    assert (s["delta1"], s["delta2"], s["delta3"]) == pytest.approx((50.0, 50.0, 50.0))
    assert (s["frames"], s["skipped_frames"]) == (1, 0)


def test_delta_thresholds_and_non_positive_predictions() -> None:
    # gt all 1; ratios 1.2 (< 1.25), 1.5 (< 1.5625), 1.9 (< 1.953125), 2.5 (none),
    # and predictions 0 and -1 are outliers at every threshold: 6 valid pixels.
    s = _summary([1.2, 1.5, 1.9, 2.5, 0.0, -1.0], [1.0] * 6)
    assert s["delta1"] == pytest.approx(100 * 1 / 6)
    assert s["delta2"] == pytest.approx(100 * 2 / 6)
    assert s["delta3"] == pytest.approx(100 * 3 / 6)


def test_delta_is_strictly_below_the_threshold() -> None:
    # pred/gt = 5/4 = 1.25 exactly (in binary too): not < 1.25, but < 1.5625.
    s = _summary([5.0], [4.0])
    assert (s["delta1"], s["delta2"]) == (0.0, 100.0)


def test_log_metrics_clip_predictions() -> None:
    # pred 0 and -3 are clipped to 1e-3 m: e = ln 1 - ln 1e-3 = 3 ln 10 for both pixels, so
    # rmse_log = 3 ln 10 and silog = 100 sqrt(e**2 - e**2) = 0; both finite.
    s = _summary([0.0, -3.0], [1.0, 1.0])
    assert LOG_DEPTH_FLOOR == 1e-3
    assert s["rmse_log"] == pytest.approx(3.0 * math.log(10.0))
    assert s["silog"] == pytest.approx(0.0, abs=1e-6)
    # The linear metrics use the raw predictions: |1 - 0| / 1 and |1 + 3| / 1 -> 2.5.
    assert s["abs_rel"] == pytest.approx(2.5)


def test_perfect_prediction_of_tiny_depths_scores_zero() -> None:
    # Ground truth below the 1e-3 m floor is clipped like the prediction: e = 0 everywhere.
    s = _summary([1e-4, 5.0], [1e-4, 5.0])
    assert (s["abs_rel"], s["rmse"], s["rmse_log"], s["silog"]) == (0.0, 0.0, 0.0, 0.0)
    assert s["delta1"] == 100.0


def test_pixels_without_ground_truth_are_ignored() -> None:
    # The middle pixel (gt 0, pred 100) must not change the two-pixel answer above.
    assert _summary([1.0, 100.0, 4.0], [2.0, 0.0, 4.0]) == _summary([1.0, 4.0], [2.0, 4.0])


def test_frames_are_averaged_per_frame_not_per_pixel() -> None:
    metrics = DepthMetrics()
    # Frame A: one pixel, gt 2, pred 1 -> abs_rel 0.5, rmse 1.
    metrics.add(np.array([[1.0]]), np.array([[2.0]]))
    # Frame B: three perfect pixels -> abs_rel 0, rmse 0.
    metrics.add(np.full((1, 3), 4.0), np.full((1, 3), 4.0))
    s = metrics.summary()
    assert s["abs_rel"] == pytest.approx(0.25)  # (0.5 + 0) / 2 frames; per pixel: 0.5/4
    assert s["rmse"] == pytest.approx(0.5)  # (1 + 0) / 2; per pixel: sqrt(1/4) = 0.5 too
    assert s["delta1"] == pytest.approx(50.0)  # (0 + 100) / 2; per pixel: 3/4 = 75
    assert s["frames"] == 2


def test_frames_without_valid_pixels_are_skipped_and_counted() -> None:
    metrics = DepthMetrics()
    metrics.add(np.ones((2, 2)), np.zeros((2, 2)))
    s = metrics.summary()
    assert (s["frames"], s["skipped_frames"], s["abs_rel"], s["delta1"]) == (0, 1, None, None)
    metrics.add(np.array([[1.0, 4.0]]), np.array([[2.0, 4.0]]))
    s = metrics.summary()
    assert (s["frames"], s["skipped_frames"]) == (1, 1)
    assert s["abs_rel"] == pytest.approx(0.25)


def test_uint16_inputs_do_not_wrap_around() -> None:
    # gt [1000, 2000], pred [1500, 1000] as uint16: 1000 - 1500 would wrap to 65036.
    # In float: abs_rel = (500/1000 + 1000/2000) / 2 = 0.5; rmse = sqrt((500**2 + 1000**2) / 2).
    metrics = DepthMetrics()
    metrics.add(np.array([[1500, 1000]], np.uint16), np.array([[1000, 2000]], np.uint16))
    s = metrics.summary()
    assert s["abs_rel"] == pytest.approx(0.5)
    assert s["sq_rel"] == pytest.approx((500**2 / 1000 + 1000**2 / 2000) / 2)
    assert s["rmse"] == pytest.approx(math.sqrt(625000.0))


def test_merge_equals_single_accumulation() -> None:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(5):
        gt = rng.uniform(1.0, 80.0, (6, 7)) * (rng.random((6, 7)) > 0.3)
        frames.append((gt * rng.uniform(0.7, 1.4, gt.shape), gt))
    frames.append((np.ones((6, 7)), np.zeros((6, 7))))  # skipped
    single, first, second = DepthMetrics(), DepthMetrics(), DepthMetrics()
    for i, (pred, gt) in enumerate(frames):
        single.add(pred, gt)
        (first if i % 2 else second).add(pred, gt)
    first.merge(pickle.loads(pickle.dumps(second)))
    merged, expected = first.summary(), single.summary()
    assert merged.keys() == expected.keys()
    for key, value in expected.items():
        assert merged[key] == pytest.approx(value), key
    assert (merged["frames"], merged["skipped_frames"]) == (5, 1)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        DepthMetrics().add(np.ones((2, 3)), np.ones((3, 2)))
