"""ViP-DeepLab's depth head on the semantic decoder (``SemanticDecoderDepthHead``)."""

from __future__ import annotations

import pytest
import torch
from detectron2.modeling import build_model

from panoptic_depthlab.modeling import SemanticDecoderDepthHead, build_depth_head
from tests.conftest import small_model_cfg

NAME = "cityscapes_dvps_train"  # registered on import; only its metadata is read


def cfg_with(**overrides):
    cfg = small_model_cfg(NAME)
    cfg.MODEL.DEPTH_HEAD.NAME = "SemanticDecoderDepthHead"
    cfg.MODEL.DEPTH_HEAD.HEAD_CHANNELS = 64
    for key, value in overrides.items():
        cfg.MODEL.DEPTH_HEAD[key] = value
    return cfg


def test_head_runs_a_5x5_depthwise_separable_conv_with_64_channels_at_stride_2():
    torch.manual_seed(0)
    head = build_depth_head(cfg_with(), {})
    assert type(head) is SemanticDecoderDepthHead
    assert (head.in_stride, head.common_stride) == (4, 2)
    assert tuple(head.head.depthwise.weight.shape) == (32, 1, 5, 5)  # CONVS_DIM 32, depthwise
    assert tuple(head.head.pointwise.weight.shape) == (64, 32, 1, 1)
    assert tuple(head.predictor.weight.shape) == (1, 64, 1, 1)
    decoded = torch.randn(2, 32, 16, 32)  # semantic decoder of a 64x128 input, stride 4
    assert tuple(head.head_features(decoded).shape) == (2, 64, 32, 64)  # stride 2
    depth = head({}, decoded)
    assert tuple(depth.shape) == (2, 1, 64, 128)
    assert depth.min() >= 0 and depth.max() <= 88


def test_model_feeds_the_semantic_decoder_output_to_the_depth_head():
    torch.manual_seed(0)
    model = build_model(cfg_with()).eval()
    seen = {}
    model.sem_seg_head.head.register_forward_hook(
        lambda m, args, out: seen.__setitem__("decoder", args[0])
    )
    model.depth_head.head.register_forward_hook(
        lambda m, args, out: seen.__setitem__("depth_features", out)
    )
    model.depth_head.register_forward_hook(
        lambda m, args, out: seen.__setitem__("depth_input", args[1])
    )
    with torch.no_grad():
        (output,) = model([{"image": torch.randint(0, 256, (3, 64, 128), dtype=torch.uint8)}])
    assert seen["depth_input"] is seen["decoder"]
    assert tuple(seen["decoder"].shape) == (1, 32, 16, 32)
    assert tuple(seen["depth_features"].shape) == (1, 64, 32, 64)
    assert tuple(output["depth"].shape) == (64, 128)


def test_stride_1_runs_the_head_at_the_input_resolution():
    head = build_depth_head(cfg_with(COMMON_STRIDE=1), {})
    assert tuple(head.head_features(torch.randn(1, 32, 16, 32)).shape) == (1, 64, 64, 128)


@pytest.mark.parametrize("stride", [0, 3, 8])
def test_a_stride_that_does_not_divide_the_decoder_stride_is_one_clear_error(stride):
    with pytest.raises(ValueError) as error:
        build_depth_head(cfg_with(COMMON_STRIDE=stride), {})
    assert str(error.value) == (
        f"MODEL.DEPTH_HEAD.COMMON_STRIDE={stride}: expected a divisor of the semantic decoder's "
        "stride MODEL.SEM_SEG_HEAD.COMMON_STRIDE=4."
    )
