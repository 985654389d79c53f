"""A dataset without depth ground truth (metadata ``has_depth`` False): no depth targets, no
depth loss (absent from the losses and logs, never NaN), a frozen depth branch, and an
evaluation of VPQ (lambda = 0) without depth metrics. The data are synthetic Cityscapes-DVPS
frames registered as if they had no depth files."""

from __future__ import annotations

import json
import math

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from panoptic_depthlab.data import DVPSDatasetMapper, build_dvps_train_loader
from panoptic_depthlab.data.datasets import dvps_metadata, load_dvps_split
from panoptic_depthlab.engine import DVPSTrainer
from panoptic_depthlab.evaluation import DVPSEvaluator, inference_on_sequences
from tests.conftest import small_model_cfg

NAME = "test_depthless_cityscapes"


@pytest.fixture(scope="module")
def depthless(dvps_roots) -> str:
    root = str(dvps_roots["cityscapes_dvps"])
    for split in ("train", "val"):
        name = f"{NAME}_{split}"
        if name in DatasetCatalog.list():
            continue

        def load(split=split):
            records = load_dvps_split(root, split, "cityscapes_dvps")
            for record in records:  # as a loader of a depth-less layout gives them
                record.pop("depth_file_name")
                if record["next_frame"] is not None:
                    record["next_frame"].pop("depth_file_name")
            return records

        DatasetCatalog.register(name, load)
        metadata = {**dvps_metadata("cityscapes_dvps"), "has_depth": False}
        metadata["dvpq_depth_thresholds"] = []
        MetadataCatalog.get(name).set(**metadata)
    return NAME


def _cfg(name: str):
    cfg = small_model_cfg(f"{name}_train", crop=(64, 128))
    cfg.DATASETS.TEST = (f"{name}_val",)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE = 1.0, 1.0
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def test_training_has_no_depth_loss_and_a_frozen_depth_branch(depthless):
    cfg = _cfg(depthless)
    batch = next(iter(build_dvps_train_loader(cfg)))
    assert all("depth" not in x and "depth_valid" not in x for x in batch)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert not any(p.requires_grad for p in model.depth_head.parameters())
    losses = model(batch)
    assert set(losses) == {
        "loss_sem_seg", "loss_center", "loss_offset", "loss_next_offset"
    }  # fmt: skip
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    optimizer = DVPSTrainer.build_optimizer(cfg, model)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in trained for p in model.depth_head.parameters())


def test_uncertainty_weighting_has_no_depth_task(depthless):
    cfg = _cfg(depthless)
    cfg.MODEL.PANOPTIC_DEPTHLAB.UNCERTAINTY_WEIGHTING = True
    model = build_model(cfg).train()
    losses = model(next(iter(build_dvps_train_loader(cfg))))
    assert "loss_depth" not in losses and all(math.isfinite(v.item()) for v in losses.values())


def test_evaluation_reports_vpq_without_depth_metrics(depthless, tmp_path):
    cfg = _cfg(depthless)
    model = build_model(cfg).eval()
    results = inference_on_sequences(
        model,
        f"{depthless}_val",
        DVPSDatasetMapper(cfg, is_train=False),
        DVPSEvaluator(f"{depthless}_val", str(tmp_path)),
    )["dvps"]
    assert "abs_rel" not in results and not any(k.startswith("delta") for k in results)
    assert {key for key in results if key.startswith("DVPQ@")} == {
        f"DVPQ@k{k}_l0" for k in (1, 2, 3)  # k = 4 does not fit in 3-frame sequences
    }
    saved = json.loads((tmp_path / "dvps_results.json").read_text())
    assert [(e["k"], e["lambda"]) for e in saved["dvpq"]] == [(k, 0.0) for k in (1, 2, 3, 4)]
    assert "depth" not in saved
