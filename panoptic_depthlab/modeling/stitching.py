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

__all__ = ["InstanceTracker", "match_instances"]


def _thing_pixels(
    panoptic: torch.Tensor, ids: torch.Tensor, is_thing: torch.Tensor, void_label: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The thing pixels of a panoptic map and the instance each belongs to.

    Args:
        panoptic: (H, W) int64; every pixel is one of ``ids`` or ``void_label``.
        ids: (S,) int64 segment ids.
        is_thing: (S,) bool, which segments are thing instances.

    Returns:
        (N,) int64 flat indices of the thing pixels, and (N,) int64 index of each one's
        instance among ``ids[is_thing]``. Segments are looked up by one dense table gather
        (``index_select``: on CPU about twice as fast as indexing with ``[]``).
    """
    low = min(int(ids.min()), void_label) if ids.numel() else void_label
    high = max(int(ids.max()), void_label) if ids.numel() else void_label
    table = torch.full((high - low + 1,), -1, dtype=torch.int64, device=ids.device)
    table[ids[is_thing] - low] = torch.arange(int(is_thing.sum()), device=ids.device)
    instance = table.index_select(0, (panoptic - low).flatten())
    pixels = (instance >= 0).nonzero().squeeze(1)
    return pixels, instance[pixels]


def match_instances(
    own: torch.Tensor,
    track: torch.Tensor,
    instance_ids: torch.Tensor,
    track_ids: torch.Tensor,
    label_divisor: int,
) -> torch.Tensor:
    """Mutual best IoU matching of frame t+1's instances to frame t's tracks, class by class.

    Both views cover the same pixels, the thing pixels of frame t+1: each has an own instance,
    and a track (its nearest frame-t center through the next-frame offsets).

    Args:
        own: (N,) int64 index in ``instance_ids`` of each thing pixel's own instance.
        track: (N,) int64 index in ``track_ids`` of each thing pixel's track.
        instance_ids: (J,) int64 ascending ids of frame t+1's instances.
        track_ids: (K,) int64 ascending ids of frame t's instances.
        label_divisor: class = id // label_divisor.

    Returns:
        (J,) int64: for each instance the index in ``track_ids`` of its match, -1 for none.
    """
    num_own, num_tracks = instance_ids.numel(), track_ids.numel()
    unmatched = torch.full((num_own,), -1, dtype=torch.int64, device=own.device)
    if num_own == 0 or num_tracks == 0:
        return unmatched
    own_area = torch.bincount(own, minlength=num_own)
    track_area = torch.bincount(track, minlength=num_tracks)
    intersection = torch.bincount(own * num_tracks + track, minlength=num_own * num_tracks)
    intersection = intersection.view(num_own, num_tracks).double()
    iou = intersection / (own_area[:, None] + track_area[None, :] - intersection)
    same_class = (instance_ids // label_divisor)[:, None] == (track_ids // label_divisor)[None, :]
    iou = torch.where(same_class & (intersection > 0), iou, 0.0)
    best_track = iou.argmax(dim=1)  # argmax takes the first maximum: the smaller id on ties
    best_own = iou.argmax(dim=0)
    rows = torch.arange(num_own, device=own.device)
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
        device, width = panoptic.device, panoptic.shape[1]
        ids = torch.tensor([s["id"] for s in segments_info], dtype=torch.int64, device=device)
        is_thing = torch.tensor(
            [bool(s["isthing"]) for s in segments_info], dtype=torch.bool, device=device
        )
        instance_ids = ids[is_thing]
        thing_pixels, own = _thing_pixels(panoptic, ids, is_thing, self.void_label)
        match = torch.full((instance_ids.numel(),), -1, dtype=torch.int64, device=device)
        if next_offset is not None and thing_pixels.numel() > 0 and self._track_ids.numel() > 0:
            track = nearest_center(
                self._centers.to(device), next_offset, thing_pixels // width, thing_pixels % width
            )
            match = match_instances(
                own, track, instance_ids, self._track_ids.to(device), self.label_divisor
            )
        new_instance_ids = torch.tensor(
            [
                self._track_ids[m].item() if m >= 0 else self._fresh_id(i // self.label_divisor)
                for i, m in zip(instance_ids.tolist(), match.tolist(), strict=True)
            ],
            dtype=torch.int64,
            device=device,
        )
        new_ids = ids.clone()
        new_ids[is_thing] = new_instance_ids
        relabelled = panoptic
        if not torch.equal(new_ids, ids):  # only thing pixels change
            relabelled = panoptic.flatten().clone()
            relabelled[thing_pixels] = new_instance_ids[own]
            relabelled = relabelled.view_as(panoptic)
        segments = sorted(
            ({**s, "id": i} for s, i in zip(segments_info, new_ids.tolist(), strict=True)),
            key=lambda s: s["id"],
        )
        things = [s for s in segments if s["isthing"]]
        self._centers = torch.tensor([s["center"] for s in things], dtype=torch.int64).view(-1, 2)
        self._track_ids = torch.tensor([s["id"] for s in things], dtype=torch.int64)
        return relabelled, segments
