"""tools/train_net.py end to end on CPU: real Detectron2 launch (gloo processes), trainer,
checkpointer, writers and evaluator on synthetic Cityscapes-DVPS files, with a small model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.projects.deeplab.lr_scheduler import WarmupPolyLR
from detectron2.utils.events import get_event_storage

from panoptic_depthlab.data import register_dvps_dataset
from panoptic_depthlab.engine import load_config
from panoptic_depthlab.modeling import PanopticDepthLab

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import train_net  # noqa: E402

CONFIG = str(REPO / "configs" / "synthetic" / "vip_depth_small.yaml")
DATASET = "synthetic_cityscapes_dvps"
LOSSES = ("loss_sem_seg", "loss_center", "loss_offset", "loss_depth", "loss_next_offset")
# Small and fast: 64x128 frames as they are, 2 frame pairs per step.
SMALL_RUN = [
    "INPUT.CROP.SIZE", "(64, 128)",
    "INPUT.MIN_SCALE", "1.0",
    "INPUT.MAX_SCALE", "1.0",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.WARMUP_ITERS", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def datasets_root(dvps_roots, tmp_path_factory) -> Path:
    """A $DETECTRON2_DATASETS holding the shared synthetic Cityscapes-DVPS under the built-in
    name's directory."""
    root = tmp_path_factory.mktemp("detectron2_datasets")
    (root / "synthetic-cityscapes-dvps").symlink_to(dvps_roots["cityscapes_dvps"])
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_net_command(output_dir: Path, *args: str, opts: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *args,
        *SMALL_RUN, "OUTPUT_DIR", str(output_dir), *opts,
    ]  # fmt: skip


def run(command: list[str], datasets_root: Path, timeout: float = 300) -> str:
    """Run a command to completion with $DETECTRON2_DATASETS set; return its output."""
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets_root)}
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    return output


def read_metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def two_process_run(datasets_root, module_tmp_path) -> tuple[Path, str]:
    """4 iterations with `--num-gpus 2` on CPU, SyncBN in the backbone, a checkpoint every 2
    iterations, a prediction picture every 2 and an evaluation at the end."""
    output_dir = module_tmp_path / "two_process"
    opts = (
        "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "VIS_PERIOD", "2",
        "TEST.EVAL_PERIOD", "4", "MODEL.RESNETS.NORM", "SyncBN",
    )  # fmt: skip
    command = train_net_command(output_dir, "--num-gpus", "2", opts=opts)
    return output_dir, run(command, datasets_root)


def test_two_process_cpu_training_writes_checkpoints_and_metrics(two_process_run):
    output_dir, log = two_process_run
    assert "World size: 2" in log
    assert "MODEL.DEVICE cuda -> cpu" in log
    assert "SyncBN -> naiveSyncBN for MODEL.RESNETS.NORM" in log
    assert (output_dir / "last_checkpoint").read_text() == "model_final.pth"
    # the last iteration (3) is saved once, as model_final.pth (issue #14: no duplicate)
    assert {p.name for p in output_dir.glob("model_*.pth")} == {
        "model_0000001.pth",
        "model_final.pth",
    }
    assert not list(output_dir.glob(".*.tmp"))
    final = load_checkpoint(output_dir / "model_final.pth")
    assert final["iteration"] == 3
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 4
    steps = {
        int(state["step"]) for state in final["trainer"]["_trainer"]["optimizer"]["state"].values()
    }
    assert steps == {4}
    assert any(k.startswith("depth_head.") for k in final["model"])
    assert any(k.startswith("next_frame_head.") for k in final["model"])

    training, evaluation = read_metrics(output_dir)  # written at the end of each
    assert training["iteration"] == 3
    for key in (*LOSSES, "total_loss", "lr"):
        assert key in training, key
    assert "dvps/DVPQ" in evaluation and "dvps/abs_rel" in evaluation
    assert (output_dir / "config.yaml").is_file()


def test_two_process_evaluation_writes_dvpq_json_and_predictions(two_process_run, dvps_roots):
    output_dir, _ = two_process_run
    inference = output_dir / "inference" / f"{DATASET}_val"
    results = json.loads((inference / "dvps_results.json").read_text())
    assert [(e["k"], e["lambda"]) for e in results["dvpq"]] == [
        (k, lam) for k in (1, 2, 3, 4) for lam in (0.5, 0.25, 0.1, 0.0)
    ]
    assert "dvpq_mean" in results and "abs_rel" in results["depth"]
    frames = len(
        list((dvps_roots["cityscapes_dvps"] / "video_sequence" / "val").glob("*_leftImg8bit.png"))
    )
    # both processes' sequences were evaluated and written
    assert results["depth"]["frames"] == frames
    assert len(list((inference / "panoptic").glob("*.png"))) == frames
    assert len(list((inference / "depth").glob("*.png"))) == frames
    # the processes wrote into one partial folder, which the main process put in place
    assert os.listdir(output_dir / "inference") == [f"{DATASET}_val"]


def test_two_process_run_writes_tensorboard_curves_and_pictures(two_process_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output_dir, _ = two_process_run
    (events,) = output_dir.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
    accumulator.Reload()
    scalars = accumulator.Tags()["scalars"]
    for key in (*LOSSES, "total_loss", "lr", "dvps/DVPQ"):
        assert key in scalars, (key, scalars)
    pictures = accumulator.Images(f"predictions/{DATASET}_val")
    assert [p.step for p in pictures] == [1, 3]
    assert pictures[0].height > 64 and pictures[0].width > 128  # the 2x2 grid


def test_two_machines_on_loopback_train_together(datasets_root, tmp_path):
    url = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets_root)}
    machines = [
        subprocess.Popen(
            train_net_command(
                tmp_path,
                *("--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank)),
                *("--dist-url", url),
                opts=("SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "100", "VIS_PERIOD", "0"),
            ),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [machine.communicate(timeout=300)[0] for machine in machines]
    for machine, log in zip(machines, logs, strict=True):
        assert machine.returncode == 0, log[-5000:]
    assert "Rank of current process: 0. World size: 2" in logs[0]
    assert "Rank of current process: 1. World size: 2" in (tmp_path / "log.txt.rank1").read_text()
    assert load_checkpoint(tmp_path / "model_final.pth")["iteration"] == 1


def test_sigkill_then_resume_continues_iteration_schedule_and_optimizer(datasets_root, tmp_path):
    max_iter, period = 8, 2
    opts = (
        "SOLVER.MAX_ITER", str(max_iter), "SOLVER.CHECKPOINT_PERIOD", str(period),
        "VIS_PERIOD", "0",
    )  # fmt: skip
    command = train_net_command(tmp_path, "--num-gpus", "1", opts=opts)
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets_root)}
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        tag = tmp_path / "last_checkpoint"
        deadline = time.monotonic() + 300
        while not (tag.exists() and tag.read_text() == "model_0000003.pth"):
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-5000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "model_final.pth").exists()
    killed = load_checkpoint(tmp_path / "model_0000003.pth")
    assert killed["iteration"] == 3

    log = run([*command[:4], "--resume", *command[4:]], datasets_root)
    assert f"Loading trainer from {tmp_path / 'model_0000003.pth'}" in log
    assert "Starting training from iteration 4" in log
    final = load_checkpoint(tmp_path / "model_final.pth")
    assert final["iteration"] == max_iter - 1
    # Adam counted every step of both runs: its state was restored, not restarted.
    assert {
        int(s["step"]) for s in final["trainer"]["_trainer"]["optimizer"]["state"].values()
    } == {max_iter}
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == max_iter
    # The LR written after resuming follows the schedule of one uninterrupted run.
    cfg = load_config(train_net.default_argument_parser().parse_args(command[2:]))
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.SOLVER.BASE_LR)
    scheduler = WarmupPolyLR(
        optimizer,
        max_iter,
        warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
        warmup_iters=cfg.SOLVER.WARMUP_ITERS,
        warmup_method=cfg.SOLVER.WARMUP_METHOD,
        power=cfg.SOLVER.POLY_LR_POWER,
        constant_ending=cfg.SOLVER.POLY_LR_CONSTANT_ENDING,
    )
    schedule = []
    for _ in range(max_iter):
        schedule.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    resumed = [m for m in read_metrics(tmp_path) if "lr" in m]
    assert resumed and all(m["iteration"] >= 4 for m in resumed[-1:])
    for entry in resumed:
        assert entry["lr"] == pytest.approx(schedule[entry["iteration"]], rel=1e-6)


@META_ARCH_REGISTRY.register()
class NaNDepthLossFromIteration3(PanopticDepthLab):
    """PanopticDepthLab whose depth loss is NaN from training iteration 3 on."""

    def forward(self, batched_inputs):
        losses = super().forward(batched_inputs)
        if self.training and get_event_storage().iter >= 3:
            losses["loss_depth"] = losses["loss_depth"] * float("nan")
        return losses


def test_nan_loss_stops_with_iteration_loss_terms_and_last_good_checkpoint(
    datasets_root, tmp_path, monkeypatch
):
    register_dvps_dataset(
        "test_nan_train",
        str(datasets_root / "synthetic-cityscapes-dvps"),
        "train",
        "cityscapes_dvps",
    )
    command = train_net_command(
        tmp_path,
        "--num-gpus", "1",
        opts=(
            "MODEL.META_ARCHITECTURE", "NaNDepthLossFromIteration3", "SOLVER.MAX_ITER", "10",
            "SOLVER.CHECKPOINT_PERIOD", "2", "VIS_PERIOD", "0",
            "DATASETS.TRAIN", "('test_nan_train',)", "DATASETS.TEST", "()",
        ),
    )  # fmt: skip
    with pytest.raises(FloatingPointError) as error:
        train_net.invoke(command[2:])
    message = str(error.value)
    assert "Loss became infinite or NaN at iteration=3" in message
    for key in LOSSES:
        assert f"'{key}'" in message
    assert f"the last good checkpoint is {tmp_path / 'model_0000001.pth'}" in message
    assert "--resume" in message
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"


def test_eval_only_writes_dvpq_json(two_process_run, datasets_root, tmp_path):
    trained, _ = two_process_run
    weights = trained / "model_final.pth"
    command = train_net_command(
        tmp_path, "--eval-only", "--num-gpus", "1", opts=("MODEL.WEIGHTS", str(weights))
    )
    log = run(command, datasets_root)
    assert f"[Checkpointer] Loading from {weights} ..." in log
    results = json.loads(
        (tmp_path / "inference" / f"{DATASET}_val" / "dvps_results.json").read_text()
    )
    assert len(results["dvpq"]) == 16 and results["dvpq_mean"]["pq"] is not None
    assert not (tmp_path / "model_final.pth").exists()
    # the same weights and data as the training run's final evaluation: the same numbers
    trained_results = json.loads(
        (trained / "inference" / f"{DATASET}_val" / "dvps_results.json").read_text()
    )
    assert results["dvpq"] == trained_results["dvpq"]


def test_resume_of_a_finished_run_says_that_it_only_evaluates(
    two_process_run, datasets_root, tmp_path
):
    trained, _ = two_process_run
    for name in ("model_final.pth", "last_checkpoint"):
        shutil.copy(trained / name, tmp_path / name)
    opts = ("SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "4", "VIS_PERIOD", "0")
    log = run(train_net_command(tmp_path, "--resume", "--num-gpus", "1", opts=opts), datasets_root)
    assert (
        f"Training already finished at iteration 3 ({tmp_path / 'model_final.pth'}, "
        "SOLVER.MAX_ITER = 4): evaluating that checkpoint, no training. Raise SOLVER.MAX_ITER "
        "to train longer." in log
    )
    assert (tmp_path / "inference" / f"{DATASET}_val" / "dvps_results.json").is_file()
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_final.pth"]


def test_batch_not_divisible_by_processes_is_refused_before_spawning(capsys):
    code = train_net.invoke(
        [
            "--config-file",
            CONFIG,
            "--num-gpus",
            "2",
            "--num-machines",
            "2",
            "SOLVER.IMS_PER_BATCH",
            "6",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "SOLVER.IMS_PER_BATCH = 6 is not divisible by the 4 training processes" in err
    assert "--num-gpus 2 x --num-machines 2" in err


def test_missing_dataset_is_reported_with_path_env_and_readme(capsys, tmp_path):
    register_dvps_dataset(
        "test_missing_train", str(tmp_path / "nowhere"), "train", "cityscapes_dvps"
    )
    code = train_net.invoke(["--config-file", CONFIG, "DATASETS.TRAIN", "('test_missing_train',)"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere" / "video_sequence" / "train") in err
    assert "DETECTRON2_DATASETS" in err and "datasets/README.md" in err
    assert train_net.invoke(["--config-file", CONFIG, "DATASETS.TEST", "('no_such_set',)"]) == 2
    assert "'no_such_set', which is not a registered dataset" in capsys.readouterr().err
