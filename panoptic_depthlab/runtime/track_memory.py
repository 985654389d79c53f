"""Memory of ended tracks: objects that come back after a few frames keep their id, found in 3-D.

Next-frame stitching (:mod:`~panoptic_depthlab.runtime.stitching`) links consecutive frames
only: an object with no pixel in some frame (a rider behind a passing bus; on SemKITTI-DVPS's
sparse labels, a frame without LiDAR points on it) would come back with a new id. The memory
keeps every track that stitching did not continue, *dormant*, for up to ``max_gap`` frames, and
lets an instance that stitching left without a track revive one of them. The cue is the one a
DVPS model has and a 2-D tracker has not: each segment's metric depth, hence its 3-D position.

Rules (all distances in meters, camera frame: x right, y down, z forward):

* **Position** of an instance: its pixel centroid (u, v) back-projected at its median depth z
  (``depth_median`` of the post-processing), ``x = (u - cx) z / f``, ``y = (v - cy) z / f``,
  with (cx, cy) the image center and ``f = focal_ratio * image width`` (the dataset's
  ``focal_ratio`` metadata, else :data:`DEFAULT_FOCAL_RATIO`). An instance without valid depth
  has no position: it revives no track, and its track keeps its last observation.
* **Velocity** (meters per frame): the displacement between a track's last two observations
  divided by the frames between them. A track seen once has none and moves with the *scene
  prior* instead: the per-axis median velocity of the tracks that had one in the latest frame
  where any did (relative to the camera, most things on a road move mostly with the
  ego-motion); 0 before any track has a velocity.
* **Prediction**: constant velocity from the last observation, ``position + velocity * (t - s)``
  at frame t for a track last seen in frame s.
* **Revival**: the instances without a next-frame link and the dormant tracks (every track
  whose object has been missing for 1 to ``max_gap`` frames: last seen in frame s with
  ``1 <= t - s - 1 <= max_gap``) are assigned one to one by scipy's ``linear_sum_assignment``
  on the cost ``distance / gate + appearance_weight * (1 - cosine)``, where ``distance`` is
  between the predicted and the observed position, ``gate = max_distance_per_frame * (t - s)``
  (a prediction grows less certain with every frame it reaches over: 2 * 1.5 = 3 m for an
  object missing one frame with the default 1.5 m) and ``cosine`` the similarity of the
  backbone features pooled in the masks (the term is left out while ``appearance_weight`` is 0
  or features are missing). Only pairs of the same class with ``distance <= gate`` can be
  assigned; among the assignments with the most such pairs, the cheapest wins.

With ``max_gap`` 0 there is no memory: the tracker links consecutive frames only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = [
    "DEFAULT_FOCAL_RATIO",
    "TrackMemory",
    "TrackerSettings",
    "instance_appearances",
    "instance_positions",
]

DEFAULT_FOCAL_RATIO = 0.8
"""Focal length / image width assumed for a dataset without ``focal_ratio`` metadata: a 64
degree horizontal field of view, between Cityscapes' 49 (2262.52 / 2048 = 1.105) and KITTI's 82
(718.856 / 1242 = 0.579)."""

_INFEASIBLE = 1e9  # cost of a pair the gate or the class rules out


@dataclass(frozen=True)
class TrackerSettings:
    """How the tracker remembers ended tracks (``MODEL.TRACKER`` and the dataset's
    ``focal_ratio``; see the module docstring).

    Attributes:
        max_gap: frames an object may be missing and keep its id; 0 turns the memory off.
        max_distance_per_frame: the gate of a revival: meters between a dormant track's
            predicted position and an instance's position, at most, per frame since the track
            was last seen.
        appearance_weight: weight of the appearance term (1 - cosine of pooled backbone
            features) in the assignment cost; 0 leaves it out.
        focal_ratio: the camera's horizontal focal length divided by the image width.
    """

    max_gap: int
    max_distance_per_frame: float
    appearance_weight: float
    focal_ratio: float

    def __post_init__(self):
        checks = {
            "max_gap": isinstance(self.max_gap, int) and self.max_gap >= 0,
            "max_distance_per_frame": math.isfinite(self.max_distance_per_frame)
            and self.max_distance_per_frame > 0,
            "appearance_weight": math.isfinite(self.appearance_weight)
            and self.appearance_weight >= 0,
            "focal_ratio": math.isfinite(self.focal_ratio) and self.focal_ratio > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"tracker settings: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}; "
                "expected an integer max_gap >= 0, a positive max_distance_per_frame (meters), an "
                "appearance_weight >= 0 and a positive focal_ratio."
            )

    @property
    def memory(self) -> bool:
        """Whether ended tracks are remembered (``max_gap`` > 0)."""
        return self.max_gap > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def instance_positions(
    rows: torch.Tensor,
    cols: torch.Tensor,
    instance: torch.Tensor,
    depths: torch.Tensor,
    image_size: tuple[int, int],
    focal_ratio: float,
) -> np.ndarray:
    """3-D positions of a frame's instances: pixel centroids back-projected at their depths.

    Args:
        rows, cols: (N,) int64 row and column of each thing pixel.
        instance: (N,) int64 index of each pixel's instance, in [0, J).
        depths: (J,) float median depth of each instance, meters; NaN (or <= 0) for none.
        image_size: (H, W) of the frame, pixels.
        focal_ratio: focal length / W.

    Returns:
        (J, 3) float64 (x right, y down, z forward), meters; NaN rows for instances without a
        valid depth or without pixels.
    """
    count = depths.numel()
    area = torch.bincount(instance, minlength=count).double()
    v = torch.bincount(instance, weights=rows.double(), minlength=count) / area
    u = torch.bincount(instance, weights=cols.double(), minlength=count) / area
    z = depths.double().cpu()
    height, width = image_size
    focal = focal_ratio * width
    x = (u.cpu() - (width - 1) / 2) * z / focal
    y = (v.cpu() - (height - 1) / 2) * z / focal
    positions = torch.stack([x, y, z], dim=1).numpy()
    positions[~(z > 0).numpy()] = np.nan
    return positions


def instance_appearances(
    features: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    instance: torch.Tensor,
    count: int,
    image_size: tuple[int, int],
) -> np.ndarray:
    """Appearance vectors of a frame's instances: features pooled in their masks.

    Args:
        features: (C, h, w) features covering the frame; cell (i, j) covers rows
            [i H / h, (i + 1) H / h) and columns likewise.
        rows, cols: (N,) int64 row and column of each thing pixel.
        instance: (N,) int64 index of each pixel's instance, in [0, ``count``).
        count: J, the number of instances.
        image_size: (H, W) of the frame, pixels.

    Returns:
        (J, C) float64 unit vectors: the mean of the cells each instance's pixels fall in;
        zero vectors for instances without pixels.
    """
    channels, h, w = features.shape
    height, width = image_size
    cell = (rows * h // height) * w + cols * w // width
    cells = torch.bincount(instance * (h * w) + cell.to(instance.device), minlength=count * h * w)
    pooled = cells.view(count, h * w).to(features.dtype) @ features.reshape(channels, -1).T
    pooled = torch.nn.functional.normalize(pooled.double(), dim=1)
    return pooled.cpu().numpy()


@dataclass
class _Track:
    """What the memory knows of one track."""

    category: int
    position: np.ndarray  # (3,) meters, at the last observation
    velocity: np.ndarray | None  # (3,) meters per frame; None: seen once
    last_frame: int
    appearance: np.ndarray | None  # (C,) unit vector, or None


class TrackMemory:
    """Tracks seen in the recent frames of one sequence, for re-identification.

    Call :meth:`revive` with a frame's instances that next-frame stitching left without a
    track, then :meth:`observe` with all of the frame's instances and their final ids; frames
    are numbered 0, 1, ... in order.
    """

    def __init__(self, settings: TrackerSettings):
        self.settings = settings
        self._tracks: dict[int, _Track] = {}  # track id -> state
        self._prior = np.zeros(3)  # scene prior velocity, meters per frame

    def _predicted(self, track: _Track, frame: int) -> np.ndarray:
        velocity = self._prior if track.velocity is None else track.velocity
        return track.position + velocity * (frame - track.last_frame)

    def revive(
        self,
        frame: int,
        categories: list[int],
        positions: np.ndarray,
        appearances: np.ndarray | None,
        continued: set[int],
    ) -> list[tuple[int, int] | None]:
        """Dormant tracks for instances that stitching left without one.

        Args:
            frame: the frame's number.
            categories: (J) class of each instance.
            positions: (J, 3) their positions (:func:`instance_positions`), NaN for none.
            appearances: (J, C) their unit appearance vectors, or None.
            continued: ids of the tracks stitching continued in this frame (never dormant).

        Returns:
            Per instance ``(track id, missing frames)`` of the track it revives, or None.
        """
        dormant = [
            (track_id, track)
            for track_id, track in sorted(self._tracks.items())
            if track.last_frame < frame - 1 and track_id not in continued
        ]
        result: list[tuple[int, int] | None] = [None] * len(categories)
        if not dormant or not categories:
            return result
        predicted = np.stack([self._predicted(track, frame) for _, track in dormant])
        distance = np.linalg.norm(positions[:, None, :] - predicted[None, :, :], axis=2)
        track_classes = np.array([track.category for _, track in dormant])
        elapsed = np.array([frame - track.last_frame for _, track in dormant], dtype=float)
        gate = self.settings.max_distance_per_frame * elapsed[None, :]  # (1, K) meters
        feasible = (np.array(categories)[:, None] == track_classes[None, :]) & (
            distance <= gate
        )  # NaN distances compare False
        if not feasible.any():
            return result
        cost = distance / gate
        if self.settings.appearance_weight > 0 and appearances is not None:
            for k, (_, track) in enumerate(dormant):
                if track.appearance is not None:
                    cosine = appearances @ track.appearance
                    cost[:, k] += self.settings.appearance_weight * (1.0 - cosine)
        cost = np.where(feasible, cost, _INFEASIBLE)
        for j, k in zip(*linear_sum_assignment(cost), strict=True):
            if feasible[j, k]:
                track_id, track = dormant[k]
                result[j] = (track_id, frame - track.last_frame - 1)
        return result

    def observe(
        self,
        frame: int,
        ids: list[int],
        categories: list[int],
        positions: np.ndarray,
        appearances: np.ndarray | None,
    ) -> None:
        """Record a frame's instances under their final ids, and forget the tracks that can no
        longer be revived (missing for ``max_gap`` frames by the next frame).

        Args:
            frame: the frame's number.
            ids: (J) final track id of each instance.
            categories: (J) their classes.
            positions: (J, 3) their positions, NaN for none (their tracks keep the last
                observation).
            appearances: (J, C) their unit appearance vectors, or None.
        """
        velocities = []
        for j, (track_id, category) in enumerate(zip(ids, categories, strict=True)):
            position = positions[j]
            if not np.isfinite(position).all():
                continue
            known = self._tracks.get(track_id)
            velocity = None
            if known is not None:
                velocity = (position - known.position) / (frame - known.last_frame)
                velocities.append(velocity)
            self._tracks[track_id] = _Track(
                category=category,
                position=position,
                velocity=velocity,
                last_frame=frame,
                appearance=None if appearances is None else appearances[j],
            )
        if velocities:
            self._prior = np.median(np.stack(velocities), axis=0)
        horizon = frame - self.settings.max_gap
        self._tracks = {k: t for k, t in self._tracks.items() if t.last_frame >= horizon}
