"""Depth branch: heads in ``DEPTH_HEAD_REGISTRY`` that predict metric depth per pixel."""

from __future__ import annotations

from collections.abc import Callable

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.projects.deeplab import DeepLabV3PlusHead
from detectron2.utils.registry import Registry
from torch import nn
from torch.nn import functional as F

from ..config import ConfigValueError
from .layers import conv_head, instance_branch_decoder_args, separable_conv_head

__all__ = [
    "DEPTH_HEAD_REGISTRY",
    "DepthHead",
    "DepthPredictor",
    "SemanticDecoderDepthHead",
    "build_depth_head",
]

DEPTH_HEAD_REGISTRY = Registry("DEPTH_HEAD")
DEPTH_HEAD_REGISTRY.__doc__ = """
Registry for depth heads. A depth head is called as ``head(features, semantic_features)`` with
the backbone features and the semantic decoder's output, and returns depth in meters,
(N, 1, H, W) at the input resolution.
"""


def build_depth_head(cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Build the depth head named by ``MODEL.DEPTH_HEAD.NAME``."""
    name = cfg.MODEL.DEPTH_HEAD.NAME
    if name not in DEPTH_HEAD_REGISTRY:
        known = sorted(k for k, _ in DEPTH_HEAD_REGISTRY)
        raise KeyError(f"MODEL.DEPTH_HEAD.NAME={name!r} is not a registered depth head: {known}.")
    return DEPTH_HEAD_REGISTRY.get(name)(cfg, input_shape)


def _depth_predictor(head_channels: int, min_depth: float, max_depth: float) -> Conv2d:
    """The 1x1 conv to one channel (weights N(0, 0.001), bias 0: sigmoid(0) = mid-range at
    the start), after checking the output range ``0 <= min_depth < max_depth`` meters."""
    if not 0 <= min_depth < max_depth:
        raise ConfigValueError(
            f"MODEL.DEPTH_HEAD.MIN_DEPTH={min_depth}, MAX_DEPTH={max_depth}: expected "
            "0 <= MIN_DEPTH < MAX_DEPTH (meters)."
        )
    predictor = Conv2d(head_channels, 1, kernel_size=1)
    nn.init.normal_(predictor.weight, 0, 0.001)
    nn.init.constant_(predictor.bias, 0)
    return predictor


class DepthPredictor(nn.Module):
    """Two 3x3 conv layers (:func:`conv_head`), a 1x1 predictor, then
    ``min + sigmoid(x) * (max - min)`` meters."""

    def __init__(
        self,
        in_channels: int,
        head_channels: int,
        norm: str | Callable,
        min_depth: float,
        max_depth: float,
    ):
        super().__init__()
        self.head = conv_head(in_channels, head_channels, norm)
        self.predictor = _depth_predictor(head_channels, min_depth, max_depth)
        self.min_depth, self.max_depth = min_depth, max_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) features -> (N, 1, h, w) depth in meters."""
        y = self.predictor(self.head(x))
        return self.min_depth + torch.sigmoid(y) * (self.max_depth - self.min_depth)


def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, h * factor, w * factor), bilinear (Detectron2's corners rule)."""
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


@DEPTH_HEAD_REGISTRY.register()
class DepthHead(DeepLabV3PlusHead):
    """Depth from its own ASPP and DeepLabV3+ decoder (the design and sizes of the instance
    branch, ``MODEL.INS_EMBED_HEAD``, with separate weights)."""

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        decoder_channels: list[int],
        norm: str | Callable,
        head_channels: int,
        min_depth: float,
        max_depth: float,
        **kwargs,
    ):
        super().__init__(input_shape, decoder_channels=decoder_channels, norm=norm, **kwargs)
        self.depth_predictor = DepthPredictor(
            decoder_channels[0], head_channels, norm, min_depth, max_depth
        )

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        return {
            **instance_branch_decoder_args(cfg, input_shape),
            "head_channels": cfg.MODEL.DEPTH_HEAD.HEAD_CHANNELS,
            "min_depth": cfg.MODEL.DEPTH_HEAD.MIN_DEPTH,
            "max_depth": cfg.MODEL.DEPTH_HEAD.MAX_DEPTH,
        }

    def forward(
        self, features: dict[str, torch.Tensor], semantic_features: torch.Tensor
    ) -> torch.Tensor:
        """Depth (N, 1, H, W) in meters at the input resolution."""
        del semantic_features  # this head has its own decoder
        decoded = super().layers(features)
        return _upsample(self.depth_predictor(decoded), self.common_stride)


@DEPTH_HEAD_REGISTRY.register()
class SemanticDecoderDepthHead(nn.Module):
    """ViP-DeepLab's depth head: a light head on the semantic decoder's output features.

    The semantic decoder's features (N, C, H / s, W / s) at its stride s
    (``MODEL.SEM_SEG_HEAD.COMMON_STRIDE``, 4) are upsampled bilinearly to the head's stride
    (``MODEL.DEPTH_HEAD.COMMON_STRIDE``, 2 in ViP-DeepLab), then one 5x5 depthwise-separable
    conv (depthwise 5x5 + norm + ReLU, pointwise to ``MODEL.DEPTH_HEAD.HEAD_CHANNELS`` + norm +
    ReLU; 64 channels in ViP-DeepLab) and a 1x1 predictor give
    ``MIN_DEPTH + sigmoid(x) * (MAX_DEPTH - MIN_DEPTH)`` meters, upsampled to the input size.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        in_stride: int,
        common_stride: int,
        norm: str | Callable,
        head_channels: int,
        min_depth: float,
        max_depth: float,
    ):
        """
        Args:
            in_channels: channels of the semantic decoder's features.
            in_stride: stride of the semantic decoder's features (input pixels per feature).
            common_stride: stride the head runs at; must divide ``in_stride``.
            norm: normalization after each conv (Detectron2's ``get_norm`` names).
            head_channels: channels of the head's conv.
            min_depth, max_depth: output range in meters.
        """
        super().__init__()
        if common_stride < 1 or in_stride % common_stride:
            raise ConfigValueError(
                f"MODEL.DEPTH_HEAD.COMMON_STRIDE={common_stride}: expected a divisor of the "
                f"semantic decoder's stride MODEL.SEM_SEG_HEAD.COMMON_STRIDE={in_stride}."
            )
        self.in_stride, self.common_stride = in_stride, common_stride
        self.head = separable_conv_head(in_channels, head_channels, norm)
        self.predictor = _depth_predictor(head_channels, min_depth, max_depth)
        self.min_depth, self.max_depth = min_depth, max_depth

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        del input_shape  # reads the semantic decoder, not the backbone
        return {
            "in_channels": cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM,
            "in_stride": cfg.MODEL.SEM_SEG_HEAD.COMMON_STRIDE,
            "common_stride": cfg.MODEL.DEPTH_HEAD.COMMON_STRIDE,
            "norm": cfg.MODEL.SEM_SEG_HEAD.NORM,
            "head_channels": cfg.MODEL.DEPTH_HEAD.HEAD_CHANNELS,
            "min_depth": cfg.MODEL.DEPTH_HEAD.MIN_DEPTH,
            "max_depth": cfg.MODEL.DEPTH_HEAD.MAX_DEPTH,
        }

    def head_features(self, semantic_features: torch.Tensor) -> torch.Tensor:
        """(N, C, H / in_stride, W / in_stride) decoder features -> (N, HEAD_CHANNELS,
        H / common_stride, W / common_stride) features of the head, before the predictor."""
        return self.head(_upsample(semantic_features, self.in_stride // self.common_stride))

    def forward(
        self, features: dict[str, torch.Tensor], semantic_features: torch.Tensor
    ) -> torch.Tensor:
        """Depth (N, 1, H, W) in meters at the input resolution."""
        del features
        y = self.predictor(self.head_features(semantic_features))
        depth = self.min_depth + torch.sigmoid(y) * (self.max_depth - self.min_depth)
        return _upsample(depth, self.common_stride)
