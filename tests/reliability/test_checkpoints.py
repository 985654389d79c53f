"""Issue #14, items 2, 5 and 6 (checkpoint side): every checkpoint that cannot be loaded is one
line naming the file and the cause; hostile pickles run nothing; a checkpoint of another
architecture is refused while fine-tuning from a model-zoo Panoptic-DeepLab still loads and
says what it left untrained; full disks, killed saves, the number of checkpoints kept and the
duplicated final checkpoint.

Each test first rebuilds the case as it was found (real files, real models, real Detectron2
loading and training), then asserts the new behaviour.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import signal
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from panoptic_depthlab.checkpoint import (
    CheckpointError,
    PanopticDepthLabCheckpointer,
    check_checkpoint_file,
    check_last_checkpoint,
    untrained_outputs,
)
from panoptic_depthlab.data import register_dvps_dataset
from panoptic_depthlab.engine import DVPSTrainer, LaunchError
from panoptic_depthlab.engine.trainer import PeriodicCheckpointer
from panoptic_depthlab.files import OutputError
from tests.conftest import small_model_cfg

NAME = "test_reliability_checkpoints"
REPO = Path(__file__).resolve().parents[2]
AGAIN = "copy or download it again, or use another checkpoint."
PARTS = ("backbone", "sem_seg_head", "ins_embed_head", "depth_head", "next_frame_head")


TRAIN = "test_reliability_checkpoints_train"


@pytest.fixture(scope="module", autouse=True)
def _datasets(dvps_roots):
    register_dvps_dataset(NAME, "/nonexistent", "train", "cityscapes_dvps")
    register_dvps_dataset(TRAIN, str(dvps_roots["cityscapes_dvps"]), "train", "cityscapes_dvps")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def package_log():
    """Records of the ``panoptic_depthlab`` logger, the one the tools set up (console and
    log.txt), whatever an earlier test did to propagation."""
    handler = _Records()
    package = logging.getLogger("panoptic_depthlab")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    yield handler
    package.removeHandler(handler)
    package.setLevel(level)


def model_cfg(**overrides):
    cfg = small_model_cfg(NAME)
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


def small_model(seed: int = 2, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model_cfg(**overrides))


def trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Random, non-initial values in every floating-point tensor."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
    return model


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "model_final.pth"
    torch.save({"model": trained_looking(small_model(seed=3)).state_dict()}, path)
    return path


def load_error(path, model=None) -> str:
    """The CheckpointError of loading ``path``; check_checkpoint_file agrees where it can."""
    with pytest.raises(CheckpointError) as error:
        PanopticDepthLabCheckpointer(model or small_model()).load(str(path))
    return str(error.value)


# -- Files that are not loadable checkpoints ---------------------------------------------------


def test_empty_pth_names_the_file_instead_of_a_bare_eoferror(tmp_path):
    path = tmp_path / "model_final.pth"
    path.write_bytes(b"")
    with pytest.raises(EOFError):  # as found: torch's error, without the file's name
        torch.load(path, weights_only=True)
    message = f"{path}: the checkpoint file is empty (0 bytes), e.g. left by an interrupted "
    message += f"copy or download; {AGAIN}"
    assert load_error(path) == message
    with pytest.raises(CheckpointError) as error:
        check_checkpoint_file(str(path))
    assert str(error.value) == message


def test_truncated_pth_is_called_truncated(tmp_path, good_checkpoint):
    path = tmp_path / "model_final.pth"
    data = good_checkpoint.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception) as found:  # as found: torch's reading error, no file name
        torch.load(path, weights_only=True)
    assert str(path) not in str(found.value)
    message = (
        f"{path}: the checkpoint file is truncated ({len(data) // 2} bytes, without the zip "
        f"directory that ends a complete torch.save file); {AGAIN}"
    )
    assert load_error(path) == message
    with pytest.raises(CheckpointError, match="truncated"):
        check_checkpoint_file(str(path))


def test_truncated_legacy_format_pth_is_called_truncated_or_damaged(tmp_path):
    path = tmp_path / "old_format.pth"
    state = small_model().state_dict()
    torch.save({"model": state}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:-1000])
    check_checkpoint_file(str(path))  # the cheap check cannot tell: the start is right
    # the number of bytes torch misses varies: legacy files name storages by object ids
    assert re.fullmatch(
        rf"{re.escape(str(path))}: the checkpoint file is truncated or damaged \(unexpected EOF, "
        rf"expected \d+ more bytes\. The file might be corrupted\.\); {re.escape(AGAIN)}",
        load_error(path),
    )


def test_truncated_pkl_is_called_truncated(tmp_path):
    path = tmp_path / "R-18.pkl"
    data = pickle.dumps({"model": {"w": np.zeros((64, 64))}, "__author__": "test"}, protocol=2)
    path.write_bytes(data[:-100])
    message = (
        f"{path}: the checkpoint file is truncated ({len(data) - 100} bytes, without the STOP "
        f"byte that ends a complete pickle); {AGAIN}"
    )
    assert load_error(path) == message


def test_random_bytes_are_not_a_checkpoint_rather_than_python_objects(tmp_path):
    path = tmp_path / "model_final.pth"
    path.write_bytes(b"\x13\x07" + np.random.default_rng(0).bytes(4094))
    with pytest.raises(pickle.UnpicklingError):  # as found: "weights only load failed"
        torch.load(path, weights_only=True)
    message = (
        f"{path}: not a checkpoint: neither a PyTorch file (torch.save) nor a Detectron2 "
        "model-zoo pickle (it starts with b'\\x13\\x07_\\x82\\xc2\\xd9\\xcf\\xeb')."
    )
    assert load_error(path) == message
    html = tmp_path / "R-52.pkl"
    html.write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>")
    assert load_error(html) == (
        f"{html}: not a checkpoint: neither a PyTorch file (torch.save) nor a Detectron2 "
        "model-zoo pickle (it looks like an HTML page, e.g. an error page saved by a failed "
        "download)."
    )


def test_a_tensor_is_not_a_model_checkpoint(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    assert load_error(path) == (
        f"{path}: not a model checkpoint: it holds a Tensor, not a dict of weights."
    )


def test_missing_model_weights_names_the_file_instead_of_an_assertion(tmp_path):
    path = tmp_path / "no_such_model.pth"
    assert load_error(path) == f"{path}: checkpoint file not found."
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        check_checkpoint_file(str(path) + "?matching_heuristics=True")


def test_check_checkpoint_file_passes_good_files_no_weights_and_urls(good_checkpoint):
    check_checkpoint_file(str(good_checkpoint))
    check_checkpoint_file("")
    check_checkpoint_file("detectron2://DeepLab/R-52.pkl")


def test_last_checkpoint_naming_a_deleted_file_names_both(tmp_path):
    checkpointer = PanopticDepthLabCheckpointer(small_model(), str(tmp_path))
    checkpointer.save("model_0000009")
    (tmp_path / "model_0000009.pth").unlink()
    tag = tmp_path / "last_checkpoint"
    message = (
        f"{tag} names 'model_0000009.pth', but {tmp_path / 'model_0000009.pth'} does not "
        f"exist (deleted or moved?). Point {tag} at an existing checkpoint in {tmp_path}, or "
        "remove it to start from MODEL.WEIGHTS."
    )
    resumed = PanopticDepthLabCheckpointer(small_model(), str(tmp_path))
    with pytest.raises(CheckpointError) as error:
        resumed.resume_or_load("", resume=True)
    assert str(error.value) == message
    with pytest.raises(CheckpointError) as error:
        check_last_checkpoint(str(tmp_path))
    assert str(error.value) == message
    # without --resume the tag is not read
    resumed.resume_or_load("", resume=False)
    assert resumed.part_states == dict.fromkeys(PARTS, "initialized")


# -- Hostile pickles -----------------------------------------------------------------------------


class _Hostile:
    """Creates the file ``marker`` when unpickled (as ``os.system`` would run a command)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_hostile(path: Path, how: str, marker: Path) -> None:
    state = {k: v.numpy() for k, v in small_model().state_dict().items()}
    payload = {"model": state, "__author__": "Detectron2 Model Zoo", "extra": _Hostile(marker)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save({**payload, "model": small_model().state_dict()}, path)


@pytest.mark.parametrize(
    "name, how",
    [
        ("R-52.pkl", "pickle"),  # a hostile model-zoo file
        ("model_final.pkl", "torch"),  # a hostile .pth renamed .pkl
        ("model_final.pth", "torch"),  # a hostile .pth
        ("model_final.pth", "pickle"),  # a hostile pickle named .pth
    ],
)
def test_hostile_checkpoint_runs_nothing_and_is_refused(tmp_path, name, how):
    marker = tmp_path / "code_ran"
    path = tmp_path / name
    _write_hostile(path, how, marker)
    if how == "pickle":  # as found: Detectron2's pickle.load runs the file's code
        pickle.loads(path.read_bytes())
        assert marker.exists()
        marker.unlink()
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    message = load_error(path, model)
    assert not marker.exists()
    assert message == (
        f"{path}: refused: the file would call or build io.open when loaded, which a checkpoint "
        "never needs (only tensors, numpy arrays, numbers, strings and containers are read); "
        "it may be hostile. Nothing from it was run. If you trust its source, load it with "
        "torch.load and re-save its tensors with torch.save({'model': state_dict}, path)."
    )
    for key, value in model.state_dict().items():  # and the run cannot go on with it
        assert torch.equal(value, before[key]), key


# -- Model-zoo files -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_zoo_pkl_loads_through_the_restricted_unpickler(tmp_path, package_log, protocol):
    """A Detectron2 model-zoo file: pickled numpy arrays under "model" (an OrderedDict here),
    "__author__", and for backbones (DeepLab/R-52.pkl) "matching_heuristics" with names
    without the "backbone." prefix."""
    source = trained_looking(small_model(seed=4))
    state = source.state_dict()
    backbone = OrderedDict(
        (k.removeprefix("backbone."), v.numpy()) for k, v in state.items() if "backbone." in k
    )
    data = {"model": backbone, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True,
            "iteration": np.int64(90000), "scale": np.float32(0.5)}  # fmt: skip
    path = tmp_path / "R-18.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    check_checkpoint_file(str(path))
    model = small_model()
    checkpointer = PanopticDepthLabCheckpointer(model)
    extra = checkpointer.load(str(path))
    for key, value in state.items():
        if key.startswith("backbone."):
            assert torch.equal(model.state_dict()[key], value), key
    assert extra["iteration"] == 90000 and extra["scale"] == np.float32(0.5)
    assert checkpointer.part_states == {
        "backbone": "loaded",
        **dict.fromkeys(PARTS[1:], "initialized"),
    }
    assert checkpointer.untrained_outputs == ["panoptic", "depth", "tracking"]
    assert "Reading a file from 'Detectron2 Model Zoo'" in package_log.messages()


def test_zoo_panoptic_deeplab_loads_and_warns_that_depth_and_tracking_are_untrained(
    tmp_path, package_log
):
    """As found: configs/vip_depth.yaml with the zoo's Panoptic-DeepLab left the depth head
    random ("car 44.0 m" everywhere) without a word."""
    zoo = trained_looking(small_model(seed=5, **{"MODEL.META_ARCHITECTURE": "PanopticDeepLab"}))
    path = tmp_path / "model_final_bd324a.pkl"
    path.write_bytes(
        pickle.dumps(
            {"model": {k: v.numpy() for k, v in zoo.state_dict().items()},
             "__author__": "Detectron2 Model Zoo"},
            protocol=2,
        )
    )  # fmt: skip
    checkpointer = PanopticDepthLabCheckpointer(small_model())
    checkpointer.load(str(path))
    assert checkpointer.part_states == {
        "backbone": "loaded",
        "sem_seg_head": "loaded",
        "ins_embed_head": "loaded",
        "depth_head": "initialized",
        "next_frame_head": "initialized",
    }
    assert checkpointer.untrained_outputs == ["depth", "tracking"]
    warnings = [r for r in package_log.records if r.levelno == logging.WARNING]
    ours = [r for r in warnings if r.getMessage().startswith("Not loaded from")]
    assert [r.name for r in ours] == ["panoptic_depthlab.checkpoint"]
    assert ours[0].getMessage() == (
        f"Not loaded from {path}: depth_head (initialized), next_frame_head (initialized); "
        "untrained outputs: depth and segment distances, track ids across frames. Fine-tune "
        "them, or load a checkpoint trained with this config."
    )
    table = next(m for m in package_log.messages() if "per part" in m)
    assert "| depth_head      | initialized |" in table


def test_class_predictor_of_another_class_count_loads_and_marks_panoptic_untrained(tmp_path):
    state = small_model().state_dict()
    for key in ("sem_seg_head.predictor.weight", "sem_seg_head.predictor.bias"):
        state[key] = state[key][:10]  # a checkpoint of a 10-class model
    path = tmp_path / "ten_classes.pth"
    torch.save({"model": state}, path)
    checkpointer = PanopticDepthLabCheckpointer(small_model())
    checkpointer.load(str(path))
    assert checkpointer.part_states["sem_seg_head"] == "partly loaded"
    assert checkpointer.part_states["backbone"] == "loaded"
    assert checkpointer.untrained_outputs == ["panoptic"]


def test_own_checkpoint_loads_everything_without_warning(good_checkpoint, package_log):
    checkpointer = PanopticDepthLabCheckpointer(small_model())
    checkpointer.load(str(good_checkpoint))
    assert checkpointer.part_states == dict.fromkeys(PARTS, "loaded")
    assert checkpointer.untrained_outputs == []
    assert package_log.messages(logging.WARNING) == []


def test_untrained_outputs_of_part_states():
    assert untrained_outputs({"backbone": "loaded", "depth_head": "partly loaded"}) == ["depth"]
    assert untrained_outputs({"uncertainty": "initialized"}) == []
    assert untrained_outputs({"custom_head": "initialized"}) == ["panoptic", "depth", "tracking"]


# -- Wrong architecture --------------------------------------------------------------------------


def r52_cfg_overrides() -> dict[str, str]:
    """Detectron2's Panoptic-DeepLab backbone (R-52: ResNet-50 with the DeepLab stem)."""
    return {
        "MODEL.BACKBONE.NAME": "build_resnet_deeplab_backbone",
        "MODEL.RESNETS.DEPTH": "50",
        "MODEL.RESNETS.RES2_OUT_CHANNELS": "256",
        "MODEL.RESNETS.STEM_TYPE": "deeplab",
    }


def test_r52_weights_in_the_r18_config_are_refused(tmp_path):
    """As found: exit 0 and garbage."""
    path = tmp_path / "r52_model_final.pth"
    torch.save({"model": small_model(**r52_cfg_overrides()).state_dict()}, path)
    model = small_model()
    assert load_error(path, model) == (
        f"{path}: wrong architecture: its backbone does not fit the model's (100 tensors; 28 "
        "with other shapes, 175 in the file but not in the model): backbone.stem.conv1.weight "
        "(32, 3, 3, 3) in the file, (64, 3, 7, 7) in the model; backbone.res2.0.conv1.weight "
        "(64, 64, 1, 1) in the file, (64, 64, 3, 3) in the model; backbone.res2.1.conv1.weight "
        "(64, 256, 1, 1) in the file, (64, 64, 3, 3) in the model. The file holds a ResNet-50 "
        'with the DeepLab stem (MODEL.RESNETS.DEPTH 50, STEM_TYPE "deeplab", i.e. R-52), the '
        "config builds a ResNet-18 (MODEL.RESNETS.DEPTH 18). Use weights made for this config, "
        "or the config they were made with."
    )


def test_shallower_and_deeper_backbones_are_refused(tmp_path):
    r18, r34 = tmp_path / "r18.pth", tmp_path / "r34.pth"
    torch.save({"model": small_model().state_dict()}, r18)
    torch.save({"model": small_model(**{"MODEL.RESNETS.DEPTH": "34"}).state_dict()}, r34)
    # R-34 weights cover every R-18 tensor: only the blocks left over tell
    assert load_error(r34) == (
        f"{r34}: wrong architecture: its backbone does not fit the model's (100 tensors; 80 "
        "in the file but not in the model): backbone.res2.2.conv1.weight not in the model; "
        "backbone.res2.2.conv2.weight not in the model; backbone.res3.2.conv1.weight not in "
        "the model. The file holds a ResNet-34 (MODEL.RESNETS.DEPTH 34), the config builds a "
        "ResNet-18 (MODEL.RESNETS.DEPTH 18). Use weights made for this config, or the config "
        "they were made with."
    )
    message = load_error(r18, small_model(**{"MODEL.RESNETS.DEPTH": "34"}))
    assert message.startswith(
        f"{r18}: wrong architecture: its backbone does not fit the model's (180 tensors; 80 "
        "missing from the file): backbone.res2.2.conv1.weight not in the file;"
    )


def test_checkpoint_of_which_nothing_fits_is_refused(tmp_path):
    path = tmp_path / "classifier.pth"
    torch.save({"model": {"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}}, path)
    assert load_error(path) == (
        f"{path}: wrong architecture: none of the 2 tensors in the file fits the model (their "
        "names: fc.weight, fc.bias, ...; the model's: backbone.stem.conv1.weight, "
        "backbone.stem.conv1.norm.weight, backbone.stem.conv1.norm.bias, ...)."
    )


# -- Saving: full disk, killed saves ---------------------------------------------------------------


def test_disk_full_while_saving_says_no_space_and_leaves_nothing(small_disk):
    disk = small_disk(512)
    checkpointer = PanopticDepthLabCheckpointer(small_model(), str(disk))
    with pytest.raises(OutputError) as error:
        checkpointer.save("model_0000999")
    # as found: "unexpected pos 16553856 vs 16553752", the reason buried
    assert (
        str(error.value) == f"{disk / 'model_0000999.pth'}: cannot write (No space left on device)."
    )
    assert os.listdir(disk) == []


def _killed_while_saving(save_dir: Path) -> Path:
    """Run a process that is SIGKILLed in the middle of writing a checkpoint; returns the
    temporary file it leaves."""
    # files.py alone (not the whole package, whose imports take seconds)
    code = (
        "import importlib.util, os, signal, sys\n"
        "spec = importlib.util.spec_from_file_location('files', sys.argv[2])\n"
        "files = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(files)\n"
        "with files.open_atomic(os.path.join(sys.argv[1], 'model_0000004.pth')) as f:\n"
        "    f.write(b'\\0' * 1000000)\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    files = REPO / "panoptic_depthlab" / "files.py"
    done = subprocess.run([sys.executable, "-c", code, str(save_dir), str(files)], check=False)
    assert done.returncode == -signal.SIGKILL
    (left,) = save_dir.glob(".model_0000004.pth.*.tmp")
    assert left.stat().st_size == 1000000
    return left


def test_temporary_file_of_a_killed_save_is_removed_before_the_next_save(tmp_path, package_log):
    left = _killed_while_saving(tmp_path)
    checkpointer = PanopticDepthLabCheckpointer(small_model(), str(tmp_path))
    checkpointer.save("model_0000009")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000009.pth"]
    assert f"Removed {left}, a temporary file left by a run killed while saving." in (
        package_log.messages()
    )


# -- Training: stale temporaries, CHECKPOINT_MAX_KEEP, no duplicate final -------------------------


def test_periodic_checkpointer_keeps_the_newest_and_never_duplicates_the_final(tmp_path):
    checkpointer = PanopticDepthLabCheckpointer(torch.nn.Linear(2, 2), str(tmp_path))
    # checkpoints of an earlier run in the folder count too (a resumed run keeps the limit)
    for iteration in (1, 3):
        checkpointer.save(f"model_{iteration:07d}")
    hook = PeriodicCheckpointer(checkpointer, period=2, max_to_keep=2)
    hook.max_iter = 10
    for iteration in range(4, 10):
        hook.step(iteration)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == [
        "model_0000005.pth",
        "model_0000007.pth",
        "model_final.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 9


def test_tiny_training_run_cleans_up_keeps_n_and_writes_one_final(tmp_path, package_log):
    output = tmp_path / "output"
    output.mkdir()
    left = _killed_while_saving(output)
    cfg = small_model_cfg(TRAIN)
    cfg.merge_from_list(
        ["DATASETS.TEST", "()", "INPUT.MIN_SCALE", "1.0", "INPUT.MAX_SCALE", "1.0",
         "SOLVER.IMS_PER_BATCH", "2", "SOLVER.OPTIMIZER", "SGD", "SOLVER.MOMENTUM", "0.0",
         "SOLVER.BASE_LR", "0.001", "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1",
         "SOLVER.CHECKPOINT_MAX_KEEP", "1", "VIS_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0",
         "OUTPUT_DIR", str(output)]
    )  # fmt: skip
    trainer = DVPSTrainer(cfg)
    assert not left.exists()  # removed when the run starts
    assert f"Removed {left}, a temporary file left by a run killed while saving." in (
        package_log.messages()
    )
    trainer.resume_or_load(resume=False)
    trainer.train()
    # iterations 0..2, a checkpoint after each: 0 and 1 periodic (the newest kept), 2 final
    # only (Detectron2 wrote model_0000002.pth and model_final.pth, the same weights twice)
    assert sorted(p.name for p in output.glob("*.pth")) == ["model_0000001.pth", "model_final.pth"]
    assert not list(output.glob(".*.tmp"))
    assert (output / "last_checkpoint").read_text() == "model_final.pth"
    removed = f"Removed {output / 'model_0000000.pth'}: SOLVER.CHECKPOINT_MAX_KEEP = 1 keeps the "
    assert removed + "newest periodic checkpoints." in package_log.messages()


def test_negative_checkpoint_max_keep_is_refused(tmp_path):
    cfg = small_model_cfg(TRAIN)
    cfg.merge_from_list(
        ["DATASETS.TEST", "()", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_MAX_KEEP", "-1",
         "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path)]
    )  # fmt: skip
    with pytest.raises(LaunchError) as error:  # train_net.py: one line, exit 2
        DVPSTrainer(cfg)
    assert str(error.value) == (
        "SOLVER.CHECKPOINT_MAX_KEEP = -1; expected 0 (keep every periodic checkpoint) or the "
        "number of newest periodic checkpoints to keep."
    )


def test_pth_holding_numpy_arrays_loads(tmp_path):
    """numpy arrays and scalars in a torch.save file are data, not a threat."""
    source = trained_looking(small_model(seed=6))
    path = tmp_path / "numpy_weights.pth"
    state = {k: v.numpy() for k, v in source.state_dict().items()}
    torch.save({"model": state, "iteration": np.int64(41)}, path)
    model = small_model()
    extra = PanopticDepthLabCheckpointer(model).load(str(path))
    assert extra["iteration"] == 41
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
