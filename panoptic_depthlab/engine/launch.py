"""Detectron2's ``launch``, with every worker's process group shut down before it exits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.distributed as dist
from detectron2.engine import launch as detectron2_launch
from detectron2.utils import comm

__all__ = ["launch"]


def _run_then_destroy_process_group(main_func: Callable[..., Any], *args: Any) -> None:
    """One worker: ``main_func(*args)``, then a barrier and ``destroy_process_group``.

    A process that exits with its gloo process group alive may be aborted while the interpreter
    shuts down ("terminate called without an active exception", SIGABRT), which ``launch``
    reports as a failed run although the work was done; seen in 2-process runs on CPU. The
    barrier keeps a worker that is done from tearing its connections down while another one
    still talks to it. After an exception nothing is shut down: ``launch`` stops the others.
    """
    main_func(*args)
    if dist.is_initialized():
        comm.synchronize()
        dist.destroy_process_group()


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple = (),
) -> None:
    """Detectron2's :func:`detectron2.engine.launch` (same arguments: ``num_gpus_per_machine``
    processes on this machine, gloo without GPUs), each worker ending with
    :func:`_run_then_destroy_process_group`. ``main_func`` must be picklable (a module-level
    function) when more than one process is started."""
    detectron2_launch(
        _run_then_destroy_process_group,
        num_gpus_per_machine,
        num_machines=num_machines,
        machine_rank=machine_rank,
        dist_url=dist_url,
        args=(main_func, *args),
    )
