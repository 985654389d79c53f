"""PanopticDepthLab built through Detectron2's build_model: losses, gradients, outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from panoptic_depthlab.config import ConfigValueError
from panoptic_depthlab.data import DVPSDatasetMapper, register_dvps_dataset
from panoptic_depthlab.modeling import DEPTH_HEAD_REGISTRY, PanopticDepthLab
from panoptic_depthlab.runtime.track_memory import TrackerSettings
from tests.conftest import small_model_cfg

NAME = "test_model_cityscapes_train"
BASE_LOSSES = {"loss_sem_seg", "loss_center", "loss_offset", "loss_depth"}


@pytest.fixture(scope="module")
def batch(dvps_roots) -> list[dict]:
    """Two mapped training pairs (64x128 crops) of synthetic Cityscapes-DVPS."""
    register_dvps_dataset(NAME, str(dvps_roots["cityscapes_dvps"]), "train", "cityscapes_dvps")
    cfg = small_model_cfg(NAME)
    mapper = DVPSDatasetMapper(cfg, is_train=True)
    np.random.seed(0)
    records = [r for r in DatasetCatalog.get(NAME) if r["next_frame"]]
    return [mapper(r) for r in records[:2]]


def build(**overrides) -> PanopticDepthLab:
    cfg = small_model_cfg(NAME)
    for key, value in overrides.items():
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    torch.manual_seed(0)
    return build_model(cfg)


def check_gradients(model: torch.nn.Module, losses: dict[str, torch.Tensor]) -> None:
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_registered_parts(dvps_roots, batch):
    model = build()
    assert type(model) is PanopticDepthLab
    assert {"DepthHead", "SemanticDecoderDepthHead"} <= {k for k, _ in DEPTH_HEAD_REGISTRY}
    assert model.next_frame_head is not None and model.uncertainty is None


def test_video_model_losses_and_gradient_on_every_parameter(batch):
    model = build()
    model.train()
    calls = []
    model.backbone.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    losses = model(batch)
    assert set(losses) == BASE_LOSSES | {"loss_next_offset"}
    assert calls == [4]  # one backbone pass over frames t and t+1 of both pairs
    check_gradients(model, losses)


def test_single_frame_model(batch):
    model = build(**{"MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED": False})
    model.train()
    calls = []
    model.backbone.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    losses = model(batch)
    assert model.next_frame_head is None and set(losses) == BASE_LOSSES
    assert calls == [2]
    check_gradients(model, losses)


def test_guided_losses_uncertainty_and_light_depth_head(batch):
    model = build(
        **{
            "MODEL.DEPTH_HEAD.NAME": "SemanticDecoderDepthHead",
            "MODEL.DEPTH_HEAD.LOSS_TYPE": "l1",
            "MODEL.DEPTH_HEAD.SMOOTHNESS_WEIGHT": 0.1,
            "MODEL.DEPTH_HEAD.EDGE_WEIGHT": 0.1,
            "MODEL.DEPTH_HEAD.IMAGE_SMOOTHNESS_WEIGHT": 0.1,
            "MODEL.PANOPTIC_DEPTHLAB.UNCERTAINTY_WEIGHTING": True,
        }
    )
    model.train()
    losses = model(batch)
    assert set(losses) == BASE_LOSSES | {
        "loss_next_offset",
        "loss_depth_smoothness",
        "loss_depth_edge",
        "loss_depth_image_smoothness",
    }
    check_gradients(model, losses)
    assert model.uncertainty.log_variances.grad.abs().min() > 0


def test_empty_masks_give_finite_zero_losses(batch):
    empty = []
    for sample in batch:
        sample = dict(sample)
        sample["sem_seg"] = torch.full_like(sample["sem_seg"], 255)
        for key in ("sem_seg_weights", "center", "center_weights", "offset_weights"):
            sample[key] = torch.zeros_like(sample[key])
        sample["next_offset_weights"] = torch.zeros_like(sample["next_offset_weights"])
        sample["depth"] = torch.zeros_like(sample["depth"])
        sample["depth_valid"] = torch.zeros_like(sample["depth_valid"])
        empty.append(sample)
    model = build()
    model.train()
    losses = model(empty)
    for name in ("loss_sem_seg", "loss_center", "loss_offset", "loss_depth", "loss_next_offset"):
        assert losses[name].item() == 0, name
    check_gradients(model, losses)


def test_bad_config_values():
    with pytest.raises(KeyError, match="MODEL.DEPTH_HEAD.NAME='Sonar' is not a registered"):
        build(**{"MODEL.DEPTH_HEAD.NAME": "Sonar"})
    with pytest.raises(ValueError, match="LOSS_TYPE='l2': expected one of"):
        build(**{"MODEL.DEPTH_HEAD.LOSS_TYPE": "l2"})


def test_tracker_settings_come_from_the_config_and_the_dataset(batch):
    model = build(**{"MODEL.TRACKER.MAX_GAP": 4, "MODEL.TRACKER.APPEARANCE_WEIGHT": 0.5})
    assert model.tracker_settings == TrackerSettings(
        max_gap=4,
        max_distance_per_frame=model.tracker_settings.max_distance_per_frame,
        appearance_weight=0.5,
        focal_ratio=2262.52 / 2048,  # the Cityscapes camera (dataset metadata)
    )
    assert model.appearance_feature == "res5"  # the coarsest backbone output
    # a dataset without depth has nothing to place tracks in 3-D: no memory
    cfg = small_model_cfg("synthetic_kitti_step_val")
    assert build_model(cfg).tracker_settings.max_gap == 0
    with pytest.raises(ConfigValueError, match=r"MODEL.TRACKER: .*max_distance_per_frame=-1.0"):
        build(**{"MODEL.TRACKER.MAX_DISTANCE_PER_FRAME": -1.0})
    with pytest.raises(ConfigValueError, match="APPEARANCE_WEIGHT=0.5 with TEST.AUG.ENABLED"):
        build(**{"MODEL.TRACKER.APPEARANCE_WEIGHT": 0.5, "TEST.AUG.ENABLED": True})


def test_inference_outputs_at_another_size(batch):
    model = build()
    model.eval()
    image = batch[0]["image"]
    inputs = [
        {"image": image, "height": 128, "width": 256},  # output twice the input
        {"image": torch.nn.functional.interpolate(image[None].float(), (96, 160))[0].byte()},
    ]
    with torch.no_grad():
        outputs = model(inputs)
    for out, (h, w) in zip(outputs, [(128, 256), (96, 160)], strict=True):
        assert out["sem_seg"].shape == (19, h, w)
        assert out["depth"].shape == (h, w)
        assert 0 <= out["depth"].min() and out["depth"].max() <= 88
        panoptic, segments = out["panoptic_seg"]
        assert panoptic.shape == (h, w) and panoptic.dtype == torch.int64
        ids = set(panoptic.unique().tolist()) - {-1}
        assert {s["id"] for s in segments} == ids
        for s in segments:
            assert set(s) >= {"id", "category_id", "isthing", "area", "depth_mean"}
            assert s["area"] == (panoptic == s["id"]).sum()
            assert s["depth_valid_pixels"] == s["area"]
            mask = panoptic == s["id"]
            assert s["depth_mean"] == pytest.approx(out["depth"][mask].mean().item(), rel=1e-4)


def test_offsets_are_rescaled_with_the_output_size(batch):
    """Two car centers at x = 2 and x = 10 of a 16x16 input; columns 12..15 point to the left
    one, the rest to the right one. At a 32x32 output only rescaled offsets still reach the left
    center from columns 24..31 (unscaled ones would stop near the right center)."""
    model = build()
    sem = torch.zeros(19, 16, 16)
    sem[13] = 1  # car everywhere
    xs = torch.arange(16.0).expand(16, 16)
    ys = torch.arange(16.0)[:, None].expand(16, 16)
    # Gaussian peaks off the pixel grid, so that the 2x bilinear upsampling keeps one maximum each
    peak = lambda x0: torch.exp(-((ys - 4.25) ** 2 + (xs - x0) ** 2) / 4.5)  # noqa: E731
    center = torch.maximum(peak(2.25), peak(10.25))[None]
    target_x = torch.where(xs >= 12, 2.0, 10.0)
    offset = torch.stack([4 - ys, target_x - xs])
    maps = {"sem_seg": sem, "center": center, "offset": offset, "depth": torch.ones(1, 16, 16)}
    out = model._postprocess({"height": 32, "width": 32}, (16, 16), maps)
    panoptic, _ = out["panoptic_seg"]
    left, right = panoptic[0, 31].item(), panoptic[0, 0].item()
    assert left != right and left // 1000 == right // 1000 == 13
    assert (panoptic[:, 24:] == left).all() and (panoptic[:, :24] == right).all()


def test_sequence_inference_reuses_features_and_equals_single_frame_outputs(batch):
    """Per frame, sequence inference gives forward()'s semantic logits, depth and segments (ids
    aside), running the backbone once per frame and the next-frame branch once per pair."""
    model = build().eval()
    torch.manual_seed(1)
    frames = [{"image": torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8)} for _ in range(3)]
    calls = {"backbone": 0, "next_frame_head": 0}
    for name in calls:
        getattr(model, name).register_forward_hook(
            lambda *_, name=name: calls.__setitem__(name, calls[name] + 1)
        )
    outputs = list(model.inference_sequence(frames))
    assert calls == {"backbone": 3, "next_frame_head": 2}
    with torch.no_grad():
        singles = [model([frame])[0] for frame in frames]  # batch 1, the same conv kernels

    def drop_id(segments: list[dict]) -> list[dict]:
        return sorted(({k: v for k, v in s.items() if k != "id"} for s in segments), key=str)

    for got, want in zip(outputs, singles, strict=True):
        assert torch.equal(got["sem_seg"], want["sem_seg"])
        assert torch.equal(got["depth"], want["depth"])
        assert drop_id(got["panoptic_seg"][1]) == drop_id(want["panoptic_seg"][1])
        assert set(got) == {"sem_seg", "depth", "panoptic_seg"}


def test_sequence_inference_input_errors():
    model = build().eval()
    frames = [{"image": torch.zeros(3, 64, 96, dtype=torch.uint8)}] * 2
    frames.append({"image": torch.zeros(3, 96, 96, dtype=torch.uint8)})
    with pytest.raises(ValueError, match=r"frame 2 of the sequence has size \(96, 96\)"):
        list(model.inference_sequence(frames))


def test_sequence_inference_of_a_single_frame_model_links_no_frames():
    """Without a next-frame branch every frame is predicted alone: its instances get fresh ids,
    and its outputs are those of single-frame inference with ids renumbered."""
    single = build(**{"MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED": False}).eval()
    with torch.no_grad():
        single.ins_embed_head.center_predictor.bias += 0.5  # centers everywhere: instances
        frames = [{"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)} for _ in "ab"]
        tracked = list(single.inference_sequence(frames))
        alone = single(frames)
    seen: set[int] = set()
    for ours, theirs in zip(tracked, alone, strict=True):
        assert "next_offset" not in ours
        torch.testing.assert_close(ours["depth"], theirs["depth"])
        things = {s["id"] for s in ours["panoptic_seg"][1] if s["isthing"]}
        assert len(things) == sum(s["isthing"] for s in theirs["panoptic_seg"][1]) > 0
        assert not things & seen  # no id carried over from the previous frame
        seen |= things
