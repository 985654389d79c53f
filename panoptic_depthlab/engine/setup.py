"""Configuration and process setup for ``tools/train_net.py``.

:func:`load_config` and :func:`check_launch` run in the launching process, before any worker is
spawned, so a wrong batch size or a missing dataset is reported at once; :func:`setup` runs in
every worker and adapts the config to the machine (CPU fallbacks, with a log line each).
"""

from __future__ import annotations

import argparse
import logging
import os

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_panoptic_depthlab_config
from ..data.datasets import check_dvps_dataset

__all__ = ["LaunchError", "check_launch", "fall_back_to_cpu", "load_config", "setup"]

logger = logging.getLogger(__name__)


class LaunchError(ValueError):
    """The command line or config cannot start a run; the message says what to change."""


def load_config(args: argparse.Namespace) -> CfgNode:
    """Detectron2's config with panoptic_depthlab's keys, ``--config-file`` and the overrides."""
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    return cfg


def check_launch(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Raise :class:`LaunchError` if the run cannot start: ``SOLVER.IMS_PER_BATCH`` not divisible
    by the number of processes (``--num-gpus`` x ``--num-machines``), an unregistered dataset
    name, or a DVPS dataset whose directory is missing."""
    processes = args.num_gpus * args.num_machines
    if not args.eval_only and cfg.SOLVER.IMS_PER_BATCH % processes:
        raise LaunchError(
            f"SOLVER.IMS_PER_BATCH = {cfg.SOLVER.IMS_PER_BATCH} is not divisible by the "
            f"{processes} training processes (--num-gpus {args.num_gpus} x --num-machines "
            f"{args.num_machines}); every process takes the same share of each batch. Set "
            f"SOLVER.IMS_PER_BATCH to a multiple of {processes} (and scale SOLVER.BASE_LR with it)."
        )
    keys = [("DATASETS.TEST", cfg.DATASETS.TEST)]
    if not args.eval_only:
        keys.insert(0, ("DATASETS.TRAIN", cfg.DATASETS.TRAIN))
    # Every name is checked before any directory: a misspelt name is the cause to report first.
    registered = set(DatasetCatalog.list())
    for key, names in keys:
        for name in names:
            if name not in registered:
                raise LaunchError(
                    f"{key} names {name!r}, which is not a registered dataset. Built-in DVPS "
                    "datasets: cityscapes_dvps_*, semkitti_dvps_*, synthetic_cityscapes_dvps_*, "
                    "synthetic_semkitti_dvps_* (train / val); others are registered with "
                    "panoptic_depthlab.data.register_dvps_dataset."
                )
    for _, names in keys:
        for name in names:
            try:
                check_dvps_dataset(name)
            except FileNotFoundError as e:
                raise LaunchError(str(e)) from e


def fall_back_to_cpu(cfg: CfgNode) -> None:
    """Set ``MODEL.DEVICE`` to ``cpu`` (with a log line) when it names CUDA and there is none:
    Detectron2's default is ``cuda``, and the configs keep it for their GPU users."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.info(f"CUDA is not available: MODEL.DEVICE {cfg.MODEL.DEVICE} -> cpu.")
        cfg.MODEL.DEVICE = "cpu"


def _adapt_to_machine(cfg: CfgNode, processes_per_machine: int) -> None:
    """CPU fallbacks, each logged: MODEL.DEVICE cuda -> cpu without CUDA; on CPU, SyncBN ->
    naiveSyncBN (torch's SyncBatchNorm needs CUDA; Detectron2's all-reduce BatchNorm works over
    gloo) and AMP off (Detectron2's AMPTrainer needs CUDA); and the CPU threads shared among
    this machine's processes."""
    fall_back_to_cpu(cfg)
    if torch.device(cfg.MODEL.DEVICE).type != "cpu":
        return

    def sync_bn_keys(node: CfgNode, prefix: str) -> list[str]:
        keys = []
        for key, value in node.items():
            if isinstance(value, CfgNode):
                keys += sync_bn_keys(value, f"{prefix}{key}.")
            elif key == "NORM" and value == "SyncBN":
                node[key] = "naiveSyncBN"
                keys.append(prefix + key)
        return keys

    changed = sync_bn_keys(cfg, "")
    if changed:
        logger.info(
            f"Training on CPU: SyncBN -> naiveSyncBN for {', '.join(sorted(changed))} (torch's "
            "SyncBatchNorm needs CUDA; naiveSyncBN all-reduces the batch statistics over gloo)."
        )
    if cfg.SOLVER.AMP.ENABLED:
        logger.info("Training on CPU: SOLVER.AMP.ENABLED -> False (AMP training needs CUDA).")
        cfg.SOLVER.AMP.ENABLED = False
    threads = max(1, (os.cpu_count() or 1) // processes_per_machine)
    torch.set_num_threads(threads)
    logger.info(f"Training on CPU: {threads} threads in each of {processes_per_machine} processes.")


def setup(args: argparse.Namespace) -> CfgNode:
    """Per-process setup: load the config, adapt it to the machine, set up logging (console and
    ``OUTPUT_DIR/log.txt``), and run Detectron2's ``default_setup`` (which writes the final
    config to ``OUTPUT_DIR/config.yaml``). Returns the frozen config."""
    cfg = load_config(args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="panoptic_depthlab")
    _adapt_to_machine(cfg, args.num_gpus)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg
