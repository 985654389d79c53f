"""Detectron2's ``MODEL.PANOPTIC_DEEPLAB.BENCHMARK_NETWORK_SPEED``: the network alone."""

from __future__ import annotations

import pytest
import torch
from detectron2.modeling import build_model

import panoptic_depthlab.runtime.outputs as runtime_outputs
from tests.conftest import small_model_cfg


@pytest.mark.parametrize("benchmark", [True, False])
def test_benchmark_mode_runs_every_head_and_skips_post_processing(benchmark, monkeypatch):
    cfg = small_model_cfg("cityscapes_dvps_train")
    cfg.MODEL.PANOPTIC_DEEPLAB.BENCHMARK_NETWORK_SPEED = benchmark
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ran = []
    for name in ("backbone", "sem_seg_head.predictor", "ins_embed_head", "depth_head"):
        model.get_submodule(name).register_forward_hook(lambda m, a, o, name=name: ran.append(name))
    # count the calls of the real post-processing (it still runs when not benchmarking)
    calls = []
    real = runtime_outputs.panoptic_depth_inference
    monkeypatch.setattr(
        runtime_outputs,
        "panoptic_depth_inference",
        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs),
    )
    image = torch.randint(0, 256, (3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        outputs = model([{"image": image}, {"image": image}])
    assert ran == ["backbone", "sem_seg_head.predictor", "depth_head", "ins_embed_head"]
    if benchmark:
        assert outputs == [] and calls == []
    else:
        assert len(outputs) == 2 and calls == [1, 1]
        assert set(outputs[0]) == {"sem_seg", "depth", "panoptic_seg"}
