"""ViP-DeepLab's next-frame instance branch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.projects.deeplab import DeepLabV3PlusHead
from torch import nn
from torch.nn import functional as F

from .layers import conv_head, instance_branch_decoder_args, separable_conv_head

__all__ = ["NextFrameHead"]


class NextFrameHead(DeepLabV3PlusHead):
    """Predict, for each pixel of frame t+1, the offset to its instance's center in frame t.

    Its own ASPP reads the channel concatenation of the deepest features of frames t and t+1;
    its decoder takes the low-level features of frame t+1. Sizes follow the instance branch
    (``MODEL.INS_EMBED_HEAD``); weights are separate. Like Detectron2's offset head, the head
    before the predictor is one 5x5 depthwise-separable conv when
    ``MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV``, else two 3x3 convs.
    """

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        decoder_channels: list[int],
        norm: str | Callable,
        head_channels: int,
        loss_weight: float,
        use_depthwise_separable_conv: bool = False,
        **kwargs,
    ):
        """``input_shape`` is the backbone's; the deepest feature's channels are doubled here."""
        deepest = max(input_shape, key=lambda k: input_shape[k].stride)
        shape = dict(input_shape)
        spec = input_shape[deepest]
        shape[deepest] = ShapeSpec(channels=2 * spec.channels, stride=spec.stride)
        super().__init__(
            shape,
            decoder_channels=decoder_channels,
            norm=norm,
            use_depthwise_separable_conv=use_depthwise_separable_conv,
            **kwargs,
        )
        self.deepest = deepest
        self.next_loss_weight = loss_weight
        if use_depthwise_separable_conv:
            self.offset_head = separable_conv_head(decoder_channels[0], head_channels, norm)
        else:
            self.offset_head = conv_head(decoder_channels[0], head_channels, norm)
        self.offset_predictor = Conv2d(head_channels, 2, kernel_size=1)
        nn.init.normal_(self.offset_predictor.weight, 0, 0.001)
        nn.init.constant_(self.offset_predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        return {
            **instance_branch_decoder_args(cfg, input_shape),
            "head_channels": cfg.MODEL.INS_EMBED_HEAD.HEAD_CHANNELS,
            "loss_weight": cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.LOSS_WEIGHT,
        }

    def forward(
        self, features: dict[str, torch.Tensor], next_features: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Offsets (N, 2, H, W) in input pixels, (y, x) order, for the pixels of frame t+1.

        Args:
            features, next_features: backbone features of frames t and t+1.
        """
        inputs = dict(next_features)
        inputs[self.deepest] = torch.cat([features[self.deepest], next_features[self.deepest]], 1)
        y = self.offset_predictor(self.offset_head(super().layers(inputs)))
        return (
            F.interpolate(y, scale_factor=self.common_stride, mode="bilinear", align_corners=False)
            * self.common_stride
        )

    def losses(
        self, offsets: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Weighted L1 between predicted and target next-frame offsets (N, 2, H, W), pixels."""
        loss = (offsets - targets).abs() * weights
        total = weights.sum()
        loss = loss.sum() / total if total > 0 else loss.sum() * 0
        return {"loss_next_offset": loss * self.next_loss_weight}
