"""Per-process setup of tools/train_net.py: CPU fallbacks, each with its log line."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path

import pytest
import torch
from detectron2.engine import default_argument_parser

from panoptic_depthlab.checkpoint import CheckpointError
from panoptic_depthlab.engine import check_launch, load_config, setup
from panoptic_depthlab.files import OutputError, check_writable

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
    # Detectron2 logs the config coloured for a terminal; the log file gets it as plain text.
    log = (tmp_path / "log.txt").read_text()
    assert "Running with full config:" in log and "naiveSyncBN" in log
    assert "\x1b" not in log


def _launch_args(*argv: str):
    return default_argument_parser().parse_args(["--config-file", CONFIG, *argv])


def test_check_launch_checks_the_checkpoint_the_run_will_load(tmp_path):
    output = tmp_path / "output"
    missing = tmp_path / "missing.pth"
    common = ("DATASETS.TEST", "()", "OUTPUT_DIR", str(output))
    args = _launch_args("--eval-only", "MODEL.WEIGHTS", str(missing), *common)
    with pytest.raises(CheckpointError) as error:
        check_launch(load_config(args), args)
    assert str(error.value).startswith(f"MODEL.WEIGHTS {missing}: no such file.")
    assert not output.exists()  # nothing is written before the checks pass
    # URLs are the checkpointer's to fetch (and the model zoo's default weights are one).
    args = _launch_args("--eval-only", "MODEL.WEIGHTS", "detectron2://no/such.pkl", *common)
    assert check_launch(load_config(args), args) == []
    assert not output.exists()  # the writability check leaves no folder behind
    output.mkdir()

    # --resume loads what last_checkpoint names, not MODEL.WEIGHTS
    torch.save({"model": {}, "iteration": 9}, output / "model_0000009.pth")
    (output / "last_checkpoint").write_text("model_0000009.pth")
    args = _launch_args("--eval-only", "--resume", "MODEL.WEIGHTS", str(missing), *common)
    assert check_launch(load_config(args), args) == []
    (output / "model_0000009.pth").unlink()
    with pytest.raises(CheckpointError) as error:
        check_launch(load_config(args), args)
    assert str(error.value).startswith(
        f"{output / 'last_checkpoint'} names 'model_0000009.pth', but "
        f"{output / 'model_0000009.pth'} does not exist (deleted or moved?)."
    )


def test_check_launch_refuses_an_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "output").write_text("")
    args = _launch_args(
        "--eval-only", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "output")
    )
    with pytest.raises(OutputError) as error:
        check_launch(load_config(args), args)
    assert str(error.value) == (
        f"OUTPUT_DIR {tmp_path / 'output'}: cannot write there (File exists)."
    )


def test_the_launch_check_leaves_no_folder_and_the_workers_check_keeps_it(tmp_path):
    output = tmp_path / "new" / "output"
    check_writable(str(output), "OUTPUT_DIR")
    assert list(tmp_path.iterdir()) == []
    check_writable(str(output), "OUTPUT_DIR", keep=True)
    assert output.is_dir() and list(output.iterdir()) == []


def _check_after_a_jitter(directory: str, barrier, errors) -> None:
    barrier.wait()
    time.sleep(random.random() * 0.002)
    try:
        check_writable(directory, "OUTPUT_DIR", keep=True)
    except OutputError as e:
        errors.put(str(e))


def test_two_workers_checking_a_new_output_dir_at_once_both_pass(tmp_path):
    """Every worker of a ``--num-gpus 2`` run checks OUTPUT_DIR in :func:`setup`. When each
    removed the folder it had made, one could pull it from under the other, which then
    failed with "cannot write there (No such file or directory)" or "(File exists)": seen in
    CI, and here about once in 60 such pairs."""
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for i in range(200):
        barrier = context.Barrier(2)
        directory = str(tmp_path / str(i) / "output")
        workers = [
            context.Process(target=_check_after_a_jitter, args=(directory, barrier, errors))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
            assert worker.exitcode == 0
    assert errors.empty()
