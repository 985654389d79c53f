"""panoptic_depthlab: depth-aware video panoptic segmentation on Detectron2.

``import panoptic_depthlab`` adapts to the installed Detectron2 (:mod:`panoptic_depthlab.compat`),
registers the DVPS datasets in Detectron2's DatasetCatalog and MetadataCatalog, and registers
``PanopticDepthLab`` in ``META_ARCH_REGISTRY`` and its depth heads in ``DEPTH_HEAD_REGISTRY``.

:class:`Predictor` (frame in, outputs with track ids out) is always importable. Where Detectron2
cannot be imported, only the deployment part is: ``Predictor.from_exported(folder)`` runs an
exported model with PyTorch (or onnxruntime) alone; ``DETECTRON2_IMPORT_ERROR`` then says why
Detectron2 did not import, and the rest of the package is not loaded.
"""

from .runtime.predictor import Predictor

__version__ = "0.1.0"

try:
    import detectron2  # noqa: F401
except ImportError as error:  # a deployment without Detectron2: Predictor.from_exported only
    DETECTRON2_IMPORT_ERROR: str | None = f"{type(error).__name__}: {error}"
    __all__ = ["DETECTRON2_IMPORT_ERROR", "Predictor"]
else:
    DETECTRON2_IMPORT_ERROR = None
    # compat (first) adapts to the installed Detectron2; data registers the datasets; modeling
    # registers the meta-architecture and heads.
    from . import compat, data, evaluation, modeling  # noqa: F401
    from .config import add_panoptic_depthlab_config

    __all__ = ["DETECTRON2_IMPORT_ERROR", "Predictor", "add_panoptic_depthlab_config"]
