"""Fine-tuning from Detectron2 Panoptic-DeepLab checkpoints (model-zoo key layout)."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch
from detectron2.modeling import build_model

from panoptic_depthlab.checkpoint import CheckpointError, PanopticDepthLabCheckpointer
from panoptic_depthlab.data import register_dvps_dataset
from tests.conftest import small_model_cfg

NAME = "test_checkpoint_cityscapes"
SHARED = ("backbone.", "sem_seg_head.", "ins_embed_head.")


@pytest.fixture(scope="module")
def zoo_model(tmp_path_factory):
    """Detectron2's own PanopticDeepLab with trained-looking (random, non-initial) weights."""
    register_dvps_dataset(NAME, "/nonexistent", "train", "cityscapes_dvps")
    cfg = small_model_cfg(NAME)
    cfg.MODEL.META_ARCHITECTURE = "PanopticDeepLab"
    torch.manual_seed(1)
    model = build_model(cfg)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
    return model


def fresh_model(**overrides):
    cfg = small_model_cfg(NAME)
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    torch.manual_seed(2)
    return build_model(cfg)


def save_zoo_pkl(state: dict, path) -> None:
    """A .pkl as Detectron2's model zoo stores them: numpy arrays under "model"."""
    data = {"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}
    with open(path, "wb") as f:
        pickle.dump(data, f)


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_zoo_checkpoint_loads_every_shared_tensor(zoo_model, tmp_path, caplog, suffix):
    path = tmp_path / f"model_final{suffix}"
    state = zoo_model.state_dict()
    if suffix == ".pkl":
        save_zoo_pkl(state, path)
    else:
        torch.save({"model": state}, path)
    model = fresh_model()
    new_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(SHARED)}
    with caplog.at_level(logging.INFO):
        PanopticDepthLabCheckpointer(model).load(str(path))
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    for key, value in new_before.items():  # new branches keep their initialization
        assert torch.equal(loaded[key], value), key
    assert set(new_before) and all(
        k.startswith(("depth_head.", "next_frame_head.")) for k in new_before
    )
    table = next(r.getMessage() for r in caplog.records if "per part" in r.getMessage())
    assert "| backbone " in table and "| loaded " in table
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "initialized" in lines["depth_head"] and "initialized" in lines["next_frame_head"]
    assert "loaded" in lines["sem_seg_head"] and "mismatch" not in table.splitlines()[2]


def test_imagenet_backbone_with_matching_heuristics(zoo_model, tmp_path, caplog):
    """Backbone-only files (like DeepLab/R-52.pkl) name keys without the "backbone." prefix."""
    backbone = {
        k.removeprefix("backbone."): v
        for k, v in zoo_model.state_dict().items()
        if k.startswith("backbone.")
    }
    path = tmp_path / "R-18.pkl"
    data = {"model": {k: v.numpy() for k, v in backbone.items()}, "__author__": "test",
            "matching_heuristics": True}  # fmt: skip
    with open(path, "wb") as f:
        pickle.dump(data, f)
    model = fresh_model()
    with caplog.at_level(logging.INFO):
        PanopticDepthLabCheckpointer(model).load(str(path))
    for key, value in backbone.items():
        assert torch.equal(model.state_dict()["backbone." + key], value), key
    table = next(r.getMessage() for r in caplog.records if "per part" in r.getMessage())
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()[2:]
    }
    assert rows["backbone"] == "loaded" and rows["sem_seg_head"] == "initialized"


def test_class_predictor_shape_mismatch_is_reported(tmp_path, caplog):
    cfg = small_model_cfg(NAME)
    cfg.MODEL.META_ARCHITECTURE = "PanopticDeepLab"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 10
    other = build_model(cfg)
    path = tmp_path / "ten_classes.pth"
    torch.save({"model": other.state_dict()}, path)
    model = fresh_model()
    with caplog.at_level(logging.INFO):
        PanopticDepthLabCheckpointer(model).load(str(path))
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "sem_seg_head.predictor.weight" in m and "incompatible shapes" in m for m in messages
    )
    table = next(m for m in messages if "per part" in m)
    row = next(line for line in table.splitlines() if line.startswith("| sem_seg_head"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "partly loaded" and cells[4] == "2"  # predictor weight and bias


class _Unpicklable:
    """A checkpointable whose state cannot be pickled: torch.save fails in the middle."""

    def state_dict(self):
        return {"tensor": torch.zeros(1000), "function": lambda: None}


def test_failed_save_leaves_the_last_checkpoint_and_tag_intact(tmp_path):
    model = fresh_model()
    PanopticDepthLabCheckpointer(model, str(tmp_path)).save("model_0000001")
    good = (tmp_path / "model_0000001.pth").read_bytes()
    broken = PanopticDepthLabCheckpointer(model, str(tmp_path), extra=_Unpicklable())
    with pytest.raises(Exception, match="pickle"):
        broken.save("model_0000003")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert (tmp_path / "model_0000001.pth").read_bytes() == good
    resumed = PanopticDepthLabCheckpointer(fresh_model(), str(tmp_path))
    resumed.resume_or_load("", resume=True)
    for key, value in model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


class _Custom:
    pass


def test_pth_with_python_objects_is_refused_with_the_file_name(tmp_path):
    path = tmp_path / "untrusted.pth"
    torch.save({"model": fresh_model().state_dict(), "extra": _Custom()}, path)
    with pytest.raises(CheckpointError) as error:
        PanopticDepthLabCheckpointer(fresh_model()).load(str(path))
    assert str(error.value) == (
        f"{path}: refused: the file would call or build tests.modeling.test_checkpoint._Custom "
        "when loaded, which a checkpoint never needs (only tensors, numpy arrays, numbers, "
        "strings and containers are read); it may be hostile. Nothing from it was run. If you "
        "trust its source, load it with torch.load and re-save its tensors with "
        "torch.save({'model': state_dict}, path)."
    )
