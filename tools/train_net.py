"""Train or evaluate PanopticDepthLab with Detectron2's trainer and launcher.

    python tools/train_net.py --config-file configs/vip_depth.yaml --num-gpus 2
    python tools/train_net.py --config-file configs/vip_depth.yaml --num-gpus 2 --resume
    python tools/train_net.py --config-file configs/vip_depth.yaml --eval-only \\
        MODEL.WEIGHTS output/vip_depth/model_final.pth

Without GPUs, ``--num-gpus N`` runs N CPU processes that train together over gloo. Multi-machine:
the same command on every machine with ``--num-machines M --machine-rank R --dist-url
tcp://<machine 0's address>:<port>``. Overrides (``KEY VALUE`` pairs) come last.
"""

from __future__ import annotations

import sys

from panoptic_depthlab.checkpoint import PanopticDepthLabCheckpointer
from panoptic_depthlab.engine import (
    DVPSTrainer,
    LaunchError,
    check_launch,
    launch,
    load_config,
    setup,
)

from detectron2.engine import default_argument_parser  # isort: skip (after compat)


def main(args):
    """One process: train (or evaluate with ``--eval-only``); returns the evaluation results."""
    cfg = setup(args)
    if args.eval_only:
        model = DVPSTrainer.build_model(cfg)
        checkpointer = PanopticDepthLabCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return DVPSTrainer.test(cfg, model)
    trainer = DVPSTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke(argv: list[str] | None = None) -> int:
    """Parse the command line, check it, and launch :func:`main` in every process."""
    parser = default_argument_parser(__doc__)
    args = parser.parse_args(argv)
    try:
        check_launch(load_config(args), args)
    except LaunchError as e:
        print(f"train_net.py: error: {e}", file=sys.stderr)
        return 2
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return 0


if __name__ == "__main__":
    sys.exit(invoke())
