"""Sequence-consistent instance ids: ViP-DeepLab's next-frame stitching.

For each pair of consecutive frames (t, t+1) there are two views of frame t+1:

* its own panoptic prediction, whose instances are numbered afresh in every frame;
* the *next-frame view*: every thing pixel of frame t+1 goes, through its predicted next-frame
  offset, to the nearest center of frame t's instances and takes that instance's (sequence) id.

An instance of frame t+1 inherits the id of a frame-t instance when the two are each other's
best match: same class, and the largest IoU between its own segment and that instance's
next-frame segment, both ways (ties go to the smaller id). Every other instance gets a fresh id.

Ids (see :mod:`panoptic_depthlab.panoptic_ids`): the tracker reads a frame's own ids in any
numbering (single-frame outputs use the dataset's ``label_divisor``; the class of a segment is
its ``category_id``) and gives out ``class * label_divisor + n`` with its own divisor,
:data:`~panoptic_depthlab.panoptic_ids.TRACK_LABEL_DIVISOR` (2**32) by default: stuff segments
``class * label_divisor``, and each class counts ``n`` = 1, 2, ... over the whole sequence, so an
id is never reused for another object, and nothing depends on dict ordering. Track numbers have
no ceiling of their own; they must stay below the divisor, which no video reaches with 2**32.

The first frame's instances are numbered in the order of their own ids. The last frame pairs
with itself in ViP-DeepLab; here a frame's own prediction does not depend on the frame after it,
so it needs no such pair.

Beyond ViP-DeepLab, with :class:`~panoptic_depthlab.runtime.track_memory.TrackerSettings`
``max_gap`` > 0, an instance left without a next-frame link may revive a track that ended up to
``max_gap`` frames before, found by its 3-D position (:mod:`~panoptic_depthlab.runtime.
track_memory`): next-frame links come first, and a revived track keeps its id.
"""

from __future__ import annotations

from typing import Any

import torch

from ..panoptic_ids import TRACK_LABEL_DIVISOR
from .post_processing import nearest_center
from .track_memory import (
    TrackerSettings,
    TrackMemory,
    instance_appearances,
    instance_positions,
)

__all__ = ["InstanceTracker", "match_instances"]


def _id_table(ids: torch.Tensor, void_label: int) -> tuple[int, int]:
    """``(low, size)`` of a dense table indexed by ``id - low`` covering ``ids`` and void."""
    low = min(int(ids.min()), void_label) if ids.numel() else void_label
    high = max(int(ids.max()), void_label) if ids.numel() else void_label
    return low, high - low + 1


def match_instances(
    own: torch.Tensor,
    track: torch.Tensor,
    instance_classes: torch.Tensor,
    track_classes: torch.Tensor,
) -> torch.Tensor:
    """Mutual best IoU matching of frame t+1's instances to frame t's tracks, class by class.

    Both views cover the same pixels, the thing pixels of frame t+1: each has an own instance,
    and a track (its nearest frame-t center through the next-frame offsets).

    Args:
        own: (N,) int64 index in ``instance_classes`` of each thing pixel's own instance.
        track: (N,) int64 index in ``track_classes`` of each thing pixel's track.
        instance_classes: (J,) int64 class of each of frame t+1's instances, in ascending order
            of their own ids.
        track_classes: (K,) int64 class of each of frame t's instances, in ascending order of
            their sequence ids.

    Returns:
        (J,) int64: for each instance the index in ``track_classes`` of its match, -1 for none.
        Equal IoUs go to the smaller index (the smaller id).
    """
    num_own, num_tracks = instance_classes.numel(), track_classes.numel()
    unmatched = torch.full((num_own,), -1, dtype=torch.int64, device=own.device)
    if num_own == 0 or num_tracks == 0:
        return unmatched
    own_area = torch.bincount(own, minlength=num_own)
    track_area = torch.bincount(track, minlength=num_tracks)
    intersection = torch.bincount(own * num_tracks + track, minlength=num_own * num_tracks)
    intersection = intersection.view(num_own, num_tracks).double()
    iou = intersection / (own_area[:, None] + track_area[None, :] - intersection)
    same_class = instance_classes[:, None] == track_classes[None, :]
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
    sequence. The ids it gives out are ``class * label_divisor + n`` (module docstring):
    with the default :data:`~panoptic_depthlab.panoptic_ids.TRACK_LABEL_DIVISOR` (2**32),
    int64 ids whose track numbers ``n`` never run out in a real video.

    Attributes:
        counts: over the frames so far, the instances that continued a track by a next-frame
            link (``links``), revived a dormant one (``revivals``) and got a new id
            (``fresh``).
    """

    def __init__(
        self,
        label_divisor: int = TRACK_LABEL_DIVISOR,
        void_label: int = -1,
        settings: TrackerSettings | None = None,
    ):
        """
        Args:
            label_divisor: divisor of the ids given out: sequence id = class * label_divisor +
                track number. Split them with the same divisor
                (:func:`~panoptic_depthlab.panoptic_ids.split_panoptic`).
            void_label: id of unlabelled pixels, in the input and output panoptic maps.
            settings: the memory of ended tracks; None (or ``max_gap`` 0): no memory, frames
                are linked by next-frame stitching only.
        """
        self.label_divisor = label_divisor
        self.void_label = void_label
        self.memory = TrackMemory(settings) if settings is not None and settings.memory else None
        self.counts = {"links": 0, "revivals": 0, "fresh": 0}
        self._frame = -1
        self._last_number: dict[int, int] = {}  # class -> last track number given out
        self._centers = torch.zeros((0, 2), dtype=torch.int64)
        self._track_ids = torch.zeros((0,), dtype=torch.int64)

    def _fresh_id(self, category: int) -> int:
        number = self._last_number.get(category, 0) + 1
        if number >= self.label_divisor:
            raise ValueError(
                f"more than {self.label_divisor - 1} tracks of class {category} in one "
                f"sequence: ids class * {self.label_divisor} + n would overflow the label "
                "divisor; build the tracker with a larger label_divisor (default 2**32)."
            )
        self._last_number[category] = number
        return category * self.label_divisor + number

    def update(
        self,
        panoptic: torch.Tensor,
        segments_info: list[dict[str, Any]],
        next_offset: torch.Tensor | None,
        appearance: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Give one frame's segments their sequence ids.

        Args:
            panoptic: (H, W) int64 own panoptic prediction of the frame
                (:func:`~panoptic_depthlab.runtime.post_processing.panoptic_depth_inference`):
                every pixel holds the id of one of ``segments_info`` or ``void_label``; the ids
                may use any numbering (e.g. the dataset's label divisor).
            segments_info: its segments (any order), each with ``id``, ``category_id`` and
                ``isthing``; things carry ``center`` ([y, x]).
            next_offset: (2, H, W) float offsets (y, x) from this frame's pixels to their
                instance centers in the previous frame, pixels; None for the first frame.
            appearance: (C, h, w) features covering the frame (cell (i, j) covers rows
                [i H / h, (i + 1) H / h) and columns likewise), pooled in each instance's mask
                for the memory's appearance term; None for none.

        With a memory, thing segments need ``depth_median`` (meters; NaN for none) to be
        placed in 3-D; segments without one are tracked by next-frame links only.

        Returns:
            The (H, W) int64 panoptic map and segments with sequence ids ``class *
            label_divisor + n`` (stuff: n = 0; void pixels keep ``void_label``); segments
            ascending by id, every other key unchanged; a segment that revived a dormant track
            also has ``revived_after``, the number of frames its object was missing.
        """
        segments_info = sorted(segments_info, key=lambda s: s["id"])
        device, width = panoptic.device, panoptic.shape[1]
        ids = torch.tensor([s["id"] for s in segments_info], dtype=torch.int64, device=device)
        categories = [int(s["category_id"]) for s in segments_info]
        classes = torch.tensor(categories, dtype=torch.int64, device=device)
        is_thing = torch.tensor(
            [bool(s["isthing"]) for s in segments_info], dtype=torch.bool, device=device
        )
        # Pixels look segments up in dense tables indexed by id - low, with index_select (on CPU
        # about twice as fast as []) and int32 positions (about three times as fast as int64).
        low, size = _id_table(ids, self.void_label)
        index_dtype = torch.int32 if size <= torch.iinfo(torch.int32).max else torch.int64
        positions = panoptic.to(index_dtype, copy=True).reshape(-1)  # a copy: changed in place
        positions -= low
        table = torch.full((size,), -1, dtype=index_dtype, device=device)
        table[ids[is_thing] - low] = torch.arange(
            int(is_thing.sum()), dtype=index_dtype, device=device
        )
        instance = table.index_select(0, positions)
        thing_pixels = (instance >= 0).nonzero().squeeze(1)
        rows, cols = thing_pixels // width, thing_pixels % width
        own = instance[thing_pixels].long()
        instance_classes = classes[is_thing]
        match = torch.full((instance_classes.numel(),), -1, dtype=torch.int64, device=device)
        if next_offset is not None and thing_pixels.numel() > 0 and self._track_ids.numel() > 0:
            track = nearest_center(self._centers.to(device), next_offset, rows, cols)
            track_classes = (self._track_ids // self.label_divisor).to(device)
            match = match_instances(own, track, instance_classes, track_classes)
        self._frame += 1
        thing_index = torch.nonzero(is_thing).squeeze(1).tolist()
        links = [int(self._track_ids[m]) if m >= 0 else None for m in match.tolist()]
        revived: list[tuple[int, int] | None] = [None] * len(links)
        if self.memory is not None:
            thing_categories = [categories[i] for i in thing_index]
            depths = torch.tensor(
                [float(segments_info[i].get("depth_median", "nan")) for i in thing_index],
                dtype=torch.float64,
            )
            places = instance_positions(
                rows, cols, own, depths, tuple(panoptic.shape), self.memory.settings.focal_ratio
            )
            looks = None
            if self.memory.settings.appearance_weight > 0 and appearance is not None:
                looks = instance_appearances(
                    appearance, rows, cols, own, len(links), tuple(panoptic.shape)
                )
            unlinked = [j for j, link in enumerate(links) if link is None]
            found = self.memory.revive(
                self._frame,
                [thing_categories[j] for j in unlinked],
                places[unlinked],
                None if looks is None else looks[unlinked],
                {link for link in links if link is not None},
            )
            for j, revival in zip(unlinked, found, strict=True):
                revived[j] = revival
        new_ids = [category * self.label_divisor for category in categories]  # things below
        revived_after: dict[int, int] = {}
        for index, link, revival in zip(thing_index, links, revived, strict=True):
            if link is not None:
                new_ids[index] = link
                self.counts["links"] += 1
            elif revival is not None:
                new_ids[index] = revival[0]
                revived_after[revival[0]] = revival[1]
                self.counts["revivals"] += 1
            else:
                new_ids[index] = self._fresh_id(categories[index])
                self.counts["fresh"] += 1
        if self.memory is not None:
            self.memory.observe(
                self._frame,
                [new_ids[i] for i in thing_index],
                thing_categories,
                places,
                looks,
            )
        new_table = torch.full((size,), self.void_label, dtype=torch.int64, device=device)
        new_table[ids - low] = torch.tensor(new_ids, dtype=torch.int64, device=device)
        relabelled = new_table.index_select(0, positions).view_as(panoptic)
        segments = sorted(
            ({**s, "id": i} for s, i in zip(segments_info, new_ids, strict=True)),
            key=lambda s: s["id"],
        )
        for segment in segments:
            if segment["id"] in revived_after:
                segment["revived_after"] = revived_after[segment["id"]]
        things = [s for s in segments if s["isthing"]]
        self._centers = torch.tensor([s["center"] for s in things], dtype=torch.int64).view(-1, 2)
        self._track_ids = torch.tensor([s["id"] for s in things], dtype=torch.int64)
        return relabelled, segments
