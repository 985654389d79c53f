"""panoptic_depthlab: depth-aware video panoptic segmentation on Detectron2.

``import panoptic_depthlab`` adapts to the installed Detectron2 (:mod:`panoptic_depthlab.compat`)
and registers the DVPS datasets in Detectron2's DatasetCatalog and MetadataCatalog.
"""

# compat (first) adapts to the installed Detectron2; data registers the datasets.
from . import compat, data  # noqa: F401

__version__ = "0.1.0"
