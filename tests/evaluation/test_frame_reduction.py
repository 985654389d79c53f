"""The one-pass frame reduction against the rules written out directly.

``frame_statistics`` counts (ground-truth segment, predicted segment, depth level) in blocks of
pixels and forms each threshold's table from that one count; here each table is recomputed per
threshold from the DVPQ rule itself (``abs(pred - gt) / gt > lambda`` in float64, failures
relabelled ``(num_classes, 0)``, then ``np.unique`` of the pair keys), on random frames that
span several blocks and every coding path. The depth metrics are compared with their
per-frame definitions, the label reader's block-wise split with plain integer arithmetic on
every 16-bit value.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from panoptic_depthlab.data import dvps_metadata
from panoptic_depthlab.data.annotations import _split_label_ids, read_labels
from panoptic_depthlab.evaluation.depth_metrics import (
    BLOCK_PIXELS,
    LOG_DEPTH_FLOOR,
    SUM_FIELDS,
    DepthMetrics,
    depth_errors,
)
from panoptic_depthlab.evaluation.dvpq import DVPQProtocol, DVPSFrame, frame_statistics

N = 19  # classes; N itself is the class of depth-test failures and void predictions
IGNORE = 255
META = dvps_metadata("cityscapes_dvps")


def protocol(lambdas) -> DVPQProtocol:
    return DVPQProtocol(N, tuple(range(11, 19)), (1,), tuple(lambdas), False, False)


def direct_statistics(frame: DVPSFrame, lambdas) -> tuple[list, list]:
    """Per threshold: sorted pair keys ``gt_id << 24 | pred_id`` and their pixel counts."""
    gt_ids = frame.gt_class.astype(np.int64) << 16 | frame.gt_instance
    keys, counts = [], []
    for lam in lambdas:
        pred_ids = frame.pred_class.astype(np.int64) << 16 | frame.pred_instance
        if lam > 0:
            gt = frame.gt_depth.astype(np.float64)
            pred = frame.pred_depth.astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                failed = (gt > 0) & (np.abs(pred - gt) / gt > lam)
            pred_ids = np.where(failed, N << 16, pred_ids)
        k, c = np.unique((gt_ids << 24 | pred_ids).ravel(), return_counts=True)
        keys.append(k)
        counts.append(c)
    return keys, counts


def blobs(rng, shape, values) -> np.ndarray:
    """A piecewise-constant map: 8x8 tiles of values drawn from ``values``."""
    tiles = rng.choice(values, (shape[0] // 8 + 1, shape[1] // 8 + 1))
    return np.kron(tiles, np.ones((8, 8), tiles.dtype))[: shape[0], : shape[1]]


def random_frame(rng, shape, gt_top, pred_top, dtype, depth_dtype) -> DVPSFrame:
    gt_class = blobs(rng, shape, np.array([*range(0, N, 2), IGNORE]))
    gt_instance = blobs(rng, shape, rng.integers(0, gt_top + 1, 12))
    pred_class = blobs(rng, shape, np.arange(N + 1))
    pred_instance = blobs(rng, shape, rng.integers(0, pred_top + 1, 12))
    gt_png = blobs(rng, shape, rng.integers(1, 4000, 30)) * (rng.random(shape) > 0.15)
    pred_png = np.round(gt_png * rng.uniform(0.5, 1.6, shape))
    # Errors of exactly 0.5, 0.25 and 0.1 on a tenth of the pixels: ties with the thresholds.
    tie = rng.random(shape) < 0.1
    gt_png[tie] = 40 * rng.integers(1, 100, np.count_nonzero(tie))
    pred_png[tie] = gt_png[tie] * rng.choice(
        [0.5, 0.75, 0.9, 1.1, 1.25, 1.5], np.count_nonzero(tie)
    )
    pred_png[rng.random(shape) < 0.02] = 0
    if depth_dtype == "uint16":
        gt_depth, pred_depth = gt_png.astype(np.uint16), pred_png.astype(np.uint16)
    else:
        gt_depth = (gt_png / 256).astype(depth_dtype)
        pred_depth = (pred_png / 256).astype(depth_dtype)
    return DVPSFrame(
        pred_class.astype(dtype),
        pred_instance.astype(dtype),
        pred_depth,
        gt_class.astype(dtype),
        gt_instance.astype(dtype),
        gt_depth,
        "random.png",
    )


# Frames of several blocks; instance ids that code directly or are numbered first (gt 65535),
# predicted codes counted as they are or numbered first (pred 255, 65535).
CASES = [
    ((64, 1500), 3, 4, np.int32, "float64"),
    ((40, 2048), 900, 255, np.int64, "float32"),
    ((33, 1024), 65535, 65535, np.int32, "uint16"),
    ((7, 333), 20, 7, np.uint16, "float64"),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape, gt_top, pred_top, dtype, depth_dtype", CASES)
def test_tables_equal_the_rule_per_threshold(seed, shape, gt_top, pred_top, dtype, depth_dtype):
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, shape, gt_top, pred_top, dtype, depth_dtype)
    # Thresholds in any order, repeated, with 0 (no depth test) among them.
    lambdas = (0.25, 0.0, 0.1, 0.5, 0.25, 0.03)
    stats = frame_statistics(frame, protocol(lambdas))
    keys, counts = direct_statistics(frame, lambdas)
    for lam, got_k, got_c, want_k, want_c in zip(
        lambdas, stats.keys, stats.counts, keys, counts, strict=True
    ):
        assert np.array_equal(got_k, want_k), lam
        assert np.array_equal(got_c, want_c), lam
    assert all(int(c.sum()) == frame.gt_class.size for c in stats.counts)


def test_tables_without_depth_test_need_no_depth():
    rng = np.random.default_rng(5)
    frame = random_frame(rng, (20, 3000), 50, 9, np.int32, "float64")
    no_depth = DVPSFrame(
        frame.pred_class, frame.pred_instance, None, frame.gt_class, frame.gt_instance, None
    )
    stats = frame_statistics(no_depth, protocol((0.0,)))
    keys, counts = direct_statistics(no_depth, (0.0,))
    assert np.array_equal(stats.keys[0], keys[0]) and np.array_equal(stats.counts[0], counts[0])


def definition_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float] | None:
    """One frame's metrics straight from the definitions (module docstring of depth_metrics),
    deltas in the ``max(p / g, g / p)`` form; None without a valid pixel."""
    valid = gt > 0
    if not valid.any():
        return None
    g, p = gt[valid].astype(np.float64), pred[valid].astype(np.float64)
    e = np.log(np.maximum(g, LOG_DEPTH_FLOOR)) - np.log(np.maximum(p, LOG_DEPTH_FLOOR))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(p > 0, np.maximum(p / g, g / np.where(p > 0, p, 1.0)), np.inf)
    return {
        "abs_rel": np.mean(np.abs(g - p) / g),
        "sq_rel": np.mean((g - p) ** 2 / g),
        "rmse": math.sqrt(np.mean((g - p) ** 2)),
        "rmse_log": math.sqrt(np.mean(e**2)),
        "silog": 100 * math.sqrt(max(np.mean(e**2) - np.mean(e) ** 2, 0.0)),
        **{f"delta{k}": 100 * np.mean(ratio < 1.25**k) for k in (1, 2, 3)},
    }


@pytest.mark.parametrize("seed", range(4))
def test_depth_metrics_equal_the_definitions(seed):
    rng = np.random.default_rng(seed)
    shape = (5, BLOCK_PIXELS // 2 + 77)  # three blocks, the last one short
    gt = rng.uniform(0.5, 80.0, shape) * (rng.random(shape) > 0.2)
    pred = gt * rng.uniform(0.3, 2.5, shape)
    pred[rng.random(shape) < 0.01] = 0.0  # outliers of every delta, clipped in the logs
    pred[rng.random(shape) < 0.01] = -3.0
    pred[rng.random(shape) < 0.01] = 5e-4  # below the log floor
    metrics = DepthMetrics()
    metrics.add(pred, gt)
    got, want = metrics.summary(), definition_metrics(pred, gt)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_delta_ties_of_png_depths_are_outliers_as_in_the_max_form():
    # PNG depths (multiples of 1/256 m) with p / g exactly 1.25**±K for K = 1, 2, 3: the ratio
    # equals the bound, so the pixel is outside delta K (max(p/g, g/p) < 1.25**K is false).
    gt_png = np.array([1024, 1280, 4096, 6400, 512, 1000, 4000, 3000], np.float64)
    pred_png = np.array([1280, 1024, 6400, 4096, 1000, 512, 5000, 3000], np.float64)
    gt, pred = gt_png[None] / 256, pred_png[None] / 256
    metrics = DepthMetrics()
    metrics.add(pred, gt)
    got, want = metrics.summary(), definition_metrics(pred, gt)
    for k in (1, 2, 3):
        assert got[f"delta{k}"] == want[f"delta{k}"], k


def test_depth_errors_give_the_official_quotient_and_zero_where_invalid():
    gt = np.array([20.0, 0.0, 10.0, -1.0, np.nan, 4.0])
    pred = np.array([18.0, 7.0, 10.0, 3.0, 2.0, 5.0])
    error, sums = depth_errors(pred, gt)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(gt > 0, np.abs(pred - gt) / gt, 0.0)
    assert np.array_equal(error, want)
    named = dict(zip(SUM_FIELDS, sums, strict=True))
    assert named["pixels"] == 3
    assert named["rel"] == pytest.approx(0.1 + 0.0 + 0.25)
    assert depth_errors(pred, gt, with_sums=False)[1] is None


def test_shared_pass_adds_the_same_depth_metrics_as_depth_metrics_add():
    rng = np.random.default_rng(9)
    frame = random_frame(rng, (48, 1400), 30, 6, np.int32, "float64")
    shared, alone = DepthMetrics(), DepthMetrics()
    frame_statistics(frame, protocol((0.5, 0.1)), shared)
    alone.add(frame.pred_depth, frame.gt_depth)
    for key, value in alone.summary().items():
        assert shared.summary()[key] == pytest.approx(value, rel=1e-12), key


# --- ids checked block by block: the first bad id of the frame, in a fixed order ----------------


def id_frame(**changes) -> DVPSFrame:
    rng = np.random.default_rng(0)
    frame = random_frame(rng, (40, 2000), 30, 6, np.int32, "float64")
    fields = dict(frame.__dict__)
    for key, (index, value) in changes.items():
        fields[key] = fields[key].copy()
        fields[key][index] = value
    return DVPSFrame(**fields)


LAST = (39, 1999)  # a pixel of the frame's last block


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"gt_class": (LAST, 40)}, "ground-truth class id 40; expected 0..18 or the ignore"),
        ({"gt_class": (LAST, 256)}, "ground-truth class id 256"),
        ({"gt_class": (LAST, -2)}, "ground-truth class id -2"),
        ({"pred_class": (LAST, 20)}, r"predicted class id 20; expected 0\.\.19"),
        ({"pred_class": (LAST, -1)}, "predicted class id -1"),
        ({"gt_instance": (LAST, -1)}, r"gt_instance outside 0\.\.65535"),
        ({"pred_instance": (LAST, 1 << 16)}, r"pred_instance outside 0\.\.65535"),
        # Two problems: predicted classes are reported first, then ground-truth classes.
        ({"gt_class": ((0, 0), 40), "pred_class": (LAST, 20)}, "predicted class id 20"),
        ({"gt_instance": ((0, 0), -1), "gt_class": (LAST, 40)}, "ground-truth class id 40"),
    ],
)
def test_bad_ids_anywhere_are_reported_in_order(changes, message):
    with pytest.raises(ValueError, match="random.png: " + message):
        frame_statistics(id_frame(**changes), protocol((0.5, 0.0)), DepthMetrics())


def test_a_rejected_frame_adds_no_depth_metrics():
    metrics = DepthMetrics()
    with pytest.raises(ValueError):
        frame_statistics(id_frame(gt_class=(LAST, 40)), protocol((0.5,)), metrics)
    assert (metrics.frames, metrics.skipped_frames) == (0, 0)


# --- label reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("void_as", [None, IGNORE])
def test_split_label_ids_equals_integer_arithmetic_on_every_16_bit_value(void_as):
    raw = np.arange(1 << 16, dtype=np.uint16).reshape(256, 256)
    classes, instances, above, void = _split_label_ids(raw, META, void_as)
    want = raw.astype(np.int64) // 1000
    assert classes.dtype == instances.dtype == np.int32
    if void_as is not None:
        want[want == META["label_void_id"]] = void_as
    assert np.array_equal(classes, want)
    assert np.array_equal(instances, raw.astype(np.int64) % 1000)
    assert above == np.count_nonzero(raw // 1000 >= N)
    assert void == np.count_nonzero(raw // 1000 == META["label_void_id"])


def test_read_labels_renames_void_and_checks_classes(tmp_path):
    rng = np.random.default_rng(3)
    classes = rng.choice([0, 5, 11, 18, 32], (100, 70))  # 32: void; 100 rows: several steps
    raw = (classes * 1000 + rng.integers(0, 1000, classes.shape)).astype(np.uint16)
    record = {"panoptic_file_name": str(tmp_path / "pan.png")}
    cv2.imwrite(record["panoptic_file_name"], raw)
    stored, instances = read_labels(record, META)
    renamed, _ = read_labels(record, META, void_as=IGNORE)
    assert np.array_equal(stored, classes) and np.array_equal(instances, raw % 1000)
    assert np.array_equal(renamed, np.where(classes == 32, IGNORE, classes))
    raw[99, 69] = 40 * 1000 + 7  # in the last step
    cv2.imwrite(record["panoptic_file_name"], raw)
    with pytest.raises(ValueError, match="class id 40 on 1 pixels"):
        read_labels(record, META)
