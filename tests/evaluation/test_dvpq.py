"""DVPQ on hand-built maps with counts worked out by hand, run through both the vectorized
``DVPQAccumulator`` and the literal reference of ``dvpq_reference.py``; then both on random
streams.

Most hand-built frames are one row of 100 pixels, so that a segment is a span of columns and its
area is the span's length; ``[a, b)`` below means columns a..b-1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from panoptic_depthlab.data import dvps_metadata
from panoptic_depthlab.evaluation import (
    DVPQAccumulator,
    DVPQProtocol,
    DVPSFrame,
    frame_statistics,
)

from .dvpq_reference import reference_dvpq, reference_pq

N = 19
EXTRA = N  # class of depth-test failures and void predictions
IGNORE = 255
ROAD, SIDEWALK, BUILDING, PERSON, RIDER = 0, 1, 2, 11, 12
THINGS = tuple(range(11, 19))
NAMES = ("iou", "tp", "fp", "fn")


def protocol(ks=(1,), lambdas=(0.0,), absent_class_is_zero=False) -> DVPQProtocol:
    return DVPQProtocol(
        num_classes=N,
        thing_ids=THINGS,
        window_sizes=tuple(ks),
        depth_thresholds=tuple(lambdas),
        absent_class_is_zero=absent_class_is_zero,
        windows_cross_sequences=absent_class_is_zero,
    )


def segments(spans, width=100) -> tuple[np.ndarray, np.ndarray]:
    """(1, width) class and instance maps from ``(start, stop, class, instance)`` spans."""
    cls = np.full((1, width), -1, np.int64)
    inst = np.zeros((1, width), np.int64)
    for start, stop, c, i in spans:
        cls[0, start:stop] = c
        inst[0, start:stop] = i
    assert (cls >= 0).all(), "the spans must cover the row"
    return cls, inst


def depth(spans, width=100) -> np.ndarray:
    """(1, width) depth in meters from ``(start, stop, meters)`` spans."""
    values = np.full((1, width), np.nan)
    for start, stop, meters in spans:
        values[0, start:stop] = meters
    assert not np.isnan(values).any(), "the spans must cover the row"
    return values


def frame(pred, gt, pred_depth=None, gt_depth=None, width=100, name="f.png") -> DVPSFrame:
    pred_class, pred_instance = segments(pred, width)
    gt_class, gt_instance = segments(gt, width)
    return DVPSFrame(
        pred_class,
        pred_instance,
        None if pred_depth is None else depth(pred_depth, width),
        gt_class,
        gt_instance,
        None if gt_depth is None else depth(gt_depth, width),
        name,
    )


def accumulate(streams, proto: DVPQProtocol) -> DVPQAccumulator:
    acc = DVPQAccumulator(proto)
    for stream in streams:
        acc.add_stream([frame_statistics(f, proto) for f in stream])
    return acc


def both(streams, proto: DVPQProtocol, k=1, lam=0.0) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Counts at (k, lam) of the accumulator and of the reference, each (N + 1,) per name."""
    acc = accumulate(streams, proto)
    ki, li = proto.window_sizes.index(k), proto.depth_thresholds.index(lam)
    ours = {name: getattr(acc.counts, name)[ki, li] for name in NAMES}
    return [("dvpq", ours), ("reference", reference_dvpq(streams, proto)[(k, lam)])]


def assert_counts(results, expected: dict[int, tuple[float, int, int, int]]) -> None:
    """``expected``: class -> (IoU sum, TP, FP, FN); every other class (the extra one included)
    must have all zero."""
    for impl, counts in results:
        for c in range(N + 1):
            iou, tp, fp, fn = expected.get(c, (0.0, 0, 0, 0))
            got = tuple(float(counts[name][c]) for name in NAMES)
            assert got[1:] == (tp, fp, fn), f"{impl}, class {c}: (TP, FP, FN) = {got[1:]}"
            assert got[0] == pytest.approx(iou, rel=1e-12, abs=0), f"{impl}, class {c}: IoU sum"


def pq_both(streams, proto: DVPQProtocol, k=1, lam=0.0) -> list[tuple[str, np.ndarray]]:
    """Per-class PQ (N,) of the accumulator and of the reference."""
    acc = accumulate(streams, proto)
    ki, li = proto.window_sizes.index(k), proto.depth_thresholds.index(lam)
    ref = reference_pq(reference_dvpq(streams, proto)[(k, lam)], proto)
    return [("dvpq", acc.per_class(ki, li)["pq"]), ("reference", ref["per_class"])]


def assert_pq(results, expected: dict[int, float], absent: float = math.nan) -> None:
    """Per-class PQ: ``expected`` for the listed classes, ``absent`` (nan or 0) for the others."""
    want = np.array([expected.get(c, absent) for c in range(N)])
    for impl, pq in results:
        assert pq.shape == (N,), impl
        np.testing.assert_allclose(pq, want, rtol=1e-12, atol=0, equal_nan=True, err_msg=impl)


# --- matching -------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", [51, 50, 49])
def test_true_positive_needs_iou_above_one_half(overlap):
    # gt ROAD [0, 75) = 75 px; pred ROAD [75 - overlap, 100) = 25 + overlap px.
    # Intersection = overlap, union = 75 + 25 + overlap - overlap = 100: IoU = overlap / 100.
    # SIDEWALK: gt [75, 100), pred [0, 75 - overlap): disjoint, so one FN and one FP.
    start = 75 - overlap
    f = frame(
        pred=[(0, start, SIDEWALK, 0), (start, 100, ROAD, 0)],
        gt=[(0, 75, ROAD, 0), (75, 100, SIDEWALK, 0)],
    )
    if overlap == 51:
        # IoU 0.51 > 0.5: TP. PQ(ROAD) = 0.51 / 1 * 1 / 1 = 0.51; PQ(SIDEWALK) = 0.
        assert_counts(both([[f]], protocol()), {ROAD: (0.51, 1, 0, 0), SIDEWALK: (0.0, 0, 1, 1)})
        assert_pq(pq_both([[f]], protocol()), {ROAD: 0.51, SIDEWALK: 0.0})
    else:
        # IoU 0.50 or 0.49: not a TP, so the gt segment is a FN and the prediction a FP.
        assert_counts(both([[f]], protocol()), {ROAD: (0.0, 0, 1, 1), SIDEWALK: (0.0, 0, 1, 1)})
        assert_pq(pq_both([[f]], protocol()), {ROAD: 0.0, SIDEWALK: 0.0})


@pytest.mark.parametrize("ignore_instance", [0, 5])
def test_union_leaves_out_overlap_with_void_only(ignore_instance):
    # gt ROAD [0, 40) = 40 px, gt (IGNORE, ignore_instance) [40, 100) = 60 px; pred ROAD everywhere.
    f = frame(pred=[(0, 100, ROAD, 0)], gt=[(0, 40, ROAD, 0), (40, 100, IGNORE, ignore_instance)])
    if ignore_instance == 0:
        # Void: union = 40 + 100 - 40 - 60 (pred on void) = 40, IoU = 40 / 40 = 1: TP.
        assert_counts(both([[f]], protocol()), {ROAD: (1.0, 1, 0, 0)})
    else:
        # Ignore class with an instance (crowd) is not void: union = 40 + 100 - 40 = 100,
        # IoU 0.4: FN. The unmatched prediction has 60/100 > 1/2 on ignore pixels: no FP.
        assert_counts(both([[f]], protocol()), {ROAD: (0.0, 0, 0, 1)})


def test_union_with_partial_void_overlap():
    # gt:   ROAD [0, 50) | void [50, 80) | SIDEWALK [80, 100)
    # pred: SIDEWALK [0, 10) | ROAD [10, 90) | BUILDING [90, 100)
    # ROAD: gt 50, pred 80, intersection 40, pred on void 30 -> union 50 + 80 - 40 - 30 = 60,
    #   IoU 40 / 60 = 2/3: TP.
    # SIDEWALK: gt [80, 100) and pred [0, 10) do not overlap: FN 1, FP 1 (pred not on ignore).
    # BUILDING: pred [90, 100) lies on gt SIDEWALK: FP 1.
    f = frame(
        pred=[(0, 10, SIDEWALK, 0), (10, 90, ROAD, 0), (90, 100, BUILDING, 0)],
        gt=[(0, 50, ROAD, 0), (50, 80, IGNORE, 0), (80, 100, SIDEWALK, 0)],
    )
    assert_counts(
        both([[f]], protocol()),
        {ROAD: (2 / 3, 1, 0, 0), SIDEWALK: (0.0, 0, 1, 1), BUILDING: (0.0, 0, 1, 0)},
    )
    # PQ: ROAD 2/3 (SQ 2/3, RQ 1), SIDEWALK 0, BUILDING 0.
    assert_pq(pq_both([[f]], protocol()), {ROAD: 2 / 3, SIDEWALK: 0.0, BUILDING: 0.0})


@pytest.mark.parametrize("ignore_instance", [0, 7])
def test_prediction_mostly_on_ignore_pixels_is_not_false_positive(ignore_instance):
    # gt ROAD [0, 50), gt (IGNORE, ignore_instance) [50, 100); the rule holds for any instance.
    gt = [(0, 50, ROAD, 0), (50, 100, IGNORE, ignore_instance)]
    # More than half: pred ROAD [0, 45) (IoU 45 / 50 = 0.9, TP), pred SIDEWALK [45, 100) = 55 px,
    # 50 of them on ignore: 50/55 > 1/2, no FP.
    more = frame(pred=[(0, 45, ROAD, 0), (45, 100, SIDEWALK, 0)], gt=gt)
    assert_counts(both([[more]], protocol()), {ROAD: (0.9, 1, 0, 0)})
    assert_pq(pq_both([[more]], protocol()), {ROAD: 0.9})
    # Exactly half: pred ROAD [0, 40) (IoU 40 / 50 = 0.8, TP), pred SIDEWALK [40, 60) = 20 px,
    # 10 on ignore: 10/20 = 1/2 is not more than half, FP. Pred BUILDING [60, 100) lies only on
    # ignore pixels: no FP.
    half = frame(pred=[(0, 40, ROAD, 0), (40, 60, SIDEWALK, 0), (60, 100, BUILDING, 0)], gt=gt)
    assert_counts(both([[half]], protocol()), {ROAD: (0.8, 1, 0, 0), SIDEWALK: (0.0, 0, 1, 0)})
    # PQ: ROAD 0.8, SIDEWALK 0 (FP only): mean 0.4.
    assert_pq(pq_both([[half]], protocol()), {ROAD: 0.8, SIDEWALK: 0.0})


def test_ignore_class_ground_truth_is_never_false_negative():
    # gt: PERSON 1 [0, 50) | void [50, 75) | (IGNORE, 3) [75, 100)
    # pred: PERSON 4 [0, 50) (instance ids need not agree: IoU 1, TP) | void prediction (EXTRA)
    #   [50, 75) | SIDEWALK [75, 100). Neither gt ignore segment is a FN; both unmatched
    #   predictions lie entirely on ignore pixels, so neither is a FP.
    f = frame(
        pred=[(0, 50, PERSON, 4), (50, 75, EXTRA, 0), (75, 100, SIDEWALK, 0)],
        gt=[(0, 50, PERSON, 1), (50, 75, IGNORE, 0), (75, 100, IGNORE, 3)],
    )
    assert_counts(both([[f]], protocol()), {PERSON: (1.0, 1, 0, 0)})
    assert_pq(pq_both([[f]], protocol()), {PERSON: 1.0})


@pytest.mark.parametrize("ignore_instance", [0, 7])
def test_semkitti_prediction_on_unlabelled_pixels_is_not_a_false_positive(ignore_instance):
    # SemKITTI-DVPS rules (eval_dvpq.py, as run with the NumPy of its time, 1.x): a prediction
    # whose overlap with unlabelled ground truth (class 255, any instance) is more than half its
    # area is not a FP. The trap: the script's ids are int32 and it looks the overlap up under
    # `_ign_id * offset` (offset 2**30); NumPy 2's promotion keeps that product in int32, it
    # overflows, the lookup finds nothing, and the prediction becomes a FP: ROAD's PQ would be
    # 0.9 * 1 / (1 + 1/2) = 0.6 instead of 0.9 (measured on an independent fixture: DVPQ 61.26
    # under NumPy 2 against 65.15 under NumPy 1). Ours is the NumPy 1 reading.
    # gt ROAD [0, 50) | unlabelled [50, 100); pred ROAD [0, 45) (IoU 45/50 = 0.9, TP) |
    # BUILDING [45, 100): 55 px, 50 of them unlabelled -> 50/55 > 1/2, not a FP.
    f = frame(
        pred=[(0, 45, ROAD, 0), (45, 100, BUILDING, 0)],
        gt=[(0, 50, ROAD, 0), (50, 100, IGNORE, ignore_instance)],
    )
    semkitti = protocol(absent_class_is_zero=True)
    assert_counts(both([[f]], semkitti), {ROAD: (0.9, 1, 0, 0)})
    assert_pq(pq_both([[f]], semkitti), {ROAD: 0.9}, absent=0.0)


def test_instance_id_on_stuff_ground_truth_makes_its_own_segment():
    # The official scripts form ground-truth segments from class and instance together
    # (Cityscapes-DVPS: the stored class * 1000 + instance; SemKITTI-DVPS: cat * 2**20 + ins),
    # whatever the class; real SemKITTI-DVPS labels have instance ids on some stuff pixels.
    # gt ROAD [0, 80) instance 0 | ROAD [80, 100) instance 5; pred ROAD [0, 100) instance 0.
    # (ROAD, 0): intersection 80, union 80 + 100 - 80 = 100, IoU 0.8: TP. (ROAD, 5): FN.
    # PQ(ROAD) = 0.8 / 1 * 1 / (1 + 1/2) = 8/15.
    f = frame(pred=[(0, 100, ROAD, 0)], gt=[(0, 80, ROAD, 0), (80, 100, ROAD, 5)])
    assert_counts(both([[f]], protocol()), {ROAD: (0.8, 1, 0, 1)})
    assert_pq(pq_both([[f]], protocol()), {ROAD: 8 / 15})


# --- depth test -----------------------------------------------------------------------------------

LAMBDAS = (0.5, 0.25, 0.1, 0.0)


def road_with_depth_errors(width_offset=0) -> tuple[list, list, list, list]:
    """ROAD [0, 100) in gt and pred; gt depth 10 m on [0, 60), none on [60, 100); pred depth
    12 m on [0, 30) (error 0.2), 13 m on [30, 60) (0.3), 1000 m on [60, 100) (not tested)."""
    o = width_offset
    return (
        [(o, o + 100, ROAD, 0)],
        [(o, o + 100, ROAD, 0)],
        [(o, o + 30, 12.0), (o + 30, o + 60, 13.0), (o + 60, o + 100, 1000.0)],
        [(o, o + 60, 10.0), (o + 60, o + 100, 0.0)],
    )


def test_depth_test_relabels_failing_pixels():
    pred, gt, pred_depth, gt_depth = road_with_depth_errors()
    f = frame(pred, gt, pred_depth, gt_depth)
    proto = protocol(lambdas=LAMBDAS)
    # lambda 0.5: errors 0.2 and 0.3 pass; [60, 100) has no gt depth, so 1000 m is not tested.
    assert_counts(both([[f]], proto, lam=0.5), {ROAD: (1.0, 1, 0, 0)})
    # lambda 0.25: [30, 60) fails and becomes (EXTRA, 0). pred ROAD = 70 px, gt 100,
    # union 100: IoU 0.7, TP. The 30 px extra segment is an unmatched prediction: FP of EXTRA.
    assert_counts(both([[f]], proto, lam=0.25), {ROAD: (0.7, 1, 0, 0), EXTRA: (0.0, 0, 1, 0)})
    # lambda 0.1: [0, 60) fails; pred ROAD = 40 px, IoU 0.4: the TP is broken into FN + FP.
    assert_counts(both([[f]], proto, lam=0.1), {ROAD: (0.0, 0, 1, 1), EXTRA: (0.0, 0, 1, 0)})
    # lambda 0: no depth test.
    assert_counts(both([[f]], proto, lam=0.0), {ROAD: (1.0, 1, 0, 0)})
    # The extra class is dropped from PQ: only ROAD is present.
    for lam, road_pq in zip(LAMBDAS, (1.0, 0.7, 0.0, 1.0), strict=True):
        assert_pq(pq_both([[f]], proto, lam=lam), {ROAD: road_pq})


def test_failing_pixels_of_two_instances_form_one_extra_segment():
    # gt and pred: PERSON 1 [0, 50), PERSON 2 [50, 100); gt depth 10 m everywhere; pred depth
    # 20 m (error 1.0) on [40, 50) and [90, 100), else 10 m.
    # lambda 0.5: each person keeps 40 of its 50 px: IoU 0.8, two TPs (IoU sum 1.6). The 20
    # failing pixels of both instances become one segment (EXTRA, 0): a single FP.
    f = frame(
        pred=[(0, 50, PERSON, 1), (50, 100, PERSON, 2)],
        gt=[(0, 50, PERSON, 1), (50, 100, PERSON, 2)],
        pred_depth=[(0, 40, 10.0), (40, 50, 20.0), (50, 90, 10.0), (90, 100, 20.0)],
        gt_depth=[(0, 100, 10.0)],
    )
    proto = protocol(lambdas=(0.5,))
    assert_counts(both([[f]], proto, lam=0.5), {PERSON: (1.6, 2, 0, 0), EXTRA: (0.0, 0, 1, 0)})


@pytest.mark.parametrize("dtype", ["float64", "float32", "uint16"])
def test_depth_error_is_computed_in_float_not_wrapped_uint16(dtype):
    # gt 20 m, pred 18 m: |18 - 20| / 20 = 0.1 <= 0.25, the prediction passes.
    gt_m, pred_m = np.full((1, 100), 20.0), np.full((1, 100), 18.0)
    # The official script reads the 16-bit depth PNGs (value = 256 * meters); with a Pillow that
    # gives uint16 arrays, pred - gt wraps: (4608 - 5120) mod 2**16 = 65024, 65024 / 5120 = 12.7.
    gt_u16, pred_u16 = (gt_m * 256).astype(np.uint16), (pred_m * 256).astype(np.uint16)
    wrapped = np.abs(pred_u16 - gt_u16) / gt_u16
    assert wrapped[0, 0] == pytest.approx(12.7) and wrapped[0, 0] > 0.25
    # Ours must give the float answer, whatever the dtype of the depth arrays (uint16 here in
    # PNG units: the relative error does not depend on the scale).
    if dtype == "uint16":
        pred_d, gt_d = pred_u16, gt_u16
    else:
        pred_d, gt_d = pred_m.astype(dtype), gt_m.astype(dtype)
    cls, inst = segments([(0, 100, ROAD, 0)])
    f = DVPSFrame(cls, inst, pred_d, cls.copy(), inst.copy(), gt_d, "f.png")
    proto = protocol(lambdas=(0.25,))
    # Passing: ROAD TP with IoU 1, no extra segment (wrapped, it would be FN + FP of EXTRA).
    assert_counts(both([[f]], proto, lam=0.25), {ROAD: (1.0, 1, 0, 0)})


# --- windows --------------------------------------------------------------------------------------


def test_tube_broken_by_instance_switch():
    # Three frames; gt in each: PERSON 1 [0, 50), ROAD [50, 100). Pred: the same in frames 0
    # and 1; in frame 2 the person is PERSON 2 (an id switch).
    gt = [(0, 50, PERSON, 1), (50, 100, ROAD, 0)]
    switched = [(0, 50, PERSON, 2), (50, 100, ROAD, 0)]
    stream = [frame(gt, gt), frame(gt, gt), frame(switched, gt)]
    proto = protocol(ks=(1, 2, 3))
    # k = 1: three windows of one frame, every segment matches with IoU 1.
    assert_counts(both([stream], proto, k=1), {PERSON: (3.0, 3, 0, 0), ROAD: (3.0, 3, 0, 0)})
    # k = 2: window (0, 1) matches both tubes. Window (1, 2): gt tube PERSON 1 = 100 px;
    # pred PERSON 1 = 50 px (frame 1), intersection 50, union 100: IoU 0.5, not a TP; likewise
    # pred PERSON 2 (frame 2). So FN 1 and FP 2 for PERSON; ROAD matches in both windows.
    assert_counts(both([stream], proto, k=2), {PERSON: (1.0, 1, 2, 1), ROAD: (2.0, 2, 0, 0)})
    # k = 3: one window. gt PERSON 1 = 150 px, pred PERSON 1 = 100 px all inside it:
    # IoU 100 / 150 = 2/3, TP; pred PERSON 2 (50 px) is a FP.
    assert_counts(both([stream], proto, k=3), {PERSON: (2 / 3, 1, 1, 0), ROAD: (1.0, 1, 0, 0)})
    # PQ(PERSON): k = 1: 1; k = 2: SQ 1 * RQ 1 / (1 + 2/2 + 1/2) = 0.4;
    # k = 3: SQ 2/3 * RQ 1 / (1 + 1/2) = 4/9.
    for k, person_pq in ((1, 1.0), (2, 0.4), (3, 4 / 9)):
        assert_pq(pq_both([stream], proto, k=k), {PERSON: person_pq, ROAD: 1.0})


def test_windows_do_not_span_streams():
    gt = [(0, 50, PERSON, 1), (50, 100, ROAD, 0)]
    f = frame(gt, gt)
    proto = protocol(ks=(2,))
    # Two streams of one frame: no window of 2 frames at all.
    assert_counts(both([[f], [f]], proto, k=2), {})
    # One stream of two frames: one window, both tubes match.
    assert_counts(both([[f, f]], proto, k=2), {PERSON: (1.0, 1, 0, 0), ROAD: (1.0, 1, 0, 0)})


# --- class rules and summary ----------------------------------------------------------------------


def unmatched_classes_frame() -> DVPSFrame:
    # gt: ROAD [0, 90), BUILDING [90, 100); pred: ROAD [0, 80), SIDEWALK [80, 100).
    # ROAD: intersection 80, union 90 + 80 - 80 = 90: IoU 8/9, TP, PQ 8/9.
    # SIDEWALK: FP only, PQ 0. BUILDING: FN only, PQ 0. Every other class: no TP, FP or FN.
    return frame(
        pred=[(0, 80, ROAD, 0), (80, 100, SIDEWALK, 0)],
        gt=[(0, 90, ROAD, 0), (90, 100, BUILDING, 0)],
    )


def test_cityscapes_leaves_absent_classes_out_of_the_mean():
    proto = DVPQProtocol.from_metadata(
        dvps_metadata("cityscapes_dvps"), window_sizes=[1], depth_thresholds=[0.0]
    )
    assert not proto.absent_class_is_zero and proto.thing_ids == THINGS
    f = unmatched_classes_frame()
    assert_counts(
        both([[f]], proto),
        {ROAD: (8 / 9, 1, 0, 0), SIDEWALK: (0.0, 0, 1, 0), BUILDING: (0.0, 0, 0, 1)},
    )
    # Absent classes are nan; FP-only and FN-only classes are 0.
    assert_pq(pq_both([[f]], proto), {ROAD: 8 / 9, SIDEWALK: 0.0, BUILDING: 0.0}, absent=math.nan)
    # Mean over the 3 present classes: (8/9) / 3 = 8/27; no thing class is present.
    ref = reference_pq(reference_dvpq([[f]], proto)[(1, 0.0)], proto)
    assert ref["pq"] == pytest.approx(8 / 27) and ref["pq_stuff"] == pytest.approx(8 / 27)
    assert math.isnan(ref["pq_thing"])
    entry = accumulate([[f]], proto).summary(dvps_metadata("cityscapes_dvps")["stuff_classes"])
    entry = entry["dvpq"][0]
    assert entry["pq"] == pytest.approx(100 * 8 / 27)
    assert entry["pq_stuff"] == pytest.approx(100 * 8 / 27)
    assert entry["pq_thing"] is None


def test_semkitti_counts_absent_classes_as_zero():
    proto = DVPQProtocol.from_metadata(
        dvps_metadata("semkitti_dvps"), window_sizes=[1], depth_thresholds=[0.0]
    )
    assert proto.absent_class_is_zero and proto.thing_ids == tuple(range(8))
    f = unmatched_classes_frame()
    assert_counts(
        both([[f]], proto),
        {0: (8 / 9, 1, 0, 0), 1: (0.0, 0, 1, 0), 2: (0.0, 0, 0, 1)},
    )
    # Every class is in the mean: absent ones score 0 like FP-only or FN-only ones.
    assert_pq(pq_both([[f]], proto), {0: 8 / 9}, absent=0.0)
    # Mean (8/9) / 19 = 8/171; things 0..7: (8/9) / 8 = 1/9; stuff 8..18: 0.
    ref = reference_pq(reference_dvpq([[f]], proto)[(1, 0.0)], proto)
    assert ref["pq"] == pytest.approx(8 / 171)
    assert ref["pq_thing"] == pytest.approx(1 / 9)
    assert ref["pq_stuff"] == 0.0
    names = dvps_metadata("semkitti_dvps")["stuff_classes"]
    result = accumulate([[f]], proto).summary(names)
    entry = result["dvpq"][0]
    assert entry["pq"] == pytest.approx(100 * 8 / 171)
    assert entry["pq_thing"] == pytest.approx(100 / 9)
    assert entry["pq_stuff"] == 0.0
    # Absent classes are reported with zeros, not None.
    assert result["per_class"][names[5]] == {
        "pq": 0.0,
        "sq": 0.0,
        "rq": 0.0,
        "tp": 0,
        "fp": 0,
        "fn": 0,
    }


def test_summary_keys_and_values():
    meta = dvps_metadata("cityscapes_dvps")
    names = meta["stuff_classes"]
    proto = DVPQProtocol.from_metadata(meta, window_sizes=[1, 2])
    assert proto.depth_thresholds == LAMBDAS
    # Two identical frames of 200 px: [0, 100) is the ROAD of road_with_depth_errors (gt and
    # pred ROAD; errors 0.2 and 0.3 on 30 px each, the rest without gt depth); [100, 200) is
    # PERSON 1 in gt and pred with exact depth 5 m.
    pred, gt, pred_depth, gt_depth = road_with_depth_errors()
    f = frame(
        pred + [(100, 200, PERSON, 1)],
        gt + [(100, 200, PERSON, 1)],
        pred_depth + [(100, 200, 5.0)],
        gt_depth + [(100, 200, 5.0)],
        width=200,
    )
    result = accumulate([[f, f]], proto).summary(names)
    assert set(result) == {"dvpq", "dvpq_mean", "per_class"}
    # k = 1 (two windows) and k = 2 (one window of the two frames side by side) give the same
    # IoUs. PERSON: PQ 1 everywhere. ROAD: lambda 0.5 -> 1, 0.25 -> 0.7, 0.1 -> 0 (IoU 0.4),
    # 0 -> 1. pq = mean of the two, pq_thing = PERSON, pq_stuff = ROAD.
    road = {0.5: 100.0, 0.25: 70.0, 0.1: 0.0, 0.0: 100.0}
    order = [(k, lam) for k in (1, 2) for lam in LAMBDAS]
    assert [(e["k"], e["lambda"]) for e in result["dvpq"]] == order
    for entry in result["dvpq"]:
        assert set(entry) == {"k", "lambda", "pq", "pq_thing", "pq_stuff"}
        assert entry["pq_thing"] == pytest.approx(100.0)
        assert entry["pq_stuff"] == pytest.approx(road[entry["lambda"]], abs=1e-12)
        assert entry["pq"] == pytest.approx((100.0 + road[entry["lambda"]]) / 2)
    # dvpq_mean over the lambdas > 0 of both k: pq (100 + 85 + 50) / 3, thing 100,
    # stuff (100 + 70 + 0) / 3.
    assert result["dvpq_mean"]["pq"] == pytest.approx(235 / 3)
    assert result["dvpq_mean"]["pq_thing"] == pytest.approx(100.0)
    assert result["dvpq_mean"]["pq_stuff"] == pytest.approx(170 / 3)
    # per_class at k = 1, lambda = 0: two windows, two TPs each for road and person; None for
    # the classes left out.
    perfect = {"pq": 100.0, "sq": 100.0, "rq": 100.0, "tp": 2, "fp": 0, "fn": 0}
    assert list(result["per_class"]) == list(names)
    assert result["per_class"]["road"] == perfect
    assert result["per_class"]["person"] == perfect
    assert all(v is None for n, v in result["per_class"].items() if n not in ("road", "person"))
    # No lambda > 0: no dvpq_mean. No k = 1: no per_class.
    only_vpq = DVPQProtocol.from_metadata(meta, window_sizes=[1], depth_thresholds=[0.0])
    assert set(accumulate([[f]], only_vpq).summary(names)) == {"dvpq", "per_class"}
    no_k1 = DVPQProtocol.from_metadata(meta, window_sizes=[2])
    assert set(accumulate([[f, f]], no_k1).summary(names)) == {"dvpq", "dvpq_mean"}


# --- bad input ------------------------------------------------------------------------------------


def bad_frame(case: str) -> DVPSFrame:
    cls, inst = segments([(0, 100, ROAD, 0)])
    d = np.full((1, 100), 10.0)
    fields = dict(
        pred_class=cls.copy(),
        pred_instance=inst.copy(),
        pred_depth=d.copy(),
        gt_class=cls.copy(),
        gt_instance=inst.copy(),
        gt_depth=d.copy(),
        name="seq0_frame3.png",
    )
    if case == "size":
        fields["pred_class"] = cls[:, :99]
    elif case == "pred20":
        fields["pred_class"][0, 7] = 20
    elif case == "pred255":
        fields["pred_class"][0, 7] = IGNORE
    elif case == "gt32":
        fields["gt_class"][0, 7] = 32
    elif case == "nodepth":
        fields["pred_depth"] = None
    return DVPSFrame(**fields)


@pytest.mark.parametrize(
    "case, message",
    [
        ("size", r"seq0_frame3\.png: pred_class has size \(H, W\) = \(1, 99\), the ground truth "),
        ("pred20", r"seq0_frame3\.png: predicted class id 20; expected 0\.\.19 \(19 = void\)"),
        ("pred255", r"seq0_frame3\.png: predicted class id 255; expected 0\.\.19"),
        ("gt32", r"seq0_frame3\.png: ground-truth class id 32; expected 0\.\.18 or the ignore"),
        ("nodepth", r"seq0_frame3\.png: pred_depth is missing"),
    ],
)
def test_frame_statistics_rejects_bad_input(case, message):
    with pytest.raises(ValueError, match=message):
        frame_statistics(bad_frame(case), protocol(lambdas=(0.5, 0.0)))


def test_depth_is_not_needed_without_depth_test():
    f = bad_frame("nodepth")
    assert_counts(both([[f]], protocol()), {ROAD: (1.0, 1, 0, 0)})


# --- random streams against the reference ---------------------------------------------------------

RANDOM_KS = (1, 2, 3)
GT_CLASSES = (ROAD, SIDEWALK, BUILDING, PERSON, RIDER, IGNORE)
GT_P = (0.2, 0.15, 0.15, 0.2, 0.15, 0.15)
PRED_CLASSES = (ROAD, SIDEWALK, BUILDING, PERSON, RIDER, EXTRA)
# pred depth = gt depth * ratio; errors 0, 0.05, 0.2, 0.3, 0.4, 0.6, 0.7 straddle the lambdas.
RATIOS = (1.0, 1.0, 0.95, 1.2, 0.7, 1.4, 1.6, 0.3)


def _blocky(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    gh, gw = grid.shape
    return np.repeat(np.repeat(grid, -(-h // gh), axis=0), -(-w // gw), axis=1)[:h, :w]


def _random_ids(rng, shape, classes, p=None) -> tuple[np.ndarray, np.ndarray]:
    cls = rng.choice(np.array(classes), size=shape, p=p)
    inst = np.where(np.isin(cls, THINGS), rng.integers(1, 4, size=shape), 0)
    # Ignore-class pixels: void (instance 0) or crowd-like (instance 1, 2).
    inst = np.where(cls == IGNORE, rng.integers(0, 3, size=shape), inst)
    return cls, inst


def random_streams(seed: int) -> list[list[DVPSFrame]]:
    """1-2 streams of 1-4 frames, (6..10, 9..14) maps, blocky so that most segments match."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(6, 11)), int(rng.integers(9, 15))
    streams = []
    for s in range(int(rng.integers(1, 3))):
        grid = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
        gt_cls, gt_inst = _random_ids(rng, grid, GT_CLASSES, GT_P)
        stream = []
        for t in range(int(rng.integers(1, 5))):
            if t and rng.random() < 0.6:  # the ground truth drifts: one cell changes
                i, j = rng.integers(grid[0]), rng.integers(grid[1])
                c, n = _random_ids(rng, (1, 1), GT_CLASSES, GT_P)
                gt_cls[i, j], gt_inst[i, j] = c[0, 0], n[0, 0]
            # The prediction: the ground truth with some cells and pixels replaced.
            pred_cls, pred_inst = gt_cls.copy(), gt_inst.copy()
            pred_cls[pred_cls == IGNORE] = EXTRA
            pred_inst[pred_cls == EXTRA] = 0
            c, n = _random_ids(rng, grid, PRED_CLASSES)
            swap = rng.random(grid) < 0.3
            pred_cls, pred_inst = np.where(swap, c, pred_cls), np.where(swap, n, pred_inst)
            pred_cls, pred_inst = _blocky(pred_cls, h, w), _blocky(pred_inst, h, w)
            c, n = _random_ids(rng, (h, w), PRED_CLASSES)
            noise = rng.random((h, w)) < 0.08
            pred_cls, pred_inst = np.where(noise, c, pred_cls), np.where(noise, n, pred_inst)
            gt_depth = rng.uniform(1.0, 80.0, (h, w))
            gt_depth[rng.random((h, w)) < 0.2] = 0.0
            ratio = _blocky(rng.choice(np.array(RATIOS), size=grid), h, w)
            noise = rng.random((h, w)) < 0.1
            ratio = np.where(noise, rng.choice(np.array(RATIOS), size=(h, w)), ratio)
            pred_depth = np.where(gt_depth > 0, gt_depth * ratio, rng.uniform(1.0, 80.0, (h, w)))
            stream.append(
                DVPSFrame(
                    pred_cls.astype(np.uint8),
                    pred_inst.astype(np.uint16),
                    pred_depth.astype(np.float32),
                    _blocky(gt_cls, h, w).astype(np.uint8),
                    _blocky(gt_inst, h, w).astype(np.uint16),
                    gt_depth.astype(np.float32),
                    f"seed{seed}_s{s}_t{t}",
                )
            )
        streams.append(stream)
    return streams


def random_protocol(absent_class_is_zero: bool) -> DVPQProtocol:
    return protocol(RANDOM_KS, LAMBDAS, absent_class_is_zero)


@pytest.mark.parametrize("absent_class_is_zero", [False, True], ids=["cityscapes", "semkitti"])
@pytest.mark.parametrize("seed", range(60))
def test_random_streams_match_reference(seed, absent_class_is_zero):
    proto = random_protocol(absent_class_is_zero)
    streams = random_streams(seed)
    if proto.windows_cross_sequences:
        streams = [[f for stream in streams for f in stream]]
    acc = accumulate(streams, proto)
    ref = reference_dvpq(streams, proto)
    summary = acc.summary([str(c) for c in range(N)])
    for ki, k in enumerate(RANDOM_KS):
        for li, lam in enumerate(LAMBDAS):
            where = f"k={k} lambda={lam}"
            counts = ref[(k, lam)]
            for name in ("tp", "fp", "fn"):
                np.testing.assert_array_equal(
                    getattr(acc.counts, name)[ki, li], counts[name], err_msg=f"{name} {where}"
                )
            np.testing.assert_allclose(
                acc.counts.iou[ki, li], counts["iou"], rtol=1e-12, atol=0, err_msg=where
            )
            pq = reference_pq(counts, proto)
            np.testing.assert_allclose(
                acc.per_class(ki, li)["pq"], pq["per_class"], rtol=1e-12, equal_nan=True
            )
            entry = summary["dvpq"][ki * len(LAMBDAS) + li]
            assert (entry["k"], entry["lambda"]) == (k, lam)
            for key in ("pq", "pq_thing", "pq_stuff"):
                if math.isnan(pq[key]):
                    assert entry[key] is None, f"{key} {where}"
                else:
                    assert entry[key] == pytest.approx(100 * pq[key], rel=1e-12), where


def test_random_streams_exercise_every_rule():
    """The random cases are not degenerate: over the 60 seeds they hold TPs with IoU < 1, FPs,
    FNs, depth-test failures and predictions left out of the FPs by the ignore rule."""
    proto = random_protocol(False)
    totals = DVPQAccumulator(proto)
    on_void = mostly_ignored = 0  # per frame, predicted segments (no depth test)
    for seed in range(60):
        for stream in random_streams(seed):
            totals.add_stream([frame_statistics(f, proto) for f in stream])
            for f in stream:
                pred = f.pred_class.astype(np.int64) * 2**16 + f.pred_instance
                ignored = f.gt_class == IGNORE
                void = ignored & (f.gt_instance == 0)
                for p in np.unique(pred):
                    segment = pred == p
                    on_void += bool((segment & void).any())
                    mostly_ignored += (segment & ignored).sum() > segment.sum() / 2
    assert on_void > 50 and mostly_ignored > 20
    c = totals.counts
    for ki in range(len(RANDOM_KS)):
        lam0 = LAMBDAS.index(0.0)
        assert c.tp[ki, lam0, :N].sum() > 50
        assert c.fp[ki, lam0, :N].sum() > 20 and c.fn[ki, lam0, :N].sum() > 20
        assert (c.iou[ki, lam0] < c.tp[ki, lam0]).any()  # some TP with IoU < 1
        assert (c.tp[ki, 2, :N] < c.tp[ki, lam0, :N]).any()  # lambda 0.1 breaks TPs
        assert c.fp[ki, 2, EXTRA] > c.fp[ki, lam0, EXTRA]  # failing pixels become EXTRA FPs
