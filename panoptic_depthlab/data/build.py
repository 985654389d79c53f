"""Data loaders for frame-pair training."""

from __future__ import annotations

from collections.abc import Callable

from detectron2.config import CfgNode
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts

from .dataset_mapper import DVPSDatasetMapper
from .sampler import FramePairTrainingSampler

__all__ = ["build_dvps_train_loader"]


def build_dvps_train_loader(cfg: CfgNode, mapper: Callable | None = None):
    """Detectron2's training loader over the frame pairs of ``DATASETS.TRAIN``.

    The last frame of each sequence is skipped by :class:`FramePairTrainingSampler`; batches hold
    ``SOLVER.IMS_PER_BATCH`` pairs in total across workers, mapped by ``mapper`` (default:
    ``DVPSDatasetMapper(cfg, is_train=True)``).
    """
    dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False)
    return build_detection_train_loader(
        dataset=dataset,
        mapper=mapper if mapper is not None else DVPSDatasetMapper(cfg, is_train=True),
        sampler=FramePairTrainingSampler(dataset),
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
