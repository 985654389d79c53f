"""Configuration and process setup for ``tools/train_net.py``.

:func:`load_config` and :func:`check_launch` run in the launching process, before any worker is
spawned, so a wrong process count, batch size, dataset, checkpoint or output folder is reported
at once; :func:`setup` runs in every worker and adapts the config to the machine (CPU
fallbacks, with a log line each).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

import torch
import yaml
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import CheckpointError, check_checkpoint_file, check_last_checkpoint
from ..config import add_panoptic_depthlab_config
from ..data.datasets import check_dvps_dataset
from ..files import check_writable

__all__ = [
    "LaunchError",
    "add_override_arguments",
    "check_launch",
    "fall_back_to_cpu",
    "load_config",
    "setup",
]

logger = logging.getLogger(__name__)


class LaunchError(ValueError):
    """The command line or config cannot start a run; the message says what to change."""


def add_override_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The config overrides of a tool (``KEY VALUE`` pairs): last on the command line, as for
    ``tools/train_net.py``, or after ``--opts`` (Detectron2's demo spelling). After parsing,
    ``args.opts + args.flag_opts`` are all of them.

    Args:
        example: what the help shows, e.g. ``"MODEL.WEIGHTS model.pth MODEL.DEVICE cpu"``.
    """
    parser.add_argument(
        "--opts",
        dest="flag_opts",
        default=[],
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        help="config overrides after this flag (Detectron2's demo spelling)",
    )
    parser.add_argument(
        "opts",
        default=[],
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        help=f"config overrides, last, e.g. {example}",
    )


def load_config(args: argparse.Namespace) -> CfgNode:
    """Detectron2's config with panoptic_depthlab's keys, ``--config-file`` and the overrides.

    Raises:
        LaunchError: "``config <file>[ with overrides ...]: <reason>``" for a missing or
            unreadable file, an unknown key, an odd override list or a value of the wrong type.
    """
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    try:
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(args.opts)
    except (AssertionError, KeyError, ValueError, TypeError, OSError, yaml.YAMLError) as e:
        reason = e.args[0] if isinstance(e, KeyError) and e.args else e
        overrides = f" with overrides {' '.join(args.opts)}" if args.opts else ""
        raise LaunchError(f"config {args.config_file}{overrides}: {reason}") from e
    return cfg


def _check_processes(args: argparse.Namespace) -> list[str]:
    """The process counts of the command line; returns warnings (see :func:`check_launch`)."""
    if args.num_gpus < 1:
        raise LaunchError(
            f"--num-gpus {args.num_gpus}: expected 1 or more processes per machine (GPUs, or CPU "
            "processes on a machine without CUDA)."
        )
    if args.num_machines < 1:
        raise LaunchError(f"--num-machines {args.num_machines}: expected 1 or more machines.")
    if not 0 <= args.machine_rank < args.num_machines:
        raise LaunchError(
            f"--machine-rank {args.machine_rank}: expected 0 to {args.num_machines - 1} "
            f"(--num-machines {args.num_machines})."
        )
    if torch.cuda.is_available():
        devices = torch.cuda.device_count()
        if args.num_gpus > devices:
            raise LaunchError(
                f"--num-gpus {args.num_gpus}, but this machine has {devices} CUDA device(s); "
                f"use --num-gpus {devices} or fewer."
            )
        return []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and args.num_gpus > cores:
        return [
            f"--num-gpus {args.num_gpus} starts {args.num_gpus} CPU processes (no CUDA here) on "
            f"{cores} CPU core(s): they share the cores and will be slow; --num-gpus {cores} or "
            "fewer is faster."
        ]
    return []


def _check_checkpoints(cfg: CfgNode, args: argparse.Namespace) -> None:
    """The checkpoint the run will load: with ``--resume``, the file that
    ``OUTPUT_DIR/last_checkpoint`` names (if that tag exists, as Detectron2 resumes), else a
    local ``MODEL.WEIGHTS`` (URLs such as ``detectron2://...`` are left to the checkpointer)."""
    if args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        check_last_checkpoint(cfg.OUTPUT_DIR)
        return
    weights = cfg.MODEL.WEIGHTS
    if not weights or "://" in weights:
        return
    if not os.path.exists(weights.split("?", 1)[0]):
        raise CheckpointError(
            f"MODEL.WEIGHTS {weights}: no such file. Give the path of a checkpoint (.pth, or a "
            "Detectron2 model-zoo .pkl), a detectron2:// URL, or '' for random initialization."
        )
    try:
        check_checkpoint_file(weights)
    except CheckpointError as e:  # its message starts with the path
        raise CheckpointError(f"MODEL.WEIGHTS {e}") from e


def check_launch(cfg: CfgNode, args: argparse.Namespace) -> list[str]:
    """Check, in the launching process, that the run can start, before any worker is spawned
    and before anything is written.

    Raises:
        LaunchError: ``--num-gpus`` or ``--num-machines`` below 1, ``--machine-rank`` out of
            range, more ``--num-gpus`` than CUDA devices, ``SOLVER.IMS_PER_BATCH`` not divisible
            by the number of processes (``--num-gpus`` x ``--num-machines``), an unregistered
            dataset name, or a DVPS dataset whose directory is missing.
        CheckpointError: the checkpoint to load (``MODEL.WEIGHTS``, or with ``--resume`` the
            one ``OUTPUT_DIR/last_checkpoint`` names) is missing, empty or not a checkpoint.
        OutputError: ``OUTPUT_DIR`` cannot be written (read-only, full, not a folder).

    Returns:
        Warnings to show: more CPU processes than CPU cores on a machine without CUDA.
    """
    warnings = _check_processes(args)
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
                    f"{key} names {name!r}, which is not a registered dataset. Built-in "
                    "datasets: cityscapes_dvps_*, semkitti_dvps_*, synthetic_cityscapes_dvps_*, "
                    "synthetic_semkitti_dvps_*, cityscapes_panoptic_depth_*, "
                    "synthetic_cityscapes_panoptic_depth_* (train / val); others are registered "
                    "with panoptic_depthlab.data.register_dvps_dataset."
                )
    for _, names in keys:
        for name in names:
            try:
                check_dvps_dataset(name)
            except FileNotFoundError as e:
                raise LaunchError(str(e)) from e
    _check_checkpoints(cfg, args)
    if cfg.OUTPUT_DIR:  # before Detectron2's default_setup writes config.yaml and log.txt
        check_writable(cfg.OUTPUT_DIR, "OUTPUT_DIR")
    return warnings


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


# Terminal colour and style codes (Detectron2 colours the config it logs, with pygments).
_ANSI_CODE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _PlainTextFormatter(logging.Formatter):
    """Another formatter's text without terminal colour codes: for log files."""

    def __init__(self, formatter: logging.Formatter):
        super().__init__()
        self._formatter = formatter

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI_CODE.sub("", self._formatter.format(record))


def _set_up_loggers(output_dir: str) -> None:
    """Detectron2's loggers for ``detectron2``, ``fvcore`` and ``panoptic_depthlab`` (console
    and ``output_dir/log.txt``), with plain text in the log files.

    ``default_setup`` logs the config coloured for a terminal, and Detectron2's file handlers
    write messages as they are. ``setup_logger`` is cached per arguments, so the loggers set up
    here with the arguments ``default_setup`` uses are the ones it gets.
    """
    rank = comm.get_rank()
    loggers = [
        setup_logger(output_dir, distributed_rank=rank, name="fvcore"),
        setup_logger(output_dir, distributed_rank=rank),
        setup_logger(output_dir, distributed_rank=rank, name="panoptic_depthlab"),
    ]
    consoles = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    for handler in (h for lg in loggers for h in lg.handlers):
        stream = getattr(handler, "stream", None)
        name = getattr(stream, "name", None)
        if (
            stream is None
            or stream in consoles
            or not isinstance(name, str)
            or name.startswith("<")
            or isinstance(handler.formatter, _PlainTextFormatter)
        ):
            continue
        handler.setFormatter(_PlainTextFormatter(handler.formatter or logging.Formatter()))


def setup(args: argparse.Namespace) -> CfgNode:
    """Per-process setup: load the config, check that ``OUTPUT_DIR`` can be written (before
    anything is written there), adapt the config to the machine, set up logging (console and
    ``OUTPUT_DIR/log.txt``, plain text), and run Detectron2's ``default_setup`` (which writes
    the final config to ``OUTPUT_DIR/config.yaml``). Returns the frozen config.

    Raises:
        OutputError: ``OUTPUT_DIR`` cannot be written.
    """
    cfg = load_config(args)
    if cfg.OUTPUT_DIR:  # every worker at once; the launching process checked it before
        check_writable(cfg.OUTPUT_DIR, "OUTPUT_DIR", keep=True)
    _set_up_loggers(cfg.OUTPUT_DIR)
    _adapt_to_machine(cfg, args.num_gpus)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg
