"""Where the ASPP's image-pooling branch averages: over the whole map or a training-crop window."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from detectron2.layers import ASPP, ShapeSpec
from detectron2.projects.deeplab import DeepLabV3PlusHead
from torch import nn
from torch.nn import functional as F

from ..config import ConfigValueError
from ..runtime.aspp_window import pools_in_windows

__all__ = ["ASPP_POOLING_MODES", "CropWindowPool2d", "crop_window", "set_aspp_pooling"]

ASPP_POOLING_MODES = ("crop", "global")


class CropWindowPool2d(nn.Module):
    """The image-pooling average of an ASPP, over a window of the training crop's size.

    ``MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING: "crop"`` puts this module in place of the
    average pool of every ASPP of the model (the semantic, instance, depth and next-frame
    heads); ``"global"`` leaves Detectron2's global average (``AdaptiveAvgPool2d(1)``).

    The rule, for a feature map of (h, w) feature pixels and a window (wh, ww) =
    ``ceil(INPUT.CROP.SIZE / stride of the ASPP's input)`` feature pixels:

    * h and w are whole multiples of wh and ww, and larger than the window: average over every
      wh x ww window with stride 1, giving (h - wh + 1, w - ww + 1); the ASPP then upsamples it
      bilinearly to (h, w). This is Detectron2's ASPP built with ``pool_kernel_size`` from the
      crop (how its model-zoo Panoptic-DeepLab was evaluated at 1024x2048 after training on
      512x1024 crops; deeplab2 also pools over a crop-sized window at inference).
    * otherwise (the map is the window: training on crops; or the window does not divide the
      map, e.g. SemKITTI-DVPS's 385x1281 crop, inputs smaller than the crop, odd sizes where
      Detectron2 raises): a global average, bit for bit what ``"global"`` computes. Training
      under either mode is therefore the same computation, and one default serves every
      dataset.

    The module has no parameters: checkpoints are the same under either mode.

    Args:
        window: (wh, ww) in feature pixels.
    """

    def __init__(self, window: tuple[int, int]):
        super().__init__()
        if len(window) != 2 or min(window) < 1:
            raise ValueError(f"window must be two positive sizes (h, w), got {tuple(window)}.")
        self.window = (int(window[0]), int(window[1]))

    def uses_window(self, size: tuple[int, int]) -> bool:
        """Whether a map of ``size`` (h, w) feature pixels is pooled in windows (else globally)."""
        return pools_in_windows(size, self.window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) features -> (N, C, h - wh + 1, w - ww + 1) window averages, or
        (N, C, 1, 1) global averages (see the class docstring for which)."""
        if self.uses_window(tuple(x.shape[-2:])):
            return F.avg_pool2d(x, kernel_size=self.window, stride=1)
        return F.adaptive_avg_pool2d(x, 1)

    def extra_repr(self) -> str:
        return f"window={self.window}"


def crop_window(crop_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """The crop ``(H, W)`` in input pixels as a window in feature pixels at ``stride``
    (rounded up; exactly ``crop / stride``, Detectron2's ``pool_kernel_size``, when it divides)."""
    return (math.ceil(crop_size[0] / stride), math.ceil(crop_size[1] / stride))


def _aspp_of(head: DeepLabV3PlusHead) -> ASPP | None:
    stage = head.decoder[head.in_features[-1]]
    aspp = stage["project_conv"]
    return aspp if isinstance(aspp, ASPP) else None


def set_aspp_pooling(
    heads: Iterable[nn.Module],
    input_shape: dict[str, ShapeSpec],
    mode: str,
    crop_size: tuple[int, int] | None,
) -> int:
    """Set the image pooling of the ASPP of every DeepLabV3+ decoder in ``heads``.

    Args:
        heads: modules to search (e.g. the model's heads); every
            :class:`~detectron2.projects.deeplab.DeepLabV3PlusHead` inside them whose deepest
            stage is an :class:`~detectron2.layers.ASPP` is changed. ``None`` entries are skipped.
        input_shape: the backbone's output shapes; the stride of a head's deepest input
            feature sizes its window.
        mode: ``"crop"`` (:class:`CropWindowPool2d`) or ``"global"`` (Detectron2's
            ``AdaptiveAvgPool2d(1)``).
        crop_size: the training crop (H, W) in input pixels; None (no training crop) pools
            globally in either mode.

    Returns:
        The number of ASPPs set.
    """
    if mode not in ASPP_POOLING_MODES:
        raise ConfigValueError(
            f"MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING={mode!r}: expected one of "
            f"{list(ASPP_POOLING_MODES)}."
        )
    count = 0
    for head in heads:
        if head is None:
            continue
        for module in head.modules():
            if not isinstance(module, DeepLabV3PlusHead):
                continue
            aspp = _aspp_of(module)
            if aspp is None:
                continue
            aspp.pool_kernel_size = None  # no divisibility check: the window rule replaces it
            branch = aspp.convs[-1]
            if mode == "crop" and crop_size is not None:
                stride = input_shape[module.in_features[-1]].stride
                branch[0] = CropWindowPool2d(crop_window(crop_size, stride))
            else:
                branch[0] = nn.AdaptiveAvgPool2d(1)
            count += 1
    return count
