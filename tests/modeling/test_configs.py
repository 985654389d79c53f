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
    "name,next_frame,loss,train",
    [
        ("vip_depth.yaml", True, "silog_rel", "cityscapes_dvps_train"),
        ("cityscapes_dvps/single_frame_depth.yaml", False, "l1", "cityscapes_dvps_train"),
        ("cityscapes_dvps/vip_deeplab_reference.yaml", True, "silog_rel", "cityscapes_dvps_train"),
        ("cityscapes/panoptic_depthlab.yaml", False, "l1", "cityscapes_panoptic_depth_train"),
    ],
)
def test_config_builds_a_model_with_the_model_zoo_keys(name, next_frame, loss, train):
    cfg = load(name)
    assert cfg.MODEL.META_ARCHITECTURE == "PanopticDepthLab"
    assert cfg.MODEL.WEIGHTS.startswith(ZOO) and cfg.MODEL.WEIGHTS.endswith(
        "model_final_23d03a.pkl"
    )
    assert cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED is next_frame
    assert cfg.MODEL.DEPTH_HEAD.LOSS_TYPE == loss
    assert cfg.DATASETS.TRAIN == (train,)
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
    # deeplab2's effective settings on sparse labels: every labelled pixel in the semantic loss
    assert (cfg.INPUT.SMALL_INSTANCE_AREA, cfg.INPUT.SMALL_INSTANCE_WEIGHT) == (4096, 3)
    semantic = cfg.MODEL.SEM_SEG_HEAD
    assert (semantic.LOSS_TYPE, semantic.LOSS_TOP_K, semantic.LOSS_WEIGHT) == (
        "deeplab2_hard_pixel_mining",
        0.2,
        1.0,
    )
    # the same network as the Cityscapes-DVPS headline config, so the same checkpoints load
    assert cfg.MODEL.WEIGHTS == load("vip_depth.yaml").MODEL.WEIGHTS


# deeplab2's ViP-DeepLab on Cityscapes-DVPS: Adam 2.5e-4 at 16 frame pairs, 120k steps.
DEEPLAB2_LR_PER_PAIR = 0.00025 / 16
DEEPLAB2_PAIRS = 16 * 120000


@pytest.mark.parametrize(
    "name,pairs,lr,iterations",
    [
        ("vip_depth.yaml", 8, 0.000125, 240000),
        ("semkitti_dvps/vip_depth.yaml", 8, 0.000125, 240000),
        ("cityscapes_dvps/vip_depth_bs32.yaml", 32, 0.0005, 60000),
        ("cityscapes_dvps/vip_deeplab_reference.yaml", 16, 0.00025, 120000),
        ("cityscapes_dvps/single_frame_depth.yaml", 16, 0.00025, 120000),
    ],
)
def test_budget_matches_deeplab2_in_samples_and_lr_per_sample(name, pairs, lr, iterations):
    solver = load(name).SOLVER
    assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.MAX_ITER) == (pairs, lr, iterations)
    assert solver.BASE_LR / solver.IMS_PER_BATCH == DEEPLAB2_LR_PER_PAIR
    assert solver.MAX_ITER * solver.IMS_PER_BATCH == DEEPLAB2_PAIRS
    assert (solver.OPTIMIZER, solver.LR_SCHEDULER_NAME, solver.POLY_LR_POWER) == (
        "ADAM",
        "WarmupPolyLR",
        0.9,
    )
    # the periods in pairs are those of 16 pairs x (1000-step warmup, 5k, 20k); deeplab2 has no
    # warmup, and the reference preset neither
    cfg = load(name)
    warmup = 0 if "reference" in name else 16 * 1000
    assert solver.WARMUP_ITERS * pairs == warmup
    assert solver.CHECKPOINT_PERIOD * pairs == 16 * 5000
    assert cfg.TEST.EVAL_PERIOD * pairs == 16 * 20000


def test_reference_preset_is_the_vip_deeplab_recipe():
    cfg = load("cityscapes_dvps/vip_deeplab_reference.yaml")
    assert cfg.MODEL.DEPTH_HEAD.NAME == "SemanticDecoderDepthHead"
    assert (cfg.MODEL.DEPTH_HEAD.COMMON_STRIDE, cfg.MODEL.DEPTH_HEAD.HEAD_CHANNELS) == (2, 64)
    assert (cfg.MODEL.DEPTH_HEAD.MIN_DEPTH, cfg.MODEL.DEPTH_HEAD.MAX_DEPTH) == (0.0, 88.0)
    assert cfg.MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING == "crop"
    deeplab = cfg.MODEL.PANOPTIC_DEEPLAB
    assert (deeplab.NMS_KERNEL, deeplab.TOP_K_INSTANCE) == (13, 400)
    assert (deeplab.STUFF_AREA, deeplab.CENTER_THRESHOLD) == (2048, 0.1)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert (model.nms_kernel, model.top_k) == (13, 400)
    head = model.depth_head
    assert (head.in_stride, head.common_stride) == (4, 2)
    assert tuple(head.head.depthwise.weight.shape) == (256, 1, 5, 5)  # the decoder's 256 channels
    assert tuple(head.head.pointwise.weight.shape) == (64, 256, 1, 1)


@pytest.mark.parametrize("name", [n for n in SHIPPED if not n.split("/")[-1].startswith("Base-")])
def test_every_shipped_config_runs_a_forward_pass(name):
    cfg = load(name)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        (output,) = model([{"image": image}])
    classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    assert tuple(output["sem_seg"].shape) == (classes, 64, 128)
    assert tuple(output["depth"].shape) == (64, 128)
    depth = cfg.MODEL.DEPTH_HEAD
    assert depth.MIN_DEPTH <= output["depth"].min() <= output["depth"].max() <= depth.MAX_DEPTH
    panoptic, segments = output["panoptic_seg"]
    assert tuple(panoptic.shape) == (64, 128) and panoptic.dtype == torch.int64
    ids = set(panoptic.unique().tolist()) - {-1}
    assert ids == {s["id"] for s in segments}
