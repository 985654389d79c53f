"""Video inference one frame at a time: the state one video needs between frames.

:class:`SequenceInference` keeps the previous frame's backbone features and the
:class:`~panoptic_depthlab.runtime.stitching.InstanceTracker` between calls. It drives any
*frame maps* function, so the eager model
(:meth:`~panoptic_depthlab.modeling.PanopticDepthLab.inference_sequence`) and the exported graphs
(:class:`~panoptic_depthlab.runtime.exported.ExportedNetwork`) share the post-processing and the
tracking. It needs PyTorch only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from ..panoptic_ids import TRACK_LABEL_DIVISOR
from .outputs import PanopticSettings, frame_outputs
from .stitching import InstanceTracker
from .track_memory import TrackerSettings

__all__ = ["Appearance", "FrameMaps", "SequenceInference"]

logger = logging.getLogger(__name__)

FrameMaps = Callable[[dict[str, Any], Any], tuple[tuple[int, int], dict[str, torch.Tensor], Any]]
"""``frame_maps(inputs, previous) -> (image_size, maps, features)``: one frame's head maps.

``inputs`` is a model input dict (``image`` (3, H, W) in the model's input format);
``previous`` the ``features`` it returned for the previous frame, or None for a first frame.
``maps`` (no batch dimension) are those of
:func:`~panoptic_depthlab.runtime.outputs.frame_outputs`, with ``next_offset`` when
``previous`` was given; ``image_size`` is the (H, W) the maps' top-left corner covers.
"""

Appearance = Callable[[Any], torch.Tensor]
"""``appearance(features) -> (C, h, w)``: from a frame's ``features`` (as ``frame_maps`` returned
them), the backbone feature map, covering the padded frame, that the tracker pools in each
instance's mask."""


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
        tracker_settings: the tracker's memory of ended tracks
            (:mod:`~panoptic_depthlab.runtime.track_memory`).
        appearance: see :data:`Appearance`; needed when ``tracker_settings`` weighs
            appearance, unused otherwise.
    """

    def __init__(
        self,
        frame_maps: FrameMaps,
        settings: PanopticSettings,
        size_divisibility: int,
        tracker_settings: TrackerSettings,
        appearance: Appearance | None = None,
    ):
        self.frame_maps = frame_maps
        self.settings = settings
        self.size_divisibility = max(int(size_divisibility), 1)
        self.tracker_settings = tracker_settings
        self.appearance = appearance if tracker_settings.appearance_weight > 0 else None
        if tracker_settings.appearance_weight > 0 and appearance is None:
            raise ValueError(
                "tracker settings weigh appearance, but no appearance features were given."
            )
        self.frames = 0
        self.reset()

    def reset(self) -> None:
        """Start a new video: log what the tracker did in the video that ends (if any), then
        forget the previous frame and the tracks."""
        if self.frames:
            counts = self.tracker.counts
            logger.info(
                f"Tracked {self.frames} frames: {counts['links']} next-frame links, "
                f"{counts['revivals']} revivals, {counts['fresh']} new ids."
            )
        self.tracker = InstanceTracker(
            TRACK_LABEL_DIVISOR, void_label=-1, settings=self.tracker_settings
        )
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
        appearance = None
        if self.appearance is not None:  # the cells that cover the frame before padding
            cells = self.appearance(features)
            rows = math.ceil(cells.shape[-2] * size[0] / padded[0])
            cols = math.ceil(cells.shape[-1] * size[1] / padded[1])
            appearance = cells[:, :rows, :cols]
        output["panoptic_seg"] = self.tracker.update(
            *output["panoptic_seg"], output.pop("next_offset", None), appearance
        )
        self._previous, self._padded = features, padded
        self.frames += 1
        return output
