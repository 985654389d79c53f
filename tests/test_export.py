"""tools/export_model.py, the exported runtime and Predictor: exported graphs equal eager PyTorch.

A small model (ResNet-18, crop 128x256) is exported at 128x256 to both formats and run at other
sizes: 160x320 (global ASPP pooling) and 256x512 (pooling over the 128x256 crop window, the
``heads_window`` graph). Its weights are random, with the last layers scaled up so that outputs
vary strongly over a frame: frames hold stuff and a few thing instances per class, tracked over
frames, and float differences of 1e-6 between runtimes do not flip a decision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from panoptic_depthlab import Predictor
from panoptic_depthlab.checkpoint import load_model
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.runtime.exported import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    ExportedModelError,
    ExportedNetwork,
)
from panoptic_depthlab.runtime.predictor import frame_tensor
from tests.conftest import small_model_cfg
from tests.reliability.conftest import REPO, assert_user_error, run_tool

FORMATS = ("pt2", "onnx")
THINGS = range(11, 19)


def _config(weights: str):
    cfg = small_model_cfg("cityscapes_dvps_train", crop=(128, 256))
    cfg.MODEL.PANOPTIC_DEEPLAB.SIZE_DIVISIBILITY = 32
    cfg.MODEL.PANOPTIC_DEEPLAB.NMS_KERNEL = 7
    cfg.MODEL.WEIGHTS = weights
    return cfg


@pytest.fixture(scope="module")
def workdir(module_tmp_path) -> Path:
    return module_tmp_path


@pytest.fixture(scope="module")
def config_file(workdir) -> str:
    """A config file and its weights (module docstring)."""
    weights = str(workdir / "model.pth")
    torch.manual_seed(0)
    model = build_model(_config(""))
    with torch.no_grad():
        for layer in (
            model.sem_seg_head.predictor,
            model.ins_embed_head.offset_predictor,
            model.next_frame_head.offset_predictor,
        ):
            layer.weight *= 300
        model.ins_embed_head.center_predictor.weight *= 3000
        model.ins_embed_head.center_predictor.bias -= 0.5
        model.sem_seg_head.predictor.bias[THINGS.start :] += 0.05
    torch.save({"model": model.state_dict()}, weights)
    path = workdir / "small.yaml"
    path.write_text(_config(weights).dump())
    return str(path)


@pytest.fixture(scope="module")
def exported(workdir, config_file) -> dict[str, str]:
    """Both formats exported at 128x256 by the command-line tool."""
    folders = {}
    for fmt in FORMATS:
        folders[fmt] = str(workdir / f"export_{fmt}")
        result = run_tool(
            "export_model.py",
            "--config-file",
            config_file,
            "--format",
            fmt,
            "--output",
            folders[fmt],
            "--sample-size",
            "128",
            "256",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"Exported {fmt} graphs to {folders[fmt]}/" in result.stdout
    return folders


@pytest.fixture(scope="module")
def eager_model(config_file):
    cfg = _config(str(Path(config_file).parent / "model.pth"))
    model, untrained = load_model(cfg)
    assert untrained == []
    return model


@pytest.fixture(scope="module")
def frames(workdir) -> list[np.ndarray]:
    """A 6-frame synthetic Cityscapes-DVPS sequence at 160x320 (not the export size), BGR."""
    images = generate_synthetic_dvps(
        str(workdir / "data"), "cityscapes_dvps", "val", 1, 6, 160, 320, seed=3
    )
    return [cv2.imread(path) for path in sorted(images)]


def _sample(size: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, *size), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", [(160, 320), (256, 512), (97, 203)])
def test_outputs_equal_eager_for_a_frame_and_a_pair(exported, eager_model, fmt, size):
    network = ExportedNetwork(exported[fmt])
    assert network.manifest["aspp_window"] == [128, 256]
    previous_eager = previous_exported = None
    for index in range(2):  # frame alone, then the pair (next_offset)
        inputs = {"image": _sample(size, index)}
        with torch.no_grad():
            size_e, eager, previous_eager = eager_model.frame_maps(inputs, previous_eager)
            size_x, maps, previous_exported = network.frame_maps(inputs, previous_exported)
        assert size_x == size_e == size
        assert (
            set(maps)
            == set(eager)
            == {"sem_seg", "center", "offset", "depth"} | ({"next_offset"} if index else set())
        )
        for name, value in eager.items():
            assert maps[name].shape == value.shape, name
            tolerance = 1e-4 * max(1.0, value.abs().max().item())
            assert (maps[name] - value).abs().max().item() <= tolerance, (name, fmt, size)


def test_export_check_is_recorded_in_the_manifest(exported):
    for fmt, folder in exported.items():
        manifest = json.loads(Path(folder, MANIFEST_NAME).read_text())
        assert manifest["graph_format"] == fmt
        assert sorted(manifest["graphs"]) == ["backbone", "heads", "heads_window"]
        assert sorted(os.listdir(folder)) == sorted([MANIFEST_NAME, *manifest["graphs"].values()])
        check = manifest["check"]
        assert check["sample_size"] == [128, 256]
        sizes = {d["size"][0] * 10000 + d["size"][1] for d in check["differences"].values()}
        assert 128 * 10000 + 256 not in sizes  # checked at other sizes than the export's
        assert all(d["relative"] <= 1e-3 for d in check["differences"].values())
        assert manifest["untrained"] == []
        assert manifest["metadata"]["label_divisor"] == 1000
        # the tracker runs as the eager model's: its memory settings and appearance features
        assert manifest["tracker_settings"] == {
            "max_gap": 5,
            "max_distance_per_frame": 1.5,
            "appearance_weight": 0.0,
            "focal_ratio": 2262.52 / 2048,
        }
        assert manifest["appearance_feature"] == "res5"
        if fmt == "pt2":  # same kernels: bit for bit
            assert all(d["max_abs_difference"] == 0 for d in check["differences"].values())


def _run(predictor: Predictor, frames: list[np.ndarray]) -> list[dict]:
    return [predictor(frame) for frame in frames]


def test_sequence_gives_identical_panoptic_maps_and_track_ids(exported, config_file, frames):
    cfg = _config(str(Path(config_file).parent / "model.pth"))
    runs = {"eager": _run(Predictor(cfg), frames)}
    for fmt, folder in exported.items():
        runs[fmt] = _run(Predictor.from_exported(folder), frames)
    reference = runs.pop("eager")
    for outputs in runs.values():
        for ours, theirs in zip(outputs, reference, strict=True):
            assert torch.equal(ours["panoptic_seg"][0], theirs["panoptic_seg"][0])
            assert [s["id"] for s in ours["panoptic_seg"][1]] == [
                s["id"] for s in theirs["panoptic_seg"][1]
            ]
            assert torch.allclose(ours["depth"], theirs["depth"], atol=1e-3)
    # not a trivial sequence: stuff, instances in every frame, some tracked over three frames
    ids = [set(o["panoptic_seg"][0].unique().tolist()) - {-1} for o in reference]
    things = [{i for i in frame if i // 2**32 in THINGS} for frame in ids]
    assert all(len(frame) >= 3 for frame in things)
    assert all(frame - things_of_frame for frame, things_of_frame in zip(ids, things, strict=True))
    assert len(things[0] & things[1] & things[2]) >= 1


def test_predictor_reset_starts_new_track_numbers(exported, frames):
    predictor = Predictor.from_exported(exported["pt2"])
    first = predictor(frames[0])["panoptic_seg"][0]
    second = predictor(frames[1])["panoptic_seg"][1]
    # every thing instance of the two frames was linked, revived or new; frame 0's were new
    counts = predictor.tracker_counts
    things = len(first[first % 2**32 > 0].unique()) + sum(s["isthing"] for s in second)
    assert sum(counts.values()) == things and counts["links"] > 0
    assert counts["fresh"] >= len(first[first % 2**32 > 0].unique())
    predictor.reset()
    assert predictor.tracker_counts == {"links": 0, "revivals": 0, "fresh": 0}
    assert torch.equal(predictor(frames[0])["panoptic_seg"][0], first)


def test_exported_folder_runs_where_detectron2_does_not_import(exported, frames, workdir):
    """A fresh Python in which `import detectron2` fails gives the eager model's ids."""
    np.savez(workdir / "frames.npz", *frames)
    cfg = _config(str(workdir / "model.pth"))
    expected = [o["panoptic_seg"][0].numpy() for o in _run(Predictor(cfg), frames)]
    np.savez(workdir / "expected.npz", *expected)
    script = f"""
import sys
sys.modules["detectron2"] = None  # import detectron2 raises ImportError from here on
import numpy as np
import panoptic_depthlab
from panoptic_depthlab import Predictor
assert panoptic_depthlab.DETECTRON2_IMPORT_ERROR is not None
frames = list(np.load({str(workdir / 'frames.npz')!r}).values())
expected = list(np.load({str(workdir / 'expected.npz')!r}).values())
for folder in {list(exported.values())!r}:
    predictor = Predictor.from_exported(folder)
    for frame, ids in zip(frames, expected, strict=True):
        assert np.array_equal(predictor(frame)["panoptic_seg"][0].numpy(), ids), folder
try:
    Predictor(None)
except ImportError as error:
    assert "Predictor.from_exported" in str(error)
else:
    raise AssertionError("the eager Predictor needs Detectron2")
loaded = sorted(m for m in sys.modules if m.startswith(("detectron2.", "fvcore")))
assert loaded == [], loaded
print("ran", len(frames), "frames")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ran 6 frames" in result.stdout


def test_bad_frames_are_clear_errors(exported, frames):
    predictor = Predictor.from_exported(exported["onnx"])
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) BGR image.*\(160, 320, 4\)"):
        predictor(np.zeros((160, 320, 4), np.uint8))
    with pytest.raises(ValueError, match="expected dtype uint8.*float32"):
        predictor(frames[0].astype(np.float32))
    predictor(frames[0])
    with pytest.raises(ValueError, match=r"padded \(224, 320\).*padded to \(160, 320\)"):
        predictor(np.zeros((200, 320, 3), np.uint8))
    network = ExportedNetwork(exported["onnx"])
    with pytest.raises(ExportedModelError, match=r"expected a \(3, H, W\) tensor"):
        network.frame_maps({"image": torch.zeros(1, 3, 64, 64)}, None)


def test_frame_tensor_follows_the_input_format():
    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    rgb = frame_tensor(frame, "RGB")
    assert rgb.dtype == torch.float32 and rgb.shape == (3, 2, 3)
    assert torch.equal(rgb[0], torch.from_numpy(frame[:, :, 2]).float())
    assert torch.equal(frame_tensor(frame, "BGR")[0], torch.from_numpy(frame[:, :, 0]).float())


def _copy(folder: str, target: Path) -> Path:
    target.mkdir()
    for name in os.listdir(folder):
        (target / name).write_bytes(Path(folder, name).read_bytes())
    return target


def test_broken_folders_are_clear_errors(exported, workdir):
    with pytest.raises(ExportedModelError, match="no such folder"):
        Predictor.from_exported(str(workdir / "nowhere"))
    other = _copy(exported["pt2"], workdir / "other_version")
    manifest = json.loads((other / MANIFEST_NAME).read_text())
    manifest["version"] = 99
    (other / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(
        ExportedModelError, match=f"manifest version 99.*reads version {MANIFEST_VERSION}"
    ):
        Predictor.from_exported(str(other))
    incomplete = _copy(exported["onnx"], workdir / "incomplete")
    (incomplete / "heads.onnx").unlink()
    with pytest.raises(ExportedModelError, match=r"heads.onnx: missing \(heads graph"):
        Predictor.from_exported(str(incomplete))
    damaged = _copy(exported["pt2"], workdir / "damaged")
    (damaged / "backbone.pt2").write_bytes(b"not a graph")
    with pytest.raises(ExportedModelError, match=r"backbone.pt2: cannot be loaded as a pt2 graph"):
        Predictor.from_exported(str(damaged))
    with pytest.raises(ExportedModelError, match="manifest.json: missing"):
        Predictor.from_exported(str(workdir))


def _export(config_file: str, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_tool(
        "export_model.py",
        "--config-file",
        config_file,
        "--format",
        "onnx",
        "--output",
        str(output),
        "--sample-size",
        "64",
        "128",
        *extra,
    )


def test_tool_fails_above_tolerance_and_leaves_nothing(config_file, workdir):
    output = workdir / "strict"
    result = _export(config_file, output, "--tolerance", "0")
    assert_user_error(result, "the onnx graphs differ from eager PyTorch", "tolerance 0")
    assert not output.exists()
    assert not [p for p in os.listdir(workdir) if p.startswith("strict")]


def test_tool_user_errors(config_file, workdir):
    wrong = _export(config_file, workdir / "wrong", "MODEL.RESNETS.DEPTH", "50")
    assert_user_error(wrong, "model.pth")
    assert not (workdir / "wrong").exists()
    taken = workdir / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert_user_error(_export(config_file, taken), "not an exported model folder")
    assert (taken / "notes.txt").read_text() == "mine"
    tta = _export(config_file, workdir / "tta", "TEST.AUG.ENABLED", "True")
    assert_user_error(tta, "TEST.AUG.ENABLED")
    assert_user_error(_export(config_file, workdir / "x", "--sample-size", "0", "5"), "H W > 0")


def test_demo_runs_exported_folders_as_the_eager_model(exported, config_file, workdir, frames):
    frames_dir = workdir / "data" / "video_sequence" / "val"
    outputs = {}
    for name, model in [
        ("eager", ["--config-file", config_file]),
        *[(fmt, ["--exported", folder]) for fmt, folder in exported.items()],
    ]:
        outputs[name] = workdir / f"demo_{name}"
        result = run_tool(
            "demo.py", *model, "--input", str(frames_dir), "--output", str(outputs[name])
        )
        assert result.returncode == 0, result.stderr[-3000:]
    reference = outputs.pop("eager") / "val"
    panoptic = sorted(p.name for p in (reference / "panoptic").iterdir())
    assert len(panoptic) == len(frames)
    for output in outputs.values():
        for name in panoptic:  # the official prediction files, byte for byte
            assert (output / "val" / "panoptic" / name).read_bytes() == (
                reference / "panoptic" / name
            ).read_bytes()
        for path in (reference / "segments").iterdir():
            ours = json.loads((output / "val" / "segments" / path.name).read_text())
            theirs = json.loads(path.read_text())
            assert [s["id"] for s in ours["segments"]] == [s["id"] for s in theirs["segments"]]
            assert ours["untrained"] == theirs["untrained"] == []


def test_demo_model_choice_errors(exported, config_file, workdir):
    frames_dir = str(workdir / "data" / "video_sequence" / "val")
    out = ["--input", frames_dir, "--output", str(workdir / "demo_errors")]
    both = run_tool("demo.py", "--config-file", config_file, "--exported", exported["pt2"], *out)
    assert_user_error(both, "--config-file FILE (eager) or --exported DIR")
    assert_user_error(run_tool("demo.py", *out), "one of the two")
    overrides = run_tool("demo.py", "--exported", exported["pt2"], *out, "MODEL.DEVICE", "cpu")
    assert_user_error(overrides, "MODEL.DEVICE cpu", "fixed at export")
    missing = run_tool("demo.py", "--exported", str(workdir / "nowhere"), *out)
    assert_user_error(missing, "nowhere: no such folder")
    assert not (workdir / "demo_errors").exists()


def test_pt2_graphs_move_to_another_device(exported):
    """Every tensor of the graphs follows the device (here PyTorch's "meta" device, which holds
    shapes only; CUDA works the same way): a constant left on the CPU would fail here."""
    network = ExportedNetwork(exported["pt2"], device="meta")
    features = None
    for _ in range(2):
        size, maps, features = network.frame_maps({"image": torch.zeros(3, 100, 200)}, features)
    assert size == (100, 200)
    assert {k: (v.device.type, tuple(v.shape)) for k, v in maps.items()} == {
        "sem_seg": ("meta", (19, 128, 224)),
        "center": ("meta", (1, 128, 224)),
        "offset": ("meta", (2, 128, 224)),
        "depth": ("meta", (1, 128, 224)),
        "next_offset": ("meta", (2, 128, 224)),
    }
