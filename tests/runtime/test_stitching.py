"""Next-frame stitching on hand-built frames: tracked, new, vanishing and occluded instances.

Own predictions use the Cityscapes-DVPS label divisor (1000), as single-frame outputs do; the
tracker gives out ``class * TRACK_LABEL_DIVISOR + track number`` (2**32)."""

from __future__ import annotations

import random

import pytest
import torch

from panoptic_depthlab.panoptic_ids import TRACK_LABEL_DIVISOR
from panoptic_depthlab.runtime.stitching import InstanceTracker, match_instances

DIV = 1000  # own (single-frame) ids
ROAD, PERSON, CAR = 0, 11, 13
SHAPE = (20, 40)


def frame(objects: list[tuple[int, tuple[int, int, int, int], tuple[float, float] | None]]):
    """One frame's own prediction on a road, and its next-frame offsets.

    Args:
        objects: (own panoptic id, box (y0, y1, x0, x1), center (y, x) of the same object in
            the previous frame or None for a new one), painted in order (later ones in front).

    Returns:
        (panoptic (H, W), segments_info ascending by id, next_offset (2, H, W)): segment
        centers are the rounded means of the visible pixels; next offsets point from each
        pixel to the previous center, and are 0 on new objects.
    """
    panoptic = torch.full(SHAPE, ROAD * DIV, dtype=torch.int64)
    for own_id, (y0, y1, x0, x1), _ in objects:
        panoptic[y0:y1, x0:x1] = own_id
    ys, xs = torch.meshgrid(torch.arange(SHAPE[0]), torch.arange(SHAPE[1]), indexing="ij")
    next_offset = torch.zeros(2, *SHAPE)
    segments = [{"id": ROAD * DIV, "category_id": ROAD, "isthing": False}]
    for own_id, _, previous in objects:
        mask = panoptic == own_id
        if not mask.any():
            continue
        center = [round(ys[mask].float().mean().item()), round(xs[mask].float().mean().item())]
        segments.append({"id": own_id, "category_id": own_id // DIV, "isthing": True})
        segments[-1].update(center=center, area=int(mask.sum()))
        if previous is not None:
            next_offset[0][mask] = previous[0] - ys[mask].float()
            next_offset[1][mask] = previous[1] - xs[mask].float()
    segments[0]["area"] = int((panoptic == ROAD * DIV).sum())
    return panoptic, sorted(segments, key=lambda s: s["id"]), next_offset


def tracked(category: int, number: int) -> int:
    """The sequence id the tracker gives track ``number`` of ``category``."""
    return category * TRACK_LABEL_DIVISOR + number


def run(frames) -> list[tuple[torch.Tensor, list[dict]]]:
    tracker = InstanceTracker()
    return [
        tracker.update(panoptic, segments, next_offset if t > 0 else None)
        for t, (panoptic, segments, next_offset) in enumerate(frames)
    ]


def id_at(result, y: int, x: int) -> int:
    return int(result[0][y, x])


def center_of(result, segment_id: int) -> tuple[float, float]:
    return tuple(next(s["center"] for s in result[1] if s["id"] == segment_id))


def test_tracked_instance_keeps_its_id_and_a_new_one_gets_a_fresh_id():
    first = run([frame([(CAR * DIV + 1, (5, 10, 5, 12), None)])])[0]
    a = center_of(first, tracked(CAR, 1))
    # Frame 1: the car moved right; a new car, first in raster order, is numbered 1 by its own
    # prediction and the tracked car 2.
    results = run(
        [
            frame([(CAR * DIV + 1, (5, 10, 5, 12), None)]),
            frame([(CAR * DIV + 2, (6, 11, 8, 15), a), (CAR * DIV + 1, (1, 4, 25, 35), None)]),
        ]
    )
    assert id_at(results[1], 8, 10) == tracked(CAR, 1)  # the tracked car
    assert id_at(results[1], 2, 30) == tracked(CAR, 2)  # the new car
    assert [s["id"] for s in results[1][1]] == [0, tracked(CAR, 1), tracked(CAR, 2)]
    assert results[1][1][1]["area"] == 35 and results[1][1][2]["area"] == 30


def test_ids_of_vanished_instances_are_never_reused():
    a_box, b_box = (5, 10, 2, 8), (5, 10, 25, 32)
    f0 = frame([(CAR * DIV + 1, a_box, None), (CAR * DIV + 2, b_box, None)])
    b = (7, 28)  # car b's center
    f1 = frame([(CAR * DIV + 1, b_box, b)])  # car a left the view
    f2 = frame([(CAR * DIV + 1, a_box, None), (CAR * DIV + 2, b_box, b)])  # a new car where a was
    results = run([f0, f1, f2])
    car_1, car_2, car_3 = (tracked(CAR, n) for n in (1, 2, 3))
    assert (id_at(results[0], 7, 5), id_at(results[0], 7, 28)) == (car_1, car_2)
    assert [s["id"] for s in results[1][1]] == [0, car_2]
    assert id_at(results[2], 7, 28) == car_2
    assert id_at(results[2], 7, 5) == car_3  # not car_1: that id belonged to another object
    assert center_of(results[0], car_2) == b


def test_partial_occlusion_keeps_both_ids_and_full_occlusion_ends_the_track():
    back, front = CAR * DIV + 1, PERSON * DIV + 1
    f0 = frame([(back, (4, 12, 4, 20), None), (front, (4, 12, 26, 30), None)])
    car, person = (8, 12), (8, 28)
    # The person walks in front of the car (covers part of it), then hides it completely.
    f1 = frame([(back, (4, 12, 4, 20), car), (front, (4, 12, 14, 18), person)])
    f2 = frame([(front, (4, 12, 4, 20), (8, 16))])
    f3 = frame([(back, (4, 12, 4, 20), None), (front, (4, 12, 26, 30), (8, 12))])
    results = run([f0, f1, f2, f3])
    car, person = tracked(CAR, 1), tracked(PERSON, 1)
    assert id_at(results[1], 8, 6) == car and id_at(results[1], 8, 15) == person
    assert id_at(results[2], 8, 10) == person
    # The car reappears without a link to its last sighting two frames back: a fresh id.
    assert id_at(results[3], 8, 6) == tracked(CAR, 2) and id_at(results[3], 8, 28) == person


def test_class_must_agree():
    f0 = frame([(CAR * DIV + 1, (5, 10, 5, 12), None)])
    # A person whose next-frame offsets point at the car's center: not the same object.
    f1 = frame([(PERSON * DIV + 1, (5, 10, 5, 12), (7, 8))])
    results = run([f0, f1])
    assert id_at(results[1], 7, 8) == tracked(PERSON, 1)
    # The car's number 1 stays taken even though its track ended.
    f2 = frame([(CAR * DIV + 1, (5, 10, 5, 12), None)])
    assert id_at(run([f0, f1, f2])[2], 7, 8) == tracked(CAR, 2)


def test_only_the_mutual_best_match_inherits_the_id():
    f0 = frame([(CAR * DIV + 1, (4, 12, 4, 20), None)])
    car = (8, 12)
    # The car splits into two predicted instances, both pointing back to it: the larger one
    # (IoU 40/64) keeps the id, the smaller one (IoU 24/64) is new.
    f1 = frame([(CAR * DIV + 1, (4, 12, 4, 9), car), (CAR * DIV + 2, (4, 12, 9, 20), car)])
    results = run([f0, f1])
    assert id_at(results[1], 8, 15) == tracked(CAR, 1)
    assert id_at(results[1], 8, 5) == tracked(CAR, 2)


def test_equal_ious_go_to_the_smaller_id():
    f0 = frame([(CAR * DIV + 1, (4, 12, 4, 20), None)])
    f1 = frame(
        [(CAR * DIV + 1, (4, 12, 4, 12), (8, 12)), (CAR * DIV + 2, (4, 12, 12, 20), (8, 12))]
    )
    results = run([f0, f1])
    assert id_at(results[1], 8, 5) == tracked(CAR, 1) and id_at(results[1], 8, 15) == tracked(
        CAR, 2
    )
    # Own numbering reversed: the tie goes to the smaller own id, now the right segment.
    f1 = frame(
        [(CAR * DIV + 2, (4, 12, 4, 12), (8, 12)), (CAR * DIV + 1, (4, 12, 12, 20), (8, 12))]
    )
    results = run([f0, f1])
    assert id_at(results[1], 8, 15) == tracked(CAR, 1) and id_at(results[1], 8, 5) == tracked(
        CAR, 2
    )


def test_result_does_not_depend_on_segment_order():
    frames = [
        frame([(CAR * DIV + 1, (2, 6, 2, 8), None), (PERSON * DIV + 1, (10, 18, 30, 34), None)]),
        frame(
            [
                (CAR * DIV + 2, (2, 6, 4, 10), (4, 5)),
                (CAR * DIV + 1, (12, 16, 2, 9), None),
                (PERSON * DIV + 1, (10, 18, 28, 32), (14, 32)),
            ]
        ),
    ]
    expected = run(frames)
    rng = random.Random(0)
    for _ in range(5):
        shuffled = []
        for panoptic, segments, next_offset in frames:
            segments = list(segments)
            rng.shuffle(segments)
            shuffled.append((panoptic, segments, next_offset))
        for (p, s), (q, t) in zip(run(shuffled), expected, strict=True):
            assert torch.equal(p, q) and s == t


def test_void_pixels_stay_void():
    panoptic, segments, next_offset = frame([(CAR * DIV + 1, (5, 10, 5, 12), None)])
    panoptic[0, :] = -1
    segments[0]["area"] -= SHAPE[1]
    stitched, _ = InstanceTracker().update(panoptic, segments, None)
    assert (stitched[0] == -1).all() and (stitched[1:] >= 0).all()


def test_a_frame_without_segments_passes_and_ends_every_track():
    """A frame predicted all void (an untrained model can): no segments at all."""
    tracker = InstanceTracker()
    panoptic, segments, _ = frame([(CAR * DIV + 1, (5, 10, 5, 12), None)])
    tracker.update(panoptic, segments, None)
    void = torch.full(SHAPE, -1, dtype=torch.int64)
    stitched, stitched_segments = tracker.update(void, [], torch.zeros(2, *SHAPE))
    assert torch.equal(stitched, void) and stitched_segments == []
    panoptic, segments, next_offset = frame([(CAR * DIV + 1, (5, 10, 5, 12), (7.0, 8.0))])
    stitched, _ = tracker.update(panoptic, segments, next_offset)
    assert id_at((stitched, None), 7, 8) == tracked(CAR, 2)  # the track ended: a fresh id


def test_track_numbers_beyond_the_label_divisor_are_an_error():
    """With label divisor 3, class 13 holds track numbers 1 and 2 only (the default divisor,
    2**32, is out of reach: see tests/reliability/test_long_video.py)."""
    tracker = InstanceTracker(label_divisor=3)
    for boxes in ([(0, 2), (5, 7)], [(10, 12)]):
        panoptic = torch.zeros(SHAPE, dtype=torch.int64)
        segments = [{"id": 0, "category_id": 0, "isthing": False}]
        for n, (y0, y1) in enumerate(boxes, start=1):
            panoptic[y0:y1, :2] = CAR * 3 + n
            segments.append(
                {"id": CAR * 3 + n, "category_id": CAR, "isthing": True, "center": [y0, 0]}
            )
        if len(boxes) == 2:
            tracker.update(panoptic, segments, None)
    with pytest.raises(ValueError, match=r"^more than 2 tracks of class 13 in one sequence: "):
        tracker.update(panoptic, segments, None)  # no link to the previous frame


def test_match_instances():
    """Two own instances (0, 1) and three tracks (0: car, 1: car, 2: person) over 10 pixels."""
    own = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    track = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    cars = torch.tensor([CAR, CAR])  # classes of the own instances
    tracks = torch.tensor([CAR, CAR, PERSON])  # classes of the tracks
    # IoU: own 0 ~ track 0: 3/6, ~ track 1: 3/8; own 1 ~ track 1: 2/7 (~ track 2: other class).
    # Own 0 and track 0 match; own 1's best, track 1, prefers own 0 (3/8 > 2/7): no match.
    assert match_instances(own, track, cars, tracks).tolist() == [0, -1]
    # Equal IoU with two tracks: the smaller track index (the smaller id).
    own, track = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 1, 1])
    assert match_instances(own, track, cars[:1], tracks[:2]).tolist() == [0]
    # Another class only: no match.
    assert match_instances(own, track * 0 + 2, cars[:1], tracks).tolist() == [-1]


def test_every_segment_gets_a_tracked_id_whatever_the_own_numbering():
    """Stuff and things are re-encoded with TRACK_LABEL_DIVISOR (int64, beyond int32); own ids
    numbered with another divisor (SemKITTI-DVPS's 65536) give the same tracked frame."""
    panoptic, segments, _ = frame([(CAR * DIV + 1, (5, 10, 5, 12), None)])
    panoptic[:2] = 10 * DIV  # sky (stuff)
    segments[0]["area"] -= 2 * SHAPE[1]
    segments.append({"id": 10 * DIV, "category_id": 10, "isthing": False, "area": 2 * SHAPE[1]})
    stitched, stitched_segments = InstanceTracker().update(panoptic, segments, None)
    assert stitched.dtype == torch.int64
    assert sorted(stitched.unique().tolist()) == [0, tracked(10, 0), tracked(CAR, 1)]
    assert tracked(CAR, 1) == 13 * 2**32 + 1 > 2**31
    assert [(s["id"], s["category_id"]) for s in stitched_segments] == [
        (0, ROAD),
        (tracked(10, 0), 10),
        (tracked(CAR, 1), CAR),
    ]
    renumbered = panoptic // DIV * 65536 + panoptic % DIV
    other = [{**s, "id": s["id"] // DIV * 65536 + s["id"] % DIV} for s in segments]
    again, again_segments = InstanceTracker().update(renumbered, other, None)
    assert torch.equal(again, stitched) and again_segments == stitched_segments


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_the_input_map_is_left_unchanged(dtype):
    panoptic, segments, next_offset = frame([(CAR * DIV + 1, (5, 10, 5, 12), None)])
    panoptic = panoptic.to(dtype)
    before = panoptic.clone()
    stitched, _ = InstanceTracker().update(panoptic, segments, None)
    assert torch.equal(panoptic, before) and stitched.dtype == torch.int64
    assert int(stitched[7, 8]) == tracked(CAR, 1)
