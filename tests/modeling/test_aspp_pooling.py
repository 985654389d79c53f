"""ASPP image pooling: a training-crop window (Detectron2's and deeplab2's inference) or global."""

from __future__ import annotations

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.projects.deeplab import DeepLabV3PlusHead
from torch import nn

from panoptic_depthlab.data import register_dvps_dataset
from panoptic_depthlab.modeling.aspp_pooling import CropWindowPool2d, crop_window, set_aspp_pooling
from tests.conftest import small_model_cfg

# A small DeepLabV3+ decoder: low-level features at stride 4, the ASPP's input at stride 16
# (output stride 16, as Cityscapes' Panoptic-DeepLab), 4 channels each.
SHAPE = {"res2": ShapeSpec(channels=4, stride=4), "res5": ShapeSpec(channels=4, stride=16)}
CITYSCAPES_CROP = (512, 1024)


def decoder(train_size: tuple[int, int] | None) -> DeepLabV3PlusHead:
    """Detectron2's decoder; ``train_size`` sizes its ASPP's ``pool_kernel_size``."""
    torch.manual_seed(0)
    head = DeepLabV3PlusHead(
        SHAPE,
        project_channels=[4],
        aspp_dilations=[1, 2, 3],
        aspp_dropout=0.0,
        decoder_channels=[4, 8],
        common_stride=4,
        norm="",
        train_size=train_size,
    )
    return head.eval()


def ours(mode: str, crop: tuple[int, int] | None = CITYSCAPES_CROP) -> DeepLabV3PlusHead:
    """The decoder as PanopticDepthLab builds it (Detectron2's, global) with ``mode`` set."""
    head = decoder(None)
    assert set_aspp_pooling([head], SHAPE, mode, crop) == 1
    return head


def features(height: int, width: int) -> dict[str, torch.Tensor]:
    """Backbone features of a (height, width) input."""
    generator = torch.Generator().manual_seed(1)
    return {
        name: torch.randn(1, 4, height // s.stride, width // s.stride, generator=generator)
        for name, s in SHAPE.items()
    }


@torch.no_grad()
def test_crop_window_equals_detectron2_aspp_at_1024x2048():
    reference = decoder(CITYSCAPES_CROP)  # pool_kernel_size (32, 64)
    assert reference.decoder["res5"]["project_conv"].pool_kernel_size == (32, 64)
    crop, plain = ours("crop"), ours("global")
    assert crop.decoder["res5"]["project_conv"].convs[-1][0].window == (32, 64)
    crop.load_state_dict(reference.state_dict())
    plain.load_state_dict(reference.state_dict())
    x = features(1024, 2048)  # ASPP input 64x128: windows pooled to 33x65, then upsampled
    expected = reference.layers(x)
    assert expected.shape == (1, 4, 256, 512)
    assert torch.equal(crop.layers(x), expected)
    assert (plain.layers(x) - expected).abs().max() > 1e-3  # global pooling differs here


@torch.no_grad()
def test_window_not_dividing_the_input_pools_globally():
    reference, crop, plain = decoder(CITYSCAPES_CROP), ours("crop"), ours("global")
    x = features(768, 1536)  # ASPP input 48x96: not a multiple of 32x64
    with pytest.raises(ValueError, match="`pool_kernel_size` must be divisible"):
        reference.layers(x)
    assert torch.equal(crop.layers(x), plain.layers(x))
    x = features(256, 512)  # smaller than the crop
    assert torch.equal(crop.layers(x), plain.layers(x))


@torch.no_grad()
def test_semkitti_crop_pools_globally_where_detectron2_cannot_build():
    # SemKITTI-DVPS: a 385x1281 crop, padded to 416x1312 (size divisibility 32)
    with pytest.raises(ValueError, match="Crop size need to be divisible by encoder stride"):
        decoder((385, 1281))
    assert crop_window((385, 1281), 16) == (25, 81)
    crop, plain = ours("crop", (385, 1281)), ours("global")
    for height, width in ((416, 1312), (384, 1280), (1024, 2048)):
        x = features(height, width)
        assert torch.equal(crop.layers(x), plain.layers(x))


@torch.no_grad()
def test_training_crop_size_pools_globally_bit_for_bit():
    reference, crop, plain = decoder(CITYSCAPES_CROP), ours("crop"), ours("global")
    for head in (crop, plain):
        head.load_state_dict(reference.state_dict())
    x = features(*CITYSCAPES_CROP)  # ASPP input 32x64: the window itself
    crop.train()
    plain.train()
    assert torch.equal(crop.layers(x), plain.layers(x))
    # Detectron2's one 32x64 window is the same average up to rounding
    torch.testing.assert_close(crop.layers(x), reference.layers(x), rtol=0, atol=1e-6)


@torch.no_grad()
def test_global_keeps_detectron2_global_pooling_bit_for_bit():
    today = decoder(None)
    plain = ours("global")
    assert isinstance(plain.decoder["res5"]["project_conv"].convs[-1][0], nn.AdaptiveAvgPool2d)
    for size in ((1024, 2048), (416, 1312), (64, 128)):
        x = features(*size)
        assert torch.equal(plain.layers(x), today.layers(x))


@torch.no_grad()
def test_crop_mode_without_a_training_crop_pools_globally():
    head = ours("crop", None)
    assert isinstance(head.decoder["res5"]["project_conv"].convs[-1][0], nn.AdaptiveAvgPool2d)


def test_window_rule():
    pool = CropWindowPool2d((2, 4))
    assert [pool.uses_window(s) for s in ((4, 8), (2, 4), (2, 8), (3, 8), (1, 2))] == [
        True,
        False,
        True,
        False,
        False,
    ]
    x = torch.arange(32.0).view(1, 1, 4, 8)
    assert pool(x).shape == (1, 1, 3, 5)
    assert pool(x)[0, 0, 0, 0] == x[0, 0, :2, :4].mean()
    assert torch.equal(pool(x[..., :3, :]), x[..., :3, :].mean(dim=(2, 3), keepdim=True))
    message = r"window must be two positive sizes \(h, w\), got \(0, 4\)\.$"
    with pytest.raises(ValueError, match=message):
        CropWindowPool2d((0, 4))


NAME = "test_aspp_pooling_cityscapes_val"


@pytest.fixture(scope="module")
def dataset(dvps_roots) -> str:
    """Synthetic Cityscapes-DVPS, registered for its metadata."""
    register_dvps_dataset(NAME, str(dvps_roots["cityscapes_dvps"]), "val", "cityscapes_dvps")
    return NAME


def build(mode: str):
    cfg = small_model_cfg(NAME, crop=(64, 128))  # ResNet-18: ASPP input at stride 32
    cfg.MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING = mode
    torch.manual_seed(0)
    return build_model(cfg)


def test_model_builds_and_runs_with_each_mode(dataset):
    crop, plain = build("crop"), build("global")
    pools = [m for m in crop.modules() if isinstance(m, CropWindowPool2d)]
    # semantic, instance, depth and next-frame heads, each with the 64x128 crop's 2x4 window
    assert [p.window for p in pools] == [(2, 4)] * 4
    assert not any(isinstance(m, CropWindowPool2d) for m in plain.modules())
    assert crop.state_dict().keys() == plain.state_dict().keys()  # one checkpoint serves both
    plain.load_state_dict(crop.state_dict())
    crop.eval()
    plain.eval()
    image = torch.randint(0, 256, (3, 128, 256), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (a,), (b,) = crop([{"image": image.float()}]), plain([{"image": image.float()}])
        assert a["depth"].shape == b["depth"].shape == (128, 256)
        assert not torch.equal(a["sem_seg"], b["sem_seg"])  # 4x8 map: 2x4 windows
        # at the training crop's size both pool globally
        (a,), (b,) = crop([{"image": image[:, :64, :128].float()}]), plain(
            [{"image": image[:, :64, :128].float()}]
        )
        assert torch.equal(a["sem_seg"], b["sem_seg"]) and torch.equal(a["depth"], b["depth"])


def test_unknown_mode_is_one_clear_error(dataset):
    with pytest.raises(ValueError) as info:
        build("window")
    assert str(info.value) == (
        "MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING='window': expected one of ['crop', 'global']."
    )
