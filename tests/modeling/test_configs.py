"""The shipped YAML configs build PanopticDepthLab with model-zoo-compatible keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from panoptic_depthlab import add_panoptic_depthlab_config
from panoptic_depthlab.modeling import PanopticDepthLab

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ZOO = "detectron2://PanopticDeepLab/Cityscapes-PanopticSegmentation/"


def load(name: str):
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.merge_from_file(str(CONFIGS / name))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.mark.parametrize(
    "name,next_frame,loss",
    [
        ("vip_depth.yaml", True, "silog_rel"),
        ("cityscapes_dvps/single_frame_depth.yaml", False, "l1"),
    ],
)
def test_config_builds_a_model_with_the_model_zoo_keys(name, next_frame, loss):
    cfg = load(name)
    assert cfg.MODEL.META_ARCHITECTURE == "PanopticDepthLab"
    assert cfg.MODEL.WEIGHTS.startswith(ZOO) and cfg.MODEL.WEIGHTS.endswith(
        "model_final_23d03a.pkl"
    )
    assert cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED is next_frame
    assert cfg.MODEL.DEPTH_HEAD.LOSS_TYPE == loss
    assert cfg.DATASETS.TRAIN == ("cityscapes_dvps_train",)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, PanopticDepthLab) and (model.next_frame_head is not None) == next_frame
    zoo_cfg = cfg.clone()
    zoo_cfg.MODEL.META_ARCHITECTURE = "PanopticDeepLab"
    zoo = {k: v.shape for k, v in build_model(zoo_cfg).state_dict().items()}
    ours = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: ours.get(k) for k in zoo} == zoo  # every model-zoo tensor has its place and shape


SHIPPED = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("name", [n for n in SHIPPED if not n.split("/")[-1].startswith("Base-")])
def test_every_shipped_config_loads_with_registered_datasets(name):
    from detectron2.data import DatasetCatalog

    cfg = load(name)
    for dataset in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        assert dataset in DatasetCatalog.list(), dataset
    assert cfg.SOLVER.IMS_PER_BATCH % 2 == 0  # splits evenly over --num-gpus 2
    assert cfg.OUTPUT_DIR.startswith("output/")


def test_semkitti_config_has_its_crop_and_sparse_label_settings():
    cfg = load("semkitti_dvps/vip_depth.yaml")
    assert cfg.DATASETS.TRAIN == ("semkitti_dvps_train",)
    assert tuple(cfg.INPUT.CROP.SIZE) == (385, 1281)
    assert cfg.INPUT.SMALL_INSTANCE_AREA < 4096 and cfg.MODEL.SEM_SEG_HEAD.LOSS_TOP_K < 0.2
    # the same network as the Cityscapes-DVPS headline config, so the same checkpoints load
    assert cfg.MODEL.WEIGHTS == load("vip_depth.yaml").MODEL.WEIGHTS


def test_bs32_config_keeps_the_lr_per_image_of_the_model_zoo():
    cfg = load("cityscapes_dvps/vip_depth_bs32.yaml")
    base = load("vip_depth.yaml")
    assert (
        cfg.SOLVER.BASE_LR / cfg.SOLVER.IMS_PER_BATCH
        == base.SOLVER.BASE_LR / base.SOLVER.IMS_PER_BATCH
    )
    assert (
        cfg.SOLVER.MAX_ITER * cfg.SOLVER.IMS_PER_BATCH
        == base.SOLVER.MAX_ITER * base.SOLVER.IMS_PER_BATCH
    )
