"""Checkpoints: atomic saving, safe loading, and a per-part report of what a checkpoint loaded."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import _IncompatibleKeys
from tabulate import tabulate

from .files import open_atomic

__all__ = ["PanopticDepthLabCheckpointer"]


class PanopticDepthLabCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer (model-zoo ``.pkl`` and ``.pth`` files), made crash-safe and
    safe to load, with a summary table.

    * Saving: a checkpoint and the ``last_checkpoint`` tag are each written to a temporary file
      and renamed, so a process killed during a save leaves the previous checkpoint and tag
      intact, and ``--resume`` never reads a truncated file.
    * Loading: ``.pth`` files are read with ``torch.load(weights_only=True)`` (tensors, numbers,
      strings and containers only; no code runs). Model-zoo ``.pkl`` files are pickles and load
      as Detectron2 loads them: only use ``.pkl`` files from sources you trust.
    * After loading, one table lists every top-level part of the model (``backbone``,
      ``sem_seg_head``, ``ins_embed_head``, ``depth_head``, ...) with how many of its tensors
      came from the checkpoint, how many kept their fresh initialization, and how many were
      skipped because their shapes differ (e.g. a class predictor for another number of
      classes). Those mismatches are also logged one by one, as Detectron2 does.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` (model, checkpointables, ``kwargs``) atomically and
        tag it as the last checkpoint. Only the process with ``save_to_disk`` writes."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        with open_atomic(path) as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``<save_dir>/last_checkpoint`` at ``last_filename_basename``, atomically."""
        with open_atomic(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    def _torch_load(self, f: str) -> dict[str, Any]:
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            reason = str(e).strip().splitlines()[0]
            raise ValueError(
                f"{f}: cannot be loaded with torch.load(weights_only=True) ({reason}). "
                "Checkpoints holding arbitrary Python objects can run code when loaded, so they "
                "are refused. If you trust the file, re-save its tensors with torch.save("
                "{'model': state_dict}) and load that."
            ) from e

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
