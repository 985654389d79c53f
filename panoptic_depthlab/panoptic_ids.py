"""The one rule that splits a model's panoptic ids into class and instance maps."""

from __future__ import annotations

import numpy as np

__all__ = ["split_panoptic"]


def split_panoptic(
    panoptic: np.ndarray, label_divisor: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split panoptic ids ``class * label_divisor + instance`` into class and instance maps.

    Void pixels (a negative id, as the model's post-processing marks them, or a class id
    ``>= num_classes``) become class ``num_classes`` with instance 0: the void class of the
    official DVPS prediction files.

    Args:
        panoptic: (H, W) integer panoptic ids, -1 = void.
        label_divisor: > 0.
        num_classes: number of real classes.

    Returns:
        ``(classes, instances)``: int32 (H, W) each.
    """
    ids = np.asarray(panoptic).astype(np.int64)
    classes = ids // label_divisor
    void = (ids < 0) | (classes >= num_classes)
    return (
        np.where(void, num_classes, classes).astype(np.int32),
        np.where(void, 0, ids % label_divisor).astype(np.int32),
    )
