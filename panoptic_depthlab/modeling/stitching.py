"""Sequence-consistent instance ids: ViP-DeepLab's next-frame stitching.

For each pair of consecutive frames (t, t+1) there are two views of frame t+1:

* its own panoptic prediction, whose instances are numbered afresh in every frame;
* the *next-frame view*: every thing pixel of frame t+1 goes, through its predicted next-frame
  offset, to the nearest center of frame t's instances and takes that instance's (sequence) id.

An instance of frame t+1 inherits the id of a frame-t instance when the two are each other's
best match: same class, and the largest IoU between its own segment and that instance's
next-frame segment, both ways (ties go to the smaller id). Every other instance gets a fresh id.
Ids are ``class * label_divisor + n``; each class counts ``n`` = 1, 2, ... over the whole
sequence, so an id is never reused for another object, and nothing depends on dict ordering.

The first frame keeps the numbering of its own prediction. The last frame pairs with itself in
ViP-DeepLab; here a frame's own prediction does not depend on the frame after it, so it needs
no such pair.
"""

from __future__ import annotations

from typing import Any

import torch

from .post_processing import nearest_center

__all__ = ["InstanceTracker", "match_instances", "next_frame_view"]


def next_frame_view(
    thing_mask: torch.Tensor,
    next_offset: torch.Tensor,
    centers: torch.Tensor,
    track_ids: torch.Tensor,
    void_label: int,
) -> torch.Tensor:
    """Frame t+1's thing pixels labelled with the ids of frame t's instances.

    Args:
        thing_mask: (H, W) bool, the thing pixels of frame t+1.
        next_offset: (2, H, W) float offsets (y, x) from each pixel of frame t+1 to its
            instance's center in frame t, pixels.
        centers: (K, 2) int64 centers (y, x) of frame t's instances, pixels.
        track_ids: (K,) int64 sequence id of each of those instances.
        void_label: id of the pixels that are not things (all pixels when K = 0).

    Returns:
        (H, W) int64: the id of the nearest frame-t center of each thing pixel, else void.
    """
    view = torch.full(thing_mask.shape, void_label, dtype=torch.int64, device=thing_mask.device)
    pixel_y, pixel_x = thing_mask.nonzero().unbind(1)
    if centers.shape[0] > 0 and pixel_y.numel() > 0:
        nearest = nearest_center(centers, next_offset, pixel_y, pixel_x)
        view[pixel_y, pixel_x] = track_ids[nearest]
    return view


def _index_of(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position of each value among sorted ``ids`` (K,), and whether it is there at all."""
    if ids.numel() == 0:
        return torch.zeros_like(values), torch.zeros_like(values, dtype=torch.bool)
    index = torch.searchsorted(ids, values).clamp_(max=ids.numel() - 1)
    return index, ids[index] == values


def match_instances(
    panoptic: torch.Tensor,
    instance_ids: torch.Tensor,
    view: torch.Tensor,
    track_ids: torch.Tensor,
    label_divisor: int,
) -> torch.Tensor:
    """Mutual best IoU matching of frame t+1's instances to frame t's tracks, class by class.

    Args:
        panoptic: (H, W) int64 own panoptic prediction of frame t+1.
        instance_ids: (J,) int64 ascending ids of its thing instances.
        view: (H, W) int64 next-frame view (:func:`next_frame_view`).
        track_ids: (K,) int64 ascending ids of frame t's instances.
        label_divisor: class = id // label_divisor.

    Returns:
        (J,) int64: for each instance the index in ``track_ids`` of its match, -1 for none.
    """
    num_own, num_tracks = instance_ids.numel(), track_ids.numel()
    unmatched = torch.full((num_own,), -1, dtype=torch.int64, device=panoptic.device)
    if num_own == 0 or num_tracks == 0:
        return unmatched
    own, on_own = _index_of(panoptic.flatten(), instance_ids)
    track, on_track = _index_of(view.flatten(), track_ids)
    own_area = torch.bincount(own[on_own], minlength=num_own)
    track_area = torch.bincount(track[on_track], minlength=num_tracks)
    both = on_own & on_track
    intersection = torch.bincount(
        own[both] * num_tracks + track[both], minlength=num_own * num_tracks
    )
    intersection = intersection.view(num_own, num_tracks).double()
    iou = intersection / (own_area[:, None] + track_area[None, :] - intersection)
    same_class = (instance_ids // label_divisor)[:, None] == (track_ids // label_divisor)[None, :]
    iou = torch.where(same_class & (intersection > 0), iou, 0.0)
    best_track = iou.argmax(dim=1)  # argmax takes the first maximum: the smaller id on ties
    best_own = iou.argmax(dim=0)
    rows = torch.arange(num_own, device=panoptic.device)
    mutual = (best_own[best_track] == rows) & (iou[rows, best_track] > 0)
    return torch.where(mutual, best_track, unmatched)


class InstanceTracker:
    """Sequence ids for the frames of one sequence, given in order.

    Call :meth:`update` once per frame with the frame's own panoptic prediction and, from the
    second frame on, its next-frame offsets to the previous frame. Start a new tracker for each
    sequence.
    """

    def __init__(self, label_divisor: int, void_label: int = -1):
        """
        Args:
            label_divisor: panoptic id = class * label_divisor + instance number.
            void_label: id of unlabelled pixels in the panoptic maps.
        """
        self.label_divisor = label_divisor
        self.void_label = void_label
        self._last_number: dict[int, int] = {}  # class -> last instance number given out
        self._centers = torch.zeros((0, 2), dtype=torch.int64)
        self._track_ids = torch.zeros((0,), dtype=torch.int64)

    def _fresh_id(self, category: int) -> int:
        number = self._last_number.get(category, 0) + 1
        if number >= self.label_divisor:
            raise ValueError(
                f"more than {self.label_divisor - 1} instances of class {category} in one "
                "sequence: ids class * label_divisor + n would overflow the label divisor."
            )
        self._last_number[category] = number
        return category * self.label_divisor + number

    def update(
        self,
        panoptic: torch.Tensor,
        segments_info: list[dict[str, Any]],
        next_offset: torch.Tensor | None,
    ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Give one frame's instances their sequence ids.

        Args:
            panoptic: (H, W) int64 own panoptic prediction of the frame
                (:func:`~panoptic_depthlab.modeling.post_processing.panoptic_depth_inference`).
            segments_info: its segments (any order); things carry ``center`` ([y, x]).
            next_offset: (2, H, W) float offsets (y, x) from this frame's pixels to their
                instance centers in the previous frame, pixels; None for the first frame.

        Returns:
            The panoptic map and segments with sequence ids (segments ascending by id, every
            other key unchanged).
        """
        segments_info = sorted(segments_info, key=lambda s: s["id"])
        ids = torch.tensor([s["id"] for s in segments_info], dtype=torch.int64)
        is_thing = torch.tensor([bool(s["isthing"]) for s in segments_info], dtype=torch.bool)
        instance_ids = ids[is_thing]
        match = torch.full((instance_ids.numel(),), -1, dtype=torch.int64)
        if next_offset is not None:
            index, on_segment = _index_of(panoptic.cpu(), ids)
            thing_mask = on_segment & is_thing[index]
            view = next_frame_view(
                thing_mask, next_offset.cpu(), self._centers, self._track_ids, self.void_label
            )
            match = match_instances(
                panoptic.cpu(), instance_ids, view, self._track_ids, self.label_divisor
            )
        new_instance_ids = [
            self._track_ids[m].item() if m >= 0 else self._fresh_id(i // self.label_divisor)
            for i, m in zip(instance_ids.tolist(), match.tolist(), strict=True)
        ]
        new_ids = ids.clone()
        new_ids[is_thing] = torch.tensor(new_instance_ids, dtype=torch.int64)

        index, on_segment = _index_of(panoptic, ids.to(panoptic.device))
        relabelled = torch.where(on_segment, new_ids.to(panoptic.device)[index], self.void_label)
        segments = sorted(
            ({**s, "id": i} for s, i in zip(segments_info, new_ids.tolist(), strict=True)),
            key=lambda s: s["id"],
        )
        things = [s for s in segments if s["isthing"]]
        self._centers = torch.tensor([s["center"] for s in things], dtype=torch.int64).view(-1, 2)
        self._track_ids = torch.tensor([s["id"] for s in things], dtype=torch.int64)
        return relabelled, segments
