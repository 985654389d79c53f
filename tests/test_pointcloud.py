"""Tests of panoptic_depthlab.pointcloud: back-projection and the PLY files it writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from panoptic_depthlab.panoptic_ids import TRACK_LABEL_DIVISOR, split_panoptic
from panoptic_depthlab.pointcloud import depth_to_points, frame_point_cloud, write_ply

# PLY property types -> numpy little-endian types, for the reader below.
_PLY_TO_NUMPY = {"float": "<f4", "uchar": "u1", "ushort": "<u2", "uint": "<u4"}


def read_ply(path: str) -> tuple[list[str], np.ndarray]:
    """Parse a binary little-endian PLY with one vertex element: (header lines, vertices)."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    assert lines[0] == "ply"
    assert lines[1] == "format binary_little_endian 1.0"
    assert lines[2].startswith("element vertex ")
    count = int(lines[2].split()[2])
    fields = []
    for line in lines[3:-1]:
        keyword, ply_type, name = line.split()
        assert keyword == "property"
        fields.append((name, _PLY_TO_NUMPY[ply_type]))
    assert lines[-1] == "end_header"
    vertex = np.dtype(fields)
    assert len(data) - end == count * vertex.itemsize, "body size disagrees with the header"
    return lines, np.frombuffer(data, dtype=vertex, offset=end)


def test_depth_to_points_2x2_focal_1():
    # Principal point (0.5, 0.5); x = (u - 0.5) * z, y = (v - 0.5) * z.
    depth = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    xyz, valid = depth_to_points(depth, 1.0)
    expected = np.array(
        [
            [-0.5, -0.5, 1.0],  # (v, u) = (0, 0)
            [1.0, -1.0, 2.0],  # (0, 1)
            [-1.5, 1.5, 3.0],  # (1, 0)
            [2.0, 2.0, 4.0],  # (1, 1)
        ],
        dtype=np.float32,
    )
    assert xyz.dtype == np.float32 and xyz.shape == (4, 3)
    np.testing.assert_array_equal(xyz, expected)
    np.testing.assert_array_equal(valid, np.ones((2, 2), bool))


def test_depth_to_points_principal_point_is_x_then_y():
    depth = np.full((3, 5), 2.0, dtype=np.float32)
    xyz, _ = depth_to_points(depth, 4.0, principal_point=(1.0, 0.0))  # (cx, cy)
    # Pixel (v, u) = (2, 3): x = (3 - 1) * 2 / 4 = 1, y = (2 - 0) * 2 / 4 = 1.
    np.testing.assert_array_equal(xyz[2 * 5 + 3], [1.0, 1.0, 2.0])


def test_depth_to_points_skips_invalid_depth():
    depth = np.array([[0.0, -1.0, np.nan], [np.inf, 5.0, 2.0]], dtype=np.float32)
    xyz, valid = depth_to_points(depth, 2.0)
    np.testing.assert_array_equal(valid, [[False, False, False], [False, True, True]])
    # cx = 1, cy = 0.5: (1, 1) -> (0, 1.25, 5); (1, 2) -> (1, 0.5, 2).
    np.testing.assert_array_equal(xyz, np.array([[0, 1.25, 5], [1, 0.5, 2]], np.float32))


@pytest.mark.parametrize("focal", [0.0, -2.5, float("nan"), float("inf")])
def test_depth_to_points_rejects_bad_focal_length(focal):
    with pytest.raises(ValueError, match=f"focal_length is {focal}; expected a positive"):
        depth_to_points(np.ones((2, 2), np.float32), focal)


def test_depth_to_points_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"depth has shape \(2, 2, 1\)"):
        depth_to_points(np.ones((2, 2, 1), np.float32), 1.0)
    with pytest.raises(ValueError, match=r"principal_point is \(1.0, 2.0, 3.0\)"):
        depth_to_points(np.ones((2, 2), np.float32), 1.0, principal_point=(1.0, 2.0, 3.0))


def test_write_ply_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(7, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(7, 3))
    class_id = np.array([0, 1, 18, 255, 65535, 3, 3])
    instance_id = np.array([0, 0, 1, 0, 2**32 - 1, 65535, 70000])
    path = tmp_path / "cloud.ply"
    write_ply(str(path), xyz, rgb, class_id, instance_id)

    lines, vertices = read_ply(str(path))
    assert lines[2] == "element vertex 7"
    assert lines[3:-1] == [
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
        "property ushort class",
        "property uint instance",
    ]
    np.testing.assert_array_equal(np.stack([vertices[a] for a in "xyz"], axis=1), xyz)
    np.testing.assert_array_equal(
        np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1), rgb
    )
    np.testing.assert_array_equal(vertices["class"], class_id)
    np.testing.assert_array_equal(vertices["instance"], instance_id)
    assert os.listdir(tmp_path) == ["cloud.ply"]  # no temporary file left


def test_write_ply_empty_cloud(tmp_path):
    path = tmp_path / "empty.ply"
    write_ply(
        str(path), np.zeros((0, 3)), np.zeros((0, 3), int), np.zeros(0, int), np.zeros(0, int)
    )
    lines, vertices = read_ply(str(path))
    assert lines[2] == "element vertex 0" and vertices.size == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"xyz": np.zeros((3, 2))}, r"xyz has shape \(3, 2\); expected \(N, 3\)"),
        ({"rgb": np.zeros((2, 3), int)}, r"rgb has shape \(2, 3\); expected \(3, 3\)"),
        ({"class_id": np.zeros(4, int)}, r"class_id has shape \(4,\); expected \(3,\)"),
        ({"instance_id": np.zeros(2, int)}, r"instance_id has shape \(2,\); expected \(3,\)"),
        ({"rgb": np.full((3, 3), 300)}, r"rgb holds 300; expected integers in 0..255"),
        ({"rgb": np.full((3, 3), 0.5)}, r"rgb has dtype float64; expected integers"),
        ({"class_id": np.array([0, 70000, 1])}, r"class_id holds 70000; expected .* 0..65535"),
        ({"instance_id": np.array([0, -1, 1])}, r"instance_id holds -1; expected"),
    ],
)
def test_write_ply_rejects_bad_inputs(tmp_path, change, message):
    arrays = {
        "xyz": np.zeros((3, 3), np.float32),
        "rgb": np.zeros((3, 3), np.uint8),
        "class_id": np.zeros(3, int),
        "instance_id": np.zeros(3, int),
    }
    arrays.update(change)
    with pytest.raises(ValueError, match=message):
        write_ply(str(tmp_path / "bad.ply"), **arrays)
    assert os.listdir(tmp_path) == []  # nothing written, no temporary file left


def test_frame_point_cloud_labels_and_colors(tmp_path):
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    # Tracked ids, as the demo passes them: class * 2**32 + track number, up to 2**32 - 1.
    t = TRACK_LABEL_DIVISOR
    panoptic = np.array([[0, 11 * t + 1, -1], [26 * t, 11 * t + t - 1, 26 * t]])
    classes, instances = split_panoptic(panoptic, t, 19)
    depth = np.array([[1.0, 2.0, 3.0], [0.0, 4.0, np.nan]], dtype=np.float32)
    path = tmp_path / "frame.ply"
    assert frame_point_cloud(str(path), image, classes, instances, depth, 2.0) == 4
    _, vertices = read_ply(str(path))
    np.testing.assert_array_equal(vertices["class"], [0, 11, 19, 11])  # void: num_classes
    np.testing.assert_array_equal(vertices["instance"], [0, 1, 0, 2**32 - 1])
    np.testing.assert_array_equal(vertices["red"], image[..., 0].ravel()[[0, 1, 2, 4]])
    np.testing.assert_array_equal(vertices["blue"], image[..., 2].ravel()[[0, 1, 2, 4]])
    # cx = 1, cy = 0.5, f = 2: pixel (1, 1), z = 4 -> (0, 1, 4).
    np.testing.assert_array_equal([vertices[a][3] for a in "xyz"], [0.0, 1.0, 4.0])
    assert os.listdir(tmp_path) == ["frame.ply"]


def test_frame_point_cloud_rejects_bad_inputs(tmp_path):
    image = np.zeros((2, 3, 3), np.uint8)
    depth = np.ones((2, 3), np.float32)
    zeros = np.zeros((2, 3), int)
    with pytest.raises(ValueError, match=r"instances has shape \(3, 2\); expected \(H, W\)"):
        frame_point_cloud(str(tmp_path / "a.ply"), image, zeros, np.zeros((3, 2), int), depth, 1.0)
    with pytest.raises(ValueError, match="focal_length is -1.0"):
        frame_point_cloud(str(tmp_path / "a.ply"), image, zeros, zeros, depth, -1.0)
    assert os.listdir(tmp_path) == []
