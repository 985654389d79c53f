"""Small building blocks shared by the heads."""

from __future__ import annotations

from collections.abc import Callable

import fvcore.nn.weight_init as weight_init
from detectron2.layers import Conv2d, get_norm
from torch import nn
from torch.nn import functional as F

__all__ = ["conv_head"]


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
