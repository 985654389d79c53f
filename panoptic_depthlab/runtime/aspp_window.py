"""When an ASPP pools over a training-crop window instead of globally (PyTorch-free rule).

The rule of :class:`~panoptic_depthlab.modeling.aspp_pooling.CropWindowPool2d`, kept here so
that the runtime of exported graphs picks the graph of the right pooling without Detectron2.
"""

from __future__ import annotations

__all__ = ["pools_in_windows"]


def pools_in_windows(size: tuple[int, int], window: tuple[int, int]) -> bool:
    """Whether a map of ``size`` (h, w) is pooled in ``window`` (wh, ww) windows (else globally):
    h and w are whole multiples of wh and ww, and the map is not the window itself. The same
    holds in input pixels (size and window both times the stride)."""
    h, w = size
    wh, ww = window
    return h % wh == 0 and w % ww == 0 and (h, w) != (wh, ww)
