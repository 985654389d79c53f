"""``DVPSTrainer``: Detectron2's ``DefaultTrainer`` for PanopticDepthLab on DVPS datasets."""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections import OrderedDict
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import DatasetEvaluators
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from fvcore.common.checkpoint import Checkpointer

from ..checkpoint import PanopticDepthLabCheckpointer, class_order_options
from ..config import ConfigValueError
from ..data import DVPSDatasetMapper, build_dvps_train_loader
from ..evaluation import DVPSEvaluator, inference_on_sequences
from ..evaluation.panoptic_quality import TrackedCOCOPanopticEvaluator
from .hooks import PredictionImageHook
from .setup import LaunchError

__all__ = ["DVPSTrainer", "PeriodicCheckpointer"]

logger = logging.getLogger(__name__)


class PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """Detectron2's checkpoint hook, without duplicates and with a limit:

    * every ``period`` iterations ``<prefix>_<iteration>.pth``, except at the last iteration,
      which writes ``<prefix>_final.pth`` only (Detectron2 writes both, the same weights twice,
      when ``max_iter`` is a multiple of ``period``);
    * with ``max_to_keep`` N, after each periodic save only the N newest periodic checkpoints
      up to this iteration stay (those of earlier runs in the folder included, so a resumed run
      keeps the limit); the final checkpoint is never removed.
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        period: int,
        max_to_keep: int | None = None,
        file_prefix: str = "model",
    ):
        """
        Args:
            checkpointer: saves into its ``save_dir``.
            period: iterations between periodic checkpoints.
            max_to_keep: how many periodic checkpoints to keep; None keeps all.
            file_prefix: file names ``<file_prefix>_<iteration, 7 digits>.pth`` and
                ``<file_prefix>_final.pth``.
        """
        super().__init__(checkpointer, period, max_to_keep=max_to_keep, file_prefix=file_prefix)

    def step(self, iteration: int, **kwargs: Any) -> None:
        iteration = int(iteration)
        state = {"iteration": iteration, **kwargs}
        if self.max_iter is not None and iteration >= self.max_iter - 1:
            self.checkpointer.save(f"{self.file_prefix}_final", **state)
        elif (iteration + 1) % self.period == 0:
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", **state)
            if self.max_to_keep is not None:
                self._remove_old_checkpoints(iteration)

    def _remove_old_checkpoints(self, iteration: int) -> None:
        save_dir = self.checkpointer.save_dir
        pattern = re.compile(rf"^{re.escape(self.file_prefix)}_(\d{{7}})\.pth$")
        periodic = sorted(
            (int(match[1]), name)
            for name in os.listdir(save_dir)
            if (match := pattern.match(name)) and int(match[1]) <= iteration
        )
        for _, name in periodic[: -self.max_to_keep]:
            path = os.path.join(save_dir, name)
            os.remove(path)
            logger.info(
                f"Removed {path}: SOLVER.CHECKPOINT_MAX_KEEP = {self.max_to_keep} keeps the "
                "newest periodic checkpoints."
            )


class DVPSTrainer(DefaultTrainer):
    """Detectron2's default training loop, hooks and writers with the DVPS parts:

    * data: frame pairs from :func:`build_dvps_train_loader` (``DVPSDatasetMapper``);
    * solver: ``SOLVER.OPTIMIZER`` ``"ADAM"`` (as Detectron2's Panoptic-DeepLab project) or
      ``"SGD"``, with ``SOLVER.CLIP_GRADIENTS``; the LR schedule of Detectron2's DeepLab project
      (``WarmupPolyLR``, or any Detectron2 scheduler name);
    * evaluation (``--eval-only``, every ``TEST.EVAL_PERIOD`` iterations, and after the last
      iteration, as Detectron2's ``EvalHook`` does): video inference
      over each ``DATASETS.TEST`` dataset into :class:`DVPSEvaluator`, which writes the official
      prediction files and ``dvps_results.json`` under ``OUTPUT_DIR/inference/<dataset>/``;
    * writers: Detectron2's console, ``metrics.json`` and TensorBoard writers, which record
      every loss term as its own curve; every ``VIS_PERIOD`` iterations a prediction picture of
      the first test frame goes to TensorBoard (:class:`PredictionImageHook`);
    * checkpoints: :class:`PanopticDepthLabCheckpointer` (atomic saves, safe loads, one-line
      errors); on start, the temporary checkpoint files of killed runs in ``OUTPUT_DIR`` are
      removed; :class:`PeriodicCheckpointer` saves every ``SOLVER.CHECKPOINT_PERIOD``
      iterations, keeps the last ``SOLVER.CHECKPOINT_MAX_KEEP`` (0: all) and writes only
      ``model_final.pth`` at the last iteration;
    * a NaN or infinite loss stops training with the iteration, the loss terms and the last
      good checkpoint.

    The constructor assembles the same parts as ``DefaultTrainer.__init__``, with two
    differences that DefaultTrainer cannot be told: DistributedDataParallel gets
    ``device_ids=None`` for a CPU model (gloo processes), and the checkpointer is the one above.
    """

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_cpu = torch.device(cfg.MODEL.DEVICE).type == "cpu"
        device_ids = None if on_cpu else [comm.get_local_rank()]
        # BatchNorm buffers stay per-process in training, as in DefaultTrainer
        model = create_ddp_model(model, device_ids=device_ids, forward_sync_buffers=False)
        trainer_class = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_class(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = PanopticDepthLabCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self), **class_order_options(cfg)
        )
        self.checkpointer.remove_stale_temporaries()  # the main process's only
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self) -> list:
        """Detectron2's default hooks, with :class:`PeriodicCheckpointer` in place of its
        checkpoint hook and :class:`PredictionImageHook` before the writers."""
        max_keep = self.cfg.SOLVER.CHECKPOINT_MAX_KEEP
        if isinstance(max_keep, bool) or not isinstance(max_keep, int) or max_keep < 0:
            raise LaunchError(
                f"SOLVER.CHECKPOINT_MAX_KEEP = {max_keep!r}; expected 0 (keep every periodic "
                "checkpoint) or the number of newest periodic checkpoints to keep."
            )
        hook_list = super().build_hooks()
        for index, hook in enumerate(hook_list):
            if isinstance(hook, hooks.PeriodicCheckpointer):
                hook_list[index] = PeriodicCheckpointer(
                    self.checkpointer, self.cfg.SOLVER.CHECKPOINT_PERIOD, max_keep or None
                )
        if self.cfg.VIS_PERIOD > 0 and self.cfg.DATASETS.TEST:
            mapper = DVPSDatasetMapper(self.cfg, is_train=False)
            # before the writers (last in the list), so a picture is written with its iteration
            hook_list.insert(
                -1, PredictionImageHook(self.cfg.VIS_PERIOD, self.cfg.DATASETS.TEST[0], mapper)
            )
        return hook_list

    def run_step(self) -> None:
        try:
            super().run_step()
        except FloatingPointError as e:
            if self.checkpointer.has_checkpoint():
                last = f"the last good checkpoint is {self.checkpointer.get_checkpoint_file()}"
            else:
                last = (
                    f"no checkpoint was saved before it (SOLVER.CHECKPOINT_PERIOD = "
                    f"{self.cfg.SOLVER.CHECKPOINT_PERIOD})"
                )
            message = (
                f"{e}\nTraining stopped; {last}. Lower SOLVER.BASE_LR or enable "
                "SOLVER.CLIP_GRADIENTS, then continue with --resume."
            )
            logger.error(message)
            raise FloatingPointError(message) from e

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        return build_dvps_train_loader(cfg)

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        name = cfg.SOLVER.OPTIMIZER.upper()
        if name == "SGD":
            return super().build_optimizer(cfg, model)
        if name != "ADAM":
            raise ConfigValueError(
                f"SOLVER.OPTIMIZER = {cfg.SOLVER.OPTIMIZER!r}; expected ADAM or SGD."
            )
        params = get_default_optimizer_params(
            model,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.Adam)(params, lr=cfg.SOLVER.BASE_LR)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module, evaluators: Any = None) -> OrderedDict:
        """Evaluate ``model`` on every ``DATASETS.TEST`` dataset by video inference.

        In a distributed run, every process first takes the main process's buffers (BatchNorm
        statistics), the ones its checkpoints hold.

        Returns:
            Detectron2's convention: ``{dataset: {"dvps": {metric: value}}}`` (and
            ``"panoptic_seg"``: Detectron2's ``COCOPanopticEvaluator`` PQ where the dataset has
            COCO-format panoptic ground truth, metadata ``panoptic_json``), or the inner dict
            when there is one dataset. Only the main process gets the numbers.
        """
        if evaluators is not None:
            raise ValueError("DVPSTrainer.test builds its own DVPSEvaluator per dataset.")
        results = OrderedDict()
        if not cfg.DATASETS.TEST:  # Detectron2's EvalHook also calls this after training
            return results
        if comm.get_world_size() > 1:
            # Per-process BatchNorm statistics ("BN") drift apart in training, and checkpoints
            # hold the main process's: every process evaluates that model, so the numbers are
            # those of the saved checkpoint.
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)
        mapper = DVPSDatasetMapper(cfg, is_train=False)
        for name in cfg.DATASETS.TEST:
            evaluator = DVPSEvaluator(name, os.path.join(cfg.OUTPUT_DIR, "inference", name))
            if MetadataCatalog.get(name).get("panoptic_json"):  # also Detectron2's own PQ
                evaluator = DatasetEvaluators([evaluator, TrackedCOCOPanopticEvaluator(name)])
            results[name] = inference_on_sequences(model, name, mapper, evaluator)
        return next(iter(results.values())) if len(results) == 1 else results
