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
    [("vip_depth.yaml", True, "silog_rel"), ("panoptic_depthlab.yaml", False, "l1")],
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
