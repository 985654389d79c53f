"""Single-frame training (MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED False): the mapper reads
frame t alone, the loader samples every record, and a single-frame model trains on the batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from panoptic_depthlab.config import add_panoptic_depthlab_config
from panoptic_depthlab.data import (
    DVPSDatasetMapper,
    DVPSTargetGenerator,
    build_dvps_train_loader,
    dvps_metadata,
    load_dvps_split,
    register_dvps_dataset,
)
from panoptic_depthlab.engine import DVPSTrainer
from tests.conftest import SMALL, small_model_cfg

CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"
NEXT_KEYS = {"next_image", "next_offset", "next_offset_weights"}
FRAME_KEYS = {
    "image",
    "sem_seg",
    "sem_seg_weights",
    "center",
    "center_weights",
    "offset",
    "offset_weights",
    "depth",
    "depth_valid",
}
# The keys that make a record a frame of a sequence; records of independent images lack them.
SEQUENCE_KEYS = ("next_frame", "sequence_id", "frame_index")
CROP = (48, 96)


def independent_images(records: list[dict]) -> list[dict]:
    """The records as a dataset of independent images would give them: no sequence keys."""
    return [{k: v for k, v in r.items() if k not in SEQUENCE_KEYS} for r in records]


@pytest.fixture(scope="module")
def names(dvps_roots) -> dict[str, str]:
    """Registered once for this module: both synthetic formats' train splits, and Cityscapes-
    DVPS's frames as a dataset of independent images (records without sequence keys)."""
    registered = {}
    for fmt in (CITYSCAPES, SEMKITTI):
        registered[fmt] = f"test_single_frame_{fmt}_train"
        register_dvps_dataset(registered[fmt], str(dvps_roots[fmt]), "train", fmt)
    root = str(dvps_roots[CITYSCAPES])
    registered["images"] = "test_single_frame_independent_images"
    DatasetCatalog.register(
        registered["images"],
        lambda: independent_images(load_dvps_split(root, "train", CITYSCAPES)),
    )
    MetadataCatalog.get(registered["images"]).set(**dvps_metadata(CITYSCAPES))
    return registered


def data_cfg(name: str, next_frame: bool):
    """A data config with random scale, crop and flip, so the augmentation sample matters."""
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.CROP.SIZE = CROP
    cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE = 0.5, 2.0
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = (name,)
    cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED = next_frame
    return cfg


# ------------------------------------------------------------------ the mapper


def test_next_frame_follows_the_config(names):
    name = names[CITYSCAPES]
    assert DVPSDatasetMapper(data_cfg(name, next_frame=True), is_train=True).next_frame
    assert not DVPSDatasetMapper(data_cfg(name, next_frame=False), is_train=True).next_frame


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_last_frame_of_a_sequence_maps_without_next_keys(names, fmt):
    name = names[fmt]
    single = DVPSDatasetMapper(data_cfg(name, next_frame=False), is_train=True)
    pair = DVPSDatasetMapper(data_cfg(name, next_frame=True), is_train=True)
    last_frames = [r for r in DatasetCatalog.get(name) if r["next_frame"] is None]
    assert len(last_frames) == SMALL[0]
    np.random.seed(0)
    for record in last_frames:
        out = single(record)
        assert set(out) == set(record) | FRAME_KEYS and not NEXT_KEYS & set(out)
        assert out["image"].shape == (3, *CROP) and out["sem_seg"].shape == CROP
        assert out["offset"].shape == (2, *CROP) and out["depth"].shape == (1, *CROP)
        with pytest.raises(ValueError, match="has no next frame, so it cannot start a training"):
            pair(record)  # unchanged for video models


def test_records_of_independent_images_map_without_next_keys(names):
    single = DVPSDatasetMapper(data_cfg(names["images"], next_frame=False), is_train=True)
    records = DatasetCatalog.get(names["images"])
    assert records and not any(k in r for r in records for k in SEQUENCE_KEYS)
    np.random.seed(0)
    for record in records:
        out = single(record)
        assert set(out) == set(record) | FRAME_KEYS


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_frame_targets_equal_the_pair_paths_for_the_same_augmentation(names, fmt):
    """T.AugmentationList draws from NumPy's global RNG: reseeded alike, both paths draw the same
    scale, crop and flip, and frame t's outputs must be bit-identical."""
    name = names[fmt]
    single = DVPSDatasetMapper(data_cfg(name, next_frame=False), is_train=True)
    pair = DVPSDatasetMapper(data_cfg(name, next_frame=True), is_train=True)
    records = [r for r in DatasetCatalog.get(name) if r["next_frame"] is not None]
    images = set()
    for record in records:
        for seed in range(4):
            np.random.seed(seed)
            expected = pair(record)
            np.random.seed(seed)
            out = single(record)
            assert set(out) == set(expected) - NEXT_KEYS
            for key in FRAME_KEYS:
                assert out[key].dtype == expected[key].dtype, key
                assert torch.equal(out[key], expected[key]), (record["file_name"], seed, key)
            images.add(out["image"].numpy().tobytes())
    assert len(images) == 4 * len(records)  # the seeds drew different augmentations


def test_target_generator_without_the_next_frame():
    meta = dvps_metadata(CITYSCAPES)
    generator = DVPSTargetGenerator(
        thing_ids=meta["thing_ids"], ignore_label=255, label_divisor=meta["label_divisor"]
    )
    pan = np.zeros((24, 32), np.int64)
    pan[0] = 255_000
    pan[4:10, 5:12] = 13_001  # a car
    pan[14:20, 20:26] = 11_002  # a person
    pan[20:23, 0:4] = 11_000  # a crowd
    moved = np.roll(pan, 2, axis=1)
    single, both = generator(pan), generator(pan, moved)
    assert set(single) == set(both) - {"next_offset", "next_offset_weights"}
    for key, value in single.items():
        assert value.dtype == both[key].dtype and torch.equal(value, both[key]), key
    assert both["next_offset_weights"].sum() == 42 + 36


# ------------------------------------------------------------ loader and model


def single_frame_loader(name: str, batch_size: int):
    cfg = data_cfg(name, next_frame=False)
    cfg.SOLVER.IMS_PER_BATCH = batch_size
    cfg.DATALOADER.NUM_WORKERS = 0
    return build_dvps_train_loader(cfg)


def test_single_frame_loader_samples_every_record(names):
    """Detectron2's TrainingSampler: each epoch is a permutation of all records, so one batch of
    all of them holds the last frames of sequences, which frame-pair training skips."""
    records = DatasetCatalog.get(names[CITYSCAPES])
    batch = next(iter(single_frame_loader(names[CITYSCAPES], len(records))))
    assert sorted(s["image_id"] for s in batch) == sorted(r["image_id"] for r in records)
    assert sum(s["next_frame"] is None for s in batch) == SMALL[0]
    for sample in batch:
        assert sample["image"].shape == (3, *CROP) and not NEXT_KEYS & set(sample)


def test_single_frame_loader_over_independent_images(names):
    records = DatasetCatalog.get(names["images"])
    loader = single_frame_loader(names["images"], len(records))
    batch = next(iter(loader))
    assert sorted(s["image_id"] for s in batch) == sorted(r["image_id"] for r in records)
    assert all(set(s) == set(records[0]) | FRAME_KEYS for s in batch)


def test_one_training_step_of_a_single_frame_model(names):
    """A training step on a loader batch that holds last frames of sequences: one backbone pass
    over frame t, finite losses without ``loss_next_offset``, gradients, an optimizer step."""
    name = names[CITYSCAPES]
    cfg = small_model_cfg(name, crop=CROP)
    cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED = False
    cfg.SOLVER.IMS_PER_BATCH = SMALL[0] * SMALL[1]  # every frame, last frames included
    cfg.DATALOADER.NUM_WORKERS = 0
    batch = next(iter(build_dvps_train_loader(cfg)))
    assert sum(s["next_frame"] is None for s in batch) == SMALL[0]
    assert not any(NEXT_KEYS & set(s) for s in batch)

    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    assert model.next_frame_head is None
    optimizer = DVPSTrainer.build_optimizer(cfg, model)
    calls = []
    model.backbone.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    before = [p.detach().clone() for p in model.parameters()]
    losses = model(batch)
    assert set(losses) == {"loss_sem_seg", "loss_center", "loss_offset", "loss_depth"}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert calls == [len(batch)]  # frame t of each sample, no next frame
    optimizer.zero_grad()
    sum(losses.values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
