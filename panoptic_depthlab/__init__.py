"""panoptic_depthlab: depth-aware video panoptic segmentation on Detectron2.

``import panoptic_depthlab`` adapts to the installed Detectron2 (:mod:`panoptic_depthlab.compat`),
registers the DVPS datasets in Detectron2's DatasetCatalog and MetadataCatalog, and registers
``PanopticDepthLab`` in ``META_ARCH_REGISTRY`` and its depth heads in ``DEPTH_HEAD_REGISTRY``.
"""

# compat (first) adapts to the installed Detectron2; data registers the datasets; modeling
# registers the meta-architecture and heads.
from . import compat, data, evaluation, modeling  # noqa: F401
from .config import add_panoptic_depthlab_config

__all__ = ["add_panoptic_depthlab_config"]

__version__ = "0.1.0"
