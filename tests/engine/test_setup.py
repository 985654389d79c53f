"""Per-process setup of tools/train_net.py: CPU fallbacks, each with its log line."""

from __future__ import annotations

from pathlib import Path

import torch
from detectron2.engine import default_argument_parser

from panoptic_depthlab.engine import setup

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "vip_depth.yaml")


def test_cpu_setup_replaces_syncbn_and_amp_and_logs_it(tmp_path, capsys):
    threads = torch.get_num_threads()
    args = default_argument_parser().parse_args(
        ["--config-file", CONFIG, "--num-gpus", "2", "OUTPUT_DIR", str(tmp_path),
         "MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True"]
    )  # fmt: skip
    try:
        cfg = setup(args)
    finally:
        torch.set_num_threads(threads)
    assert cfg.MODEL.DEVICE == "cpu"
    assert cfg.MODEL.RESNETS.NORM == "naiveSyncBN"
    assert cfg.MODEL.SEM_SEG_HEAD.NORM == "naiveSyncBN"
    assert cfg.MODEL.INS_EMBED_HEAD.NORM == "naiveSyncBN"
    assert cfg.SOLVER.AMP.ENABLED is False
    assert cfg.is_frozen()
    out = capsys.readouterr().out
    assert "CUDA is not available: MODEL.DEVICE cuda -> cpu." in out
    assert (
        "SyncBN -> naiveSyncBN for MODEL.INS_EMBED_HEAD.NORM, MODEL.RESNETS.NORM, "
        "MODEL.SEM_SEG_HEAD.NORM (" in out
    )
    assert "SOLVER.AMP.ENABLED -> False" in out
    # the config as run, written by Detectron2's default_setup
    assert "naiveSyncBN" in (tmp_path / "config.yaml").read_text()
