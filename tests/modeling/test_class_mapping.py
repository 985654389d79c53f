"""Fine-tuning across datasets: the semantic classifier's rows follow their class names."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from panoptic_depthlab.checkpoint import (
    CheckpointError,
    PanopticDepthLabCheckpointer,
    class_order_options,
)
from panoptic_depthlab.config import add_panoptic_depthlab_config
from tests.conftest import small_model_cfg

CITYSCAPES = "cityscapes_dvps_train"  # built-in names: metadata only, no files read
SEMKITTI = "semkitti_dvps_train"
ROWS = ("sem_seg_head.predictor.weight", "sem_seg_head.predictor.bias")
# SemKITTI-DVPS class -> its Cityscapes train id (the classes with a counterpart)
CITYSCAPES_ROW = {
    "car": 13,
    "bicycle": 18,
    "motorcycle": 17,
    "truck": 14,
    "person": 11,
    "road": 0,
    "sidewalk": 1,
    "building": 2,
    "fence": 4,
    "vegetation": 8,
    "terrain": 9,
    "pole": 5,
    "traffic-sign": 7,
}
FRESH = ["other-vehicle", "bicyclist", "motorcyclist", "parking", "other-ground", "trunk"]


def build(dataset: str, seed: int, **overrides):
    """(tiny PanopticDepthLab for ``dataset``, its config)."""
    cfg = small_model_cfg(dataset)
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    torch.manual_seed(seed)
    return build_model(cfg), cfg


def numbered_rows(model) -> None:
    """Row c of the classifier weight is all c + 1, bias c is 100 + c: every row distinct."""
    with torch.no_grad():
        weight, bias = model.sem_seg_head.predictor.weight, model.sem_seg_head.predictor.bias
        for c in range(weight.shape[0]):
            weight[c] = c + 1
            bias[c] = 100 + c


def messages(caplog, level=logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.fixture
def cityscapes_checkpoint(tmp_path):
    """A checkpoint of a tiny Cityscapes-DVPS model saved by our checkpointer (it names its
    classes), with numbered classifier rows."""
    model, cfg = build(CITYSCAPES, seed=1)
    numbered_rows(model)
    PanopticDepthLabCheckpointer(model, str(tmp_path), **class_order_options(cfg)).save("cs")
    return tmp_path / "cs.pth", model


def assert_semkitti_rows_from_cityscapes(model, before) -> None:
    """Each SemKITTI-DVPS class's row is the numbered Cityscapes row of its name; the others
    kept their initialization."""
    names = class_order_options(small_model_cfg(SEMKITTI))["class_names"]
    weight = model.sem_seg_head.predictor.weight
    bias = model.sem_seg_head.predictor.bias
    for row, name in enumerate(names):
        if name in CITYSCAPES_ROW:
            source = CITYSCAPES_ROW[name]
            assert torch.equal(weight[row], torch.full_like(weight[row], source + 1)), name
            assert bias[row].item() == 100 + source, name
        else:
            assert name in FRESH
            assert torch.equal(weight[row], before[ROWS[0]][row]), name
            assert torch.equal(bias[row], before[ROWS[1]][row]), name


def test_checkpoint_stores_the_class_names(cityscapes_checkpoint):
    path, _ = cityscapes_checkpoint
    names = torch.load(path, weights_only=True)["class_names"]
    assert names[:3] == ["road", "sidewalk", "building"] and names[18] == "bicycle"
    assert len(names) == 19


def test_cityscapes_rows_move_to_semkitti_classes_by_name(cityscapes_checkpoint, caplog):
    path, source = cityscapes_checkpoint
    model, cfg = build(SEMKITTI, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    checkpointer = PanopticDepthLabCheckpointer(model, **class_order_options(cfg))
    with caplog.at_level(logging.INFO, logger="panoptic_depthlab.checkpoint"):
        checkpointer.load(str(path))
    assert_semkitti_rows_from_cityscapes(model, before)
    # every other tensor of the checkpoint is loaded as it is
    loaded = model.state_dict()
    for key, value in source.state_dict().items():
        if key not in ROWS:
            assert torch.equal(loaded[key], value), key
    mapping = checkpointer.class_mapping
    assert mapping["source"] == "the checkpoint's class_names"
    assert mapping["fresh"] == FRESH
    assert mapping["mapped"]["traffic-sign"] == "traffic sign"
    assert mapping["mapped"]["car"] == "car" and len(mapping["mapped"]) == 13
    assert mapping["rows"] == CITYSCAPES_ROW
    assert checkpointer.part_states["sem_seg_head"] == "partly loaded"
    assert "panoptic" in checkpointer.untrained_outputs
    logged = messages(caplog)
    parts = next(m for m in logged if "per part" in m)
    assert "| sem_seg_head    | partly loaded |" in parts
    table = next(m for m in logged if m.startswith("Semantic classifier rows moved"))
    assert "|     0 | car           | car (row 13)  " in table
    assert "|    18 | traffic-sign  | traffic sign (row 7)  " in table
    assert "|     6 | bicyclist     | (initialized)  " in table
    assert (
        f"{path}: 6 of 19 classes have no counterpart among the checkpoint's classes (the "
        "checkpoint's class_names) and start from initialization: other-vehicle, bicyclist, "
        "motorcyclist, parking, other-ground, trunk. Fine-tune them."
    ) in messages(caplog, logging.WARNING)


def test_model_zoo_pkl_follows_checkpoint_classes(tmp_path, caplog):
    """A model-zoo .pkl names no classes: MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES does."""
    source, _ = build(CITYSCAPES, seed=1)
    numbered_rows(source)
    path = tmp_path / "model_final.pkl"
    state = {k: v.numpy() for k, v in source.state_dict().items()}
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "test"}, f)

    model, cfg = build(
        SEMKITTI, seed=2, **{"MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES": "cityscapes"}
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    checkpointer = PanopticDepthLabCheckpointer(model, **class_order_options(cfg))
    checkpointer.load(str(path))
    assert_semkitti_rows_from_cityscapes(model, before)
    assert checkpointer.class_mapping["source"] == (
        "MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES 'cityscapes'"
    )

    # without the key, the rows are taken as they are (no names on either side to go by)
    plain, cfg = build(SEMKITTI, seed=2)
    checkpointer = PanopticDepthLabCheckpointer(plain, **class_order_options(cfg))
    caplog.clear()  # the first load's records, when an earlier test left the logger at INFO
    with caplog.at_level(logging.INFO, logger="panoptic_depthlab.checkpoint"):
        checkpointer.load(str(path))
    for key in ROWS:
        assert torch.equal(plain.state_dict()[key], source.state_dict()[key])
    assert checkpointer.class_mapping is None
    assert checkpointer.part_states["sem_seg_head"] == "loaded"
    assert not [m for m in messages(caplog) if "moved by class name" in m]


def test_same_dataset_loading_is_unchanged(tmp_path, caplog):
    """A SemKITTI-DVPS checkpoint into a SemKITTI-DVPS model: every tensor as it is, even with
    CHECKPOINT_CLASSES set (the file's own names win)."""
    source, cfg = build(SEMKITTI, seed=1)
    numbered_rows(source)
    PanopticDepthLabCheckpointer(source, str(tmp_path), **class_order_options(cfg)).save("sk")
    model, cfg = build(
        SEMKITTI, seed=2, **{"MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES": "cityscapes"}
    )
    checkpointer = PanopticDepthLabCheckpointer(model, **class_order_options(cfg))
    with caplog.at_level(logging.INFO, logger="panoptic_depthlab.checkpoint"):
        checkpointer.load(str(tmp_path / "sk.pth"))
    loaded = model.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert checkpointer.class_mapping is None
    assert checkpointer.part_states["sem_seg_head"] == "loaded"
    assert not [m for m in messages(caplog) if "moved by class name" in m]


def test_rows_that_do_not_match_the_named_order_are_one_line_errors(tmp_path):
    source, _ = build(CITYSCAPES, seed=1)
    state = source.state_dict()
    for key in ("sem_seg_head.predictor.weight", "sem_seg_head.predictor.bias"):
        state[key] = state[key][:7]  # a checkpoint of a 7-class model
    path = tmp_path / "seven.pth"
    torch.save({"model": state}, path)
    model, cfg = build(
        SEMKITTI, seed=2, **{"MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES": "cityscapes"}
    )
    with pytest.raises(CheckpointError) as error:
        PanopticDepthLabCheckpointer(model, **class_order_options(cfg)).load(str(path))
    assert str(error.value) == (
        f"{path}: sem_seg_head.predictor.weight has 7 class rows, but "
        "MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES 'cityscapes' names 19 classes; set "
        "MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES to the class order the checkpoint was "
        "trained with."
    )


def test_unknown_class_order_is_a_one_line_error(cityscapes_checkpoint, tmp_path):
    source, _ = build(CITYSCAPES, seed=1)
    path = tmp_path / "unnamed.pth"
    torch.save({"model": source.state_dict()}, path)
    model, cfg = build(SEMKITTI, seed=2, **{"MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES": "kitti"})
    with pytest.raises(CheckpointError) as error:
        PanopticDepthLabCheckpointer(model, **class_order_options(cfg)).load(str(path))
    assert str(error.value) == (
        "MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES 'kitti' is not a known class order; "
        "expected '' (the checkpoint's own class names, else its rows as they are), "
        "'cityscapes', 'cityscapes_dvps', 'semkitti_dvps', or a registered dataset with "
        "stuff_classes."
    )


def test_semkitti_config_has_deeplab2s_effective_settings():
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.merge_from_file("configs/semkitti_dvps/vip_depth.yaml")
    assert cfg.INPUT.SMALL_INSTANCE_AREA == 4096 and cfg.INPUT.SMALL_INSTANCE_WEIGHT == 3
    assert cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE == "deeplab2_hard_pixel_mining"
    assert cfg.MODEL.SEM_SEG_HEAD.LOSS_TOP_K == 0.2
    assert cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT == 1.0
    assert cfg.INPUT.CROP.SIZE == (385, 1281)
    options = class_order_options(cfg)
    assert options["checkpoint_classes"] == "cityscapes"
    assert options["class_names"][0] == "car" and options["class_names"][18] == "traffic-sign"
