"""DVPSDatasetMapper on real PNG files: hand-built frames (exact values) and synthetic data."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T

from panoptic_depthlab.config import add_panoptic_depthlab_config
from panoptic_depthlab.data import (
    DVPSDatasetMapper,
    DVPSTargetGenerator,
    FramePairTrainingSampler,
    annotations,
    build_dvps_train_loader,
    dvps_metadata,
    load_dvps_split,
    register_dvps_dataset,
)
from panoptic_depthlab.data.transforms import RandomPadCrop, RandomScaleStep
from tests.conftest import SMALL, write_cityscapes_dvps_frame

CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"
H, W = 32, 48
MEAN = [103.53, 116.28, 123.675]


def hand_frame(shift: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 32x48 frame: road, sky, void row, a car (moved right by ``shift``), a crowd."""
    pan = np.zeros((H, W), np.int64)  # road
    pan[:8] = 10_000  # sky
    pan[31] = 32_000  # void
    pan[12:17, 10 + shift : 17 + shift] = 13_001  # car: mean (14, 13 + shift)
    pan[20:24, 30:34] = 11_000  # crowd of persons
    depth = np.where(pan // 1000 == 32, 0.0, pan // 1000 + 1.0)  # class + 1 meters
    depth[:8] = 0  # sky: no depth
    rng = np.random.default_rng(shift)
    image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    return image, pan, depth


def mapper(augmentations: list, is_train: bool = True, fmt: str = CITYSCAPES) -> DVPSDatasetMapper:
    meta = dvps_metadata(fmt)
    return DVPSDatasetMapper(
        is_train,
        augmentations=augmentations,
        image_format="RGB",
        metadata=meta,
        target_generator=DVPSTargetGenerator(
            thing_ids=meta["thing_ids"], ignore_label=255, label_divisor=meta["label_divisor"]
        ),
    )


@pytest.fixture
def hand_records(tmp_path) -> list[dict]:
    """Sequence 0: frames 0 and 1 (car moved by 2 px); sequence 1: one frame, a copy of frame 0."""
    split_dir = tmp_path / "video_sequence" / "train"
    write_cityscapes_dvps_frame(split_dir, 0, 0, *hand_frame(0))
    write_cityscapes_dvps_frame(split_dir, 0, 1, *hand_frame(2))
    write_cityscapes_dvps_frame(split_dir, 1, 0, *hand_frame(0))
    return load_dvps_split(str(tmp_path), "train", CITYSCAPES)


def twin_record(record: dict) -> dict:
    """The record with its next frame replaced by itself (identical files)."""
    keys = ("file_name", "panoptic_file_name", "depth_file_name", "image_id", "frame_index")
    return {**record, "next_frame": {k: record[k] for k in keys}}


def test_plain_mapping_reads_exact_values(hand_records):
    out = mapper([])(hand_records[0])
    image, pan, depth = hand_frame(0)
    assert out["image"].permute(1, 2, 0).numpy().tolist() == image.tolist()
    assert out["next_image"].permute(1, 2, 0).numpy().tolist() == hand_frame(2)[0].tolist()
    sem = out["sem_seg"].numpy()
    assert (sem[31] == 255).all() and (sem[:8] == 10).all() and sem[14, 13] == 13
    assert out["depth"].shape == (1, H, W) and out["depth"].dtype == torch.float32
    assert out["depth"][0].numpy().tolist() == depth.astype(np.float32).tolist()
    assert (out["depth_valid"] == (out["depth"] > 0)).all()
    assert np.argwhere(out["center"].numpy() == 1).tolist() == [[14, 13]]
    assert out["offset"][:, 12, 10].tolist() == [2, 3]
    # next frame: the car moved right by 2; offsets point to its frame-t center (14, 13)
    assert out["next_offset"][:, 12, 12].tolist() == [2, 1]
    assert out["next_offset_weights"].sum() == 35 and out["next_offset_weights"][0, 12, 12] == 1
    # the crowd: labelled person, no center, no offset, no center weight
    assert sem[21, 31] == 11 and out["center_weights"][0, 21, 31] == 0
    assert out["offset_weights"][0, 21, 31] == 0 and out["sem_seg_weights"][21, 31] == 1
    assert out["sem_seg_weights"][14, 13] == 3  # 35 px < 4096


def test_flip_negates_x_offsets(hand_records):
    plain = mapper([])(hand_records[0])
    flipped = mapper([T.RandomFlip(prob=1.0)])(hand_records[0])
    for key in ("offset", "next_offset"):
        dy, dx = plain[key].numpy()
        assert flipped[key][0].numpy().tolist() == dy[:, ::-1].tolist()
        assert flipped[key][1].numpy().tolist() == (-dx[:, ::-1]).tolist()
    assert flipped["offset"][1, 12, 37].item() == -3  # pixel (12, 10) mirrored to column 37
    assert flipped["image"].flip(-1).tolist() == plain["image"].tolist()
    assert flipped["next_image"].flip(-1).tolist() == plain["next_image"].tolist()
    assert flipped["depth"].flip(-1).tolist() == plain["depth"].tolist()


def test_depth_is_divided_by_a_2x_scale(hand_records):
    out = mapper([RandomScaleStep(2.0, 2.0, 0.1)])(hand_records[0])
    depth = hand_frame(0)[2].astype(np.float32)
    expected = np.repeat(np.repeat(depth, 2, 0), 2, 1) / 2
    assert out["depth"][0].numpy().tolist() == expected.tolist()
    assert out["image"].shape == (3, 2 * H, 2 * W)
    # the 2x car spans rows 24..33, columns 20..33: mean (28.5, 26.5), rounded half to even
    assert np.argwhere(out["center"].numpy() == 1).tolist() == [[28, 26]]


@pytest.mark.parametrize("seed", range(5))
def test_one_transform_for_both_frames_labels_and_depth(hand_records, seed):
    """With identical frames t and t+1, every output pair must be identical; depth stays aligned
    with labels (depth * scale == class + 1) and padding is ignore / 0 / the mean pixel."""
    augs = [RandomScaleStep(1.5, 1.5, 0.1), RandomPadCrop((56, 64), MEAN, 255_000)]
    augs.append(T.RandomFlip(prob=0.5))
    np.random.seed(seed)
    out = mapper(augs)(twin_record(hand_records[0]))
    assert out["image"].tolist() == out["next_image"].tolist()
    assert out["next_offset"].tolist() == out["offset"].tolist()
    assert out["next_offset_weights"].tolist() == out["offset_weights"].tolist()
    sem, depth = out["sem_seg"].numpy(), out["depth"][0].numpy()
    labelled = (sem != 255) & (sem != 10)  # sky has no depth
    np.testing.assert_allclose(depth[labelled] * 1.5, sem[labelled] + 1, rtol=1e-6)
    assert (depth[sem == 255] == 0).all()
    padded = sem.shape[0] - 48  # 32 * 1.5 = 48 rows of image, then padding
    assert out["image"][:, -padded:].permute(1, 2, 0).reshape(-1, 3).unique(dim=0).tolist() == [
        [104, 116, 124]
    ]


def test_empty_depth_crop_gives_no_valid_pixel(hand_records):
    crop = [RandomPadCrop((8, 48), MEAN, 255_000)]  # 8 rows: the top rows are sky (no depth)
    np.random.seed(0)
    hits = [mapper(crop)(hand_records[0]) for _ in range(40)]
    empty = [o for o in hits if not o["depth_valid"].any()]
    assert empty, "expected at least one crop inside the sky"
    for o in empty:
        assert o["depth"].sum() == 0 and torch.isfinite(o["depth"]).all()


def test_evaluation_mode_reads_the_frame_alone(hand_records):
    m = mapper([], is_train=False)
    first, last, single = (m(r) for r in hand_records)
    for out, record in zip((first, last, single), hand_records, strict=True):
        assert out["image"].shape == (3, H, W)
        assert set(out) == set(record) | {"image"}
    assert first["image"].permute(1, 2, 0).numpy().tolist() == hand_frame(0)[0].tolist()


# ------------------------------------------------------------------- bad input


def test_training_on_a_last_frame_is_an_error(hand_records):
    with pytest.raises(ValueError, match="last frame of sequence 0 has no next frame"):
        mapper([])(hand_records[1])


def test_class_id_out_of_range(tmp_path):
    image, pan, depth = hand_frame()
    pan[0, 0] = 40_000
    split_dir = tmp_path / "video_sequence" / "train"
    write_cityscapes_dvps_frame(split_dir, 0, 0, image, pan, depth)
    write_cityscapes_dvps_frame(split_dir, 0, 1, *hand_frame())
    record = load_dvps_split(str(tmp_path), "train", CITYSCAPES)[0]
    with pytest.raises(ValueError, match="class id 40 on 1 pixels; expected train ids 0..18") as e:
        mapper([])(record)
    assert record["panoptic_file_name"] in str(e.value)


def test_instance_id_on_stuff_is_dropped_with_one_warning(tmp_path, monkeypatch, caplog):
    # Real SemKITTI-DVPS labels carry instance ids on some stuff pixels; training must go on.
    monkeypatch.setattr(annotations, "_WARNED_STUFF_INSTANCES", set())
    image, pan, depth = hand_frame()
    next_pan = pan.copy()
    next_pan[9, 5] = 3  # road, instance 3
    next_pan[9, 6] = 4
    split_dir = tmp_path / "video_sequence" / "train"
    write_cityscapes_dvps_frame(split_dir, 0, 0, image, pan, depth)
    write_cityscapes_dvps_frame(split_dir, 0, 1, image, next_pan, depth)
    write_cityscapes_dvps_frame(split_dir, 0, 2, image, pan, depth)
    write_cityscapes_dvps_frame(split_dir, 0, 3, image, next_pan, depth)
    records = load_dvps_split(str(tmp_path), "train", CITYSCAPES)
    clean_split = tmp_path / "clean" / "video_sequence" / "train"
    write_cityscapes_dvps_frame(clean_split, 0, 0, image, pan, depth)
    write_cityscapes_dvps_frame(clean_split, 0, 1, image, pan, depth)
    clean = load_dvps_split(str(tmp_path / "clean"), "train", CITYSCAPES)[0]
    with caplog.at_level(logging.WARNING, logger="panoptic_depthlab.data.annotations"):
        outputs = [mapper([])(r) for r in (records[0], records[2])]
    expected = mapper([])(clean)
    for out in outputs:  # the stray ids change no target
        for key in ("next_offset", "next_offset_weights", "sem_seg"):
            assert torch.equal(out[key], expected[key]), key
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per dataset, not per frame
    assert "2 pixels of stuff classes carry an instance id" in warnings[0]
    assert "the first: 3 on class 0 at (y, x) = (9, 5)" in warnings[0]
    assert records[1]["panoptic_file_name"] in warnings[0]


def test_depth_size_differs_from_labels(hand_records, tmp_path):
    image, pan, depth = hand_frame()
    write_cityscapes_dvps_frame(tmp_path / "other", 0, 0, image[:16], pan[:16], depth[:16])
    record = dict(hand_records[0])
    record["depth_file_name"] = str(next((tmp_path / "other").glob("*_depth.png")))
    with pytest.raises(ValueError, match=r"size \(H, W\) = \(16, 48\) differs") as e:
        mapper([])(record)
    assert record["depth_file_name"] in str(e.value)


def test_missing_next_frame_file(hand_records, tmp_path):
    record = hand_records[0]
    missing = record["next_frame"]["file_name"]
    (tmp_path / missing).unlink()
    with pytest.raises(FileNotFoundError, match="missing; expected an 8-bit RGB image") as e:
        mapper([])(record)
    assert missing in str(e.value)


# --------------------------------------------------- synthetic data, registered


def _cfg(name: str) -> object:
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.CROP.SIZE = (48, 96)
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = (name,)
    return cfg


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_registered_synthetic_data_through_the_mapper(dvps_roots, fmt):
    name = f"test_mapper_{fmt}_train"
    register_dvps_dataset(name, str(dvps_roots[fmt]), "train", fmt)
    cfg = _cfg(name)
    train, evaluate = DVPSDatasetMapper(cfg, is_train=True), DVPSDatasetMapper(cfg, is_train=False)
    records = DatasetCatalog.get(name)
    np.random.seed(0)
    for record in records:
        if record["next_frame"] is None:
            continue
        out = train(record)
        hw = (48, 96)
        for key in ("image", "next_image"):
            assert out[key].dtype == torch.uint8 and out[key].shape == (3, *hw)
        assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == hw
        classes = set(out["sem_seg"].unique().tolist())
        assert classes <= set(range(19)) | {255}
        assert set(out["sem_seg_weights"].unique().tolist()) <= {0.0, 1.0, 3.0}
        assert ((out["sem_seg_weights"] == 0) == (out["sem_seg"] == 255)).all()
        assert out["center"].shape == hw and 0 <= out["center"].min() <= out["center"].max() <= 1
        for key in ("center_weights", "offset_weights", "next_offset_weights"):
            assert out[key].shape == (1, *hw) and out[key].dtype == torch.float32
            assert set(out[key].unique().tolist()) <= {0.0, 1.0}
        for key in ("offset", "next_offset"):
            weights = out[key.replace("offset", "offset_weights")]
            assert out[key].shape == (2, *hw) and out[key].dtype == torch.float32
            assert (out[key] * (1 - weights) == 0).all()
            assert out[key][0].abs().max() < hw[0] and out[key][1].abs().max() < hw[1]
        assert out["depth"].shape == (1, *hw) and out["depth"].dtype == torch.float32
        assert 0 <= out["depth"].min() and out["depth"].max() <= 88 / 0.5
        assert out["depth_valid"].dtype == torch.bool
        assert (out["depth_valid"] == (out["depth"] > 0)).all()
        if fmt == SEMKITTI:  # sparse labels: most pixels unlabelled and without depth
            assert (out["sem_seg"] == 255).float().mean() > 0.5
    for record in records:
        out = evaluate(record)
        assert out["image"].shape == (3, SMALL[2], SMALL[3])


def test_sampler_never_draws_a_last_frame(dvps_roots):
    records = load_dvps_split(str(dvps_roots[CITYSCAPES]), "train", CITYSCAPES)
    sampler = FramePairTrainingSampler(records, seed=3)
    drawn = list(itertools.islice(iter(sampler), 200))
    pairs = {i for i, r in enumerate(records) if r["next_frame"] is not None}
    assert set(drawn) == pairs and len(pairs) == SMALL[0] * (SMALL[1] - 1)
    with pytest.raises(ValueError, match="None of the 1 training frames has a next frame"):
        FramePairTrainingSampler([records[-1]])


def test_train_loader_yields_frame_pair_batches(dvps_roots):
    name = "test_loader_cityscapes_train"
    register_dvps_dataset(name, str(dvps_roots[CITYSCAPES]), "train", CITYSCAPES)
    cfg = _cfg(name)
    cfg.SOLVER.IMS_PER_BATCH = 3
    cfg.DATALOADER.NUM_WORKERS = 0
    batch = next(iter(build_dvps_train_loader(cfg)))
    assert len(batch) == 3
    for sample in batch:
        assert sample["next_frame"]["frame_index"] == sample["frame_index"] + 1
        assert sample["next_image"].shape == sample["image"].shape == (3, 48, 96)


def test_mixed_formats_in_one_mapper_are_rejected(dvps_roots):
    register_dvps_dataset("test_mix_cs", str(dvps_roots[CITYSCAPES]), "train", CITYSCAPES)
    register_dvps_dataset("test_mix_sk", str(dvps_roots[SEMKITTI]), "train", SEMKITTI)
    cfg = _cfg("test_mix_cs")
    cfg.DATASETS.TRAIN = ("test_mix_cs", "test_mix_sk")
    with pytest.raises(ValueError, match="differ in metadata 'dataset_format'"):
        DVPSDatasetMapper(cfg, is_train=True)


def test_unlabelled_pixels_get_the_configured_ignore_value(dvps_roots):
    name = "test_ignore_value_semkitti"
    register_dvps_dataset(name, str(dvps_roots[SEMKITTI]), "train", SEMKITTI)
    cfg = _cfg(name)
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 254
    cfg.INPUT.MIN_SCALE = cfg.INPUT.MAX_SCALE = 1.0
    cfg.INPUT.CROP.SIZE = (80, 128)  # larger than the 64x128 frames: padding too
    out = DVPSDatasetMapper(cfg, is_train=True)(DatasetCatalog.get(name)[0])
    sem = out["sem_seg"]
    assert set(sem.unique().tolist()) - set(range(19)) == {254}
    assert (sem[64:] == 254).all() and (out["sem_seg_weights"][sem == 254] == 0).all()
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 18
    with pytest.raises(ValueError, match="IGNORE_VALUE=18 is a class id"):
        DVPSDatasetMapper(cfg, is_train=True)
