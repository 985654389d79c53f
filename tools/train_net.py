"""Train or evaluate PanopticDepthLab (depth-aware video panoptic segmentation) with Detectron2's
trainer and launcher.

    python tools/train_net.py --config-file configs/vip_depth.yaml --num-gpus 2
    python tools/train_net.py --config-file configs/vip_depth.yaml --num-gpus 2 --resume
    python tools/train_net.py --config-file configs/vip_depth.yaml --eval-only \\
        MODEL.WEIGHTS output/vip_depth/model_final.pth

Without GPUs, ``--num-gpus N`` runs N CPU processes that train together over gloo. Multi-machine:
the same command on every machine with ``--num-machines M --machine-rank R --dist-url
tcp://<machine 0's address>:<port>``. Overrides (``KEY VALUE`` pairs) come last.

A wrong command line, config, dataset, checkpoint or output folder is reported in one line
before any work starts, with exit code 2; so is a full disk during the run.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
import tempfile

from panoptic_depthlab.checkpoint import (
    CheckpointError,
    PanopticDepthLabCheckpointer,
    class_order_options,
)
from panoptic_depthlab.config import ConfigValueError
from panoptic_depthlab.data.errors import DatasetError
from panoptic_depthlab.engine import (
    DVPSTrainer,
    LaunchError,
    check_launch,
    launch,
    load_config,
    setup,
)
from panoptic_depthlab.files import OutputError

from detectron2.engine import default_argument_parser  # isort: skip (after compat)
from detectron2.utils import comm  # isort: skip
from torch.multiprocessing import ProcessExitedException  # isort: skip

PROG = "train_net.py"
logger = logging.getLogger("panoptic_depthlab.train_net")

DESCRIPTION = """\
Train or evaluate PanopticDepthLab (depth-aware video panoptic segmentation) with Detectron2's
trainer and launcher."""
EPILOG = """\
examples:
  train with 2 GPUs (or, on a machine without CUDA, 2 CPU processes over gloo):
    python tools/train_net.py --config-file configs/vip_depth.yaml --num-gpus 2
  continue an interrupted run from OUTPUT_DIR/last_checkpoint:
    python tools/train_net.py --config-file configs/vip_depth.yaml --num-gpus 2 --resume
  evaluate a checkpoint (writes OUTPUT_DIR/inference/<dataset>/):
    python tools/train_net.py --config-file configs/vip_depth.yaml --eval-only \\
        MODEL.WEIGHTS output/vip_depth/model_final.pth
  several machines: the same command on every machine, with
    --num-machines M --machine-rank R --dist-url tcp://<machine 0's address>:<port>

Config overrides (KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.001 OUTPUT_DIR output/run2) come
last. A wrong command line, config, dataset, checkpoint or output folder is reported in one
line before any work starts, with exit code 2; so is a full disk during the run.
"""
_HELP = {
    "config_file": ("FILE", "the YAML config, e.g. configs/vip_depth.yaml"),
    "resume": (
        None,
        "continue from the checkpoint that OUTPUT_DIR/last_checkpoint names (weights, optimizer, "
        "schedule, iteration); without that file, start from MODEL.WEIGHTS",
    ),
    "eval_only": (
        None,
        "only evaluate on DATASETS.TEST: MODEL.WEIGHTS, or with --resume the last checkpoint",
    ),
    "num_gpus": (
        "N",
        "processes per machine: one per GPU, or N CPU processes on a machine without CUDA "
        "(default: 1)",
    ),
    "num_machines": ("M", "number of machines taking part (default: 1)"),
    "machine_rank": ("R", "this machine's rank, 0 to M - 1 (default: 0)"),
    "dist_url": (
        "URL",
        "where the processes meet: tcp://<machine 0's address>:<port> (default: a port on "
        "127.0.0.1 derived from your user id)",
    ),
    "opts": ("KEY VALUE", "config overrides, e.g. SOLVER.BASE_LR 0.001 (come last)"),
}
# OSErrors of a run that are the machine's state, not a bug: one line, exit 2.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def build_parser() -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` (the options every Detectron2 tool takes), with
    help texts for this tool."""
    parser = default_argument_parser(EPILOG)
    parser.prog = PROG
    parser.description = DESCRIPTION
    for action in parser._actions:
        if action.dest in _HELP:
            metavar, action.help = _HELP[action.dest]
            if metavar is not None:
                action.metavar = metavar
    return parser


def main(args: argparse.Namespace):
    """One process: train (or evaluate with ``--eval-only``); returns the evaluation results."""
    cfg = setup(args)
    if args.eval_only:
        model = DVPSTrainer.build_model(cfg)
        checkpointer = PanopticDepthLabCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR, **class_order_options(cfg)
        )
        if not cfg.MODEL.WEIGHTS and not (args.resume and checkpointer.has_checkpoint()):
            logger.warning(
                "--eval-only without MODEL.WEIGHTS: the model is randomly initialized, so its "
                "predictions and numbers mean nothing. Give MODEL.WEIGHTS <checkpoint>, or "
                "--resume to evaluate the last checkpoint of OUTPUT_DIR."
            )
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return DVPSTrainer.test(cfg, model)
    trainer = DVPSTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if trainer.start_iter >= trainer.max_iter:
        what = "evaluating that checkpoint" if cfg.DATASETS.TEST else "nothing to evaluate"
        logger.info(
            f"Training already finished at iteration {trainer.start_iter - 1} "
            f"({trainer.checkpointer.get_checkpoint_file()}, SOLVER.MAX_ITER = "
            f"{trainer.max_iter}): {what}, no training. Raise SOLVER.MAX_ITER to train longer."
        )
    return trainer.train()


def _user_error(error: BaseException, output_dir: str) -> str | None:
    """The one-line message for an error the user can act on, else None."""
    if isinstance(
        error, (LaunchError, CheckpointError, OutputError, ConfigValueError, DatasetError)
    ):
        return str(error)
    if isinstance(error, OSError) and error.errno in _OUTPUT_ERRNOS:
        # a write outside panoptic_depthlab's atomic writes (log.txt, metrics.json, events)
        return f"{error.filename or output_dir}: cannot write ({error.strerror})."
    return None


def _worker(args: argparse.Namespace, output_dir: str, error_file: str):
    """:func:`main` in a launched process. A user error in a spawned process (2 or more) is
    written to ``error_file`` (the first one only) for the launching process to print, and
    ends the process with exit code 2 (the launcher then stops the others)."""
    try:
        return main(args)
    except Exception as e:
        message = _user_error(e, output_dir)
        if message is None or comm.get_world_size() == 1:
            raise
        with contextlib.suppress(FileExistsError), open(error_file, "x") as f:
            f.write(message)
        sys.exit(2)


def invoke(argv: list[str] | None = None) -> int:
    """Parse the command line, check it, and launch :func:`main` in every process; returns the
    exit code (0 done, 2 a user error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args)
    except LaunchError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    temporary = tempfile.TemporaryDirectory(prefix="train_net.")
    error_file = os.path.join(temporary.name, "error")
    try:
        for warning in check_launch(cfg, args):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        launch(
            _worker,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args, cfg.OUTPUT_DIR, error_file),
        )
    except ProcessExitedException as e:
        if e.exit_code != 2 or not os.path.isfile(error_file):
            raise
        with open(error_file) as f:  # a spawned worker's user error
            print(f"{PROG}: error: {f.read()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted. Training continues from the last checkpoint with --resume; an "
            "interrupted evaluation leaves the previous results in OUTPUT_DIR/inference as they "
            "were.",
            file=sys.stderr,
        )
        return 130
    except Exception as e:
        message = _user_error(e, cfg.OUTPUT_DIR)
        if message is None:
            raise
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    finally:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(invoke())
