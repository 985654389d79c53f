"""Checkpoint loading that reports, per model part, what a checkpoint initialized."""

from __future__ import annotations

from collections import Counter

from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import _IncompatibleKeys
from tabulate import tabulate

__all__ = ["PanopticDepthLabCheckpointer"]


class PanopticDepthLabCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer (model-zoo ``.pkl`` and ``.pth`` files) with a summary table.

    After loading, one table lists every top-level part of the model (``backbone``,
    ``sem_seg_head``, ``ins_embed_head``, ``depth_head``, ...) with how many of its tensors came
    from the checkpoint, how many kept their fresh initialization, and how many were skipped
    because their shapes differ (e.g. a class predictor for another number of classes). Those
    mismatches are also logged one by one, as Detectron2 does.
    """

    def _log_incompatible_keys(self, incompatible: _IncompatibleKeys) -> None:
        super()._log_incompatible_keys(incompatible)

        def part(key: str) -> str:
            return key.removeprefix("module.").split(".", 1)[0]

        mismatched_keys = {k for k, *_ in incompatible.incorrect_shapes}
        # BatchNorm's step counters are not weights (Detectron2 does not report them missing)
        total = Counter(
            part(k) for k in self.model.state_dict() if not k.endswith("num_batches_tracked")
        )
        mismatched = Counter(part(k) for k in mismatched_keys)
        # load_state_dict also lists the skipped (mismatched) tensors as missing
        missing = Counter(part(k) for k in incompatible.missing_keys if k not in mismatched_keys)
        rows = []
        for name, count in total.items():
            fresh = missing[name] + mismatched[name]
            loaded = count - fresh
            state = "loaded" if fresh == 0 else "initialized" if loaded == 0 else "partly loaded"
            rows.append((name, state, loaded, missing[name], mismatched[name]))
        table = tabulate(
            rows,
            headers=["part", "state", "tensors loaded", "not in checkpoint", "shape mismatch"],
            tablefmt="pipe",
        )
        self.logger.info(f"Checkpoint loaded into the model, per part:\n{table}")
