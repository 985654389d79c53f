"""panoptic_depthlab.engine.launch: Detectron2's launch whose workers shut their process group
down (a gloo group alive at interpreter exit can abort a finished worker with SIGABRT)."""

from __future__ import annotations

import atexit
import json
from pathlib import Path

import torch.distributed as dist
from detectron2.utils import comm

from panoptic_depthlab.engine import launch


def _record_at_exit(out_dir: str, value: int) -> None:
    """A worker: its rank and world size now, and at interpreter exit whether its process group
    is still alive."""
    rank, world_size = comm.get_rank(), comm.get_world_size()

    def write() -> None:
        state = {"world_size": world_size, "value": value, "alive": dist.is_initialized()}
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(state))

    atexit.register(write)


def test_two_workers_run_and_exit_without_a_live_process_group(tmp_path):
    launch(_record_at_exit, 2, dist_url="auto", args=(str(tmp_path), 7))
    states = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert states == [{"world_size": 2, "value": 7, "alive": False}] * 2
