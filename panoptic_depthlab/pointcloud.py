"""Back-project a depth map to a labelled 3-D point cloud and write it as a PLY file.

Camera frame (meters): x to the right, y down, z forward (along the optical axis), origin at the
camera center. Pinhole model: the pixel in column u and row v with depth z (meters along the
optical axis, as in the DVPS depth maps) is the point

    x = (u - cx) * z / f,   y = (v - cy) * z / f,   z = z

with the focal length f and the principal point (cx, cy) in pixels.

PLY layout (:func:`write_ply`): ``binary_little_endian 1.0``, one ``vertex`` element with the
properties ``float x, y, z`` (meters), ``uchar red, green, blue``, ``ushort class`` (class id;
void is ``num_classes``, as :func:`~panoptic_depthlab.panoptic_ids.split_panoptic` gives it) and
``uint instance`` (instance id, 0 for stuff and void); 19 bytes per point, no
padding. ``uint`` holds any instance id below a label divisor up to 2**32: every track number of
tracked outputs (``TRACK_LABEL_DIVISOR`` = 2**32, see :mod:`panoptic_depthlab.panoptic_ids`) and
SemKITTI-DVPS's instance ids (label divisor 65536, so ``ushort`` would not always do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .files import write_bytes_atomic

__all__ = ["depth_to_points", "frame_point_cloud", "write_ply"]

# Vertex properties: (name, numpy type, PLY type), in file order.
_PROPERTIES = [
    ("x", "<f4", "float"),
    ("y", "<f4", "float"),
    ("z", "<f4", "float"),
    ("red", "u1", "uchar"),
    ("green", "u1", "uchar"),
    ("blue", "u1", "uchar"),
    ("class", "<u2", "ushort"),
    ("instance", "<u4", "uint"),
]
_VERTEX = np.dtype([(name, numpy_type) for name, numpy_type, _ in _PROPERTIES])  # packed


def depth_to_points(
    depth: np.ndarray,
    focal_length: float,
    principal_point: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Back-project the pixels with valid depth (finite and > 0) to camera-frame points.

    Args:
        depth: (H, W) float depth along the optical axis, meters.
        focal_length: f, pixels, > 0.
        principal_point: (cx, cy) = (column, row) of the optical axis, pixels, in that (x, y)
            order; None for the image center ((W - 1) / 2, (H - 1) / 2).

    Returns:
        xyz: (N, 3) float32 points (x right, y down, z forward), meters, one per valid pixel in
            row-major order (computed in float64, then rounded).
        valid: (H, W) bool, True at the N pixels used; ``image[valid]`` or ``labels[valid]``
            gathers their colors or labels in the order of ``xyz``.

    Raises:
        ValueError: ``depth`` is not 2-D, ``focal_length`` is not a finite positive number, or
            ``principal_point`` is not two finite numbers.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth has shape {depth.shape}; expected (H, W) meters.")
    if not (math.isfinite(focal_length) and focal_length > 0):
        raise ValueError(f"focal_length is {focal_length}; expected a positive number of pixels.")
    height, width = depth.shape
    if principal_point is None:
        cx, cy = (width - 1) / 2, (height - 1) / 2
    else:
        if len(principal_point) != 2 or not all(math.isfinite(c) for c in principal_point):
            raise ValueError(
                f"principal_point is {principal_point}; expected (cx, cy), two finite pixels."
            )
        cx, cy = (float(c) for c in principal_point)
    valid = np.isfinite(depth) & (depth > 0)
    rows, cols = np.nonzero(valid)
    z = depth[valid].astype(np.float64)
    x = (cols - cx) * z / focal_length
    y = (rows - cy) * z / focal_length
    return np.stack([x, y, z], axis=1).astype(np.float32), valid


def _check_range(name: str, values: np.ndarray, high: int) -> None:
    """Reject non-integer ``values`` or values outside 0..high."""
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} has dtype {values.dtype}; expected integers in 0..{high}.")
    if values.size and (int(values.min()) < 0 or int(values.max()) > high):
        bad = int(values.min()) if int(values.min()) < 0 else int(values.max())
        raise ValueError(f"{name} holds {bad}; expected integers in 0..{high}.")


def write_ply(
    path: str,
    xyz: np.ndarray,
    rgb: np.ndarray,
    class_id: np.ndarray,
    instance_id: np.ndarray,
) -> None:
    """Write labelled points as a binary little-endian PLY (layout in the module docstring).

    The file is written to a temporary name beside ``path`` and renamed
    (:func:`panoptic_depthlab.files.write_bytes_atomic`), so an interrupted write leaves no
    partial file.

    Args:
        path: output file; its directory must exist.
        xyz: (N, 3) float points, meters (stored as float32).
        rgb: (N, 3) integer colors in 0..255, RGB order.
        class_id: (N,) integer class ids in 0..65535.
        instance_id: (N,) integer instance ids in 0..2**32 - 1.

    Raises:
        ValueError: wrong shapes, lengths that differ from N, non-integer labels or colors, or
            values out of range; the message names the array and the bad value.
    """
    xyz, rgb = np.asarray(xyz), np.asarray(rgb)
    class_id, instance_id = np.asarray(class_id), np.asarray(instance_id)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz has shape {xyz.shape}; expected (N, 3) meters.")
    count = xyz.shape[0]
    for name, array, shape in (
        ("rgb", rgb, (count, 3)),
        ("class_id", class_id, (count,)),
        ("instance_id", instance_id, (count,)),
    ):
        if array.shape != shape:
            raise ValueError(
                f"{name} has shape {array.shape}; expected {shape}, one entry per point of xyz."
            )
    _check_range("rgb", rgb, np.iinfo(np.uint8).max)
    _check_range("class_id", class_id, np.iinfo(np.uint16).max)
    _check_range("instance_id", instance_id, np.iinfo(np.uint32).max)

    vertices = np.empty(count, dtype=_VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = rgb[:, channel]
    vertices["class"] = class_id
    vertices["instance"] = instance_id
    properties = [f"property {ply_type} {name}\n" for name, _, ply_type in _PROPERTIES]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {count}\n{''.join(properties)}end_header\n"
    )
    write_bytes_atomic(path, header.encode("ascii") + vertices.tobytes())


def frame_point_cloud(
    path: str,
    image: np.ndarray,
    classes: np.ndarray,
    instances: np.ndarray,
    depth: np.ndarray,
    focal_length: float,
) -> int:
    """Write one frame's labelled point cloud: its pixels with valid depth as a PLY file.

    Points come from :func:`depth_to_points` with the principal point at the image center;
    colors from ``image``; labels from ``classes`` and ``instances`` (e.g. a model output split
    by :func:`~panoptic_depthlab.panoptic_ids.split_panoptic`).

    Args:
        path: output PLY file (written atomically by :func:`write_ply`).
        image: (H, W, 3) uint8 RGB.
        classes: (H, W) integer class ids.
        instances: (H, W) integer instance ids.
        depth: (H, W) float depth, meters; pixels <= 0 or non-finite are skipped.
        focal_length: pixels, > 0.

    Returns:
        The number of points written.

    Raises:
        ValueError: sizes that differ, a bad focal length, or labels :func:`write_ply` cannot
            store (classes above 65535).
    """
    image, depth = np.asarray(image), np.asarray(depth)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image has shape {image.shape}; expected (H, W, 3) RGB.")
    arrays = {"classes": np.asarray(classes), "instances": np.asarray(instances), "depth": depth}
    for name, array in arrays.items():
        if array.shape != image.shape[:2]:
            raise ValueError(
                f"{name} has shape {array.shape}; expected (H, W) = {image.shape[:2]}, the "
                "image's size."
            )
    xyz, valid = depth_to_points(depth, focal_length)
    write_ply(path, xyz, image[valid], arrays["classes"][valid], arrays["instances"][valid])
    return xyz.shape[0]
