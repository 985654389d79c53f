"""``Predictor``: Detectron2's ``DefaultPredictor`` for video, eager or from exported graphs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .exported import ExportedNetwork
from .sequence import SequenceInference

__all__ = ["Predictor", "frame_tensor"]


def frame_tensor(frame: np.ndarray, input_format: str) -> torch.Tensor:
    """An OpenCV frame (H, W, 3) uint8 BGR -> (3, H, W) float32 in ``input_format`` ("RGB" or
    "BGR"), as Detectron2's ``DefaultPredictor`` prepares it.

    Raises:
        ValueError: not an (H, W, 3) uint8 array.
    """
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise ValueError(
            f"frame: expected an (H, W, 3) BGR image (numpy, as cv2.imread gives), got "
            f"{type(frame).__name__} of shape {shape}."
        )
    if frame.dtype != np.uint8:
        raise ValueError(f"frame: expected dtype uint8 (0-255 BGR), got {frame.dtype}.")
    if input_format == "RGB":
        frame = frame[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float()


class Predictor:
    """Frame in, outputs with track ids out: Detectron2's ``DefaultPredictor`` for video.

    Call it with the frames of one video in order; it keeps the previous frame's backbone
    features and the tracker between calls, so each frame runs the backbone once and its ids
    continue the video's. :meth:`reset` starts a new video. Frames run at their own size
    (``INPUT.MIN_SIZE_TEST`` is not applied; every config of this project sets it to 0), padded
    to the size divisibility; all frames of a video must pad to one size.

    ``Predictor(cfg)`` runs the eager model of a config (``MODEL.WEIGHTS`` loaded by the
    project's checkpointer, on ``MODEL.DEVICE``; needs Detectron2).
    ``Predictor.from_exported(folder)`` runs the graphs written by ``tools/export_model.py``
    and needs only PyTorch (and onnxruntime for ONNX graphs). Both give the same outputs, up to
    the graphs' float differences, through the same post-processing and tracker.

    Attributes:
        metadata: the dataset metadata (classes, colors, label divisor, prediction format).
        untrained: the outputs (``"panoptic"``, ``"depth"``, ``"tracking"``) whose weights were
            not loaded from a checkpoint; empty for a fully trained model.
        input_format: ``"RGB"`` or ``"BGR"``, what the network reads (frames are BGR).

    Example::

        predictor = Predictor(cfg)  # or Predictor.from_exported("output/export_onnx")
        for frame in frames:  # (H, W, 3) uint8 BGR, e.g. from cv2.VideoCapture
            outputs = predictor(frame)
            ids, segments = outputs["panoptic_seg"]  # ids: class * 2**32 + track, -1 void
            depth = outputs["depth"]  # (H, W) meters
        predictor.reset()  # next video
    """

    def __init__(self, cfg: Any):
        import panoptic_depthlab

        if panoptic_depthlab.DETECTRON2_IMPORT_ERROR is not None:
            raise ImportError(
                "Predictor(cfg) runs the eager model, which needs Detectron2, and it does not "
                f"import here ({panoptic_depthlab.DETECTRON2_IMPORT_ERROR}). Run an exported "
                "model instead: Predictor.from_exported(folder) (tools/export_model.py)."
            )
        from ..checkpoint import load_model

        model, self.untrained = load_model(cfg)
        self.metadata = model.meta
        self.input_format = cfg.INPUT.FORMAT
        self._sequence = model.sequence_inference()

    @classmethod
    def from_exported(cls, folder: str, device: str | torch.device = "cpu") -> Predictor:
        """A predictor running the graphs of an exported folder (``tools/export_model.py``).

        Args:
            folder: the exported folder.
            device: ``"cpu"`` or a CUDA device (ONNX graphs on CUDA need onnxruntime-gpu).

        Raises:
            ExportedModelError: a folder from another version, with a missing or damaged file.
        """
        network = ExportedNetwork(folder, device)
        predictor = cls.__new__(cls)
        predictor.untrained = list(network.manifest["untrained"])
        predictor.metadata = network.metadata
        predictor.input_format = network.manifest["input_format"]
        predictor._sequence = SequenceInference(
            network.frame_maps,
            network.settings,
            network.size_divisibility,
            network.tracker_settings,
            network.appearance,
        )
        return predictor

    @property
    def settings(self) -> Any:
        """The post-processing settings (:class:`~panoptic_depthlab.runtime.outputs.
        PanopticSettings`)."""
        return self._sequence.settings

    @property
    def tracker_counts(self) -> dict[str, int]:
        """Over the current video so far: next-frame ``links``, ``revivals`` of dormant tracks
        and ``fresh`` ids (:class:`~panoptic_depthlab.runtime.stitching.InstanceTracker`)."""
        return dict(self._sequence.tracker.counts)

    def reset(self) -> None:
        """Start a new video: log the tracker's counts of the video that ends, then forget the
        previous frame and the tracks."""
        self._sequence.reset()

    def __call__(self, frame: np.ndarray) -> dict[str, Any]:
        """The outputs of the video's next frame.

        Args:
            frame: (H, W, 3) uint8 BGR, as OpenCV reads it.

        Returns:
            ``panoptic_seg``: ``(ids, segments_info)``, ids (H, W) int64
            ``class * TRACK_LABEL_DIVISOR + track`` (2**32; stuff: track 0; void: -1), the same
            for one object over the video (:mod:`panoptic_depthlab.panoptic_ids`), segments with
            ``id``, ``category_id``, ``isthing``, ``area``, ``depth_mean``, ``depth_median``
            (meters), ``depth_valid_pixels`` and, for things, ``center`` (y, x) and, on a thing
            whose track the tracker's memory revived in this frame, ``revived_after`` (frames
            its object was missing; :mod:`~panoptic_depthlab.runtime.track_memory`);
            ``depth``: (H, W) meters; ``sem_seg``: (C, H, W) logits.

        Raises:
            ValueError: a frame that is not (H, W, 3) uint8, or one that pads to another size
                than the video's first frame.
        """
        image = frame_tensor(frame, self.input_format)
        with torch.inference_mode():
            return self._sequence({"image": image})
