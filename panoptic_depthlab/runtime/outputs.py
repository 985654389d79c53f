"""From a frame's head maps to its outputs: crop the padding, resize, group the panoptic map.

One function serves the eager model (:class:`~panoptic_depthlab.modeling.PanopticDepthLab`) and
the exported graphs (:mod:`panoptic_depthlab.runtime.exported`), so both give the same outputs
from the same maps. It needs PyTorch only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from .post_processing import panoptic_depth_inference

__all__ = ["PanopticSettings", "frame_outputs", "resize_map"]


@dataclass(frozen=True)
class PanopticSettings:
    """The post-processing settings of a model: ``MODEL.PANOPTIC_DEEPLAB`` and the dataset's
    thing classes and ``label_divisor`` (see
    :func:`~panoptic_depthlab.runtime.post_processing.panoptic_depth_inference`)."""

    thing_ids: tuple[int, ...]
    label_divisor: int
    stuff_area: int
    threshold: float
    nms_kernel: int
    top_k: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "thing_ids": list(self.thing_ids),
            "label_divisor": self.label_divisor,
            "stuff_area": self.stuff_area,
            "threshold": self.threshold,
            "nms_kernel": self.nms_kernel,
            "top_k": self.top_k,
        }


def resize_map(
    values: torch.Tensor, image_size: tuple[int, int], output_size: tuple[int, int]
) -> torch.Tensor:
    """(C, Hp, Wp) map of a padded image -> (C, *output_size): the image's (H, W) = ``image_size``
    corner, resized bilinearly (``align_corners=False``), as Detectron2's
    ``sem_seg_postprocess``."""
    cropped = values[None, :, : image_size[0], : image_size[1]]
    return F.interpolate(cropped, size=output_size, mode="bilinear", align_corners=False)[0]


def frame_outputs(
    maps: Mapping[str, torch.Tensor],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    settings: PanopticSettings,
) -> dict[str, Any]:
    """Outputs of one frame from its head maps.

    Args:
        maps: the frame's head maps, no batch dimension, at the padded size (or already at
            ``image_size``): ``sem_seg`` (C, Hp, Wp) logits, ``center`` (1, Hp, Wp), ``offset``
            (2, Hp, Wp) pixels (y, x), ``depth`` (1, Hp, Wp) meters and optionally
            ``next_offset`` (2, Hp, Wp) pixels.
        image_size: (H, W) of the frame before padding.
        output_size: (height, width) to give the outputs at; offsets are rescaled with it.
        settings: the post-processing settings.

    Returns:
        ``sem_seg`` (C, height, width) logits, ``depth`` (height, width) meters,
        ``panoptic_seg`` ``(ids (height, width) int64, segments_info)`` with ids
        ``class * settings.label_divisor + instance`` (-1 void) and, when ``maps`` has it,
        ``next_offset`` (2, height, width) pixels.
    """
    resized = {k: resize_map(v, image_size, output_size) for k, v in maps.items()}
    scale = maps["offset"].new_tensor(
        [output_size[0] / image_size[0], output_size[1] / image_size[1]]
    )
    for key in ("offset", "next_offset"):
        if key in resized:
            resized[key] = resized[key] * scale.view(2, 1, 1)
    depth = resized["depth"][0]
    panoptic, segments_info = panoptic_depth_inference(
        resized["sem_seg"].argmax(dim=0, keepdim=True),
        resized["center"],
        resized["offset"],
        depth,
        thing_ids=settings.thing_ids,
        label_divisor=settings.label_divisor,
        stuff_area=settings.stuff_area,
        void_label=-1,
        threshold=settings.threshold,
        nms_kernel=settings.nms_kernel,
        top_k=settings.top_k,
    )
    output = {
        "sem_seg": resized["sem_seg"],
        "depth": depth,
        "panoptic_seg": (panoptic, segments_info),
    }
    if "next_offset" in resized:
        output["next_offset"] = resized["next_offset"]
    return output
