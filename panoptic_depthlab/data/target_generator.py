"""ViP-DeepLab training targets of a frame or a frame pair, computed with vectorized NumPy.

Segments are found with bincounts (no sort, no loop over pixels); the only Python loop is over
instances, to paste each center Gaussian. Shapes follow Detectron2's Panoptic-DeepLab, so its
heads read these targets unchanged: ``sem_seg`` (H, W) int64, ``center`` (H, W), every weight map
and ``depth`` (1, H, W), offsets (2, H, W) in pixels in (y, x) order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["DVPSTargetGenerator", "label_segments"]


def label_segments(panoptic: np.ndarray, label_divisor: int) -> tuple[np.ndarray, ...]:
    """Number the segments (distinct panoptic ids) of a map.

    Args:
        panoptic: int (H, W), ``class * label_divisor + instance``.
        label_divisor: as in the dataset's metadata.

    Returns:
        ``ids`` (K,) sorted panoptic ids, ``index`` (H, W) int64 position of each pixel's id in
        ``ids``, and ``areas`` (K,) pixel counts.
    """
    classes = panoptic // label_divisor
    instances = panoptic - classes * label_divisor
    values = np.flatnonzero(np.bincount(instances.ravel()))  # distinct instance ids
    value_index = np.zeros(values[-1] + 1, np.int64)
    value_index[values] = np.arange(len(values))
    key = classes * len(values) + value_index[instances]
    counts = np.bincount(key.ravel())
    keys = np.flatnonzero(counts)
    key_index = np.zeros(len(counts), np.int64)
    key_index[keys] = np.arange(len(keys))
    ids = (keys // len(values)) * label_divisor + values[keys % len(values)]
    return ids, key_index[key], counts[keys]


class DVPSTargetGenerator:
    """Targets of frame t and, optionally, next-frame offsets of frame t+1 from panoptic maps.

    Definitions (all at the crop's resolution, pixels; crowd = thing class with instance 0):

    * ``sem_seg``: class per pixel, ``ignore_label`` where unlabelled. ``sem_seg_weights``: 0 at
      ignore, ``small_instance_weight`` on non-crowd thing instances with fewer than
      ``small_instance_area`` pixels, else 1.
    * ``center``: for each non-crowd thing instance, a Gaussian (std ``sigma``, peak 1, window
      ``6 * sigma + 3``) at the mean (y, x) of its pixels, rounded half to even as NumPy does;
      overlaps merge by max.
      ``center_weights``: 1 on labelled non-crowd pixels (stuff included).
    * ``offset``: the instance's (rounded) center minus the pixel position, on non-crowd thing
      pixels (0 elsewhere); ``offset_weights`` marks those pixels.
    * ``next_offset``: for each pixel of frame t+1 whose instance (same panoptic id, instance
      > 0) is an instance of frame t, that instance's center **in frame t** minus the pixel
      position; ``next_offset_weights`` is 1 there and 0 for new instances and elsewhere.
      Computed only when frame t+1's map is given (see :meth:`__call__`).
    """

    def __init__(
        self,
        *,
        thing_ids: Sequence[int],
        ignore_label: int,
        label_divisor: int,
        sigma: float = 8.0,
        small_instance_area: int = 4096,
        small_instance_weight: float = 3.0,
    ):
        self.ignore_label = ignore_label
        self.label_divisor = label_divisor
        self.small_instance_area = small_instance_area
        self.small_instance_weight = small_instance_weight
        self.is_thing = np.zeros(max(max(thing_ids, default=0), ignore_label) + 1, bool)
        self.is_thing[list(thing_ids)] = True
        # Gaussian window of side 6 * sigma + 3, its peak (1) at index 3 * sigma + 1.
        self.radius = int(round(3 * sigma + 1))
        grid = np.arange(-self.radius, self.radius + 1, dtype=np.float32)
        self.gaussian = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * sigma**2))

    def _instances(self, ids: np.ndarray) -> np.ndarray:
        """Mask (K,) of the non-crowd thing segments among panoptic ``ids``."""
        return self.is_thing[ids // self.label_divisor] & (ids % self.label_divisor > 0)

    def _paste_centers(self, centers: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) heatmap with one Gaussian per (y, x) row of ``centers``."""
        heatmap = np.zeros(shape, np.float32)
        r, (h, w) = self.radius, shape
        for y, x in centers.astype(np.int64):
            y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), max(x - r, 0), min(x + r + 1, w)
            if y0 >= y1 or x0 >= x1:
                continue
            window = self.gaussian[y0 - y + r : y1 - y + r, x0 - x + r : x1 - x + r]
            np.maximum(heatmap[y0:y1, x0:x1], window, out=heatmap[y0:y1, x0:x1])
        return heatmap

    @staticmethod
    def _offsets(centers: np.ndarray, index: np.ndarray, on: np.ndarray) -> np.ndarray:
        """(2, H, W): ``centers[index] - (y, x)`` where ``on``, else 0."""
        h, w = index.shape
        dy = centers[index, 0] - np.arange(h, dtype=np.float32)[:, None]
        dx = centers[index, 1] - np.arange(w, dtype=np.float32)[None, :]
        return np.stack([dy, dx]) * on

    def __call__(
        self, panoptic: np.ndarray, next_panoptic: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """Targets from the panoptic maps (H, W) of frame t and, optionally, frame t+1.

        Args:
            panoptic: frame t, ``class * label_divisor + instance``.
            next_panoptic: frame t+1, same size and encoding; None (single-frame training)
                gives frame t's targets alone, without ``next_offset`` and
                ``next_offset_weights``.
        """
        targets, instance_ids, instance_centers = self._frame_targets(panoptic)
        if next_panoptic is not None:
            targets.update(self._next_frame_targets(next_panoptic, instance_ids, instance_centers))
        return targets

    def _frame_targets(
        self, panoptic: np.ndarray
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
        """Frame t's targets, its non-crowd thing instances' sorted panoptic ids (M,) and their
        (rounded) centers (M, 2) float32 (y, x)."""
        div = self.label_divisor
        ids, index, areas = label_segments(panoptic, div)
        h, w = panoptic.shape
        classes = ids // div
        ignored = classes == self.ignore_label
        crowd = self.is_thing[classes] & (ids % div == 0)
        instance = self._instances(ids)

        ys = np.repeat(np.arange(h, dtype=np.float64), w)
        xs = np.tile(np.arange(w, dtype=np.float64), h)
        flat = index.ravel()
        mean_y = np.bincount(flat, weights=ys, minlength=len(ids)) / areas
        mean_x = np.bincount(flat, weights=xs, minlength=len(ids)) / areas
        centers = np.stack([np.round(mean_y), np.round(mean_x)], 1).astype(np.float32)

        weight = np.where(ignored, 0.0, 1.0).astype(np.float32)
        weight[instance & (areas < self.small_instance_area)] = self.small_instance_weight
        on_instance = instance[index]

        targets = {
            "sem_seg": torch.from_numpy(classes[index]),
            "sem_seg_weights": torch.from_numpy(weight[index]),
            "center": torch.from_numpy(self._paste_centers(centers[instance], (h, w))),
            "center_weights": _weight_map(~(ignored | crowd)[index]),
            "offset": torch.from_numpy(self._offsets(centers, index, on_instance)),
            "offset_weights": _weight_map(on_instance),
        }
        return targets, ids[instance], centers[instance]

    def _next_frame_targets(
        self, next_panoptic: np.ndarray, inst_ids: np.ndarray, inst_centers: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """``next_offset`` and ``next_offset_weights`` of frame t+1, given frame t's instances
        (sorted ids and centers, as returned by :meth:`_frame_targets`)."""
        # Match each segment of frame t+1 to an instance of frame t; -1 = none (the extra zero
        # row of ``table`` then serves as its center, under a zero weight).
        next_ids, next_index, _ = label_segments(next_panoptic, self.label_divisor)
        table = np.concatenate([inst_centers, np.zeros((1, 2), np.float32)])
        pos = np.searchsorted(inst_ids, next_ids).clip(max=max(len(inst_ids) - 1, 0))
        found = self._instances(next_ids) & (inst_ids[pos] == next_ids if len(inst_ids) else False)
        match = np.where(found, pos, -1)
        on_tracked = found[next_index]
        return {
            "next_offset": torch.from_numpy(self._offsets(table[match], next_index, on_tracked)),
            "next_offset_weights": _weight_map(on_tracked),
        }


def _weight_map(mask: np.ndarray) -> torch.Tensor:
    """(H, W) bool -> (1, H, W) float32 tensor."""
    return torch.from_numpy(mask.astype(np.float32))[None]
