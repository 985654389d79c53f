"""Video inference one frame at a time: the state one video needs between frames.

:class:`SequenceInference` keeps the previous frame's backbone features and the
:class:`~panoptic_depthlab.runtime.stitching.InstanceTracker` between calls. It drives any
*frame maps* function, so the eager model
(:meth:`~panoptic_depthlab.modeling.PanopticDepthLab.inference_sequence`) and the exported graphs
(:class:`~panoptic_depthlab.runtime.exported.ExportedNetwork`) share the post-processing and the
tracking. It needs PyTorch only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..panoptic_ids import TRACK_LABEL_DIVISOR
from .outputs import PanopticSettings, frame_outputs
from .stitching import InstanceTracker

__all__ = ["FrameMaps", "SequenceInference"]

FrameMaps = Callable[[dict[str, Any], Any], tuple[tuple[int, int], dict[str, torch.Tensor], Any]]
"""``frame_maps(inputs, previous) -> (image_size, maps, features)``: one frame's head maps.

``inputs`` is a model input dict (``image`` (3, H, W) in the model's input format);
``previous`` the ``features`` it returned for the previous frame, or None for a first frame.
``maps`` (no batch dimension) are those of
:func:`~panoptic_depthlab.runtime.outputs.frame_outputs`, with ``next_offset`` when
``previous`` was given; ``image_size`` is the (H, W) the maps' top-left corner covers.
"""


class SequenceInference:
    """Outputs of the frames of one video, one call per frame, with sequence-consistent ids.

    Each call runs ``frame_maps`` on the frame (with the previous frame's features), then
    :func:`~panoptic_depthlab.runtime.outputs.frame_outputs` and the tracker. Outputs are those
    of ``frame_outputs`` without ``next_offset``, and ``panoptic_seg`` ids are track ids
    ``class * TRACK_LABEL_DIVISOR + n`` (:mod:`panoptic_depthlab.panoptic_ids`).

    Args:
        frame_maps: see :data:`FrameMaps`.
        settings: the post-processing settings.
        size_divisibility: images are padded to a multiple of it; all frames of a video must
            pad to one size.
    """

    def __init__(self, frame_maps: FrameMaps, settings: PanopticSettings, size_divisibility: int):
        self.frame_maps = frame_maps
        self.settings = settings
        self.size_divisibility = max(int(size_divisibility), 1)
        self.reset()

    def reset(self) -> None:
        """Start a new video: forget the previous frame and the tracks."""
        self.tracker = InstanceTracker(TRACK_LABEL_DIVISOR, void_label=-1)
        self._previous: Any = None
        self._padded: tuple[int, int] | None = None
        self.frames = 0

    def _padded_size(self, image: torch.Tensor) -> tuple[int, int]:
        d = self.size_divisibility
        return (math.ceil(image.shape[-2] / d) * d, math.ceil(image.shape[-1] / d) * d)

    def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The outputs of the video's next frame.

        Args:
            inputs: ``image`` (3, H, W) in the model's input format and optionally ``height``
                and ``width`` of the outputs (default: H and W).

        Raises:
            ValueError: the frame pads to another size than the video's first frame.
        """
        padded = self._padded_size(inputs["image"])
        if self._padded is not None and padded != self._padded:
            raise ValueError(
                f"frame {self.frames} of the sequence has size "
                f"{tuple(inputs['image'].shape[-2:])} (padded {padded}); the previous frames "
                f"were padded to {self._padded}. All frames of a sequence must have one size "
                "(call reset() to start a new video)."
            )
        size, maps, features = self.frame_maps(inputs, self._previous)
        output_size = (inputs.get("height", size[0]), inputs.get("width", size[1]))
        output = frame_outputs(maps, size, output_size, self.settings)
        output["panoptic_seg"] = self.tracker.update(
            *output["panoptic_seg"], output.pop("next_offset", None)
        )
        self._previous, self._padded = features, padded
        self.frames += 1
        return output
