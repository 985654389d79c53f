"""Metric depth from Cityscapes' disparity maps and camera files.

Cityscapes stores, per image, ``disparity/<split>/<city>/<name>_disparity.png``: a 16-bit PNG
whose value p gives the disparity d = (p - 1) / 256 pixels for p > 0, p = 0 meaning "no
disparity" (cityscapesScripts' README); and ``camera/<split>/<city>/<name>_camera.json`` with
the stereo ``extrinsic.baseline`` (meters) and the ``intrinsic.fx`` focal length (pixels).
Depth in meters is then ``baseline * fx / d``.

Pixels without depth, 0 in the returned maps, are p = 0 (no disparity, common at the image
border) and p = 1 (d = 0: a point at infinity), so no division by zero happens.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np

from .errors import DatasetError

__all__ = ["CameraError", "disparity_to_depth", "read_camera"]


class CameraError(DatasetError):
    """A camera file that is missing, not JSON, or lacks a positive baseline or fx."""


def disparity_to_depth(samples: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """Depth in meters of Cityscapes disparity samples.

    Args:
        samples: (H, W) disparity PNG values p (uint16; d = (p - 1) / 256 pixels, p = 0 none).
        baseline: stereo baseline in meters, > 0.
        fx: focal length in pixels, > 0.

    Returns:
        (H, W) float32 meters, ``baseline * fx * 256 / (p - 1)`` where p > 1, else 0 (no depth).
    """
    if samples.dtype == np.uint16:  # a PNG's samples: look the depth of each value up
        return _depth_table(float(baseline), float(fx))[samples]
    return _depth_of(samples.astype(np.float64), baseline, fx)


def _depth_of(p: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """The conversion itself, in float64: ``baseline * fx * 256 / (p - 1)`` where p > 1, else 0."""
    depth = np.zeros(p.shape, np.float64)
    np.divide(baseline * fx * 256.0, p - 1.0, out=depth, where=p > 1)
    return depth.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _depth_table(baseline: float, fx: float) -> np.ndarray:
    """(65536,) float32 depth of every 16-bit disparity value for one camera (256 KiB)."""
    table = _depth_of(np.arange(65536, dtype=np.float64), baseline, fx)
    table.flags.writeable = False
    return table


def _positive(camera: dict[str, Any], group: str, key: str, path: str) -> float:
    value = camera.get(group, {}).get(key) if isinstance(camera.get(group), dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CameraError(f"{path}: no number at {group}.{key}; expected a Cityscapes camera file.")
    if not (math.isfinite(value) and value > 0):
        raise CameraError(f"{path}: {group}.{key} = {value}; expected a finite number > 0.")
    return float(value)


def read_camera(path: str) -> dict[str, float]:
    """``{"baseline": meters, "fx": pixels}`` of a Cityscapes camera JSON.

    Raises:
        CameraError: naming the file and the missing or bad key.
    """
    try:
        with open(path, encoding="utf-8") as f:
            camera = json.load(f)
    except FileNotFoundError:
        raise CameraError(f"{path}: missing (the image's camera file).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CameraError(f"{path}: not a readable JSON camera file ({error}).") from None
    if not isinstance(camera, dict):
        raise CameraError(f"{path}: expected a JSON object with extrinsic and intrinsic.")
    return {
        "baseline": _positive(camera, "extrinsic", "baseline", path),
        "fx": _positive(camera, "intrinsic", "fx", path),
    }
