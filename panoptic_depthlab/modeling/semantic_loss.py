"""The semantic loss as deeplab2 normalises it, for sparse labels.

Detectron2's ``DeepLabCE`` (``MODEL.SEM_SEG_HEAD.LOSS_TYPE "hard_pixel_mining"``) keeps the
``LOSS_TOP_K`` fraction of the largest pixel losses of the whole batch and divides their sum by
that number of pixels, ignored pixels (loss 0) included. deeplab2's
``compute_average_top_k_loss`` (``model/loss/base_loss.py``) keeps the top fraction *per
image* and divides by the number of those losses that are not zero. On dense labels (Cityscapes)
the two agree up to the batch/image split; on SemKITTI-DVPS, where about 5% of the pixels carry a
label, every labelled pixel is in the top 20% and deeplab2 averages over them, while
``DeepLabCE`` divides by 20% of all pixels: about a quarter of deeplab2's loss.

``LOSS_TYPE "deeplab2_hard_pixel_mining"`` selects :class:`TopKNonZeroMeanCE`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DEEPLAB2_HARD_PIXEL_MINING", "TopKNonZeroMeanCE"]

DEEPLAB2_HARD_PIXEL_MINING = "deeplab2_hard_pixel_mining"


class TopKNonZeroMeanCE(nn.Module):
    """Per-pixel cross-entropy (times the pixel weights), the top ``top_k_percent_pixels`` of
    each image, their sum over the number of non-zero losses among them (0 when none), averaged
    over the images of the batch."""

    def __init__(self, ignore_label: int, top_k_percent_pixels: float):
        """
        Args:
            ignore_label: label of pixels without a loss.
            top_k_percent_pixels: fraction in (0, 1] of each image's pixels kept.
        """
        super().__init__()
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise ValueError(f"top_k_percent_pixels={top_k_percent_pixels}: expected (0, 1].")
        self.ignore_label = ignore_label
        self.top_k_percent_pixels = top_k_percent_pixels

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Args:
            logits: (N, C, H, W) class scores.
            labels: (N, H, W) int64 class ids; ``ignore_label`` has no loss.
            weights: (N, H, W) per-pixel loss weights (small-instance weighting), or None.

        Returns:
            The scalar loss.
        """
        losses = F.cross_entropy(logits, labels, ignore_index=self.ignore_label, reduction="none")
        if weights is not None:
            losses = losses * weights
        losses = losses.flatten(1)
        if self.top_k_percent_pixels < 1.0:
            # round half to even, as tf.math.round
            k = round(self.top_k_percent_pixels * losses.shape[1])
            losses = losses.topk(k, dim=1, sorted=False).values
        non_zero = (losses != 0).sum(dim=1)
        per_image = losses.sum(dim=1) / non_zero.clamp(min=1)
        return per_image.mean()
