"""Training hooks: periodic prediction pictures for TensorBoard."""

from __future__ import annotations

from typing import Any

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..visualization import visualize_frame

__all__ = ["PredictionImageHook"]


class PredictionImageHook(HookBase):
    """Every ``period`` iterations (and after the last), run the model on one fixed frame and
    put its picture (:func:`visualize_frame`: input, panoptic, depth, panoptic depth) into the
    event storage as ``predictions/<dataset>``; Detectron2's TensorBoard writer shows it under
    Images. Runs on the main process only, with the model in eval mode and no gradients.
    """

    def __init__(self, period: int, dataset_name: str, mapper: Any):
        """
        Args:
            period: iterations between pictures (> 0).
            dataset_name: a registered DVPS dataset; its first frame is shown.
            mapper: maps the frame's record to a model input (``DVPSDatasetMapper`` in eval mode).
        """
        self._period = period
        self._dataset_name = dataset_name
        self._mapper = mapper
        self._input: dict[str, Any] | None = None

    def _picture(self) -> torch.Tensor:
        """(3, H', W') uint8 RGB picture of the model's prediction on the fixed frame."""
        if self._input is None:
            self._input = self._mapper(DatasetCatalog.get(self._dataset_name)[0])
        model = self.trainer.model
        model = model.module if hasattr(model, "module") else model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            (output,) = model([self._input])
        model.train(was_training)
        picture = visualize_frame(
            self._input["image"].permute(1, 2, 0).numpy(),
            output["panoptic_seg"][0].cpu().numpy(),
            output["panoptic_seg"][1],
            output["depth"].cpu().numpy(),
            MetadataCatalog.get(self._dataset_name),
        )
        return torch.from_numpy(picture).permute(2, 0, 1)

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if not comm.is_main_process():
            return
        if next_iter % self._period == 0 or next_iter == self.trainer.max_iter:
            get_event_storage().put_image(f"predictions/{self._dataset_name}", self._picture())
