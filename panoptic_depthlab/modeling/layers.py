"""Small building blocks shared by the heads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fvcore.nn.weight_init as weight_init
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, DepthwiseSeparableConv2d, ShapeSpec, get_norm
from torch import nn
from torch.nn import functional as F

__all__ = ["conv_head", "instance_branch_decoder_args", "separable_conv_head"]


def conv_head(in_channels: int, out_channels: int, norm: str | Callable) -> nn.Sequential:
    """Two 3x3 conv + norm + ReLU layers (in -> in -> out channels), as before the predictors
    of Detectron2's Panoptic-DeepLab heads."""
    use_bias = norm == ""
    layers = [
        Conv2d(
            c_in,
            c_out,
            kernel_size=3,
            padding=1,
            bias=use_bias,
            norm=get_norm(norm, c_out),
            activation=F.relu,
        )
        for c_in, c_out in ((in_channels, in_channels), (in_channels, out_channels))
    ]
    for layer in layers:
        weight_init.c2_xavier_fill(layer)
    return nn.Sequential(*layers)


def separable_conv_head(
    in_channels: int, out_channels: int, norm: str | Callable
) -> DepthwiseSeparableConv2d:
    """One 5x5 depthwise-separable conv (depthwise 5x5 + norm + ReLU, pointwise to
    ``out_channels`` + norm + ReLU), as Detectron2's heads use with
    ``USE_DEPTHWISE_SEPARABLE_CONV`` and ViP-DeepLab's depth head."""
    return DepthwiseSeparableConv2d(
        in_channels,
        out_channels,
        kernel_size=5,
        padding=2,
        norm1=norm,
        activation1=F.relu,
        norm2=norm,
        activation2=F.relu,
    )


def instance_branch_decoder_args(cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict[str, Any]:
    """``DeepLabV3PlusHead`` arguments for a decoder shaped like the instance branch.

    Sizes come from ``MODEL.INS_EMBED_HEAD``; the ASPP image pooling is global
    (``train_size=None``), which equals a crop-sized window in training and works at any size.
    """
    ins = cfg.MODEL.INS_EMBED_HEAD
    return {
        "input_shape": {k: v for k, v in input_shape.items() if k in ins.IN_FEATURES},
        "project_channels": ins.PROJECT_CHANNELS,
        "aspp_dilations": ins.ASPP_DILATIONS,
        "aspp_dropout": ins.ASPP_DROPOUT,
        "decoder_channels": [ins.CONVS_DIM] * (len(ins.IN_FEATURES) - 1) + [ins.ASPP_CHANNELS],
        "common_stride": ins.COMMON_STRIDE,
        "norm": ins.NORM,
        "train_size": None,
        "use_depthwise_separable_conv": cfg.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV,
    }
