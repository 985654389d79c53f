"""Detectron2's own PQ (``COCOPanopticEvaluator``, panopticapi's ``pq_compute``) on our outputs.

For datasets registered with their COCO-format panoptic ground truth (metadata ``panoptic_json``
and ``panoptic_root``, as Detectron2's Cityscapes panoptic registration sets them: Cityscapes with
depth from disparity), the standard PQ / SQ / RQ is reported beside DVPQ, computed by
Detectron2 and panopticapi themselves.
"""

from __future__ import annotations

from typing import Any

import torch
from detectron2.evaluation import COCOPanopticEvaluator

__all__ = ["TrackedCOCOPanopticEvaluator"]


class TrackedCOCOPanopticEvaluator(COCOPanopticEvaluator):
    """Detectron2's ``COCOPanopticEvaluator`` for outputs with any segment ids.

    Detectron2 stores segment ids as 24-bit RGB (panopticapi's ``id2rgb``), which our track ids
    (``class * 2**32 + n``, :mod:`panoptic_depthlab.panoptic_ids`) do not fit; each frame's
    segments are renumbered 1, 2, ... in ``segments_info`` order (void, -1, becomes 0) before
    Detectron2 processes them. PQ is per frame, so the renumbering changes no number.
    """

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        renumbered = []
        for output in outputs:
            panoptic, segments = output["panoptic_seg"]
            ids = panoptic.new_tensor([s["id"] for s in segments], dtype=torch.int64)
            order = torch.argsort(ids)
            position = torch.searchsorted(ids[order], panoptic.flatten().to(torch.int64))
            position = position.clamp(max=max(len(segments) - 1, 0))
            found = ids[order][position] == panoptic.flatten() if len(segments) else None
            dense = torch.zeros(panoptic.numel(), dtype=torch.int32, device=panoptic.device)
            if found is not None:
                dense[found] = (order[position[found]] + 1).to(torch.int32)
            segments = [{**s, "id": i + 1} for i, s in enumerate(segments)]  # copies: Detectron2
            renumbered.append({"panoptic_seg": (dense.view_as(panoptic), segments)})  # edits them
        super().process(inputs, renumbered)
