"""Test-time augmentation: the heads' maps averaged over resized and flipped views of a frame.

The views are those of Detectron2's ``DatasetMapperTTA`` under the same keys: for each
``TEST.AUG.MIN_SIZES`` entry, the frame resized so that its shortest edge has that many pixels
(the longest capped at ``TEST.AUG.MAX_SIZE``; sizes from the frame's original ``height`` and
``width``), and, with ``TEST.AUG.FLIP``, that view mirrored left-right. Unlike Detectron2's
``GeneralizedRCNNWithTTA``, which merges boxes after post-processing, the maps of the dense heads
are brought back to the original frame and averaged *before* post-processing, as
Panoptic-DeepLab and ViP-DeepLab do:

* ``sem_seg``: softmax probabilities (not logits) are averaged; the output holds their log
  (logits whose softmax is the average);
* ``center``: heatmaps averaged;
* ``offset`` and ``next_offset`` (y, x) pixels: the x component negated on flipped views, each
  component scaled by the original / view size along its axis, then averaged;
* ``depth`` meters: averaged.

With a single view the view's own maps are returned (logits included), so one view at the
frame's own size without flip is plain inference, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from detectron2.config import CfgNode, configurable
from detectron2.data.transforms import ResizeShortestEdge
from torch.nn import functional as F

from ..config import ConfigValueError

__all__ = ["TestTimeAugmentation", "view_to_frame"]

OFFSET_KEYS = ("offset", "next_offset")

# run(views, state of these views in the previous frame or None) -> (maps, state): the heads'
# maps (N, C, H, W) of the N views, one size, padded at the bottom and right, and whatever the
# next frame needs of these views (the backbone features in sequence inference).
HeadRunner = Callable[[list[torch.Tensor], Any], tuple[dict[str, torch.Tensor], Any]]


def view_to_frame(
    maps: dict[str, torch.Tensor], frame_size: tuple[int, int], flipped: bool
) -> dict[str, torch.Tensor]:
    """Bring one view's maps back to the original frame.

    Args:
        maps: (N, C, h, w) maps of a view of size (h, w), unpadded; ``offset`` and
            ``next_offset`` are (y, x) displacements in view pixels.
        frame_size: (H, W) of the original frame.
        flipped: whether the view was mirrored left-right.

    Returns:
        The maps (N, C, H, W) in the frame's pixels: resized bilinearly (as Detectron2's
        ``sem_seg_postprocess``; not at all when (h, w) == (H, W)), un-mirrored, offsets scaled
        by (H / h, W / w) and, on a flipped view, their x component negated.
    """
    height, width = frame_size
    out = {}
    for key, value in maps.items():
        view_size = tuple(value.shape[-2:])
        if view_size != (height, width):
            value = F.interpolate(value, frame_size, mode="bilinear", align_corners=False)
        if flipped:
            value = value.flip(-1)
        if key in OFFSET_KEYS:
            sign = -1.0 if flipped else 1.0
            scale = value.new_tensor([height / view_size[0], sign * width / view_size[1]])
            if view_size != (height, width) or flipped:
                value = value * scale.view(1, 2, 1, 1)
        out[key] = value
    return out


class TestTimeAugmentation:
    """The views of a frame (``TEST.AUG``) and the average of the heads' maps over them.

    Built by :class:`~panoptic_depthlab.modeling.PanopticDepthLab` when ``TEST.AUG.ENABLED``;
    its inference (``model(inputs)`` in eval mode, :meth:`inference_sequence`) then runs every
    view, so ``DVPSEvaluator``, ``inference_on_sequences``, ``tools/train_net.py --eval-only``
    and the demo all use it without a wrapper.
    """

    __test__ = False  # not a pytest class

    @configurable
    def __init__(self, *, min_sizes: Sequence[int], max_size: int, flip: bool):
        """
        Args:
            min_sizes: shortest edge of each view, pixels (``TEST.AUG.MIN_SIZES``).
            max_size: longest edge of any view at most, pixels (``TEST.AUG.MAX_SIZE``).
            flip: add the left-right mirror of each view (``TEST.AUG.FLIP``).
        """
        min_sizes = tuple(min_sizes)
        if not min_sizes or any(int(s) != s or s < 1 for s in min_sizes):
            raise ConfigValueError(
                f"TEST.AUG.MIN_SIZES={min_sizes}: expected one or more shortest-edge sizes in "
                "pixels, each a positive integer."
            )
        if int(max_size) != max_size or max_size < 1:
            raise ConfigValueError(
                f"TEST.AUG.MAX_SIZE={max_size}: expected a positive integer (pixels, the longest "
                "edge of a view at most)."
            )
        self.min_sizes = tuple(int(s) for s in min_sizes)
        self.max_size = int(max_size)
        self.flip = bool(flip)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict[str, Any]:
        aug = cfg.TEST.AUG
        return {"min_sizes": aug.MIN_SIZES, "max_size": aug.MAX_SIZE, "flip": aug.FLIP}

    @property
    def num_views(self) -> int:
        return len(self.min_sizes) * (2 if self.flip else 1)

    def view_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h, w) of each scale's view of a frame of (height, width) pixels, in the order of
        ``min_sizes`` (Detectron2's ``ResizeShortestEdge`` rule)."""
        return [
            ResizeShortestEdge.get_output_shape(height, width, s, self.max_size)
            for s in self.min_sizes
        ]

    def head_maps(
        self,
        image: torch.Tensor,
        frame_size: tuple[int, int],
        run: HeadRunner,
        previous: list[Any] | None = None,
    ) -> tuple[dict[str, torch.Tensor], list[Any]]:
        """The heads' maps of one frame averaged over its views.

        Args:
            image: (C, h0, w0) the model's input image (pixel values, not normalized).
            frame_size: (H, W) of the original frame (the input's ``height`` and ``width``);
                view sizes are computed from it and maps are averaged at it.
            run: runs the network on the views of one scale (see ``HeadRunner``): called once
                per scale with [view] or [view, mirrored view].
            previous: what ``run`` returned as state for each scale on the previous frame of
                the sequence, or None.

        Returns:
            (maps, states): the averaged maps (C, H, W), keys as ``run`` returns them
            (``sem_seg`` logits; with several views the log of the averaged probabilities),
            and ``run``'s state for each scale, to pass as ``previous`` with the next frame.
        """
        height, width = frame_size
        single = self.num_views == 1
        sums: dict[str, torch.Tensor] = {}
        states = []
        for index, (h, w) in enumerate(self.view_sizes(height, width)):
            view = image
            if tuple(image.shape[-2:]) != (h, w):
                view = F.interpolate(
                    image[None].float(),
                    (h, w),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0]
            views = [view, view.flip(-1)] if self.flip else [view]
            maps, state = run(views, None if previous is None else previous[index])
            states.append(state)
            for j in range(len(views)):
                one = {k: v[j : j + 1, :, :h, :w] for k, v in maps.items()}
                if not single:
                    one["sem_seg"] = one["sem_seg"].softmax(dim=1)
                for key, value in view_to_frame(one, frame_size, flipped=j == 1).items():
                    sums[key] = value if key not in sums else sums[key] + value
        if single:
            return {k: v[0] for k, v in sums.items()}, states
        mean = {k: v[0] / self.num_views for k, v in sums.items()}
        # log-probabilities are logits of the averaged probabilities; clamped so that resizing
        # them later never meets -inf
        probabilities = mean["sem_seg"]
        mean["sem_seg"] = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
        return mean, states
