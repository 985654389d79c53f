"""The tracker's memory of ended tracks (``runtime/track_memory.py``): revivals by 3-D position.

Scenes are drawn by hand: every object is a 5x5 box around its pixel centroid (u, v) with one
depth z, so its 3-D position is exact: ``x = (u - cx) z / f``, ``y = (v - cy) z / f`` with
f = FOCAL_RATIO * W = 200 px and (cx, cy) = (99.5, 29.5), the image center. An object that is
in the previous frame gets perfect next-frame offsets (to its previous center); a new or
returning object's offsets point at a decoy (another class, always in view, no depth), so
next-frame stitching never links it and only the memory can.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from panoptic_depthlab.panoptic_ids import TRACK_LABEL_DIVISOR
from panoptic_depthlab.runtime.stitching import InstanceTracker
from panoptic_depthlab.runtime.track_memory import TrackerSettings, instance_positions

H, W = 60, 200
FOCAL_RATIO = 1.0
F = FOCAL_RATIO * W
CX, CY = (W - 1) / 2, (H - 1) / 2
CAR, TRUCK, BUS, DECOY = 13, 14, 15, 9
SETTINGS = TrackerSettings(
    max_gap=3, max_distance_per_frame=1.5, appearance_weight=0.0, focal_ratio=1.0
)


def at(category: int, x: float, z: float, v: int = 30) -> tuple[int, int, int, float]:
    """``(class, u, v, z)``: an object of ``category`` at lateral position x (m, to the nearest
    column) and depth z (m), centroid row v."""
    return (category, round(CX + x * F / z), v, z)


def frame_maps(objects: dict[str, tuple], previous: dict[str, tuple] | None):
    """(panoptic, segments_info, next_offset) of one frame; ``objects``: name -> (class, u, v,
    z) in own-id order; the decoy is added first."""
    objects = {"decoy": (DECOY, 2, 2, math.nan), **objects}
    panoptic = torch.full((H, W), -1, dtype=torch.int64)
    next_offset = torch.zeros(2, H, W)
    segments = []
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    for n, (name, (category, u, v, z)) in enumerate(objects.items()):
        own = category * 1000 + n + 1
        box = (slice(max(v - 2, 0), v + 3), slice(max(u - 2, 0), u + 3))
        panoptic[box] = own
        target = previous.get(name) if previous is not None else None
        if target is None:  # new or returning: point at the decoy
            target = (DECOY, 2, 2, math.nan)
        next_offset[0][box] = target[2] - rows[box].float()
        next_offset[1][box] = target[1] - cols[box].float()
        segments.append(
            {
                "id": own,
                "category_id": category,
                "isthing": True,
                "center": [v, u],
                "depth_median": z,
            }
        )
    return panoptic, segments, next_offset


def track(frames: list[dict[str, tuple]], settings: TrackerSettings | None = SETTINGS):
    """Run the frames through one tracker. Returns per frame name -> (track id, revived_after
    or None), and the tracker's counts without the decoy's (a new id, then a link per frame)."""
    tracker = InstanceTracker(TRACK_LABEL_DIVISOR, settings=settings)
    result, previous = [], None
    for t, objects in enumerate(frames):
        panoptic, segments, next_offset = frame_maps(objects, previous)
        relabelled, out = tracker.update(panoptic, segments, next_offset if t else None)
        by_id = {s["id"]: s for s in out}
        ids = {}
        for name, (_, u, v, _) in objects.items():
            track_id = int(relabelled[v, u])
            ids[name] = (track_id, by_id[track_id].get("revived_after"))
        result.append(ids)
        previous = {"decoy": (DECOY, 2, 2, math.nan), **objects}
    counts = dict(tracker.counts)
    counts["fresh"] -= 1
    counts["links"] -= len(frames) - 1
    return result, counts


def test_instance_positions_back_project_centroids_at_median_depth():
    # two instances: pixels (10, 100), (10, 102), (12, 101) -> centroid (v, u) = (32 / 3, 101);
    # and one pixel (40, 20) without depth
    rows = torch.tensor([10, 10, 12, 40])
    cols = torch.tensor([100, 102, 101, 20])
    instance = torch.tensor([0, 0, 0, 1])
    depths = torch.tensor([20.0, float("nan")], dtype=torch.float64)
    positions = instance_positions(rows, cols, instance, depths, (H, W), FOCAL_RATIO)
    np.testing.assert_allclose(
        positions[0], [(101 - CX) * 20 / F, (32 / 3 - CY) * 20 / F, 20.0], rtol=1e-12
    )
    assert np.isnan(positions[1]).all()


@pytest.mark.parametrize("gap", [1, 3])
def test_an_object_missing_for_1_or_3_frames_gets_its_id_back(gap):
    # the car comes closer by 1 m per frame; it is hidden for `gap` frames and comes back
    # where constant velocity puts it
    frames = [{"car": at(CAR, 1.0, 20.0 - t)} for t in range(2)]
    frames += [{} for _ in range(gap)]
    frames += [{"car": at(CAR, 1.0, 20.0 - 2 - gap)}]
    ids, counts = track(frames)
    assert ids[-1]["car"] == (ids[0]["car"][0], gap)
    assert ids[0]["car"][0] == CAR * TRACK_LABEL_DIVISOR + 1
    assert counts == {"links": 1, "revivals": 1, "fresh": 1}


def test_without_memory_the_object_comes_back_with_a_new_id():
    frames = [{"car": at(CAR, 1.0, 20.0)}, {"car": at(CAR, 1.0, 19.0)}, {}]
    frames.append({"car": at(CAR, 1.0, 17.0)})
    off = TrackerSettings(
        max_gap=0, max_distance_per_frame=1.5, appearance_weight=0.0, focal_ratio=1.0
    )
    for settings in (off, None):
        ids, counts = track(frames, settings)
        assert ids[-1]["car"] == (CAR * TRACK_LABEL_DIVISOR + 2, None)
        assert counts == {"links": 1, "revivals": 0, "fresh": 2}


def test_no_revival_past_max_gap():
    frames = [{"car": at(CAR, 1.0, 20.0)}] + [{} for _ in range(4)] + [{"car": at(CAR, 1.0, 20)}]
    ids, counts = track(frames)  # max_gap 3, missing 4 frames
    assert ids[-1]["car"] == (CAR * TRACK_LABEL_DIVISOR + 2, None)
    assert counts["revivals"] == 0


def test_no_revival_across_classes():
    # a truck appears exactly where the hidden car would be: a new truck, not the car
    frames = [{"car": at(CAR, 1.0, 20.0)}, {}, {"truck": at(TRUCK, 1.0, 20.0)}]
    ids, _ = track(frames)
    assert ids[-1]["truck"] == (TRUCK * TRACK_LABEL_DIVISOR + 1, None)
    # the car is still dormant: it can come back once the truck is there too
    frames.append({"truck": at(TRUCK, 1.0, 20.0), "car": at(CAR, -1.0, 20.0)})
    ids, _ = track(frames)
    assert ids[-1]["car"] == (CAR * TRACK_LABEL_DIVISOR + 1, 2)


def test_two_dormant_tracks_and_two_instances_are_assigned_by_predicted_position():
    # car a moves right and car b left by 1 m per frame; they cross while hidden. Each comes
    # back where the other was last seen, and the instances come in the other order: only the
    # constant-velocity prediction tells them apart (last positions would swap them).
    frames = [
        {"a": at(CAR, -2.0, 20.0), "b": at(CAR, 2.0, 20.0)},
        {"a": at(CAR, -1.0, 20.0), "b": at(CAR, 1.0, 20.0)},
        {},
        {"b": at(CAR, -1.0, 20.0), "a": at(CAR, 1.0, 20.0)},
    ]
    ids, counts = track(frames)
    assert ids[-1]["a"] == (ids[0]["a"][0], 1)
    assert ids[-1]["b"] == (ids[0]["b"][0], 1)
    assert ids[0]["a"][0] != ids[0]["b"][0]
    assert counts == {"links": 2, "revivals": 2, "fresh": 2}


def test_the_assignment_is_one_to_one_and_revives_as_many_as_the_gate_allows():
    # tracks a (x = 0) and b (x = 2) hidden; instances p (x = 0.9) and q (x = -1.5): p is
    # nearer a, but q can only be a (3.5 m from b, beyond the 3 m gate), so p is b.
    frames = [
        {"a": at(CAR, 0.0, 20.0), "b": at(CAR, 2.0, 20.0)},
        {},
        {"p": at(CAR, 0.9, 20.0), "q": at(CAR, -1.5, 20.0)},
    ]
    ids, _ = track(frames)
    assert ids[-1]["p"] == (ids[0]["b"][0], 1)
    assert ids[-1]["q"] == (ids[0]["a"][0], 1)


def test_the_gate_grows_with_the_frames_a_track_was_missing():
    # the car comes back 4 m behind its predicted position: beyond the gate after one missing
    # frame (2 x 1.5 = 3 m), within it after two (3 x 1.5 = 4.5 m)
    one = [{"car": at(CAR, 0.0, 20.0)}, {}, {"car": at(CAR, 0.0, 24.0)}]
    two = [{"car": at(CAR, 0.0, 20.0)}, {}, {}, {"car": at(CAR, 0.0, 24.0)}]
    assert track(one)[0][-1]["car"] == (CAR * TRACK_LABEL_DIVISOR + 2, None)
    assert track(two)[0][-1]["car"] == (CAR * TRACK_LABEL_DIVISOR + 1, 2)


def test_a_new_object_far_from_a_dormant_track_gets_a_fresh_id():
    # 6 m to the side of the hidden car (gate 3 m); the car can still come back after it
    frames = [{"car": at(CAR, 0.0, 20.0)}, {}, {"other": at(CAR, 6.0, 20.0)}]
    frames.append({"other": at(CAR, 6.0, 20.0), "car": at(CAR, 0.0, 20.0)})
    ids, _ = track(frames)
    assert ids[2]["other"] == (CAR * TRACK_LABEL_DIVISOR + 2, None)
    assert ids[3]["car"] == (CAR * TRACK_LABEL_DIVISOR + 1, 2)


def test_gap_right_after_the_first_frame_moves_with_the_scene():
    # The car is seen once (no velocity of its own), then hidden for one frame; meanwhile the
    # bus, like the whole scene, comes 2 m closer per frame. The car comes back 4 m closer: the
    # scene prior (the median velocity of the tracks seen) predicts it; standing still would
    # be beyond the 3 m gate.
    frames = [
        {"bus": at(BUS, -4.0, 40.0), "car": at(CAR, 2.0, 20.0)},
        {"bus": at(BUS, -4.0, 38.0)},
        {"bus": at(BUS, -4.0, 36.0), "car": at(CAR, 2.0, 16.0)},
    ]
    ids, counts = track(frames)
    assert ids[-1]["car"] == (ids[0]["car"][0], 1)
    assert counts == {"links": 2, "revivals": 1, "fresh": 2}


def test_gap_at_the_end_of_the_sequence_and_a_one_frame_sequence():
    frames = [{"car": at(CAR, 0.0, 20.0)}, {"car": at(CAR, 0.0, 19.0)}, {}, {}]
    ids, counts = track(frames)
    assert counts == {"links": 1, "revivals": 0, "fresh": 1}
    ids, counts = track([{"car": at(CAR, 0.0, 20.0)}])
    assert counts == {"links": 0, "revivals": 0, "fresh": 1}


def test_a_revived_track_continues_by_next_frame_links():
    frames = [{"car": at(CAR, 1.0, 20.0)}, {}, {"car": at(CAR, 1.0, 20.0)}]
    frames += [{"car": at(CAR, 1.0, 20.0)}]
    ids, counts = track(frames)
    first = ids[0]["car"][0]
    assert [i["car"] for i in ids if "car" in i] == [(first, None), (first, 1), (first, None)]
    assert counts == {"links": 1, "revivals": 1, "fresh": 1}


def test_instances_without_depth_are_left_to_next_frame_links():
    frames = [{"car": at(CAR, 1.0, 20.0)}, {}, {"car": (CAR, *at(CAR, 1.0, 20.0)[1:3], math.nan)}]
    ids, _ = track(frames)
    assert ids[-1]["car"] == (CAR * TRACK_LABEL_DIVISOR + 2, None)


def test_appearance_outweighs_a_small_difference_in_position():
    # Two cars 1 m apart are hidden, then come back with swapped sides (each where the other
    # was). By position alone (cost 0 vs 1 m / 3 m) they would swap ids; the features pooled in
    # their masks (channel 0 or 1, by the side each car's pixels had) keep them.
    settings = TrackerSettings(
        max_gap=3, max_distance_per_frame=1.5, appearance_weight=1.0, focal_ratio=1
    )
    tracker = InstanceTracker(TRACK_LABEL_DIVISOR, settings=settings)
    left, right = torch.zeros(2, H, W), torch.zeros(2, H, W)
    left[0, :, : W // 2] = left[1, :, W // 2 :] = 1  # frame 0: a left, b right
    right[1, :, : W // 2] = right[0, :, W // 2 :] = 1  # frame 2: a right, b left (by looks)
    first = {"a": at(CAR, -0.5, 20.0), "b": at(CAR, 0.5, 20.0)}
    ids = []
    for t, (objects, features) in enumerate(
        [(first, left), ({}, left), ({"a2": first["b"], "b2": first["a"]}, right)]
    ):
        panoptic, segments, offsets = frame_maps(objects, first if t == 1 else None)
        relabelled, _ = tracker.update(panoptic, segments, offsets if t else None, features)
        ids.append({n: int(relabelled[v, u]) for n, (_, u, v, _) in objects.items()})
    assert ids[2] == {"a2": ids[0]["a"], "b2": ids[0]["b"]}


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_gap", -1),
        ("max_gap", 1.5),
        ("max_distance_per_frame", 0.0),
        ("appearance_weight", -1.0),
    ]
    + [("focal_ratio", float("nan"))],
)
def test_bad_settings_are_named(field, value):
    values = {**SETTINGS.as_dict(), field: value}
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        TrackerSettings(**values)
