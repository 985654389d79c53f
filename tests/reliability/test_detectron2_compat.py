"""Detectron2's own tools on our models and metadata (issue #14, item 7).

* ``Visualizer.draw_panoptic_seg`` with our metadata raised ``IndexError``: ``thing_classes``
  held the 8 thing names while segments carry contiguous ids 0..18. It now draws single-frame
  outputs, tracked outputs and ground-truth-like maps of both datasets, with the right names
  and colours.
* ``DefaultPredictor`` resized every frame to 800 px (``INPUT.MIN_SIZE_TEST`` 800) while
  ``tools/demo.py`` feeds frames at their size. The configs now say 0 (no resize), and both see
  the same image: equal outputs.
"""

from __future__ import annotations

import glob

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.utils.visualizer import GenericMask, Visualizer

from panoptic_depthlab import add_panoptic_depthlab_config
from panoptic_depthlab.data import DVPSDatasetMapper
from panoptic_depthlab.data.annotations import read_panoptic
from panoptic_depthlab.data.datasets import dvps_metadata, load_dvps_split
from panoptic_depthlab.evaluation.formats import (
    quantize_depth,
    read_depth_prediction,
    read_panoptic_prediction,
)
from panoptic_depthlab.panoptic_ids import split_panoptic
from tests.conftest import small_model_cfg
from tests.reliability.conftest import REPO, run_tool

FORMATS = ("cityscapes_dvps", "semkitti_dvps")
CONFIGS = REPO / "configs"
SHIPPED = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))
# The thing classes of each format, in train-id order, as the datasets define them.
THINGS = {
    "cityscapes_dvps": ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"],
    "semkitti_dvps": [
        "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
        "motorcyclist",
    ],
}  # fmt: skip


def _seeded_model(fmt: str) -> torch.nn.Module:
    """The tiny model with seeded random weights, arranged to output stuff (road), things
    (car, ...) and void: the semantic channels the random model favours become road and car,
    the center heatmap is lifted above the threshold, and stuff under 400 pixels is void."""
    names = MetadataCatalog.get(f"{fmt}_val").stuff_classes
    cfg = small_model_cfg(f"{fmt}_val")
    cfg.MODEL.PANOPTIC_DEEPLAB.STUFF_AREA = 400
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    order = list(range(len(names)))
    for channel, name in ((1, "road"), (2, "car")):
        target = names.index(name)
        order[channel], order[target] = order[target], order[channel]
    with torch.no_grad():
        predictor = model.sem_seg_head.predictor
        predictor.weight.copy_(predictor.weight[order].clone())
        predictor.bias.copy_(predictor.bias[order].clone())
        model.ins_embed_head.center_predictor.bias += 1.0
    return model


def _drawn(metadata, image: np.ndarray, panoptic: torch.Tensor, segments_info) -> tuple:
    """Draw with Detectron2's Visualizer; return (label texts, RGB face colours in 0..1)."""
    out = Visualizer(image, metadata).draw_panoptic_seg_predictions(panoptic, segments_info)
    texts = [t.get_text() for t in out.ax.texts]
    colors = [tuple(round(c, 6) for c in p.get_facecolor()[:3]) for p in out.ax.patches]
    return texts, colors


def _rgb01(color) -> tuple[float, ...]:
    return tuple(round(c / 255, 6) for c in color)


def _labelled(mask: np.ndarray) -> bool:
    """Whether the Visualizer can label this segment (it skips masks without a polygon)."""
    return len(GenericMask(mask.astype(np.uint8), *mask.shape).polygons) > 0


def _assert_drawn_right(meta, texts, colors, panoptic: np.ndarray, segments) -> None:
    """Every label names the class of a drawn segment, every labelled segment's class is
    written, stuff polygons have their class colour, thing polygons a jitter (norm <= 0.5) of
    their class colour (a stuff mask with holes is drawn as an image, not a polygon)."""
    expected = {
        meta.stuff_classes[s["category_id"]] for s in segments if _labelled(panoptic == s["id"])
    }
    assert set(texts) == expected
    stuff_colors = {
        _rgb01(meta.stuff_colors[s["category_id"]]) for s in segments if not s["isthing"]
    }
    thing_colors = [
        np.array(meta.thing_colors[s["category_id"]]) / 255 for s in segments if s["isthing"]
    ]
    for color in colors:
        near_thing = any(np.linalg.norm(np.array(color) - c) <= 0.5 + 1e-6 for c in thing_colors)
        assert color in stuff_colors or near_thing, color


def test_metadata_names_every_contiguous_id_as_detectron2_does():
    """Detectron2's Cityscapes panoptic metadata: thing_* and stuff_* both list all 19 classes,
    indexed by contiguous id; thing_dataset_id_to_contiguous_id names the things."""
    for fmt in FORMATS:
        meta = MetadataCatalog.get(f"{fmt}_val")
        assert len(meta.thing_classes) == len(meta.stuff_classes) == 19
        assert meta.thing_colors == meta.stuff_colors
        things = sorted(meta.thing_dataset_id_to_contiguous_id.values())
        assert things == meta.thing_ids
        assert [meta.thing_classes[i] for i in things] == THINGS[fmt]
        assert [meta.stuff_classes[i] for i in things] == THINGS[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_visualizer_draws_a_single_frame_output(fmt, dvps_roots):
    """As found: IndexError in _create_text_labels (8 thing_classes, category ids 11..18)."""
    meta = MetadataCatalog.get(f"{fmt}_val")
    record = load_dvps_split(str(dvps_roots[fmt]), "val", fmt)[0]
    rgb = cv2.imread(record["file_name"])[..., ::-1].copy()
    model = _seeded_model(fmt)
    with torch.no_grad():
        output = model([{"image": torch.from_numpy(rgb.copy()).permute(2, 0, 1)}])[0]
    panoptic, segments = output["panoptic_seg"]
    assert panoptic.shape == rgb.shape[:2]
    kinds = {s["isthing"] for s in segments}
    assert kinds == {True, False}, "the test needs a thing and a stuff segment"
    assert (panoptic == -1).any(), "and void pixels"
    texts, colors = _drawn(meta, rgb, panoptic, segments)
    _assert_drawn_right(meta, texts, colors, panoptic.numpy(), segments)
    assert "road" in texts and "car" in texts


@pytest.mark.parametrize("fmt", FORMATS)
def test_visualizer_draws_tracked_outputs(fmt, dvps_roots):
    """inference_sequence's ids (class * TRACK_LABEL_DIVISOR + track) draw by category_id."""
    meta = MetadataCatalog.get(f"{fmt}_val")
    records = load_dvps_split(str(dvps_roots[fmt]), "val", fmt)[:2]
    images = [cv2.imread(r["file_name"])[..., ::-1].copy() for r in records]
    model = _seeded_model(fmt)
    with torch.no_grad():
        outputs = list(
            model.inference_sequence(
                {"image": torch.from_numpy(im.copy()).permute(2, 0, 1)} for im in images
            )
        )
    for image, output in zip(images, outputs, strict=True):
        panoptic, segments = output["panoptic_seg"]
        assert any(s["isthing"] for s in segments)
        texts, colors = _drawn(meta, image, panoptic, segments)
        _assert_drawn_right(meta, texts, colors, panoptic.numpy(), segments)


@pytest.mark.parametrize("fmt", FORMATS)
def test_visualizer_draws_a_ground_truth_panoptic_map(fmt, dvps_roots):
    """A hand-built map in the dataset's ids (class * label_divisor + instance, void -1), drawn
    without segments_info (the Visualizer splits ids by label_divisor), and a real synthetic
    ground-truth frame."""
    meta = MetadataCatalog.get(f"{fmt}_val")
    names = meta.stuff_classes
    road, sky = names.index("road"), names.index("sky" if fmt == "cityscapes_dvps" else "building")
    car, person = names.index("car"), names.index("person")
    div = meta.label_divisor
    panoptic = torch.full((64, 128), sky * div, dtype=torch.int64)
    panoptic[32:] = road * div
    panoptic[20:50, 10:50] = car * div + 1
    panoptic[10:60, 80:100] = person * div + 2
    panoptic[:, 120:] = -1
    image = np.full((64, 128, 3), 128, np.uint8)
    texts, colors = _drawn(meta, image, panoptic, None)
    assert sorted(texts) == sorted([names[road], names[sky], "car", "person"])
    assert _rgb01(meta.stuff_colors[road]) in colors and _rgb01(meta.stuff_colors[sky]) in colors
    car_rgb = np.array(meta.thing_colors[car]) / 255
    assert any(np.linalg.norm(np.array(c) - car_rgb) <= 0.5 + 1e-6 for c in colors)

    record = load_dvps_split(str(dvps_roots[fmt]), "val", fmt)[0]
    gt = read_panoptic(record, dvps_metadata(fmt)).astype(np.int64)
    gt[gt // div == meta.ignore_label] = -1
    rgb = cv2.imread(record["file_name"])[..., ::-1].copy()
    texts, _ = _drawn(meta, rgb, torch.from_numpy(gt), None)
    present = {names[c] for c in np.unique(gt[gt >= 0] // div)}
    assert texts and set(texts) <= present


@pytest.mark.parametrize("name", SHIPPED)
def test_every_config_tests_at_the_frame_size(name):
    """DefaultPredictor's resize (ResizeShortestEdge of INPUT.MIN_SIZE_TEST) is a no-op for
    Cityscapes-DVPS and SemKITTI-DVPS frames; Detectron2's default 800 was not."""
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    default = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    cityscapes = np.zeros((1024, 2048, 3), np.uint8)
    resize = default.get_transform(cityscapes)
    assert (resize.new_h, resize.new_w) == (667, 1333)  # as found: every frame resized
    cfg.merge_from_file(str(CONFIGS / name))
    assert cfg.INPUT.MIN_SIZE_TEST == 0
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    for shape in ((1024, 2048, 3), (375, 1242, 3), (370, 1226, 3), (64, 128, 3)):
        assert isinstance(aug.get_transform(np.zeros(shape, np.uint8)), T.NoOpTransform)


def test_evaluation_mapper_keeps_the_frame_size(dvps_roots):
    """The test sizes do not touch evaluation: the eval mapper feeds frames as stored."""
    cfg = small_model_cfg("cityscapes_dvps_val")
    cfg.merge_from_file(str(CONFIGS / "synthetic" / "vip_depth_small.yaml"))
    cfg.DATASETS.TEST = ("cityscapes_dvps_val",)
    record = load_dvps_split(str(dvps_roots["cityscapes_dvps"]), "val", "cityscapes_dvps")[0]
    image = DVPSDatasetMapper(cfg, is_train=False)(record)["image"]
    stored = cv2.imread(record["file_name"])[..., ::-1]
    assert torch.equal(image, torch.from_numpy(stored.copy()).permute(2, 0, 1))


def test_default_predictor_equals_the_demo(dvps_roots, tmp_path):
    """DefaultPredictor(cfg)(bgr) on the small config gives, at the frame's size, what
    tools/demo.py writes for the same frame with the same weights (classes and depth exactly,
    the same instance segments)."""
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.merge_from_file(str(CONFIGS / "synthetic" / "vip_depth_small.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TEST = ("cityscapes_dvps_val",)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.ins_embed_head.center_predictor.bias += 1.0
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    cfg.MODEL.WEIGHTS = str(weights)
    record = load_dvps_split(str(dvps_roots["cityscapes_dvps"]), "val", "cityscapes_dvps")[0]
    bgr = cv2.imread(record["file_name"])

    as_found = cfg.clone()
    as_found.INPUT.MIN_SIZE_TEST = 800
    resize = DefaultPredictor(as_found).aug.get_transform(bgr)
    assert (resize.new_h, resize.new_w) == (667, 1333)  # the frame the model saw, as found

    output = DefaultPredictor(cfg)(bgr)
    panoptic, segments = output["panoptic_seg"]
    assert panoptic.shape == output["depth"].shape == bgr.shape[:2]
    assert any(s["isthing"] for s in segments)

    result = run_tool(
        "demo.py",
        "--config-file", CONFIGS / "synthetic" / "vip_depth_small.yaml",
        "--input", record["file_name"],
        "--output", tmp_path / "demo",
        "--opts", "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu",
        "DATASETS.TEST", "('cityscapes_dvps_val',)",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    meta = dvps_metadata("cityscapes_dvps")
    (pred_file,) = glob.glob(str(tmp_path / "demo" / "**" / "panoptic" / "*.png"), recursive=True)
    (depth_file,) = glob.glob(str(tmp_path / "demo" / "**" / "depth" / "*.png"), recursive=True)
    demo_class, demo_instance = read_panoptic_prediction([pred_file], meta)
    classes, instances = split_panoptic(
        panoptic.numpy(), meta["label_divisor"], meta["num_classes"]
    )
    np.testing.assert_array_equal(demo_class, classes)
    np.testing.assert_array_equal(
        read_depth_prediction(depth_file), quantize_depth(output["depth"].numpy())
    )
    # the same instance segments (the demo numbers them by track)
    pairs = np.unique(np.stack([instances.ravel(), demo_instance.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    assert len(np.unique(instances)) > 1
