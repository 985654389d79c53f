"""panoptic_depthlab: depth-aware video panoptic segmentation on Detectron2.

``import panoptic_depthlab`` adapts to the installed Detectron2 (:mod:`panoptic_depthlab.compat`)
and registers the DVPS datasets in Detectron2's DatasetCatalog and MetadataCatalog.
"""

from . import compat  # noqa: F401  (must run before anything imports detectron2 submodules)
from . import data  # noqa: F401  (registers the datasets)

__version__ = "0.1.0"
