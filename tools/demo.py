"""Predict panoptic segmentation, depth and tracked instances on images, folders of frames or
videos, and write pictures, an MP4, official prediction files, per-frame JSON and point clouds.

    python tools/demo.py --config-file configs/vip_depth.yaml \\
        --input frames_folder/ clip.mp4 image.png --output output/demo \\
        --opts MODEL.WEIGHTS output/model_final.pth MODEL.DEVICE cuda

A folder (frames sorted by name) or a video is one tracked sequence; each image stands alone.
Outputs per sequence in OUTPUT/<name>/ (images: OUTPUT/images/): vis/*.png, <name>.mp4,
panoptic/ + depth/ (official formats, for tools/eval_dvpq.py), segments/*.json and, with
--pointcloud, pointcloud/*.ply. Exit code 2 on bad input, with the cause.
"""

from __future__ import annotations

import argparse
import sys

from detectron2.utils.logger import setup_logger

from panoptic_depthlab.demo import DemoInputError, find_sequences, run_demo
from panoptic_depthlab.engine import fall_back_to_cpu, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo.py",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    parser.add_argument(
        "--input", required=True, nargs="+", metavar="PATH", help="images, folders or videos"
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
    parser.add_argument(
        "--opts",
        default=[],
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        help="config overrides, e.g. MODEL.WEIGHTS model.pth MODEL.DEVICE cpu",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logger(name="panoptic_depthlab")
    setup_logger(name="detectron2", abbrev_name="d2")
    cfg = load_config(args)
    fall_back_to_cpu(cfg)
    cfg.freeze()
    if args.focal_length is not None and args.focal_length <= 0:
        print(f"demo.py: --focal-length {args.focal_length}: expected pixels > 0.", file=sys.stderr)
        return 2
    try:
        sequences = find_sequences(args.input)
        run_demo(cfg, sequences, args.output, args.pointcloud, args.focal_length)
    except DemoInputError as error:
        print(f"demo.py: {error}", file=sys.stderr)
        return 2
    print(f"Pictures, videos and predictions are in {args.output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
