"""The DVPS dataset mapper: frame pairs (video models) or single frames."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode, configurable
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from .annotations import read_depth, read_panoptic, read_png
from .target_generator import DVPSTargetGenerator
from .transforms import build_dvps_augmentations

__all__ = ["DVPSDatasetMapper"]

logger = logging.getLogger(__name__)

# Metadata values the mapper depends on; datasets mixed in one mapper must agree on them.
_SHARED_METADATA = ("dataset_format", "label_divisor", "ignore_label", "depth_scale", "has_depth")


class DVPSDatasetMapper:
    """Map a DVPS frame record (see :mod:`panoptic_depthlab.data.datasets.dvps`) to model inputs.

    Training (``is_train=True``) with ``next_frame=True`` (a model with the next-frame branch,
    ``MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED``): frame t and frame t+1 are read, one
    augmentation sample is applied to both images, both panoptic maps and the depth map, and the
    result holds, at the crop's resolution:

    * ``image``, ``next_image``: uint8 (3, H, W) in ``INPUT.FORMAT`` channel order;
    * frame t's targets ``sem_seg``, ``sem_seg_weights``, ``center``, ``center_weights``,
      ``offset``, ``offset_weights`` (Detectron2's Panoptic-DeepLab shapes, see
      :class:`DVPSTargetGenerator`), frame t+1's ``next_offset`` and ``next_offset_weights``;
    * ``depth``: float32 (1, H, W) meters of frame t, 0 = no depth; ``depth_valid``: bool
      (1, H, W), ``depth > 0`` (all False when the crop has no depth); neither for a dataset
      without depth ground truth (metadata ``has_depth`` False).

    A record without a next frame (the last of its sequence) is then an error; use
    :class:`FramePairTrainingSampler` (as :func:`build_dvps_train_loader` does) to skip them.

    Training with ``next_frame=False`` (a single-frame model): frame t alone is read, and the
    result is the above without ``next_image``, ``next_offset`` and ``next_offset_weights``;
    for the same record and augmentation sample, frame t's targets and depth equal the pair
    path's. Any record can be mapped, also one without a next frame (the last of a sequence, or
    an independent image whose record has no ``next_frame``).

    Unlabelled pixels (Cityscapes-DVPS void, SemKITTI-DVPS 255, padding) get
    ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE`` in ``sem_seg``.

    Evaluation (``is_train=False``): no augmentation, original resolution; ``image`` only.
    Sequence inference (:meth:`PanopticDepthLab.inference_sequence`) pairs each frame with the
    cached features of the previous one, so the next frame is not read here.

    The record's own keys (file names, ids, ``height``/``width``) are kept in the output.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: list[T.Augmentation | T.Transform],
        image_format: str,
        metadata: Mapping[str, Any],
        target_generator: DVPSTargetGenerator,
        next_frame: bool = True,
    ):
        """
        Args:
            is_train: training (augmentation, targets) or evaluation mode.
            augmentations: applied to frame t, replayed on everything else (training only).
            image_format: "RGB" or "BGR", the channel order of the output images.
            metadata: the dataset's metadata (``dvps_metadata(...)`` or MetadataCatalog's).
            target_generator: computes the panoptic and next-frame targets.
            next_frame: training reads frame t+1 too and adds its targets (``next_image``,
                ``next_offset``, ``next_offset_weights``); False: frame t alone. Unused in
                evaluation.
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT={image_format!r}: expected 'RGB' or 'BGR'.")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.metadata = dict(metadata)
        self.target_generator = target_generator
        self.next_frame = next_frame
        mode = "training" if is_train else "inference"
        logger.info(f"[DVPSDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> dict[str, Any]:
        names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
        if not names:
            key = "DATASETS.TRAIN" if is_train else "DATASETS.TEST"
            raise ValueError(f"{key} is empty; DVPSDatasetMapper needs a registered DVPS dataset.")
        metas = {name: MetadataCatalog.get(name).as_dict() for name in names}
        meta = metas[names[0]]
        for name, other in metas.items():
            for key in _SHARED_METADATA:
                if other.get(key) != meta.get(key):
                    raise ValueError(
                        f"Datasets {names[0]} and {name} differ in metadata {key!r} "
                        f"({meta.get(key)!r} vs {other.get(key)!r}); one mapper serves one format."
                    )
        # Unlabelled pixels get the semantic head's ignore value, whatever the dataset's default.
        ignore = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        if ignore < meta["num_classes"]:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE={ignore} is a class id of {names[0]} "
                f"(0..{meta['num_classes'] - 1}); expected a value >= {meta['num_classes']}."
            )
        meta = {**meta, "ignore_label": ignore}
        seg_pad = ignore * meta["label_divisor"]
        return {
            "is_train": is_train,
            "augmentations": build_dvps_augmentations(cfg, seg_pad) if is_train else [],
            "image_format": cfg.INPUT.FORMAT,
            "metadata": meta,
            "target_generator": DVPSTargetGenerator(
                thing_ids=meta["thing_ids"],
                ignore_label=meta["ignore_label"],
                label_divisor=meta["label_divisor"],
                sigma=cfg.INPUT.GAUSSIAN_SIGMA,
                small_instance_area=cfg.INPUT.SMALL_INSTANCE_AREA,
                small_instance_weight=cfg.INPUT.SMALL_INSTANCE_WEIGHT,
            ),
            "next_frame": cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED,
        }

    def _read_image(self, path: str) -> np.ndarray:
        """(H, W, 3) uint8 in ``image_format`` order."""
        image = read_png(path, "an 8-bit RGB image")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"{path}: image of shape {image.shape} and dtype {image.dtype}; expected an "
                "8-bit, 3-channel image."
            )
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if self.image_format == "RGB" else image

    def _read_next_image(self, record: Mapping[str, Any], size: tuple[int, int]) -> np.ndarray:
        path = record["next_frame"]["file_name"]
        image = self._read_image(path)
        if image.shape[:2] != size:
            raise ValueError(
                f"{path}: size (H, W) = {image.shape[:2]} differs from the previous frame "
                f"{record['file_name']}, (H, W) = {size}; frames of a sequence must match."
            )
        return image

    def __call__(self, dataset_dict: dict[str, Any]) -> dict[str, Any]:
        record = copy.copy(dataset_dict)
        image = self._read_image(record["file_name"])
        size = image.shape[:2]
        if not self.is_train:
            record["image"] = _to_tensor(image)
            return record

        nxt = record.get("next_frame") if self.next_frame else None
        if self.next_frame and nxt is None:
            raise ValueError(
                f"{record['file_name']}: the last frame of sequence {record['sequence_id']} has "
                "no next frame, so it cannot start a training pair; sample training frames with "
                "FramePairTrainingSampler (build_dvps_train_loader does)."
            )
        next_image = self._read_next_image(record, size) if nxt is not None else None
        panoptic = read_panoptic(record, self.metadata, size)
        next_panoptic = read_panoptic(nxt, self.metadata, size) if nxt is not None else None
        has_depth = self.metadata.get("has_depth", True)
        depth = read_depth(record, self.metadata, size) if has_depth else None

        # One augmentation sample (NumPy's global RNG), drawn from frame t alone: the single-frame
        # path draws the same sample as the pair path and gives the same frame-t outputs.
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        record["image"] = _to_tensor(aug_input.image)
        if next_image is not None:
            record["next_image"] = _to_tensor(transforms.apply_image(next_image))
            next_panoptic = transforms.apply_segmentation(next_panoptic)
        record.update(self.target_generator(transforms.apply_segmentation(panoptic), next_panoptic))
        if depth is not None:
            depth = torch.from_numpy(np.ascontiguousarray(transforms.apply_depth(depth)))[None]
            record["depth"], record["depth_valid"] = depth, depth > 0
        return record


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> (C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
