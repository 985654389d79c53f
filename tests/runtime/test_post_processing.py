"""panoptic_depth_inference against Detectron2's Panoptic-DeepLab post-processing; depth stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from detectron2.projects.panoptic_deeplab.post_processing import (
    find_instance_center,
    get_panoptic_segmentation,
    group_pixels,
)

from panoptic_depthlab.runtime import post_processing
from panoptic_depthlab.runtime.post_processing import find_centers, panoptic_depth_inference

# Detectron2's group_pixels calls torch.meshgrid without indexing=.
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

THING_IDS = tuple(range(11, 19))  # Cityscapes
STUFF_IDS = tuple(range(11))
SIZES = [(3, 7), (9, 13), (16, 16), (31, 47), (40, 64), (64, 96)]


def random_case(seed: int, height: int, width: int) -> tuple[tuple, dict]:
    """Random predictions ((sem_seg, center_heatmap, offsets, depth), parameters).

    Stuff blocks of 4x4 pixels (some below stuff_area), rectangles of thing classes with 10%
    label noise, Gaussian center peaks (sometimes quantized into plateaus, sometimes all below
    the threshold), offsets to each rectangle's center (sometimes integer, hence distance ties),
    depth with invalid pixels (0, negative, inf, nan).
    """
    g = torch.Generator().manual_seed(seed)

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=g))

    stuff = torch.tensor(STUFF_IDS)[
        torch.randint(0, 4, (height // 4 + 1, width // 4 + 1), generator=g)
    ]
    sem = stuff.repeat_interleave(4, 0).repeat_interleave(4, 1)[:height, :width].clone()
    offsets = torch.randn(2, height, width, generator=g)
    heatmap = 0.05 * torch.rand(height, width, generator=g)
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    integer_offsets = randint(0, 2) == 1
    for _ in range(randint(1, 8)):
        top, left = randint(0, height), randint(0, width)
        bottom, right = min(height, top + randint(1, 20)), min(width, left + randint(1, 20))
        cy, cx = randint(top, bottom), randint(left, right)
        cls = THING_IDS[randint(0, 3)]  # few classes: more vote ties
        sem[top:bottom, left:right] = cls
        offsets[0, top:bottom, left:right] = cy - y[top:bottom] + offsets[0, top:bottom, left:right]
        offsets[1, top:bottom, left:right] = (
            cx - x[:, left:right] + offsets[1, top:bottom, left:right]
        )
        peak = 0.2 + 0.8 * float(torch.rand(1, generator=g))
        heatmap = torch.maximum(heatmap, peak * torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 8))
    noise = torch.rand(height, width, generator=g) < 0.1
    sem[noise] = torch.tensor(THING_IDS)[torch.randint(0, 3, (int(noise.sum()),), generator=g)]
    if integer_offsets:
        offsets = offsets.round()
    if randint(0, 2) == 1:
        heatmap = (heatmap * 5).round() / 5  # plateaus: equal neighbours survive NMS together
    if randint(0, 6) == 0:
        heatmap = heatmap * 0.1  # no center above the threshold
    depth = 80 * torch.rand(height, width, generator=g)
    invalid = torch.tensor([0.0, -1.0, float("inf"), float("nan")])
    mask = torch.rand(height, width, generator=g) < 0.1
    depth[mask] = invalid[torch.randint(0, 4, (int(mask.sum()),), generator=g)]
    params = dict(
        thing_ids=THING_IDS,
        label_divisor=1000,
        stuff_area=randint(0, 40),
        void_label=(-1, 255)[randint(0, 2)],
        threshold=0.3,
        nms_kernel=(1, 3, 5, 7)[randint(0, 4)],
        top_k=min(height * width, randint(2, 10)),
    )
    return (sem[None], heatmap[None], offsets, depth), params


def lattice_case(seed: int) -> tuple[tuple, dict]:
    """Many ties: all pixels are things of 2 classes (random 50/50, so class votes tie), centers on
    a lattice of peaks with 3 possible scores (top_k cuts through equal scores), integer offsets
    of -1, 0 or 1 (many pixels equidistant from 2 or 4 centers).
    """
    g = torch.Generator().manual_seed(seed)
    height, width, step = 23, 37, 4
    sem = torch.tensor(THING_IDS[:2])[torch.randint(0, 2, (1, height, width), generator=g)]
    heatmap = torch.zeros(1, height, width)
    peaks = heatmap[0, 1::step, 2::step]
    peaks[:] = torch.tensor([0.6, 0.8, 1.0])[torch.randint(0, 3, peaks.shape, generator=g)]
    offsets = torch.randint(-1, 2, (2, height, width), generator=g).float()
    params = dict(thing_ids=THING_IDS, label_divisor=1000, stuff_area=0, void_label=-1)
    params.update(threshold=0.5, nms_kernel=3, top_k=int(torch.randint(20, 60, (1,), generator=g)))
    return (sem, heatmap, offsets), params


def bisector_case(seed: int) -> tuple[tuple, dict]:
    """Near ties by rounding: every pixel (a thing of class 11 or 12) points to a random point of
    the perpendicular bisector of two random centers, rounded to float32.
    """
    g = torch.Generator().manual_seed(seed)
    height, width, num_centers = 48, 64, 8
    heatmap = torch.zeros(1, height, width)
    flat = torch.randperm(height * width, generator=g)[:num_centers]
    heatmap.view(-1)[flat] = 0.5 + 0.5 * torch.rand(num_centers, generator=g)
    centers = torch.stack((flat // width, flat % width), 1).double()
    first, second = torch.randint(0, num_centers, (2, height * width), generator=g)
    middle = (centers[first] + centers[second]) / 2
    normal = (centers[second] - centers[first]).flip(1) * torch.tensor(
        [-1.0, 1.0], dtype=torch.float64
    )
    normal = normal / normal.norm(dim=1, keepdim=True).clamp(min=1e-9)
    along = 60 * torch.rand(height * width, 1, generator=g, dtype=torch.float64) - 30
    locations = (middle + along * normal).float().T.reshape(2, height, width)
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    offsets = locations - torch.stack((y, x)).float()
    sem = torch.randint(11, 13, (1, height, width), generator=g)
    params = dict(thing_ids=THING_IDS, label_divisor=1000, stuff_area=0, void_label=-1)
    params.update(threshold=0.1, nms_kernel=3, top_k=50)
    return (sem, heatmap, offsets), params


def detectron2_panoptic(sem_seg, center_heatmap, offsets, **params) -> torch.Tensor:
    """Detectron2's panoptic map (H, W)."""
    return get_panoptic_segmentation(sem_seg, center_heatmap, offsets, **params)[0][0]


@pytest.mark.parametrize("seed", range(60))
def test_random_cases_match_detectron2(seed):
    (sem, heatmap, offsets, depth), params = random_case(seed, *SIZES[seed % len(SIZES)])
    panoptic, segments = panoptic_depth_inference(sem, heatmap, offsets, depth, **params)
    expected = detectron2_panoptic(sem, heatmap, offsets, **params)
    assert panoptic.dtype == torch.int64
    assert torch.equal(panoptic, expected)

    ids, areas = expected.unique(return_counts=True)
    kept = ids != params["void_label"]
    assert [s["id"] for s in segments] == ids[kept].tolist()
    assert [s["area"] for s in segments] == areas[kept].tolist()
    for s in segments:
        assert s["category_id"] == s["id"] // 1000
        assert s["isthing"] == (s["category_id"] in THING_IDS)


@pytest.mark.parametrize("seed", range(6))
def test_lattice_ties_match_detectron2(seed):
    (sem, heatmap, offsets), params = lattice_case(seed)
    panoptic, _ = panoptic_depth_inference(sem, heatmap, offsets, None, **params)
    assert torch.equal(panoptic, detectron2_panoptic(sem, heatmap, offsets, **params))


@pytest.mark.parametrize("seed", range(4))
def test_bisector_near_ties_match_detectron2(seed):
    (sem, heatmap, offsets), params = bisector_case(seed)
    panoptic, _ = panoptic_depth_inference(sem, heatmap, offsets, None, **params)
    assert torch.equal(panoptic, detectron2_panoptic(sem, heatmap, offsets, **params))


@pytest.mark.parametrize("seed", range(8))
def test_chunked_distances_match_detectron2(seed, monkeypatch):
    monkeypatch.setattr(post_processing, "_MAX_DISTANCE_ELEMENTS", 40)
    (sem, heatmap, offsets, _), params = random_case(seed, 40, 64)
    panoptic, _ = panoptic_depth_inference(sem, heatmap, offsets, None, **params)
    assert torch.equal(panoptic, detectron2_panoptic(sem, heatmap, offsets, **params))


@pytest.mark.parametrize("variant", ["small_divisor", "sparse_labels", "no_things", "float64"])
def test_unusual_inputs_match_detectron2(variant):
    """Ids that collide (label_divisor 2), negative and huge labels, no thing class, float64."""
    for seed in range(10):
        (sem, heatmap, offsets, depth), params = random_case(seed, 31, 47)
        if variant == "small_divisor":
            params["label_divisor"] = 2
        elif variant == "sparse_labels":
            sem = sem * 1_000_003 - 5
            params["thing_ids"] = tuple(t * 1_000_003 - 5 for t in THING_IDS)
            params["label_divisor"] = 7
        elif variant == "no_things":
            params["thing_ids"] = ()
        else:
            heatmap, offsets, depth = heatmap.double(), offsets.double(), depth.double()
        panoptic, segments = panoptic_depth_inference(sem, heatmap, offsets, depth, **params)
        expected = detectron2_panoptic(sem, heatmap, offsets, **params)
        assert torch.equal(panoptic, expected)
        ids, areas = expected.unique(return_counts=True)
        kept = ids != params["void_label"]
        assert [(s["id"], s["area"]) for s in segments] == list(
            zip(ids[kept].tolist(), areas[kept].tolist(), strict=True)
        )


@pytest.mark.parametrize("seed", range(24))
def test_find_centers_matches_detectron2(seed):
    """The oracle is Detectron2's find_instance_center (projects/panoptic_deeplab/
    post_processing.py), which this module no longer imports: quantized scores make plateaus
    and ties at the k-th score, small top_k cuts them, and some maps have no score above the
    threshold."""
    g = torch.Generator().manual_seed(seed)
    height, width = (int(v) for v in torch.randint(2, 40, (2,), generator=g))
    heatmap = torch.rand(1, height, width, generator=g)
    if seed % 3 == 0:
        heatmap = (heatmap * 8).floor() / 8  # plateaus and equal scores
    if seed % 5 == 0:
        heatmap = heatmap * 0.1  # nothing above the threshold
    nms_kernel = (1, 3, 5, 7)[seed % 4]
    top_k = int(torch.randint(1, height * width + 1, (1,), generator=g))
    expected = find_instance_center(heatmap.clone(), 0.1, nms_kernel, top_k)
    assert torch.equal(find_centers(heatmap, 0.1, nms_kernel, top_k), expected)


def test_torch_mode_returns_the_smallest_most_frequent_value():
    """The tie rule of Detectron2's class vote that _instance_ids reproduces."""
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        values = torch.randint(11, 15, (int(torch.randint(1, 40, (1,), generator=g)),), generator=g)
        counts = torch.bincount(values - 11)
        assert torch.mode(values).values == 11 + counts.argmax()  # argmax: first maximum


def test_no_center_leaves_things_void():
    (sem, heatmap, offsets, _), params = random_case(0, 31, 47)
    params = {**params, "stuff_area": 0, "void_label": -1}
    panoptic, segments = panoptic_depth_inference(sem, heatmap * 0, offsets, None, **params)
    is_thing = torch.isin(sem[0], torch.tensor(THING_IDS))
    assert is_thing.any() and (panoptic[is_thing] == -1).all()
    assert torch.equal(panoptic[~is_thing], sem[0][~is_thing] * 1000)
    assert not any(s["isthing"] for s in segments)
    assert torch.equal(panoptic, detectron2_panoptic(sem, heatmap * 0, offsets, **params))


def test_no_thing_pixel():
    (sem, heatmap, offsets, _), params = random_case(1, 16, 16)
    sem = sem.clamp(max=10)
    panoptic, _ = panoptic_depth_inference(sem, heatmap, offsets, None, **params)
    assert torch.equal(panoptic, detectron2_panoptic(sem, heatmap, offsets, **params))


def test_class_vote_tie_takes_smallest_class():
    """Two instances with 2 + 2 pixels of classes 13 and 12: both become class 12 (torch.mode)."""
    sem = torch.tensor([[[13, 12, 0, 12, 13], [12, 13, 0, 13, 12]]])
    heatmap = torch.zeros(1, 2, 5)
    heatmap[0, 0, 0] = heatmap[0, 0, 4] = 1.0
    offsets = torch.zeros(2, 2, 5)
    offsets[1, :, :2] = -torch.arange(2.0)  # left pixels to (y, 0), right ones to (y, 4)
    offsets[1, :, 3:] = 4 - torch.arange(3.0, 5.0)
    params = dict(thing_ids=THING_IDS, label_divisor=1000, stuff_area=1, void_label=-1)
    params.update(threshold=0.5, nms_kernel=3, top_k=4)
    panoptic, _ = panoptic_depth_inference(sem, heatmap, offsets, None, **params)
    expected = torch.tensor([[12001, 12001, 0, 12002, 12002], [12001, 12001, 0, 12002, 12002]])
    assert torch.equal(panoptic, expected)
    assert torch.equal(panoptic, detectron2_panoptic(sem, heatmap, offsets, **params))


def test_rounding_tie_in_detectron2_norm():
    """Pixel (28, 19) points to (28.5489.., 19.2482..): Detectron2's norms to centers (25, 36) and
    (45, 24) are equal (first center wins) while dy * dy + dx * dx favours the second one.
    """
    sem = torch.zeros(1, 48, 48, dtype=torch.int64)
    heatmap = torch.zeros(1, 48, 48)
    offsets = torch.zeros(2, 48, 48)
    heatmap[0, 25, 36] = heatmap[0, 45, 24] = 1.0
    sem[0, 28, 19] = sem[0, 25, 35] = sem[0, 45, 25] = 13
    offsets[:, 28, 19] = torch.tensor([28.548938751220703, 19.24822998046875]) - torch.tensor(
        [28.0, 19.0]
    )
    offsets[1, 25, 35], offsets[1, 45, 25] = 1.0, -1.0
    params = dict(thing_ids=THING_IDS, label_divisor=1000, stuff_area=0, void_label=-1)
    params.update(threshold=0.5, nms_kernel=3, top_k=4)
    panoptic, _ = panoptic_depth_inference(sem, heatmap, offsets, None, **params)
    assert torch.equal(panoptic, detectron2_panoptic(sem, heatmap, offsets, **params))


@pytest.mark.parametrize("contiguous_centers", [False, True])
def test_rounding_tie_for_a_lone_pixel(contiguous_centers):
    """Detectron2's norms to centers (9, 63) and (46, 39) of location (1.4288.., 10.8069..) are
    equal; torch.norm over one column of differences can reduce them with another kernel (with
    contiguous centers on this CPU), making the second center strictly nearer.
    """
    heatmap = torch.zeros(48, 64)
    heatmap[9, 63] = heatmap[46, 39] = 1.0
    centers = heatmap.nonzero()  # as find_instance_center
    centers = centers.contiguous() if contiguous_centers else centers
    offsets = torch.zeros(2, 48, 64)
    offsets[:, 1, 10] = torch.tensor([1.4288482666015625, 10.80697250366211]) - torch.tensor(
        [1.0, 10.0]
    )
    pixel_y, pixel_x = torch.tensor([1]), torch.tensor([10])
    expected = group_pixels(centers, offsets)[0, pixel_y, pixel_x] - 1
    nearest = post_processing.nearest_center(centers, offsets, pixel_y, pixel_x)
    assert torch.equal(nearest, expected)


def test_hand_built_case():
    """Two cars and a person, road (all depths 0), sidewalk, and a 2-pixel stuff region (void)."""
    road, sidewalk, building, person, car = 0, 1, 2, 11, 13
    r, s, b, p, c = road, sidewalk, building, person, car
    sem = torch.tensor(
        [
            [r, r, r, r, s, s, s, s, s, s],
            [r, c, c, r, s, p, p, s, c, s],
            [r, c, c, r, s, p, p, s, c, s],
            [r, r, b, b, s, s, s, s, s, s],
        ]
    )[None]
    heatmap = torch.zeros(1, 4, 10)
    heatmap[0, 1, 1], heatmap[0, 1, 8], heatmap[0, 2, 6] = 0.9, 0.7, 0.8
    offsets = torch.zeros(2, 4, 10)
    instances = {  # center: pixels
        (1, 1): [(1, 1), (1, 2), (2, 1), (2, 2)],
        (1, 8): [(1, 8), (2, 8)],
        (2, 6): [(1, 5), (1, 6), (2, 5), (2, 6)],
    }
    for (cy, cx), pixels in instances.items():
        for yy, xx in pixels:
            offsets[:, yy, xx] = torch.tensor([cy - yy, cx - xx], dtype=torch.float32)
    nan, inf = float("nan"), float("inf")
    depth = torch.tensor(
        [
            [0, 0, 0, 0, 10, 20, 30, inf, 0, 40],
            [0, 5, 5, 0, 50, 1, 2, 60, 3, 70],
            [0, 7, nan, 0, 80, 4, 10, 90, -1, nan],
            [0, 0, 99, 99, 1, 2, 3, 4, 5, 6],
        ]
    )
    params = dict(thing_ids=THING_IDS, label_divisor=1000, stuff_area=3, void_label=-1)
    params.update(threshold=0.5, nms_kernel=3, top_k=10)
    panoptic, segments = panoptic_depth_inference(sem, heatmap, offsets, depth, **params)

    v, R, S, P, C1, C2 = -1, 0, 1000, 11001, 13001, 13002  # centers in raster order: C1, C2, P
    expected = torch.tensor(
        [
            [R, R, R, R, S, S, S, S, S, S],
            [R, C1, C1, R, S, P, P, S, C2, S],
            [R, C1, C1, R, S, P, P, S, C2, S],
            [R, R, v, v, S, S, S, S, S, S],
        ]
    )
    assert torch.equal(panoptic, expected)
    assert torch.equal(panoptic, detectron2_panoptic(sem, heatmap, offsets, **params))

    def info(pid, cat, thing, area, valid, mean, median, center=None):
        segment = dict(id=pid, category_id=cat, isthing=thing, area=area,
                       depth_valid_pixels=valid, depth_mean=mean, depth_median=median)  # fmt: skip
        return segment if center is None else {**segment, "center": center}

    expected_segments = [
        info(R, road, False, 10, 0, nan, nan),
        info(S, sidewalk, False, 18, 15, 471 / 15, 20.0),  # odd count
        info(P, person, True, 4, 4, 4.25, 3.0, [2, 6]),  # even count: (2 + 4) / 2
        info(C1, car, True, 4, 3, 17 / 3, 5.0, [1, 1]),
        info(C2, car, True, 2, 1, 3.0, 3.0, [1, 8]),
    ]
    assert len(segments) == len(expected_segments)
    for got, want in zip(segments, expected_segments, strict=True):
        assert got.keys() == want.keys()
        for key in ("id", "category_id", "isthing", "area", "depth_valid_pixels", "center"):
            if key not in want:
                continue
            assert got[key] == want[key] and type(got[key]) is type(want[key]), key
        for key in ("depth_mean", "depth_median"):
            assert isinstance(got[key], float)
            if math.isnan(want[key]):
                assert math.isnan(got[key]), key
            else:
                assert got[key] == pytest.approx(want[key], rel=1e-12), key


def test_depth_statistics_match_numpy():
    (sem, heatmap, offsets, depth), params = random_case(3, 64, 96)
    panoptic, segments = panoptic_depth_inference(sem, heatmap, offsets, depth, **params)
    pan, dep = panoptic.numpy(), depth.numpy()
    valid = np.isfinite(dep) & (dep > 0)
    assert len(segments) > 3
    for s in segments:
        values = dep[(pan == s["id"]) & valid]
        assert s["depth_valid_pixels"] == values.size
        if values.size == 0:
            assert math.isnan(s["depth_mean"]) and math.isnan(s["depth_median"])
            continue
        assert s["depth_median"] == float(np.median(values))
        assert s["depth_mean"] == pytest.approx(float(np.mean(values.astype(np.float64))))


def test_without_depth_no_depth_keys():
    (sem, heatmap, offsets, _), params = random_case(4, 16, 16)
    _, segments = panoptic_depth_inference(sem, heatmap, offsets, None, **params)
    assert segments
    keys = {"id", "category_id", "isthing", "area"}
    assert all(s.keys() == keys | ({"center"} if s["isthing"] else set()) for s in segments)


def test_shape_errors():
    (sem, heatmap, offsets, depth), params = random_case(5, 9, 13)
    with pytest.raises(ValueError, match="offsets"):
        panoptic_depth_inference(sem, heatmap, offsets[:1], depth, **params)
    with pytest.raises(ValueError, match="depth"):
        panoptic_depth_inference(sem, heatmap, offsets, depth[None], **params)
