"""Export a PanopticDepthLab model to torch.export (.pt2) or ONNX graphs that run without
Detectron2, checked against eager PyTorch.

examples:
    python tools/export_model.py --config-file configs/vip_depth.yaml --format onnx \\
        --output output/export_onnx MODEL.WEIGHTS output/vip_depth/model_final.pth
    python tools/export_model.py --config-file configs/vip_depth.yaml --format pt2 \\
        --output output/export_pt2 --sample-size 1024 2048 --opts MODEL.WEIGHTS model.pth

The folder holds a backbone graph and a heads graph (and heads_window where the config pools its
ASPPs over a crop window) with dynamic height and width, and manifest.json (config, normalization,
size divisibility, dataset metadata, output names). Run it with
Predictor.from_exported(folder) or tools/demo.py --exported folder. Every output is compared with
eager PyTorch on a pair of frames of another size than the export size; the largest differences
are printed, and above --tolerance nothing is written (exit 2). Config overrides (KEY VALUE pairs)
come last, as for tools/train_net.py, or after --opts. Exit code 2, with one line naming the
cause, for a bad config, checkpoint, output folder or a failed check.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from panoptic_depthlab.checkpoint import CheckpointError
from panoptic_depthlab.config import ConfigValueError
from panoptic_depthlab.engine import (
    LaunchError,
    add_override_arguments,
    fall_back_to_cpu,
    load_config,
)
from panoptic_depthlab.export import DEFAULT_TOLERANCE, ExportError, export_model
from panoptic_depthlab.files import OutputError

from detectron2.utils.logger import setup_logger  # isort: skip (after compat)

PROG = "export_model.py"


def _parser() -> argparse.ArgumentParser:
    description, epilog = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    parser.add_argument(
        "--format", required=True, choices=["pt2", "onnx"], help="graph format to write"
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    parser.add_argument(
        "--sample-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="size of the frame the graphs are traced with (default: the training crop); any "
        "size runs afterwards",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest accepted difference from eager PyTorch, relative to each output's "
        f"largest magnitude (at least 1); default {DEFAULT_TOLERANCE:g}",
    )
    add_override_arguments(parser, "MODEL.WEIGHTS model.pth MODEL.DEVICE cuda")
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.opts = list(args.opts) + list(args.flag_opts)
    if args.sample_size is not None and min(args.sample_size) < 1:
        return _error(
            f"--sample-size {args.sample_size[0]} {args.sample_size[1]}: expected H W > 0."
        )
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        return _error(f"--tolerance {args.tolerance}: expected a finite number >= 0.")
    setup_logger(name="panoptic_depthlab")
    setup_logger(name="fvcore")  # the checkpointer's per-part table and mismatches
    try:
        cfg = load_config(args)
    except LaunchError as error:
        return _error(str(error))
    fall_back_to_cpu(cfg)
    cfg.freeze()
    try:
        manifest = export_model(cfg, args.format, args.output, args.sample_size, args.tolerance)
    except (CheckpointError, ConfigValueError, ExportError, OutputError) as error:
        return _error(str(error))
    differences = manifest["check"]["differences"]
    worst = max(differences, key=lambda k: differences[k]["relative"])
    size = sum(os.path.getsize(os.path.join(args.output, f)) for f in os.listdir(args.output))
    print(
        f"Exported {args.format} graphs to {args.output}/ ({size / 2**20:.1f} MiB); largest "
        f"difference from eager PyTorch: {worst} {differences[worst]['max_abs_difference']:.3g} "
        f"(relative {differences[worst]['relative']:.3g}, tolerance {args.tolerance:g})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
