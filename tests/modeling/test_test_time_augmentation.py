"""Test-time augmentation (TEST.AUG): views, un-flipping, rescaling, and equality with plain
inference where the views cannot change anything."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from panoptic_depthlab.data import register_dvps_dataset
from panoptic_depthlab.data.target_generator import DVPSTargetGenerator
from panoptic_depthlab.modeling import PanopticDepthLab
from panoptic_depthlab.modeling.test_time_augmentation import TestTimeAugmentation, view_to_frame
from tests.conftest import small_model_cfg

NAME = "test_tta_cityscapes_val"


@pytest.fixture(scope="module")
def frames(dvps_roots) -> list[dict]:
    """The 3 frames (64x128) of the first synthetic Cityscapes-DVPS val sequence, as model
    inputs."""
    register_dvps_dataset(NAME, str(dvps_roots["cityscapes_dvps"]), "val", "cityscapes_dvps")
    records = sorted(DatasetCatalog.get(NAME), key=lambda r: (r["sequence_id"], r["frame_index"]))
    records = [r for r in records if r["sequence_id"] == records[0]["sequence_id"]]
    return [
        {"image": torch.from_numpy(cv2.imread(r["file_name"])[..., ::-1].copy()).permute(2, 0, 1)}
        for r in records
    ]


def build(tta: dict | None, model_class=None) -> PanopticDepthLab:
    """The small test model (seed 0 weights), eval mode, with ``TEST.AUG`` keys set."""
    cfg = small_model_cfg(NAME)
    if tta is not None:
        cfg.TEST.AUG.ENABLED = True
        for key, value in tta.items():
            cfg.TEST.AUG[key] = value
    torch.manual_seed(0)
    model = build_model(cfg) if model_class is None else model_class(cfg)
    return model.eval()


def assert_same_outputs(a: dict, b: dict) -> None:
    assert torch.equal(a["sem_seg"], b["sem_seg"])
    assert torch.equal(a["depth"], b["depth"])
    assert torch.equal(a["panoptic_seg"][0], b["panoptic_seg"][0])
    assert a["panoptic_seg"][1] == b["panoptic_seg"][1]


# --- un-flipping and rescaling, on hand-made maps --------------------------------------------


def test_view_to_frame_unflips_and_negates_x_offsets():
    y = torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]])
    x = torch.tensor([[10.0, 20, 30, 40], [50, 60, 70, 80]])
    maps = {
        "offset": torch.stack([y, x])[None],
        "next_offset": torch.stack([-y, x + 1])[None],
        "center": y[None, None],
        "depth": x[None, None],
    }
    out = view_to_frame(maps, (2, 4), flipped=True)
    assert out["offset"][0, 0].tolist() == [[4, 3, 2, 1], [8, 7, 6, 5]]
    assert out["offset"][0, 1].tolist() == [[-40, -30, -20, -10], [-80, -70, -60, -50]]
    assert out["next_offset"][0, 0].tolist() == [[-4, -3, -2, -1], [-8, -7, -6, -5]]
    assert out["next_offset"][0, 1].tolist() == [[-41, -31, -21, -11], [-81, -71, -61, -51]]
    assert out["center"][0, 0].tolist() == [[4, 3, 2, 1], [8, 7, 6, 5]]  # not negated
    assert out["depth"][0, 0].tolist() == [[40, 30, 20, 10], [80, 70, 60, 50]]
    unflipped = view_to_frame(maps, (2, 4), flipped=False)
    assert all(unflipped[k] is maps[k] for k in maps)  # the frame's own view: untouched


def test_view_to_frame_rescales_offsets_per_axis():
    # a (2, 4) view of a (4, 12) frame: 2x taller, 3x wider; constant maps resize exactly
    maps = {
        "offset": torch.tensor([2.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 2, 4),
        "depth": torch.full((1, 1, 2, 4), 7.5),
    }
    out = view_to_frame(maps, (4, 12), flipped=False)
    assert out["offset"].shape == (1, 2, 4, 12)
    assert out["offset"][0, 0].unique().tolist() == [4.0]
    assert out["offset"][0, 1].unique().tolist() == [9.0]
    assert out["depth"].unique().tolist() == [7.5]  # meters: not rescaled
    flipped = view_to_frame(maps, (4, 12), flipped=True)
    assert flipped["offset"][0, 1].unique().tolist() == [-9.0]
    assert flipped["offset"][0, 0].unique().tolist() == [4.0]


def test_views_follow_detectron2_resize_shortest_edge():
    tta = TestTimeAugmentation(min_sizes=(32, 64, 512), max_size=600, flip=True)
    assert tta.num_views == 6
    assert tta.view_sizes(64, 128) == [(32, 64), (64, 128), (300, 600)]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("MIN_SIZES", (), "TEST.AUG.MIN_SIZES=(): expected one or more shortest-edge sizes"),
        ("MIN_SIZES", (64, 0), "TEST.AUG.MIN_SIZES=(64, 0): expected one or more"),
        ("MAX_SIZE", 0, "TEST.AUG.MAX_SIZE=0: expected a positive integer"),
    ],
)
def test_bad_keys_are_named(frames, key, value, message):
    with pytest.raises(ValueError) as error:
        build({key: value})
    assert str(error.value).startswith(message)


# --- one view, no flip: plain inference bit for bit ------------------------------------------


def test_one_view_without_flip_is_plain_inference_bit_for_bit(frames):
    plain = build(None)
    single = build({"MIN_SIZES": (64,), "FLIP": False})
    single.load_state_dict(plain.state_dict())
    assert plain.tta is None and single.tta.num_views == 1
    with torch.no_grad():
        for frame in frames:
            assert_same_outputs(single([frame])[0], plain([frame])[0])
    tracked = list(single.inference_sequence(frames))
    for a, b in zip(tracked, plain.inference_sequence(frames), strict=True):
        assert_same_outputs(a, b)
    assert len(tracked) == 3


# --- multi-scale and flip with the real network ----------------------------------------------


def test_multi_scale_flip_runs_each_view_once_and_answers_at_the_original_size(frames):
    model = build({"MIN_SIZES": (32, 96), "MAX_SIZE": 1000, "FLIP": True})
    calls = []
    model.backbone.register_forward_hook(lambda m, args, out: calls.append(tuple(args[0].shape)))
    frame = dict(frames[0], height=128, width=256)  # outputs asked at 2x the input
    with torch.no_grad():
        (output,) = model([frame])
    # views from the original 128x256 frame: shortest edge 32 and 96, each with its mirror
    assert calls == [(2, 3, 32, 64), (2, 3, 96, 192)]
    assert output["sem_seg"].shape == (19, 128, 256)
    assert output["depth"].shape == (128, 256)
    assert output["panoptic_seg"][0].shape == (128, 256)
    # sem_seg: log of the averaged probabilities
    assert torch.allclose(output["sem_seg"].exp().sum(0), torch.ones(128, 256), atol=1e-5)

    calls.clear()
    outputs = list(model.inference_sequence(dict(f, height=128, width=256) for f in frames))
    assert calls == [(2, 3, 32, 64), (2, 3, 96, 192)] * 3  # backbone once per frame per view
    assert [o["panoptic_seg"][0].shape for o in outputs] == [(128, 256)] * 3
    assert all(o["depth"].shape == (128, 256) for o in outputs)


# --- flip on a mirror-equivariant model --------------------------------------------------------


class MirrorOracle(PanopticDepthLab):
    """PanopticDepthLab whose heads are an exactly mirror-equivariant function of the image.

    The image encodes a panoptic label (red: class, green: instance, blue: depth in decimeters);
    the "heads" output that label's perfect maps (made by the real target generator): one-hot
    semantic logits, center heatmap, offsets (y, x) pixels, depth, next-frame offsets to the
    previous frame's centers. Mirroring the image mirrors the maps and negates the x offsets,
    as for a perfectly trained network. Everything else (views, padding, post-processing,
    tracker) is the model's.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        meta = MetadataCatalog.get(NAME)
        self.div = meta.label_divisor
        self.generator = DVPSTargetGenerator(
            thing_ids=meta.thing_ids, ignore_label=meta.ignore_label, label_divisor=self.div
        )
        # hand the input images to _head_maps through the features (the heads ignore the key)
        self.backbone.register_forward_hook(lambda m, args, out: {**out, "image": args[0]})

    def _labels(self, features):
        """(N, H, W) panoptic ids (an instance: a connected region of one class and green
        value > 0, numbered in raster order) and (N, H, W) depth, meters."""
        pixels = (features["image"] * self.pixel_std + self.pixel_mean).round().long().numpy()
        panoptic = pixels[:, 0] * self.div
        for i, green in enumerate(pixels[:, 1]):
            count = 0
            for value in np.unique(green[green > 0]):
                n, components = cv2.connectedComponents((green == value).astype(np.uint8))
                panoptic[i] += np.where(components > 0, components + count, 0)
                count += n - 1
        return torch.from_numpy(panoptic), torch.from_numpy(pixels[:, 2]).float() / 10

    def _head_maps(self, features, previous_features):
        panoptic, depth = self._labels(features)
        previous = None if previous_features is None else self._labels(previous_features)[0]
        maps = {k: [] for k in ("sem_seg", "center", "offset", "depth", "next_offset")}
        for i in range(panoptic.shape[0]):
            label = panoptic[i].numpy()
            targets = self.generator(label, label)
            classes = torch.from_numpy(label // self.div)
            maps["sem_seg"].append(torch.nn.functional.one_hot(classes, 19).permute(2, 0, 1) * 8.0)
            maps["center"].append(targets["center"][None])
            maps["offset"].append(targets["offset"])
            maps["depth"].append(depth[i][None])
            if previous is not None:
                maps["next_offset"].append(
                    self.generator(previous[i].numpy(), label)["next_offset"]
                )
        return {k: torch.stack(v).float() for k, v in maps.items() if v}


def label_image(mirrored_pair: bool, shift: int = 0) -> torch.Tensor:
    """(3, 64, 128) image encoding a panoptic label: road, a building across the middle and
    two people side by side on the left (a wide one, 35 pixels, green 1, and a narrow one, 5
    pixels, green 2, touching it: with x offsets of the wrong sign some of the wide one's pixels
    vote nearer the narrow one's center); with ``mirrored_pair`` their mirror image on the right
    as two more people, making the image mirror-symmetric. ``shift`` moves the left pair right
    (video)."""
    image = np.zeros((3, 64, 128), np.int64)
    image[0] = 0  # road
    image[0, 5:20, 40:88] = 2  # building, symmetric about the middle
    image[2] = 100 + np.arange(64)[:, None] // 4  # depth 10..11.5 m, symmetric
    people = [(5 + shift, 39 + shift, 1), (40 + shift, 44 + shift, 2)]
    if mirrored_pair:
        people += [(127 - 39, 127 - 5, 1), (127 - 44, 127 - 40, 2)]
    for x0, x1, green in people:
        image[0, 25:50, x0 : x1 + 1] = 11  # person
        image[1, 25:50, x0 : x1 + 1] = green
    return torch.from_numpy(image).float()


@pytest.mark.parametrize("mirrored_pair", [True, False])
def test_flip_on_a_mirror_equivariant_model_is_plain_inference(frames, mirrored_pair):
    plain = build(None, MirrorOracle)
    flip = build({"MIN_SIZES": (64,), "FLIP": True}, MirrorOracle)
    image = label_image(mirrored_pair)
    if mirrored_pair:  # the image, the label it encodes and the model are mirror-symmetric
        assert torch.equal(image, image.flip(-1))
    with torch.no_grad():
        (a,), (b,) = flip([{"image": image}]), plain([{"image": image}])
    ids, segments = b["panoptic_seg"]
    people = [s for s in segments if s["category_id"] == 11]
    assert len(people) == (4 if mirrored_pair else 2)
    assert sorted(s["area"] for s in people)[-1] == 25 * 35  # the wide one is whole
    assert torch.equal(a["panoptic_seg"][0], ids)
    assert a["panoptic_seg"][1] == segments
    assert torch.equal(a["depth"], b["depth"])
    assert torch.equal(a["sem_seg"].argmax(0), b["sem_seg"].argmax(0))
    assert torch.allclose(a["sem_seg"].softmax(0), b["sem_seg"].softmax(0), atol=1e-6)

    # in a sequence the next-frame offsets are flipped back too: the left pair moves 15 pixels
    # right (with x offsets of the wrong sign most of the wide one's pixels vote nearer the
    # narrow one's previous center)
    video = [{"image": label_image(mirrored_pair, shift)} for shift in (0, 15, 30)]
    tracked = list(flip.inference_sequence(video))
    expected = list(plain.inference_sequence(video))
    for a, b in zip(tracked, expected, strict=True):
        assert torch.equal(a["panoptic_seg"][0], b["panoptic_seg"][0])
        assert a["panoptic_seg"][1] == b["panoptic_seg"][1]
    assert tracked[2]["panoptic_seg"][1] == expected[2]["panoptic_seg"][1]
    people = {s["id"] for o in tracked for s in o["panoptic_seg"][1] if s["category_id"] == 11}
    assert len(people) == (4 if mirrored_pair else 2)  # each person keeps one id
