"""panoptic_depthlab.compat and the environment `make setup` builds."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from panoptic_depthlab import compat

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True
    ).stdout


def test_package_and_detectron2_parts_import_in_a_fresh_interpreter():
    out = _run(
        "import panoptic_depthlab, detectron2.evaluation, detectron2.projects.panoptic_deeplab\n"
        "from detectron2.projects.panoptic_deeplab import PanopticDeepLab\n"
        "print(PanopticDeepLab.__name__)"
    )
    assert out.strip() == "PanopticDeepLab"


@pytest.mark.skipif(compat.HAS_COMPILED_OPS, reason="this Detectron2 has its compiled ops")
def test_missing_compiled_op_raises_a_clear_error():
    import detectron2._C as ops

    with pytest.raises(compat.MissingCompiledOpError) as e:
        ops.nms_rotated  # noqa: B018
    msg = str(e.value)
    assert msg.startswith("detectron2._C.nms_rotated is a compiled Detectron2 op")
    assert "DETECTRON2_SOURCE" in msg


@pytest.mark.skipif(compat.HAS_COMPILED_OPS, reason="this Detectron2 has its compiled ops")
def test_coco_evaluation_keeps_the_pure_python_fallback_whatever_the_import_order():
    out = _run(
        "import panoptic_depthlab\n"
        "from detectron2.evaluation import coco_evaluation\n"
        "from pycocotools.cocoeval import COCOeval\n"
        "print(coco_evaluation.COCOeval_opt is COCOeval)"
    )
    assert out.strip() == "True"


def test_installed_versions_match_constraints():
    """Every package pinned in constraints.txt that is installed has the pinned version."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            pins[m[1]] = m[2]
    assert {"torch", "torchvision", "numpy", "sal-detectron2", "setuptools"} <= set(pins)
    wrong = {}
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed.split("+")[0] != pinned.split("+")[0]:
            wrong[name] = (installed, pinned)
    assert wrong == {}


def test_import_emits_no_warning():
    """Detectron2's import-time torch.jit.script deprecation warnings are absorbed by compat."""
    subprocess.run(
        [sys.executable, "-W", "error", "-c", "import panoptic_depthlab, detectron2.engine"],
        check=True,
    )
