"""Exact ViP-DeepLab targets on tiny hand-built panoptic maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from panoptic_depthlab.data import DVPSTargetGenerator
from panoptic_depthlab.data.target_generator import label_segments

IGNORE, DIV = 255, 1000
ROAD, SIDEWALK, PERSON, CAR = 0, 1, 11, 13
SIGMA = 2.0


def pid(cls: int, inst: int = 0) -> int:
    return cls * DIV + inst


@pytest.fixture
def generator() -> DVPSTargetGenerator:
    return DVPSTargetGenerator(
        thing_ids=range(11, 19),
        ignore_label=IGNORE,
        label_divisor=DIV,
        sigma=SIGMA,
        small_instance_area=30,
        small_instance_weight=3.0,
    )


@pytest.fixture
def frame_t() -> np.ndarray:
    pan = np.full((24, 32), pid(ROAD), np.int32)
    pan[:, 28:] = pid(SIDEWALK)
    pan[0, :] = pid(IGNORE)
    pan[2:6, 3:9] = pid(CAR, 1)  # 24 px, mean (3.5, 5.5) -> center (4, 6): small
    pan[10:16, 14:20] = pid(PERSON, 2)  # 36 px, mean (12.5, 16.5) -> center (12, 16)
    pan[18:21, 0:3] = pid(PERSON)  # crowd
    return pan


def test_label_segments(frame_t):
    ids, index, areas = label_segments(frame_t, DIV)
    assert ids.tolist() == [pid(ROAD), pid(SIDEWALK), pid(PERSON), 11002, 13001, pid(IGNORE)]
    assert (ids[index] == frame_t).all()
    assert areas.tolist() == [(frame_t == i).sum() for i in ids]


def test_center_location_and_peak(generator, frame_t):
    center = generator(frame_t, frame_t)["center"].numpy()
    assert np.argwhere(center == 1).tolist() == [[4, 6], [12, 16]]
    assert center[4, 7] == pytest.approx(math.exp(-1 / (2 * SIGMA**2)))
    assert center[6, 8] == pytest.approx(math.exp(-8 / (2 * SIGMA**2)))
    # window 6 * sigma + 3 = 15: radius 7 around (12, 16), nothing beyond
    assert center[12, 23] == pytest.approx(math.exp(-49 / (2 * SIGMA**2)))
    assert center[12, 24] == 0 and center[20, 16] == 0
    assert center[19, 1] == 0  # no center for the crowd region


def test_overlapping_gaussians_merge_by_max(generator):
    pan = np.full((20, 20), pid(ROAD), np.int32)
    pan[5, 5] = pid(CAR, 1)
    pan[5, 8] = pid(CAR, 2)
    center = generator(pan, pan)["center"].numpy()
    g = lambda d2: math.exp(-d2 / (2 * SIGMA**2))  # noqa: E731
    assert center[5, 6] == pytest.approx(g(1))  # max(g(1), g(4))
    assert center[5, 7] == pytest.approx(g(1))  # max(g(4), g(1))
    assert center[5, 5] == center[5, 8] == 1


def test_offset_at_chosen_pixels(generator, frame_t):
    t = generator(frame_t, frame_t)
    offset, weights = t["offset"].numpy(), t["offset_weights"].numpy()
    assert offset[:, 2, 3].tolist() == [2, 3]  # center (4, 6) - pixel (2, 3)
    assert offset[:, 15, 19].tolist() == [-3, -3]  # center (12, 16) - pixel (15, 19)
    assert offset[:, 1, 1].tolist() == [0, 0] and weights[0, 1, 1] == 0  # stuff
    assert offset[:, 19, 1].tolist() == [0, 0] and weights[0, 19, 1] == 0  # crowd
    assert weights.sum() == 24 + 36
    assert t["offset"].shape == (2, 24, 32) and weights.shape == (1, 24, 32)


def test_semantic_and_small_instance_weights(generator, frame_t):
    t = generator(frame_t, frame_t)
    sem, w = t["sem_seg"].numpy(), t["sem_seg_weights"].numpy()
    assert sem.dtype == np.int64
    assert (sem == frame_t // DIV).all()
    assert w[0, 5] == 0 and sem[0, 5] == IGNORE  # ignore
    assert w[3, 4] == 3  # car, 24 px < 30
    assert w[12, 16] == 1  # person, 36 px
    assert w[19, 1] == 1 and sem[19, 1] == PERSON  # crowd: labelled, normal weight
    assert w[10, 30] == 1  # stuff


def test_center_weights_and_crowd(generator, frame_t):
    cw = generator(frame_t, frame_t)["center_weights"].numpy()[0]
    assert cw[0].sum() == 0  # ignore row
    assert cw[19, 1] == 0  # crowd
    assert cw[5, 20] == 1 and cw[10, 30] == 1 and cw[3, 4] == 1  # road, sidewalk, car
    assert cw.sum() == 24 * 32 - 32 - 9


def test_next_offsets_for_moved_and_new_instances(generator, frame_t):
    nxt = np.full_like(frame_t, pid(ROAD))
    nxt[3:7, 5:11] = pid(CAR, 1)  # the car moved by (+1, +2)
    nxt[20:23, 25:28] = pid(PERSON, 7)  # appeared
    nxt[10:12, 0:2] = pid(CAR, 2)  # instance 2 exists in t, but as a person: a new object
    nxt[14:16, 14:16] = pid(PERSON)  # crowd
    t = generator(frame_t, nxt)
    off, w = t["next_offset"].numpy(), t["next_offset_weights"].numpy()[0]
    assert off[:, 3, 5].tolist() == [1, 1]  # frame-t center (4, 6) - pixel (3, 5)
    assert off[:, 6, 10].tolist() == [-2, -4]
    assert w[3:7, 5:11].all() and w.sum() == 24
    assert off[:, 21, 26].tolist() == [0, 0] and w[21, 26] == 0
    assert w[10, 0] == 0 and w[14, 14] == 0


def test_no_instances(generator):
    pan = np.full((8, 8), pid(ROAD), np.int32)
    t = generator(pan, pan)
    assert t["center"].sum() == 0 and t["offset_weights"].sum() == 0
    assert t["next_offset_weights"].sum() == 0 and t["center_weights"].sum() == 64
