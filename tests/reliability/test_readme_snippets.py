"""Every ```python block of README.md runs as written on a CPU-only machine (issue #14, item 7).

As found: the "Build a model from Python" snippet failed without a GPU ("Found no NVIDIA
driver": the configs keep Detectron2's ``MODEL.DEVICE cuda``), and the evaluation snippet used
``model`` and ``cfg`` it never defined.

Each block runs in its own subprocess, with CUDA hidden, from a temporary working directory
holding what the README's snippets assume a user has after ``make demo``:

* ``configs/`` (a link to the repository's);
* ``datasets/synthetic-cityscapes-dvps`` (a small validation split from the real generator);
* ``output/demo/train/model_final.pth`` (a checkpoint of the small config's model, written by
  Detectron2's checkpointer as training writes it);
* ``output/export_onnx``, that checkpoint exported by ``tools/export_model.py``;
* the model zoo's Panoptic-DeepLab R52 ``.pkl`` in the download cache (``$FVCORE_CACHE``), as
  the first download leaves it: a file in the zoo's layout (numpy arrays under ``"model"``) of
  Detectron2's PanopticDeepLab built from ``configs/vip_depth.yaml``; nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from panoptic_depthlab import add_panoptic_depthlab_config
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from tests.reliability.conftest import REPO

README = REPO / "README.md"
ZOO_PREFIX = "detectron2://"
ZOO_URL = "https://dl.fbaipublicfiles.com/detectron2/"


def python_snippets() -> list[str]:
    """The ```python blocks of README.md, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


SNIPPETS = python_snippets()


def _config(name: str):
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / name))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture(scope="module")
def workdir(module_tmp_path) -> Path:
    """A working directory as ``make demo`` leaves it (module docstring), and the cache."""
    root = module_tmp_path
    (root / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    data = root / "datasets" / "synthetic-cityscapes-dvps"
    generate_synthetic_dvps(str(data), "cityscapes_dvps", "val", 1, 4, 64, 128, 1)

    torch.manual_seed(0)
    small = build_model(_config("synthetic/vip_depth_small.yaml"))
    train_dir = root / "output" / "demo" / "train"
    train_dir.mkdir(parents=True)
    DetectionCheckpointer(small, save_dir=str(train_dir)).save("model_final", iteration=359)

    zoo_cfg = _config("vip_depth.yaml")
    weights = zoo_cfg.MODEL.WEIGHTS
    assert weights.startswith(ZOO_PREFIX)
    zoo_cfg.MODEL.META_ARCHITECTURE = "PanopticDeepLab"  # what the zoo file was trained as
    zoo = build_model(zoo_cfg)
    cached = root / "cache" / "detectron2" / weights[len(ZOO_PREFIX) :]
    cached.parent.mkdir(parents=True)
    state = {k: v.numpy() for k, v in zoo.state_dict().items()}
    with open(cached, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f, protocol=4)

    export = [sys.executable, str(REPO / "tools" / "export_model.py")]  # README, "Deploy", 1.
    export += ["--config-file", "configs/synthetic/vip_depth_small.yaml", "--format", "onnx"]
    export += ["--output", "output/export_onnx", "--sample-size", "64", "128"]
    export += ["MODEL.WEIGHTS", "output/demo/train/model_final.pth", "MODEL.DEVICE", "cpu"]
    subprocess.run(export, cwd=root, check=True, capture_output=True, timeout=600)
    return root


def test_the_readme_has_its_python_snippets():
    assert len(SNIPPETS) >= 3
    assert any("configs/vip_depth.yaml" in s for s in SNIPPETS)
    assert any("inference_on_sequences" in s for s in SNIPPETS)
    assert any("DefaultPredictor" in s for s in SNIPPETS)
    assert any("Predictor.from_exported" in s for s in SNIPPETS)


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs_on_cpu(index, workdir):
    env = dict(os.environ)
    env.pop("DETECTRON2_DATASETS", None)  # the snippets use ./datasets, the default
    env.update(CUDA_VISIBLE_DEVICES="", FVCORE_CACHE=str(workdir / "cache"))
    result = subprocess.run(
        [sys.executable, "-c", SNIPPETS[index]],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"README snippet {index}:\n{result.stderr[-4000:]}"
    assert "Downloading" not in result.stderr  # the cached zoo file was used
    if "inference_on_sequences" in SNIPPETS[index]:
        assert re.fullmatch(r"DVPQ \d+\.\d\d\n", result.stdout), result.stdout
        assert (workdir / "output" / "eval" / "dvps_results.json").is_file()
    if "Predictor.from_exported" in SNIPPETS[index]:
        assert result.stdout.count("_leftImg8bit.png") == 4, result.stdout
    if "Visualizer" in SNIPPETS[index]:
        assert (workdir / "panoptic.png").is_file()
