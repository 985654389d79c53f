"""STQ / DSTQ: hand-computed cases (arithmetic in the comments), DeepLab2's published values for
single-row tracks, merging, and an oracle that feeds random streams the way the official
SemKITTI-DVPS script does (``stq_reference.py``)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from panoptic_depthlab.evaluation.stq import STQAccumulator

from .stq_reference import OfficialFeedDSTQ

# Two classes unless said otherwise: 0 = road (stuff), 1 = car (thing).
ROAD, CAR = 0, 1


def _row(values: list[int] | list[float], dtype: type = np.int64) -> np.ndarray:
    """A (1, W) frame from a list."""
    return np.array([values], dtype)


def _add(
    acc: STQAccumulator,
    seq: object,
    gt: tuple[list[int], list[int]],
    pred: tuple[list[int], list[int]],
    depth: tuple[list[float], list[float]] | None = None,
) -> None:
    """Add a one-row frame: ``gt`` and ``pred`` are (classes, instances), ``depth`` (gt, pred)."""
    kwargs = {}
    if depth is not None:
        kwargs = {"gt_depth": _row(depth[0], np.float64), "pred_depth": _row(depth[1], np.float64)}
    acc.add_frame(seq, _row(pred[0]), _row(pred[1]), _row(gt[0]), _row(gt[1]), **kwargs)


def test_perfect_prediction_scores_100() -> None:
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    rng = np.random.default_rng(1)
    for seq in ("a", "b"):
        for _ in range(3):
            cls = rng.integers(0, 2, (4, 5))
            inst = np.where(cls == CAR, rng.integers(1, 4, (4, 5)), 0)
            depth = rng.uniform(1.0, 50.0, (4, 5))
            acc.add_frame(seq, cls, inst, cls, inst, pred_depth=depth, gt_depth=depth)
    s = acc.summary()
    for key in ("stq", "aq", "iou", "dq", "dstq"):
        assert s[key] == pytest.approx(100.0), key


def test_id_switch_mid_sequence() -> None:
    # One car (instance 1) fills both 1x4 frames; the prediction calls it 1 in frame 0 and 2 in
    # frame 1. Ground-truth tube g: 8 px; predicted tubes p1, p2: 4 px each, TPA 4 each,
    # IoU(p, g) = 4 / (8 + 4 - 4) = 1/2. AQ = 1/8 * (4 * 1/2 + 4 * 1/2) = 1/2.
    # mIoU: every pixel is car -> car IoU 1; road absent from both -> left out, mIoU = 1.
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, 0, ([CAR] * 4, [1] * 4), ([CAR] * 4, [1] * 4))
    _add(acc, 0, ([CAR] * 4, [1] * 4), ([CAR] * 4, [2] * 4))
    s = acc.summary()
    assert s["aq"] == pytest.approx(50.0)
    assert s["iou"] == pytest.approx(100.0)
    assert s["stq"] == pytest.approx(100 * math.sqrt(0.5))  # 70.71
    assert s["dq"] is None and s["dstq"] is None  # no depth given


def test_class_confusion_iou() -> None:
    # Three classes, 2 = person (thing). gt [0 0 0 1 2 2], pred [0 0 1 1 2 2]:
    # class 0: TP 2, FN 1 -> 2/3; class 1: TP 1, FP 1 -> 1/2; class 2: TP 2 -> 1.
    # mIoU = (2/3 + 1/2 + 1) / 3 = 13/18. The person tube matches exactly: AQ = 1.
    acc = STQAccumulator(num_classes=3, thing_ids=[2])
    _add(acc, 0, ([0, 0, 0, 1, 2, 2], [0, 0, 0, 0, 1, 1]), ([0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 5, 5]))
    s = acc.summary()
    assert s["iou"] == pytest.approx(100 * 13 / 18)
    assert s["aq"] == pytest.approx(100.0)
    assert s["stq"] == pytest.approx(100 * math.sqrt(13 / 18))


def test_crowd_is_removed_from_ground_truth_and_prediction() -> None:
    # gt: 4 car pixels, the first two crowd (instance 0). pred: one car, instance 3, on all 4.
    # Crowd pixels leave both sides: g = (car, 1) 2 px, p = (car, 3) 2 px, TPA 2 -> AQ = 1.
    # (Without removal from the prediction, p would be 4 px: IoU 1/2, AQ 1/2.)
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, 0, ([CAR] * 4, [0, 0, 1, 1]), ([CAR] * 4, [3] * 4))
    s = acc.summary()
    assert s["aq"] == pytest.approx(100.0)
    assert s["iou"] == pytest.approx(100.0)  # crowd still counts as car for the mIoU


def test_unlabelled_pixels_leave_ground_truth_and_prediction() -> None:
    # The official SemKITTI-DVPS feed (eval_dstq.py: valid_mask = cat_gt != 255, applied to gt
    # AND pred before update_state). gt [255, road, car 1, car 1]; pred [car 1, road, car 1,
    # car 1]. The first pixel leaves both sides: mIoU road 1/1, car 2/2 -> 1; g = p = 2 px,
    # TPA 2 -> AQ = 1.0. (DeepLab2's KITTI-STEP feed would keep the predicted pixel: p = 3 px,
    # AQ 2/3.)
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, 0, ([255, ROAD, CAR, CAR], [0, 0, 1, 1]), ([CAR, ROAD, CAR, CAR], [1, 0, 1, 1]))
    s = acc.summary()
    assert s["iou"] == pytest.approx(100.0)
    assert s["aq"] == pytest.approx(100.0)


def test_unlabelled_pixels_keep_their_depth() -> None:
    # Rule 0 masks classes only; DQ counts every pixel with gt depth > 0 (eval_dstq.py masks
    # depth_gt > 0 on the whole frame). gt classes [255, car], depth gt [4, 4], pred [8, 4]:
    # the unlabelled pixel is a depth outlier (8/4 = 2 > 1.25) -> DQ = 1/2.
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, 0, ([255, CAR], [0, 1]), ([CAR, CAR], [1, 1]), depth=([4, 4], [8, 4]))
    assert acc.summary()["dq"] == pytest.approx(50.0)


def test_two_sequences_sum_tubes_over_sequences() -> None:
    # Sequence "a": two cars predicted perfectly -> association sum 1 + 1 = 2, 2 tubes.
    # Sequence "b": the id switch above -> sum 1/2, 1 tube. The same ids (car 1) in both
    # sequences are different tubes. AQ = (2 + 1/2) / 3 tubes = 5/6, not the mean of the
    # per-sequence AQs (1 + 1/2) / 2 = 3/4.
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, "a", ([CAR] * 4, [1, 1, 2, 2]), ([CAR] * 4, [1, 1, 2, 2]))
    _add(acc, "b", ([CAR] * 4, [1] * 4), ([CAR] * 4, [1] * 4))
    _add(acc, "b", ([CAR] * 4, [1] * 4), ([CAR] * 4, [2] * 4))
    assert acc.summary()["aq"] == pytest.approx(100 * 5 / 6)


def test_no_ground_truth_tube_gives_aq_zero() -> None:
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, 0, ([ROAD] * 3, [0] * 3), ([ROAD] * 3, [0] * 3))
    s = acc.summary()
    assert (s["aq"], s["iou"], s["stq"]) == (0.0, 100.0, 0.0)


@pytest.mark.parametrize("void", [2, 255])
def test_void_predictions(void: int) -> None:
    # gt: 4 road pixels; pred: 3 road + 1 void (class num_classes = 2, or the ignore label).
    # road: TP 3, FN 1 -> 3/4. DeepLab2 counts the void column as a class (union 1, IoU 0):
    # mIoU = (3/4 + 0) / 2 = 3/8.
    gt = ([ROAD] * 4, [0] * 4)
    pred = ([ROAD, ROAD, ROAD, void], [0] * 4)
    deeplab2 = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(deeplab2, 0, gt, pred)
    assert deeplab2.summary()["iou"] == pytest.approx(37.5)


def test_void_prediction_on_unlabelled_pixel_changes_nothing() -> None:
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, 0, ([ROAD, 255], [0, 0]), ([ROAD, 2], [0, 0]))
    assert acc.summary()["iou"] == pytest.approx(100.0)


def test_dq_counts_non_positive_predictions_as_misses() -> None:
    # gt depth [2, 4, 0, 10, 4], pred [2.4, -1, 5, 0, 5]: 4 pixels with gt > 0.
    # 2.4/2 = 1.2 <= 1.25 inlier; -1 miss; (gt 0 ignored); 0 miss; 5/4 = 1.25 <= 1.25 inlier.
    # DQ = 2/4. The segmentation is perfect (STQ 1): DSTQ = (1 * 1 * 1/2) ** (1/3).
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    seg = ([CAR] * 5, [1] * 5)
    _add(acc, 0, seg, seg, depth=([2, 4, 0, 10, 4], [2.4, -1, 5, 0, 5]))
    s = acc.summary()
    assert s["dq"] == pytest.approx(50.0)
    assert s["dstq"] == pytest.approx(100 * 0.5 ** (1 / 3))


def test_dq_pools_pixels_and_dstq_is_the_cube_root() -> None:
    # The id switch (AQ 1/2, mIoU 1) with depth. Frame 0: gt [2, 4, 10, 4], pred
    # [2.4, -1, 0, 5] -> 2 of 4 inliers. Frame 1: gt [2, 0, 0, 4], pred [2, 1, 1, 4] -> 2 of 2.
    # Pooled DQ = (2 + 2) / (4 + 2) = 2/3 (a per-frame mean would give 3/4).
    # DSTQ = (1/2 * 1 * 2/3) ** (1/3) = (1/3) ** (1/3).
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, 0, ([CAR] * 4, [1] * 4), ([CAR] * 4, [1] * 4), ([2, 4, 10, 4], [2.4, -1, 0, 5]))
    _add(acc, 0, ([CAR] * 4, [1] * 4), ([CAR] * 4, [2] * 4), ([2, 0, 0, 4], [2, 1, 1, 4]))
    s = acc.summary()
    assert s["dq"] == pytest.approx(100 * 2 / 3)
    assert s["dstq"] == pytest.approx(100 * (1 / 3) ** (1 / 3))
    assert s["dstq"] == pytest.approx((s["aq"] * s["iou"] * s["dq"]) ** (1 / 3))
    assert s["dstq"] == pytest.approx((s["stq"] ** 2 * s["dq"]) ** (1 / 3))


def test_dq_is_zero_without_any_ground_truth_depth() -> None:
    # As DeepLab2: frames given depth but no pixel with gt > 0 -> DQ 0, DSTQ 0.
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    _add(acc, 0, ([ROAD] * 2, [0] * 2), ([ROAD] * 2, [0] * 2), ([0, 0], [3, 3]))
    s = acc.summary()
    assert (s["dq"], s["dstq"]) == (0.0, 0.0)


def test_uint16_depth_does_not_wrap() -> None:
    # gt 4000, pred 3300 as uint16: ratio 4000/3300 = 1.21 <= 1.25 -> inlier.
    acc = STQAccumulator(num_classes=2, thing_ids=[CAR])
    cls, inst = _row([ROAD]), _row([0])
    depth_gt, depth_pred = _row([4000], np.uint16), _row([3300], np.uint16)
    acc.add_frame(0, cls, inst, cls, inst, pred_depth=depth_pred, gt_depth=depth_gt)
    assert acc.summary()["dq"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("gt", "pred", "expected"),
    [
        # Expected (STQ, AQ, IoU) fractions published in DeepLab2's STQ unit tests for one-row
        # tracks; ids are class << 16 | instance, class 0 = thing, class 1 = stuff.
        ([1] * 5, [1, 1, 2, 2, 2], (0.72111026, 0.52, 1.0)),
        ([1] * 5, [1, 2, 3, 4, 5], (0.447213596, 0.2, 1.0)),
        ([1] * 5, [1 << 16, 1, 1, 1, 1], (0.50596443, 0.64, 0.4)),
        ([0, 1, 1, 1, 1, 1], [2, 2, 2, 2, 1, 1], (0.72111026, 0.52, 1.0)),
        ([0, 1, 1, 1, 1, 1], [2, 2, 1 << 16, 1, 1, 1], (0.40824829, 0.4, 5.0 / 12.0)),
        ([1 << 16, 1, 1, 1, 1], [2, 2, 2, 1, 1], (0.42426407, 0.45, 0.4)),
        ([1 << 16, 1, 1, 1, 1], [2, 2, 1 << 16, 1, 1], (0.3, 0.3, 0.3)),
    ],
)
def test_deeplab2_published_values(
    gt: list[int], pred: list[int], expected: tuple[float, float, float]
) -> None:
    acc = STQAccumulator(num_classes=2, thing_ids=[0])
    g, p = np.array([gt]), np.array([pred])
    acc.add_frame(1, p >> 16, p & 0xFFFF, g >> 16, g & 0xFFFF)
    s = acc.summary()
    assert (s["stq"], s["aq"], s["iou"]) == pytest.approx(tuple(100 * e for e in expected))


def _random_frames(
    seed: int, num_classes: int, count: int
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(sequence, pred_class, pred_instance, gt_class, gt_instance, pred_depth, gt_depth) frames
    of 6x7 pixels, with crowd, unlabelled pixels, void predictions and non-positive depth."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        shape = (6, 7)
        gt_class = rng.integers(0, num_classes, shape)
        gt_class[rng.random(shape) < 0.1] = 255
        gt_instance = rng.integers(0, 3, shape)
        pred_class = rng.integers(0, num_classes + 1, shape)  # num_classes = void
        pred_class[rng.random(shape) < 0.05] = 255  # void, as the ignore label
        pred_instance = rng.integers(0, 4, shape)
        gt_depth = rng.uniform(1, 20, shape) * (rng.random(shape) > 0.2)
        pred_depth = gt_depth * rng.uniform(0.7, 1.4, shape) - (rng.random(shape) < 0.1)
        frames.append(
            (f"seq{i % 3}", pred_class, pred_instance, gt_class, gt_instance, pred_depth, gt_depth)
        )
    return frames


@pytest.mark.parametrize("seed", range(30))
def test_equals_the_official_feed_on_random_streams(seed: int) -> None:
    # The oracle (stq_reference.py) follows eval_dstq.py's feed and DeepLab2's dictionaries.
    rng = np.random.default_rng(100 + seed)
    num_classes = int(rng.integers(2, 6))
    things = sorted(rng.choice(num_classes, int(rng.integers(1, num_classes)), replace=False))
    frames = _random_frames(seed=seed, num_classes=num_classes, count=int(rng.integers(1, 12)))
    acc = STQAccumulator(num_classes=num_classes, thing_ids=things)
    oracle = OfficialFeedDSTQ(num_classes, [int(t) for t in things])
    for seq, pc, pi, gc, gi, pd, gd in frames:
        acc.add_frame(seq, pc, pi, gc, gi, pred_depth=pd, gt_depth=gd)
        oracle.add_frame(seq, pc, pi, gc, gi, pd, gd)
    s = acc.summary()
    for key, value in oracle.result().items():
        assert s[key] == pytest.approx(100 * value, rel=1e-12, abs=1e-12), key


def test_merge_equals_single_accumulation() -> None:
    frames = _random_frames(seed=5, num_classes=4, count=9)
    single = STQAccumulator(num_classes=4, thing_ids=[2, 3])
    parts = [STQAccumulator(num_classes=4, thing_ids=[2, 3]) for _ in range(2)]
    for i, (seq, pc, pi, gc, gi, pd, gd) in enumerate(frames):
        single.add_frame(seq, pc, pi, gc, gi, pred_depth=pd, gt_depth=gd)
        # Alternate frames, so every sequence is split across both parts.
        parts[i % 2].add_frame(seq, pc, pi, gc, gi, pred_depth=pd, gt_depth=gd)
    merged = pickle.loads(pickle.dumps(parts[0]))
    merged.merge(pickle.loads(pickle.dumps(parts[1])))
    expected = single.summary()
    result = merged.summary()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key
    np.testing.assert_array_equal(merged.confusion, single.confusion)


def test_merge_with_other_settings_raises() -> None:
    with pytest.raises(ValueError, match="settings"):
        STQAccumulator(2, [CAR]).merge(STQAccumulator(2, [CAR, ROAD]))


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        (([ROAD, 7], [0, 0]), ([ROAD, ROAD], [0, 0]), "ground-truth class"),
        (([ROAD, ROAD], [0, 0]), ([ROAD, 3], [0, 0]), "predicted class"),
        (([ROAD, ROAD], [0, 0]), ([ROAD, ROAD], [0, 1 << 16]), "pred_instance"),
    ],
)
def test_invalid_ids_raise(gt: tuple, pred: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _add(STQAccumulator(2, [CAR]), 0, gt, pred)


def test_depth_must_come_in_pairs_and_shapes_match() -> None:
    acc = STQAccumulator(2, [CAR])
    cls, inst = _row([ROAD, ROAD]), _row([0, 0])
    with pytest.raises(ValueError, match="both"):
        acc.add_frame(0, cls, inst, cls, inst, pred_depth=np.ones((1, 2)))
    with pytest.raises(ValueError, match="size"):
        acc.add_frame(0, cls, inst, cls, _row([0]))
