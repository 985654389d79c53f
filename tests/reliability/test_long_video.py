"""Issue #14, item 1: long videos stopped the demo.

As found: track ids are never reused; the Cityscapes-DVPS prediction file holds instance ids
0..255, so ``write_prediction`` raised a plain ``ValueError`` at a class's 256th track in one
video (traceback in the demo, MP4 deleted), and the tracker itself raised at its 1000th track of
one class (``label_divisor - 1`` = 999 numbers per class). Now tracked ids are ``class * 2**32 +
track number`` and the writers fall back to a wide 16-bit file where the official one cannot
hold a frame's ids; the evaluation reads both.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data.catalog import Metadata

from panoptic_depthlab.data.datasets import dvps_metadata, load_dvps_split
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.demo import _official_name, _write_frame
from panoptic_depthlab.evaluation.formats import (
    prediction_file_names,
    read_prediction,
    write_prediction,
)
from panoptic_depthlab.panoptic_ids import TRACK_LABEL_DIVISOR, split_panoptic
from panoptic_depthlab.runtime.stitching import InstanceTracker
from tests.evaluation.test_eval_dvpq_cli import write_ground_truth_predictions
from tests.reliability.conftest import assert_user_error, run_tool

CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"
CITY_IMAGE = "000000_000000_munster_000105_000004_leftImg8bit.png"
KITTI_IMAGE = "000008_000123_leftImg8bit.png"
ROAD, CAR = 0, 13
OWN_DIVISOR = 1000  # the frames' own (single-frame) ids, Cityscapes-DVPS's label divisor

# The long sequence: 64 x 128 frames, two bands of 32 rows, three slots of 40 columns. Every
# frame three cars appear in one band (4 columns wide) while the three of the frame before stay
# in the other band (grown to 12 columns) and the three before those vanish: each car lives for
# two frames, so 340 frames hold 1020 tracks of the class car.
H, W, BAND, SLOT = 64, 128, 32, 40
NEW_PER_FRAME, FRAMES = 3, 340
DEPTH_M = 12.5


def _center(birth: int, slot: int, age: int) -> list[int]:
    """[y, x] center of the car born in frame ``birth`` in ``slot``, ``age`` frames old."""
    return [(birth % 2) * BAND + BAND // 2, slot * SLOT + (2 if age == 0 else 6)]


def long_sequence():
    """Yield per frame ``(panoptic, segments_info, next_offset, expected)``: the own prediction
    (ids ``class * 1000 + n`` numbered afresh each frame, new cars first), next-frame offsets
    (each continuing car's pixels point to its own previous center; a new car's pixels point
    to the center of the continuing car of its slot, which overlaps that center's next-frame
    segment more, so the new car is not matched) and the tracked map the tracker must give:
    car (birth, slot) = ``13 * 2**32 + 3 * birth + slot + 1``, in order of appearance."""
    for t in range(FRAMES):
        panoptic = torch.full((H, W), ROAD * OWN_DIVISOR, dtype=torch.int64)
        expected = torch.zeros((H, W), dtype=torch.int64)
        next_offset = torch.zeros(2, H, W)
        segments = []
        cars = [(t, j, 0) for j in range(NEW_PER_FRAME)]
        cars += [(t - 1, j, 1) for j in range(NEW_PER_FRAME)] if t > 0 else []
        for own, (birth, slot, age) in enumerate(cars, start=1):
            rows = slice((birth % 2) * BAND, (birth % 2 + 1) * BAND)
            cols = slice(slot * SLOT, slot * SLOT + (4 if age == 0 else 12))
            panoptic[rows, cols] = CAR * OWN_DIVISOR + own
            expected[rows, cols] = CAR * TRACK_LABEL_DIVISOR + NEW_PER_FRAME * birth + slot + 1
            if t > 0:  # to the previous center of the car continuing in this slot
                target = _center(t - 1, slot, 0)
                ys = torch.arange(H, dtype=torch.float32)[rows, None]
                xs = torch.arange(W, dtype=torch.float32)[None, cols]
                next_offset[0, rows, cols] = target[0] - ys
                next_offset[1, rows, cols] = target[1] - xs
            area = (rows.stop - rows.start) * (cols.stop - cols.start)
            segments.append(_segment(CAR * OWN_DIVISOR + own, CAR, area, _center(birth, slot, age)))
        road_area = int((panoptic == 0).sum())
        segments.append(_segment(0, ROAD, road_area, None))
        yield panoptic, segments, next_offset if t > 0 else None, expected


def _segment(segment_id: int, category: int, area: int, center: list[int] | None) -> dict:
    segment = {"id": segment_id, "category_id": category, "isthing": center is not None}
    segment.update(area=area, depth_mean=DEPTH_M, depth_median=DEPTH_M, depth_valid_pixels=area)
    if center is not None:
        segment["center"] = center
    return segment


@pytest.fixture(scope="module")
def tracked() -> list[tuple[torch.Tensor, list[dict]]]:
    """The long sequence through the real tracker, as ``inference_sequence`` builds it."""
    tracker = InstanceTracker(TRACK_LABEL_DIVISOR, void_label=-1)
    outputs = []
    for t, (panoptic, segments, next_offset, expected) in enumerate(long_sequence()):
        outputs.append(tracker.update(panoptic, segments, next_offset))
        assert torch.equal(outputs[-1][0], expected), t
    return outputs


# (a) The writer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "image", "first_wide"), [(CITYSCAPES, CITY_IMAGE, 256), (SEMKITTI, KITTI_IMAGE, 65536)]
)
def test_a_frame_with_ids_beyond_the_official_format_is_written_wide(
    tmp_path, fmt, image, first_wide
):
    """As found: a car's 256th track (Cityscapes-DVPS) raised "pred_instance holds 256; ...
    stores instance ids 0..255"; the same for SemKITTI-DVPS above 65535. Now: the wide file,
    read back exactly, up to 2**32 - 1."""
    meta = dvps_metadata(fmt)
    classes = np.full((8, 16), ROAD)
    classes[2:6, :] = CAR
    instances = np.zeros((8, 16), np.int64)
    instances[2:6, :8] = first_wide - 1  # the last id the official file holds
    instances[2:6, 8:12] = first_wide
    instances[2:6, 12:] = 2**32 - 1
    depth = np.full((8, 16), DEPTH_M)
    written = write_prediction(
        str(tmp_path / "pan"), str(tmp_path / "dep"), image, meta, classes, instances, depth
    )
    names = prediction_file_names(image, meta)
    assert written == [str(tmp_path / "pan" / n) for n in names] + [str(tmp_path / "dep" / image)]
    got_class, got_instance, got_depth = read_prediction(
        str(tmp_path / "pan"), str(tmp_path / "dep"), image, meta
    )
    assert np.array_equal(got_class, classes) and np.array_equal(got_instance, instances)
    assert got_instance.dtype == np.int64 and np.array_equal(got_depth, depth)
    stored = cv2.imread(written[len(names) - 1], cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.shape == (8, 16, 3)
    assert sorted({p.name for p in (tmp_path / "pan").iterdir()}) == sorted(names)  # no .tmp


@pytest.mark.parametrize(("bad", "shown"), [(2**32, "4294967296"), (-1, "-1")])
def test_ids_beyond_the_wide_format_are_still_a_clear_error(tmp_path, bad, shown):
    instances = np.zeros((4, 4), np.int64)
    instances[1, 1] = bad
    with pytest.raises(ValueError) as error:
        write_prediction(
            str(tmp_path / "pan"),
            None,
            CITY_IMAGE,
            dvps_metadata(CITYSCAPES),
            np.full((4, 4), CAR),
            instances,
            None,
        )
    assert str(error.value) == (
        f"{CITY_IMAGE}: pred_instance holds {shown}; the cityscapes_dvps prediction files store "
        "instance ids 0..4294967295 (2**32 - 1). Renumber the instances of each sequence "
        "consistently (e.g. in order of appearance) before writing."
    )
    assert not (tmp_path / "pan").exists()


# (b) The tracker ----------------------------------------------------------------------------


def test_the_old_divisor_stopped_at_999_tracks_of_one_class():
    """As found: numbered with the dataset's label divisor (1000), the 1000th car failed."""
    tracker = InstanceTracker(OWN_DIVISOR)
    with pytest.raises(ValueError, match=r"^more than 999 tracks of class 13 in one sequence"):
        for panoptic, segments, next_offset, _ in long_sequence():
            tracker.update(panoptic, segments, next_offset)
    assert tracker._last_number == {CAR: 999}


def test_more_than_1000_tracks_of_one_class_get_distinct_ids_never_reused(tracked):
    # Every frame equals its expected map (checked in the fixture): continuing cars keep their
    # id, new ones get the next number. Here the ids as a whole.
    first_seen: dict[int, int] = {}
    last_seen: dict[int, int] = {}
    for t, (panoptic, segments) in enumerate(tracked):
        assert panoptic.dtype == torch.int64
        assert {s["id"] for s in segments} == set(panoptic.unique().tolist())
        for s in segments:
            if s["isthing"]:
                first_seen.setdefault(s["id"], t)
                last_seen[s["id"]] = t
    numbers = sorted(i - CAR * TRACK_LABEL_DIVISOR for i in first_seen)
    assert numbers == list(range(1, NEW_PER_FRAME * FRAMES + 1))  # 1020 tracks, 1, 2, ...
    assert len(numbers) > 1000
    # Never reused: each id is seen in one run of consecutive frames, then never again.
    assert all(last_seen[i] - first_seen[i] <= 1 for i in first_seen)
    assert max(numbers) > 255  # beyond the official Cityscapes-DVPS file, from frame 85 on


# (c) The demo's writer and the evaluation ---------------------------------------------------


def test_tracked_frames_through_the_demo_writer_read_back_exactly(tracked, tmp_path):
    meta = Metadata(name="long_video_cityscapes_dvps", **dvps_metadata(CITYSCAPES))
    image = np.full((H, W, 3), 90, np.uint8)
    depth = np.full((H, W), DEPTH_M, np.float32)
    frames = {0: False, 84: False, 85: True, FRAMES - 1: True}  # frame: written wide
    for t, wide in frames.items():
        panoptic, segments = (x.numpy() if torch.is_tensor(x) else x for x in tracked[t])
        name = f"drive_{t:06d}"
        picture = _write_frame(
            str(tmp_path), name, image, None, panoptic, segments, depth, meta, untrained=[]
        )
        assert picture.dtype == np.uint8 and (tmp_path / "vis" / f"{name}.png").is_file()
        got_class, got_instance, got_depth = read_prediction(
            str(tmp_path / "panoptic"),
            str(tmp_path / "depth"),
            _official_name(name),
            meta.as_dict(),
        )
        classes, instances = split_panoptic(panoptic, TRACK_LABEL_DIVISOR, meta.num_classes)
        assert np.array_equal(got_class, classes) and np.array_equal(got_instance, instances)
        assert np.array_equal(got_depth, depth)
        assert (int(instances.max()) > 255) == wide
        stored = cv2.imread(str(tmp_path / "panoptic" / _official_name(name)), -1)
        assert stored.dtype == (np.uint16 if wide else np.uint8)
        rows = json.loads((tmp_path / "segments" / f"{name}.json").read_text())["segments"]
        assert [r["id"] for r in rows] == [s["id"] for s in segments]
    assert int(instances.max()) == NEW_PER_FRAME * FRAMES  # the last frame's newest car: 1020


def _eval_args(fmt: str, root: Path, output: Path) -> list[str]:
    return [
        "--dataset", fmt, "--gt-dir", str(root / "video_sequence" / "val"),
        "--pred-dir", str(root / "pred"), "--depth-dir", str(root / "depth"),
        "--output", str(output),
    ]  # fmt: skip


def test_eval_dvpq_scores_wide_files_like_official_ones(tmp_path):
    """Ground truth as prediction: sequence 0 with track numbers from 1001 on (wide files),
    sequence 1 numbered 1, 2, ... (official files), in one directory: DVPQ 100."""
    generate_synthetic_dvps(str(tmp_path), CITYSCAPES, "val", 2, 6, 64, 128, seed=1)
    gt = tmp_path / "video_sequence" / "val"
    offsets = {0: 1000, 1: 0}
    write_ground_truth_predictions(
        gt, CITYSCAPES, tmp_path / "pred", tmp_path / "depth", lambda s: offsets[int(s)]
    )
    depths = {cv2.imread(str(p), -1).dtype for p in (tmp_path / "pred").iterdir()}
    assert depths == {np.dtype(np.uint8), np.dtype(np.uint16)}
    output = tmp_path / "results.json"
    result = run_tool("eval_dvpq.py", *_eval_args(CITYSCAPES, tmp_path, output))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["dvpq_mean"] == {"pq": 100.0, "pq_thing": 100.0, "pq_stuff": 100.0}
    assert len(results["dvpq"]) == 16
    assert all(e["pq"] == e["pq_thing"] == e["pq_stuff"] == 100.0 for e in results["dvpq"])


def test_eval_dvpq_names_a_wide_file_whose_ids_dvpq_cannot_score(tmp_path):
    """DVPQ's segment ids are class << 16 | instance: a wide file with ids above 65535 is
    exit 2 and one line naming the file, no JSON."""
    generate_synthetic_dvps(str(tmp_path), SEMKITTI, "val", 1, 2, 64, 64, seed=1)
    gt = tmp_path / "video_sequence" / "val"
    write_ground_truth_predictions(
        gt, SEMKITTI, tmp_path / "pred", tmp_path / "depth", lambda s: 70000
    )
    output = tmp_path / "results.json"
    result = run_tool("eval_dvpq.py", *_eval_args(SEMKITTI, tmp_path, output))
    first = load_dvps_split(str(tmp_path), "val", SEMKITTI)[0]["file_name"]
    _, instances, _ = read_prediction(str(tmp_path / "pred"), None, first, dvps_metadata(SEMKITTI))
    count = int((instances > 65535).sum())
    assert_user_error(
        result,
        f"{tmp_path / 'pred' / '000000_000000_ins.png'}: instance id {instances.max()} ({count} "
        "pixels above 65535); the DVPQ evaluation scores instance ids 0..65535",
        "Renumber the tracks of each sequence",
    )
    assert not output.exists()
