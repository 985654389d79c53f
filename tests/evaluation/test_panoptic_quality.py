"""Detectron2's COCOPanopticEvaluator (panopticapi's pq_compute) on outputs with track ids, for
Cityscapes with depth from disparity: the ground truth as a prediction scores PQ 100, and a
prediction that misses one thing instance scores what panopticapi says."""

from __future__ import annotations

import pytest
import torch
from detectron2.data import DatasetCatalog

from panoptic_depthlab.data.annotations import read_panoptic
from panoptic_depthlab.data.datasets import register_cityscapes_depth
from panoptic_depthlab.data.datasets.cityscapes_depth import cityscapes_depth_metadata
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.evaluation.panoptic_quality import TrackedCOCOPanopticEvaluator
from panoptic_depthlab.panoptic_ids import TRACK_LABEL_DIVISOR

NAME = "test_pq_cityscapes_depth_val"


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    generate_synthetic_dvps(str(root), "cityscapes", "val", 2, 2, 64, 128, 3)
    register_cityscapes_depth(NAME, str(root), "val")
    return DatasetCatalog.get(NAME)


def as_tracked_output(record, meta, drop_one_thing: bool = False) -> dict:
    """The ground truth of a record as a model output with track ids (void -1)."""
    panoptic = read_panoptic(record, meta)
    classes, instances = panoptic // meta["label_divisor"], panoptic % meta["label_divisor"]
    ids = torch.from_numpy(classes * TRACK_LABEL_DIVISOR + instances).long()
    ids[torch.from_numpy(classes == meta["ignore_label"])] = -1
    segments = []
    for segment_id in ids.unique().tolist():
        if segment_id == -1:
            continue
        category = segment_id // TRACK_LABEL_DIVISOR
        isthing = category in meta["thing_ids"]
        if drop_one_thing and isthing and segment_id % TRACK_LABEL_DIVISOR:
            ids[ids == segment_id], drop_one_thing = -1, False
            continue
        segments.append({"id": segment_id, "category_id": category, "isthing": isthing})
    return {"panoptic_seg": (ids, segments)}


def test_ground_truth_scores_pq_100(records):
    meta = cityscapes_depth_metadata()
    evaluator = TrackedCOCOPanopticEvaluator(NAME)
    evaluator.reset()
    evaluator.process(records, [as_tracked_output(r, meta) for r in records])
    results = evaluator.evaluate()["panoptic_seg"]
    assert results["PQ"] == pytest.approx(100) and results["PQ_th"] == pytest.approx(100)


def test_a_missed_instance_costs_recognition_quality(records):
    meta = cityscapes_depth_metadata()
    evaluator = TrackedCOCOPanopticEvaluator(NAME)
    evaluator.reset()
    outputs = [as_tracked_output(r, meta, drop_one_thing=(i == 0)) for i, r in enumerate(records)]
    evaluator.process(records, outputs)
    results = evaluator.evaluate()["panoptic_seg"]
    assert results["SQ"] == pytest.approx(100)  # every match is perfect
    assert results["RQ_th"] < 100 and results["PQ_st"] == pytest.approx(100)
