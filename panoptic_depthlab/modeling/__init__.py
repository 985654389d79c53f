"""PanopticDepthLab: meta-architecture, heads, losses, post-processing.

Importing this package registers ``PanopticDepthLab`` in Detectron2's ``META_ARCH_REGISTRY``
and the depth heads in ``DEPTH_HEAD_REGISTRY``.
"""

from .depth_head import DEPTH_HEAD_REGISTRY, DepthHead, SemanticDecoderDepthHead, build_depth_head
from .meta_arch import PanopticDepthLab
from .next_frame_head import NextFrameHead

__all__ = [
    "DEPTH_HEAD_REGISTRY",
    "DepthHead",
    "NextFrameHead",
    "PanopticDepthLab",
    "SemanticDecoderDepthHead",
    "build_depth_head",
]
