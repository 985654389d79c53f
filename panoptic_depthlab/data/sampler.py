"""A training sampler that draws only frames that have a next frame in their sequence."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from detectron2.data.samplers import TrainingSampler

__all__ = ["FramePairTrainingSampler"]

logger = logging.getLogger(__name__)


class FramePairTrainingSampler(TrainingSampler):
    """Detectron2's infinite, shuffled, rank-sharded sampler over the frames with a next frame.

    The last frame of each sequence cannot start a (t, t+1) pair; it is skipped here, by index,
    so the mapper never sees it during training. Single-frame training (no next-frame branch)
    samples every record with Detectron2's :class:`TrainingSampler` instead: see
    :func:`~panoptic_depthlab.data.build_dvps_train_loader`.
    """

    def __init__(
        self, dataset_dicts: Sequence[dict[str, Any]], shuffle: bool = True, seed: int | None = None
    ):
        self.pair_indices = [i for i, d in enumerate(dataset_dicts) if d.get("next_frame")]
        if not self.pair_indices:
            raise ValueError(
                f"None of the {len(dataset_dicts)} training frames has a next frame in its "
                "sequence; frame-pair training needs sequences of at least 2 frames."
            )
        skipped = len(dataset_dicts) - len(self.pair_indices)
        logger.info(
            "Sampling %d frame pairs; skipping %d last frames of sequences (no next frame).",
            len(self.pair_indices),
            skipped,
        )
        super().__init__(len(self.pair_indices), shuffle=shuffle, seed=seed)

    def __iter__(self) -> Iterator[int]:
        for i in super().__iter__():
            yield self.pair_indices[i]
