"""Panoptic ids: the two conventions of a model's outputs, and the one rule that splits them.

A panoptic id is ``class * divisor + instance`` (instance 0 for stuff, 1, 2, ... for things;
-1 marks void pixels). Two divisors are in use, one per kind of output:

* **Single-frame outputs** (``model(inputs)``, as Detectron2's ``DefaultPredictor`` returns
  them): the dataset's ``label_divisor`` (``MetadataCatalog.get(name).label_divisor``: 1000 for
  Cityscapes-DVPS, 65536 for SemKITTI-DVPS), Detectron2's Panoptic-DeepLab convention. Each
  frame numbers its instances afresh, so they stay far below the divisor.
* **Tracked outputs** (``PanopticDepthLab.inference_sequence``, hence the demo and
  ``DVPSEvaluator``): :data:`TRACK_LABEL_DIVISOR` (2**32), int64 ids. Each class numbers its
  tracks 1, 2, ... over the whole sequence and never reuses a number, so the numbers only grow;
  2**32 - 1 tracks of one class is a ceiling no video reaches (a new track every frame at
  30 frames per second for four years).

Split ids with the divisor of the output they come from: ``split_panoptic(panoptic,
TRACK_LABEL_DIVISOR, num_classes)`` for tracked outputs, ``meta.label_divisor`` for single-frame
ones. Prediction files hold every tracked instance number (see
:mod:`panoptic_depthlab.evaluation.formats`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TRACK_LABEL_DIVISOR", "split_panoptic"]

TRACK_LABEL_DIVISOR = 2**32  # tracked ids: class * 2**32 + track number (1, 2, ... per class)


def split_panoptic(
    panoptic: np.ndarray, label_divisor: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split panoptic ids ``class * label_divisor + instance`` into class and instance maps.

    Void pixels (a negative id, as the model's post-processing marks them, or a class id
    ``>= num_classes``) become class ``num_classes`` with instance 0: the void class of the
    official DVPS prediction files.

    Args:
        panoptic: (H, W) integer panoptic ids, -1 = void.
        label_divisor: > 0; the dataset's ``label_divisor`` for single-frame outputs,
            :data:`TRACK_LABEL_DIVISOR` for tracked ones (module docstring).
        num_classes: number of real classes.

    Returns:
        ``(classes, instances)``: int32 (H, W) class ids and int64 (H, W) instance ids
        (0..label_divisor - 1; track numbers reach beyond int32).
    """
    ids = np.asarray(panoptic).astype(np.int64)
    classes = ids // label_divisor
    void = (ids < 0) | (classes >= num_classes)
    return (
        np.where(void, num_classes, classes).astype(np.int32),
        np.where(void, 0, ids % label_divisor),
    )
