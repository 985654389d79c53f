"""Run a PanopticDepthLab model on images, folders of frames and videos, and write pictures, an
MP4 per sequence, official prediction files, per-frame JSON and, optionally, point clouds.

examples:
    python tools/demo.py --config-file configs/vip_depth.yaml \\
        --input frames_folder/ clip.mp4 image.png --output output/demo \\
        MODEL.WEIGHTS output/model_final.pth MODEL.DEVICE cuda
    python tools/demo.py --config-file configs/vip_depth.yaml --input 'clips/*.mp4' \\
        --output output/demo --opts MODEL.WEIGHTS output/model_final.pth
    python tools/demo.py --exported output/export_onnx --input clip.mp4 --output output/demo

The model: a config's eager model (--config-file, with MODEL.WEIGHTS), or the graphs of a folder
written by tools/export_model.py (--exported, on --device; no config, no overrides).

Config overrides (KEY VALUE pairs) come last, as for tools/train_net.py, or after --opts.
Inputs: a video is one tracked sequence; so is a folder of frames (sorted by name), unless it
holds several DVPS sequences (<sequence>_<frame>_..._leftImg8bit.png): each is tracked apart.
Each image stands alone. Quoted glob patterns are expanded (sorted).
Outputs per sequence in OUTPUT/<name>/ (loose images: OUTPUT/images/): vis/*.png, <name>.mp4,
panoptic/ + depth/ (official formats, for tools/eval_dvpq.py), segments/*.json and, with
--pointcloud, pointcloud/*.ply. Two inputs of one name get distinct folders (name, name_2, ...).
Outputs of a branch that MODEL.WEIGHTS did not hold (all of them without weights) are warned
about and marked UNTRAINED in the pictures and the JSON.
Exit code 2, with one line naming the cause, for a bad input, config, checkpoint or output
folder (read-only, full disk); complete files only are left.
"""

from __future__ import annotations

import argparse
import math
import sys

from detectron2.utils.logger import setup_logger

from panoptic_depthlab.checkpoint import CheckpointError
from panoptic_depthlab.config import ConfigValueError
from panoptic_depthlab.demo import DemoInputError, DemoModel, find_sequences, run_demo
from panoptic_depthlab.engine import (
    LaunchError,
    add_override_arguments,
    fall_back_to_cpu,
    load_config,
)
from panoptic_depthlab.files import OutputError
from panoptic_depthlab.runtime.exported import ExportedModelError


def _parser() -> argparse.ArgumentParser:
    description, epilog = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(
        prog="demo.py",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", metavar="FILE", help="model config (eager model)")
    parser.add_argument(
        "--exported",
        metavar="DIR",
        help="run the graphs of an exported model folder (tools/export_model.py) instead",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="device of --exported graphs: cpu (default) or cuda (ONNX on CUDA needs "
        "onnxruntime-gpu); an eager model runs on MODEL.DEVICE",
    )
    parser.add_argument(
        "--input",
        required=True,
        nargs="+",
        metavar="PATH",
        help="images, folders of frames, videos, or quoted glob patterns of them",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--pointcloud", action="store_true", help="also write a PLY point cloud per frame"
    )
    parser.add_argument(
        "--focal-length",
        type=float,
        default=None,
        metavar="PIXELS",
        help="camera focal length for --pointcloud (default: from SemKITTI-DVPS file names)",
    )
    add_override_arguments(parser, "MODEL.WEIGHTS model.pth MODEL.DEVICE cpu")
    return parser


def _error(message: str) -> int:
    print(f"demo.py: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.opts = list(args.opts) + list(args.flag_opts)
    setup_logger(name="panoptic_depthlab")
    setup_logger(name="detectron2", abbrev_name="d2")
    setup_logger(name="fvcore")  # the checkpointer's per-part table and mismatches
    if (args.config_file is None) == (args.exported is None):
        return _error(
            "give the model with --config-file FILE (eager) or --exported DIR (exported graphs), "
            "one of the two."
        )
    if args.exported is not None and args.opts:
        return _error(
            f"config overrides ({' '.join(args.opts)}) apply to --config-file; an exported "
            "model's config was fixed at export (its manifest.json)."
        )
    try:
        if args.exported is not None:
            model = DemoModel.from_exported(args.exported, args.device)
        else:
            cfg = load_config(args)
            fall_back_to_cpu(cfg)
            cfg.freeze()
            model = DemoModel.from_config(cfg)
    except (LaunchError, ExportedModelError, DemoInputError) as error:
        return _error(str(error))
    if args.focal_length is not None and not (
        math.isfinite(args.focal_length) and args.focal_length > 0
    ):
        return _error(
            f"--focal-length {args.focal_length}: expected a finite number of pixels > 0."
        )
    try:
        sequences = find_sequences(args.input)
        run_demo(model, sequences, args.output, args.pointcloud, args.focal_length)
    except (
        DemoInputError,
        CheckpointError,
        OutputError,
        ConfigValueError,
        ExportedModelError,
    ) as error:
        return _error(str(error))
    print(f"Pictures, videos and predictions are in {args.output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
