"""Issue #14, items 4, 5, 6 and 8, for tools/train_net.py (training and ``--eval-only``),
tools/eval_dvpq.py and tools/make_synthetic_dvps.py: each case run as the user ran it (the tool
as a subprocess), asserting what it does now (exit code, message, what is left on disk)."""

from __future__ import annotations

import collections
import os
import pickle
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from tests.evaluation.test_eval_dvpq_cli import write_ground_truth_predictions
from tests.reliability.conftest import REPO, assert_user_error, run_tool

sys.path.insert(0, str(REPO / "tools"))
import train_net  # noqa: E402

CONFIG = "configs/synthetic/vip_depth_small.yaml"
DATASET = "synthetic_cityscapes_dvps_val"
# the reasons a read_only_dir gives: a read-only mount, or chmod 555 where mounting is refused
READ_ONLY = ("Read-only file system", "Permission denied")


def make_datasets_root(root: Path, sequences: int, frames: int, height: int, width: int) -> Path:
    """A $DETECTRON2_DATASETS holding synthetic Cityscapes-DVPS train and val splits of the
    given shape, under the built-in datasets' directory."""
    for seed, split in enumerate(("train", "val")):
        generate_synthetic_dvps(
            str(root / "synthetic-cityscapes-dvps"),
            "cityscapes_dvps",
            split,
            sequences,
            frames,
            height,
            width,
            seed,
        )
    return root


def env_for(datasets_root: Path) -> dict[str, str]:
    return {**os.environ, "DETECTRON2_DATASETS": str(datasets_root)}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """2 sequences of 3 frames of 64x128: a fast evaluation."""
    return make_datasets_root(tmp_path_factory.mktemp("small_datasets"), 2, 3, 64, 128)


@pytest.fixture(scope="module")
def long_root(tmp_path_factory) -> Path:
    """8 sequences of 6 frames of 128x256: an evaluation that runs for a few seconds, long
    enough to be interrupted after its first prediction file."""
    return make_datasets_root(tmp_path_factory.mktemp("long_datasets"), 8, 6, 128, 256)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``folder``: its bytes, inode and modification time (an atomic rewrite
    with the same bytes still changes the inode)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            files[str(path.relative_to(folder))] = (
                path.read_bytes(),
                stat.st_ino,
                stat.st_mtime_ns,
            )
    return files


def start_eval_only(output_dir: Path, datasets_root: Path, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG,
        "--eval-only", "OUTPUT_DIR", str(output_dir),
    ]  # fmt: skip
    with open(log, "w") as f:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=env_for(datasets_root),
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
        )


def wait_for_new_prediction(process: subprocess.Popen, inference: Path, since_ns: int) -> Path:
    """Wait until the running evaluation has written a prediction PNG anywhere under
    ``inference`` (a file modified after ``since_ns``); return it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            for path in inference.rglob("*.png"):
                if path.stat().st_mtime_ns >= since_ns:
                    return path
        except FileNotFoundError:  # a folder renamed while walking it
            pass
        assert process.poll() is None, "the evaluation ended before a prediction was seen"
        time.sleep(0.005)
    raise AssertionError("no prediction file appeared within 120 s")


# ----------------------------------------------------------------------------------------------
# Item 4: Ctrl-C (and SIGKILL) during --eval-only


def test_interrupted_eval_only_leaves_the_previous_results_untouched(
    small_root, long_root, tmp_path
):
    output = tmp_path / "output"
    inference = output / "inference"
    results = inference / DATASET
    # The previous, complete evaluation (of a model without weights: warned about).
    previous = run_tool(
        "train_net.py", "--config-file", CONFIG, "--eval-only", "OUTPUT_DIR", output,
        env=env_for(small_root),
    )  # fmt: skip
    assert previous.returncode == 0, previous.stderr[-3000:]
    assert (
        "--eval-only without MODEL.WEIGHTS: the model is randomly initialized, so its "
        "predictions and numbers mean nothing." in previous.stdout
    )
    before = snapshot(results)
    assert "dvps_results.json" in before
    assert len([name for name in before if name.endswith(".png")]) == 2 * 2 * 3

    # Ctrl-C once the new run has written its first prediction file.
    since = time.time_ns()
    process = start_eval_only(output, long_root, tmp_path / "interrupted.log")
    wait_for_new_prediction(process, inference, since)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert snapshot(results) == before  # nothing new, nothing rewritten, nothing removed
    assert os.listdir(inference) == [DATASET]  # no partial folder beside it
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "train_net.py: interrupted. Training continues from the last checkpoint with --resume; "
        "an interrupted evaluation leaves the previous results in OUTPUT_DIR/inference as they "
        "were."
    )

    # SIGKILL leaves its partial folder beside the results, which stay as they were ...
    since = time.time_ns()
    process = start_eval_only(output, long_root, tmp_path / "killed.log")
    wait_for_new_prediction(process, inference, since)
    process.kill()
    process.communicate(timeout=60)
    assert snapshot(results) == before
    (partial,) = inference.glob(f"{DATASET}.partial-{process.pid}-*")
    assert list(partial.rglob("*.png"))

    # ... and the next evaluation removes it and replaces the results as a whole.
    done = run_tool(
        "train_net.py", "--config-file", CONFIG, "--eval-only", "OUTPUT_DIR", output,
        env=env_for(small_root),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Removed {partial}, left by an interrupted evaluation." in done.stdout
    assert os.listdir(inference) == [DATASET]
    after = snapshot(results)
    assert sorted(after) == sorted(before)
    assert all(after[name][1:] != before[name][1:] for name in after)  # every file is new

    # Item 8: the config that Detectron2 logs in colour reaches log.txt as plain text.
    assert "\x1b[" in previous.stdout
    log = (output / "log.txt").read_text()
    assert "Running with full config:" in log
    assert "\x1b" not in log


# ----------------------------------------------------------------------------------------------
# Item 5 (tool side): checkpoints that cannot be loaded


def test_missing_weights_file_is_one_line_before_any_work(small_root, tmp_path):
    weights = tmp_path / "model_final.pth"
    result = run_tool(
        "train_net.py", "--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", weights,
        "OUTPUT_DIR", tmp_path / "output", env=env_for(small_root),
    )  # fmt: skip
    assert_user_error(
        result,
        f"train_net.py: error: MODEL.WEIGHTS {weights}: no such file. Give the path of a "
        "checkpoint (.pth, or a Detectron2 model-zoo .pkl), a detectron2:// URL, or '' for "
        "random initialization.",
    )
    assert not (tmp_path / "output").exists()


def test_resume_with_last_checkpoint_naming_a_deleted_file(small_root, tmp_path):
    output = tmp_path / "output"
    output.mkdir()
    (output / "last_checkpoint").write_text("model_0000019.pth")
    result = run_tool(
        "train_net.py", "--config-file", CONFIG, "--resume", "OUTPUT_DIR", output,
        env=env_for(small_root),
    )  # fmt: skip
    assert_user_error(
        result,
        f"train_net.py: error: {output / 'last_checkpoint'} names 'model_0000019.pth', but "
        f"{output / 'model_0000019.pth'} does not exist (deleted or moved?). Point "
        f"{output / 'last_checkpoint'} at an existing checkpoint in {output}, or remove it to "
        "start from MODEL.WEIGHTS.",
    )
    assert sorted(os.listdir(output)) == ["last_checkpoint"]


def test_empty_checkpoint_is_one_line(small_root, tmp_path):
    weights = tmp_path / "empty.pth"
    weights.write_bytes(b"")
    result = run_tool(
        "train_net.py", "--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", weights,
        "OUTPUT_DIR", tmp_path / "output", env=env_for(small_root),
    )  # fmt: skip
    assert_user_error(
        result,
        f"train_net.py: error: MODEL.WEIGHTS {weights}: the checkpoint file is empty (0 bytes)",
    )
    assert not (tmp_path / "output").exists()


@pytest.mark.parametrize("num_gpus", ["1", "2"])
def test_checkpoint_refused_while_loading_in_the_workers_is_one_line(
    small_root, tmp_path, num_gpus
):
    """A pickle that passes the cheap file check before the launch and is refused when the
    workers load it: with --num-gpus 1 in the launching process, with 2 in spawned ones (the
    launching process prints the first worker's message, last)."""
    weights = tmp_path / "model.pkl"
    weights.write_bytes(pickle.dumps({"model": collections.Counter(a=1)}, protocol=2))
    result = run_tool(
        "train_net.py", "--config-file", CONFIG, "--eval-only", "--num-gpus", num_gpus,
        "MODEL.WEIGHTS", weights, "OUTPUT_DIR", tmp_path / "output", env=env_for(small_root),
    )  # fmt: skip
    message = assert_user_error(result, f"train_net.py: error: {weights}: ")
    assert "collections.Counter" in message
    assert not (tmp_path / "output" / "inference").exists()


def test_output_error_inside_the_worker_is_one_line(small_root, tmp_path, read_only_dir):
    """With --num-gpus 1 the worker runs in the launching process: an unwritable inference
    folder, met during the evaluation, is reported as the checks before it are."""
    output = tmp_path / "output"
    output.mkdir()
    (output / "inference").symlink_to(read_only_dir)
    result = run_tool(
        "train_net.py", "--config-file", CONFIG, "--eval-only", "OUTPUT_DIR", output,
        env=env_for(small_root),
    )  # fmt: skip
    message = assert_user_error(
        result, f"train_net.py: error: {output / 'inference' / DATASET}.partial-"
    )
    assert message.endswith(tuple(f": cannot write ({reason})." for reason in READ_ONLY))
    assert os.listdir(read_only_dir) == []


# ----------------------------------------------------------------------------------------------
# Item 6: read-only output folders and full disks


def test_read_only_output_dir_of_train_net(small_root, read_only_dir):
    output = read_only_dir / "run"
    result = run_tool(
        "train_net.py", "--config-file", CONFIG, "OUTPUT_DIR", output, env=env_for(small_root)
    )
    message = assert_user_error(
        result, f"train_net.py: error: OUTPUT_DIR {output}: cannot write there ("
    )
    assert message.endswith(tuple(f"({reason})." for reason in READ_ONLY))
    assert "Rank of current process" not in result.stdout  # no worker was started


def test_read_only_folder_of_the_generator(read_only_dir):
    result = run_tool(
        "make_synthetic_dvps.py", "--format", "cityscapes_dvps", "--out", read_only_dir,
        "--split", "val", "--height", "64", "--width", "128",
    )  # fmt: skip
    message = assert_user_error(
        result,
        f"make_synthetic_dvps.py: error: dataset folder {read_only_dir}/video_sequence/val: "
        "cannot write there (",
    )
    assert message.endswith(tuple(f"({reason})." for reason in READ_ONLY))


def test_generator_on_a_disk_that_fills_up_keeps_only_whole_frames(small_disk):
    disk = small_disk(160)
    result = run_tool(
        "make_synthetic_dvps.py", "--format", "cityscapes_dvps", "--out", disk, "--split",
        "val", "--sequences", "4", "--frames", "6", "--height", "64", "--width", "128",
    )  # fmt: skip
    message = assert_user_error(result, "make_synthetic_dvps.py: error: ")
    split_dir = disk / "video_sequence" / "val"
    images = sorted(split_dir.glob("*_leftImg8bit.png"))
    assert 0 < len(images) < 24
    assert ": cannot write (No space left on device). The " in message
    assert message.endswith(f" {len(images)} frames written before stay whole.")
    names = sorted(p.name for p in split_dir.iterdir())
    prefixes = [p.name.removesuffix("_leftImg8bit.png") for p in images]
    assert names == sorted(
        f"{prefix}{suffix}"
        for prefix in prefixes
        for suffix in ("_leftImg8bit.png", "_gtFine_instanceTrainIds.png", "_depth.png")
    )  # every frame whole, no temporary file


@pytest.fixture(scope="module")
def predictions(tmp_path_factory) -> dict[str, Path]:
    """A synthetic Cityscapes-DVPS val split and its ground truth written as predictions."""
    root = tmp_path_factory.mktemp("eval_dvpq")
    generate_synthetic_dvps(str(root), "cityscapes_dvps", "val", 2, 3, 64, 128, seed=1)
    gt = root / "video_sequence" / "val"
    write_ground_truth_predictions(gt, "cityscapes_dvps", root / "pred", root / "depth")
    return {"gt": gt, "pred": root / "pred", "depth": root / "depth"}


def eval_dvpq_args(paths: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return [
        "--dataset", "cityscapes_dvps", "--gt-dir", str(paths["gt"]), "--pred-dir",
        str(paths["pred"]), "--depth-dir", str(paths["depth"]), "--output", str(output), *extra,
    ]  # fmt: skip


def test_read_only_output_of_eval_dvpq_is_refused_before_the_evaluation(predictions, read_only_dir):
    result = run_tool("eval_dvpq.py", *eval_dvpq_args(predictions, read_only_dir / "dvpq.json"))
    message = assert_user_error(
        result, f"eval_dvpq.py: error: --output folder {read_only_dir}: cannot write there ("
    )
    assert message.endswith(tuple(f"({reason})." for reason in READ_ONLY))
    assert result.stdout == ""  # no results table: nothing was evaluated


def test_eval_dvpq_on_a_disk_that_fills_up_writes_no_json(predictions, small_disk):
    disk = small_disk(64)
    # one 4 KiB page left: the folder check passes, the results JSON (over 4 KiB) does not fit
    (disk / "filler").write_bytes(b"\0" * 60 * 1024)
    output = disk / "dvpq.json"
    result = run_tool("eval_dvpq.py", *eval_dvpq_args(predictions, output))
    assert_user_error(
        result, f"eval_dvpq.py: error: {output}: cannot write (No space left on device)."
    )
    assert "DVPQ" in result.stdout  # the evaluation ran and printed its table
    assert os.listdir(disk) == ["filler"]  # no JSON, whole or half, no temporary file


# ----------------------------------------------------------------------------------------------
# Item 8: process counts, depth thresholds, help texts


def test_num_gpus_zero_or_negative_is_one_line(small_root, capsys):
    result = run_tool(
        "train_net.py", "--config-file", CONFIG, "--num-gpus", "0", env=env_for(small_root)
    )
    assert_user_error(
        result,
        "train_net.py: error: --num-gpus 0: expected 1 or more processes per machine (GPUs, or "
        "CPU processes on a machine without CUDA).",
    )
    for args, message in [
        (["--num-gpus", "-1"], "--num-gpus -1: expected 1 or more processes per machine"),
        (["--num-machines", "0"], "--num-machines 0: expected 1 or more machines."),
        (
            ["--num-machines", "2", "--machine-rank", "2"],
            "--machine-rank 2: expected 0 to 1 (--num-machines 2).",
        ),
    ]:
        assert train_net.invoke(["--config-file", CONFIG, *args]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is for machines without CUDA")
def test_more_cpu_processes_than_cores_warns(tmp_path):
    cores = len(os.sched_getaffinity(0))
    args = train_net.build_parser().parse_args(
        ["--config-file", CONFIG, "--eval-only", "--num-gpus", str(cores + 1),
         "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path)]
    )  # fmt: skip
    warnings = train_net.check_launch(train_net.load_config(args), args)
    assert warnings == [
        f"--num-gpus {cores + 1} starts {cores + 1} CPU processes (no CUDA here) on {cores} CPU "
        f"core(s): they share the cores and will be slow; --num-gpus {cores} or fewer is faster."
    ]
    args.num_gpus = cores
    assert train_net.check_launch(train_net.load_config(args), args) == []


def test_invalid_depth_thresholds_of_eval_dvpq(predictions, tmp_path, capsys):
    output = tmp_path / "dvpq.json"
    result = run_tool("eval_dvpq.py", *eval_dvpq_args(predictions, output, "--lambdas", "nan"))
    expected = "expected a finite relative depth error >= 0, e.g. 0.5 0.25 0.1 (0 = no depth test)"
    assert_user_error(result, f"eval_dvpq.py: error: argument --lambdas: nan: {expected}")
    main = runpy.run_path(str(REPO / "tools" / "eval_dvpq.py"), run_name="eval_dvpq")["main"]
    for value in ("inf", "-0.5", "half"):
        with pytest.raises(SystemExit) as exit_info:
            main(eval_dvpq_args(predictions, output, "--lambdas", "0.5", value))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err == f"eval_dvpq.py: error: argument --lambdas: {value}: {expected}"
    with pytest.raises(SystemExit):
        main(eval_dvpq_args(predictions, output, "--frames", "0"))
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("argument --frames: 0: expected a whole number of frames >= 1")
    )
    assert not output.exists()


def help_text(script: str, capsys) -> str:
    """``tools/<script> --help``, with the lines joined (argparse wraps at the terminal width)."""
    main = runpy.run_path(str(REPO / "tools" / script), run_name=script)
    main = main["build_parser"]().parse_args if "build_parser" in main else main["main"]
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_texts_are_whole_sentences(capsys):
    text = help_text("train_net.py", capsys)
    for sentence in (
        "Train or evaluate PanopticDepthLab (depth-aware video panoptic segmentation) with "
        "Detectron2's trainer and launcher.",
        "--resume continue from the checkpoint that OUTPUT_DIR/last_checkpoint names (weights, "
        "optimizer, schedule, iteration); without that file, start from MODEL.WEIGHTS",
        "--num-gpus N processes per machine: one per GPU, or N CPU processes on a machine "
        "without CUDA (default: 1)",
        "KEY VALUE config overrides, e.g. SOLVER.BASE_LR 0.001 (come last)",
        "python tools/train_net.py --config-file configs/vip_depth.yaml --eval-only \\ "
        "MODEL.WEIGHTS output/vip_depth/model_final.pth",
        "A wrong command line, config, dataset, checkpoint or output folder is reported in one "
        "line before any work starts, with exit code 2; so is a full disk during the run.",
    ):
        assert sentence in text, sentence
    assert "LazyConfig" not in text and "resume_or_load" not in text  # Detectron2's own words
    text = help_text("eval_dvpq.py", capsys)
    assert "no JSON is written then." in text
    text = help_text("make_synthetic_dvps.py", capsys)
    assert (
        "python tools/make_synthetic_dvps.py --format cityscapes_dvps \\ --out "
        "datasets/synthetic-cityscapes-dvps --split train --sequences 10 --frames 6" in text
    )
    assert text.endswith("and only whole frames stay.")


def test_config_file_and_override_errors_are_one_line(tmp_path):
    # Found: an AssertionError traceback for a missing config file or an unknown key.
    missing = tmp_path / "nope.yaml"
    result = run_tool("train_net.py", "--config-file", missing)
    assert_user_error(
        result, f"train_net.py: error: config {missing}: Config file '{missing}' does not exist!"
    )
    result = run_tool("train_net.py", "--config-file", CONFIG, "MODEL.NOPE", "1")
    assert_user_error(
        result,
        f"train_net.py: error: config {CONFIG} with overrides MODEL.NOPE 1: "
        "Non-existent key: MODEL.NOPE",
    )


def test_config_value_the_model_cannot_use_is_one_line(small_root, tmp_path):
    # A value checked when the model is built (ConfigValueError), in a launched worker.
    result = run_tool(
        "train_net.py", "--config-file", CONFIG, "--eval-only", "OUTPUT_DIR", tmp_path / "out",
        "MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING", "window", env=env_for(small_root),
    )  # fmt: skip
    assert_user_error(
        result,
        "train_net.py: error: MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING='window': expected one of "
        "['crop', 'global'].",
    )
