"""The PanopticDepthLab meta-architecture: Panoptic-DeepLab + depth + next-frame instances."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.projects.deeplab import DeepLabV3PlusHead
from detectron2.projects.panoptic_deeplab import PanopticDeepLab
from detectron2.structures import ImageList
from torch.nn import functional as F

from ..config import ConfigValueError
from ..runtime.outputs import PanopticSettings, frame_outputs
from ..runtime.sequence import SequenceInference
from ..runtime.track_memory import DEFAULT_FOCAL_RATIO, TrackerSettings
from .aspp_pooling import set_aspp_pooling
from .depth_head import build_depth_head
from .losses import (
    UncertaintyWeighting,
    image_smoothness_loss,
    l1_depth_loss,
    panoptic_edge_loss,
    panoptic_smoothness_loss,
    silog_rel_loss,
)
from .next_frame_head import NextFrameHead
from .semantic_loss import DEEPLAB2_HARD_PIXEL_MINING, TopKNonZeroMeanCE
from .test_time_augmentation import TestTimeAugmentation

__all__ = ["PanopticDepthLab", "tracker_settings_from_config"]

logger = logging.getLogger(__name__)

_DEPTH_LOSSES = {"silog_rel": silog_rel_loss, "l1": l1_depth_loss}


def tracker_settings_from_config(tracker: CfgNode, meta: Any) -> TrackerSettings:
    """The tracker settings of ``MODEL.TRACKER`` (``tracker``) on a dataset (``meta``, its
    metadata): its ``focal_ratio``, and no memory for a dataset without depth (``has_depth``).

    Raises:
        ConfigValueError: a ``MODEL.TRACKER`` value out of range, named.
    """
    has_depth = meta.get("has_depth", True)
    max_gap = tracker.MAX_GAP if has_depth else 0
    if tracker.MAX_GAP and not has_depth:
        logger.info("MODEL.TRACKER.MAX_GAP -> 0: the dataset has no depth to place tracks in 3-D.")
    try:
        return TrackerSettings(
            max_gap=max_gap,
            max_distance_per_frame=float(tracker.MAX_DISTANCE_PER_FRAME),
            appearance_weight=float(tracker.APPEARANCE_WEIGHT),
            focal_ratio=float(meta.get("focal_ratio", DEFAULT_FOCAL_RATIO)),
        )
    except ValueError as error:
        raise ConfigValueError(f"MODEL.TRACKER: {error}") from None


@META_ARCH_REGISTRY.register()
class PanopticDepthLab(PanopticDeepLab):
    """Panoptic-DeepLab with a depth branch and ViP-DeepLab's next-frame instance branch.

    Keeps Detectron2's attribute names (``backbone``, ``sem_seg_head``, ``ins_embed_head``), so
    model-zoo Panoptic-DeepLab checkpoints load into it; adds ``depth_head``,
    ``next_frame_head`` (None when ``MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED`` is False) and
    ``uncertainty`` (None unless ``MODEL.PANOPTIC_DEPTHLAB.UNCERTAINTY_WEIGHTING``).

    Training input: the dicts of :class:`~panoptic_depthlab.data.DVPSDatasetMapper`. The backbone
    runs once per frame (frames t and t+1 in one batch); the semantic, instance and depth
    branches read frame t, the next-frame branch both. Returns one loss per term:
    ``loss_sem_seg``, ``loss_center``, ``loss_offset``, ``loss_depth``, ``loss_next_offset``
    and, when their weights are > 0, ``loss_depth_smoothness``, ``loss_depth_edge``,
    ``loss_depth_image_smoothness``.

    Inference input: dicts with ``image`` (and optionally ``height``, ``width``). Returns per
    image ``sem_seg`` (C, H, W) logits, ``depth`` (H, W) meters, and ``panoptic_seg`` as
    ``(ids (H, W) int64, segments_info)`` with ids ``class * label_divisor + instance`` (the
    dataset's ``label_divisor``, as Detectron2's Panoptic-DeepLab; -1 void; tracked outputs of
    :meth:`inference_sequence` use ``TRACK_LABEL_DIVISOR`` instead, see
    :mod:`panoptic_depthlab.panoptic_ids`); every segment has ``id``, ``category_id``,
    ``isthing``, ``area``, ``depth_mean``, ``depth_median`` and ``depth_valid_pixels``.
    Detectron2's per-instance ``instances`` output is not produced. With
    ``MODEL.PANOPTIC_DEEPLAB.BENCHMARK_NETWORK_SPEED`` inference runs the backbone and every
    head, then returns ``[]`` (no post-processing), as Detectron2's Panoptic-DeepLab does.

    The ASPP image pooling of every head follows ``MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING``
    (a training-crop window where it divides the features, else global; or always global): see
    :class:`~panoptic_depthlab.modeling.aspp_pooling.CropWindowPool2d`.
    """

    def __init__(self, cfg: CfgNode):
        head_cfg = cfg.clone()
        head_cfg.defrost()
        # Detectron2's heads then pool globally (it raises on crops its stride does not
        # divide); set_aspp_pooling below installs the configured pooling
        head_cfg.INPUT.CROP.ENABLED = False
        semantic = cfg.MODEL.SEM_SEG_HEAD
        # the training dataset's classes decide the semantic head's (a dataset of your own)
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]) if cfg.DATASETS.TRAIN else None
        num_classes = getattr(meta, "num_classes", semantic.NUM_CLASSES)
        if num_classes != semantic.NUM_CLASSES:
            logger.info(
                f"MODEL.SEM_SEG_HEAD.NUM_CLASSES {semantic.NUM_CLASSES} -> {num_classes}, the "
                f"classes of {cfg.DATASETS.TRAIN[0]}."
            )
            head_cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = num_classes
        deeplab2_loss = semantic.LOSS_TYPE == DEEPLAB2_HARD_PIXEL_MINING
        if deeplab2_loss:  # a loss Detectron2's head does not know: set after it is built
            head_cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"
        super().__init__(head_cfg)
        if deeplab2_loss:
            self.sem_seg_head.loss = TopKNonZeroMeanCE(semantic.IGNORE_VALUE, semantic.LOSS_TOP_K)
        shape = self.backbone.output_shape()
        self.depth_head = build_depth_head(head_cfg, shape)
        enabled = cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED
        self.next_frame_head = NextFrameHead(head_cfg, shape) if enabled else None
        set_aspp_pooling(
            [self.sem_seg_head, self.ins_embed_head, self.depth_head, self.next_frame_head],
            shape,
            cfg.MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING,
            tuple(cfg.INPUT.CROP.SIZE) if cfg.INPUT.CROP.ENABLED else None,
        )

        depth = cfg.MODEL.DEPTH_HEAD
        if depth.LOSS_TYPE not in _DEPTH_LOSSES:
            raise ConfigValueError(
                f"MODEL.DEPTH_HEAD.LOSS_TYPE={depth.LOSS_TYPE!r}: expected one of "
                f"{sorted(_DEPTH_LOSSES)}."
            )
        self.depth_loss = _DEPTH_LOSSES[depth.LOSS_TYPE]
        self.depth_loss_weight = depth.LOSS_WEIGHT
        self.guided_loss_weights = {
            "loss_depth_smoothness": depth.SMOOTHNESS_WEIGHT,
            "loss_depth_edge": depth.EDGE_WEIGHT,
            "loss_depth_image_smoothness": depth.IMAGE_SMOOTHNESS_WEIGHT,
        }
        self.ignore_value = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        # A dataset without depth ground truth (metadata has_depth False) has no depth losses,
        # and the depth branch is frozen (DDP needs every trained parameter to get a gradient).
        self.has_depth = self.meta.get("has_depth", True)
        if not self.has_depth:
            self.depth_head.requires_grad_(False)
        tasks = ["loss_sem_seg", "loss_center", "loss_offset"]
        if self.has_depth:
            tasks.append("loss_depth")
        if enabled:
            tasks.append("loss_next_offset")
        weighting = cfg.MODEL.PANOPTIC_DEPTHLAB.UNCERTAINTY_WEIGHTING
        self.uncertainty = UncertaintyWeighting(tasks) if weighting else None
        # TEST.AUG.ENABLED: every inference path averages the heads over the views
        self.tta = TestTimeAugmentation(cfg) if cfg.TEST.AUG.ENABLED else None
        self.panoptic_settings = PanopticSettings(
            thing_ids=tuple(self.meta.thing_dataset_id_to_contiguous_id.values()),
            label_divisor=self.meta.label_divisor,
            stuff_area=self.stuff_area,
            threshold=self.threshold,
            nms_kernel=self.nms_kernel,
            top_k=self.top_k,
        )
        self.tracker_settings = tracker_settings_from_config(cfg.MODEL.TRACKER, self.meta)
        if self.tracker_settings.appearance_weight > 0 and self.tta is not None:
            raise ConfigValueError(
                f"MODEL.TRACKER.APPEARANCE_WEIGHT={self.tracker_settings.appearance_weight} "
                "with TEST.AUG.ENABLED: the appearance term pools one view's backbone features; "
                "set one of them to 0 / False."
            )
        strides = {k: v.stride for k, v in shape.items()}
        self.appearance_feature = max(strides, key=strides.get)  # the coarsest, most semantic

    def _size_divisibility(self) -> int:
        return (
            self.size_divisibility
            if self.size_divisibility > 0
            else (self.backbone.size_divisibility)
        )

    def _images(self, batched_inputs: list[dict[str, Any]], key: str) -> ImageList:
        images = [
            (x[key].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(images, self._size_divisibility())

    def _targets(
        self, batched_inputs: list[dict[str, Any]], key: str, pad_value: float = 0
    ) -> torch.Tensor:
        """Batch one target of every input, padded like the images."""
        tensors = [x[key].to(self.device) for x in batched_inputs]
        return ImageList.from_tensors(tensors, self._size_divisibility(), pad_value).tensor

    def _semantic(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoder features (N, CONVS_DIM, H / s, W / s), logits (N, C, H / s, W / s)) at the
        semantic head's stride s.

        Detectron2's ``PanopticDeepLabSemSegHead.layers`` returns only the logits; its two
        halves are called here (the DeepLabV3+ decoder, then ``head`` and ``predictor``) so that
        ``SemanticDecoderDepthHead`` reads the decoder's output without a second decoder pass.
        """
        head = self.sem_seg_head
        decoded = DeepLabV3PlusHead.layers(head, features)
        return decoded, head.predictor(head.head(decoded))

    def forward(self, batched_inputs: list[dict[str, Any]]) -> Any:
        if not self.training and self.tta is not None:
            augmented = [self._augmented_maps(x) for x in batched_inputs]
            if self.benchmark_network_speed:
                return []
            pairs = zip(batched_inputs, augmented, strict=True)
            return [self._postprocess(x, size, maps) for x, (size, maps, _) in pairs]
        images = self._images(batched_inputs, "image")
        if self.training and self.next_frame_head is not None:
            n = len(batched_inputs)
            pair = torch.cat([images.tensor, self._images(batched_inputs, "next_image").tensor])
            both = self.backbone(pair)
            features = {k: v[:n] for k, v in both.items()}
            next_features = {k: v[n:] for k, v in both.items()}
        else:
            features, next_features = self.backbone(images.tensor), None
        if self.training:
            decoded, sem_logits = self._semantic(features)
            depth = self.depth_head(features, decoded)
            return self._losses(batched_inputs, features, next_features, sem_logits, depth)
        maps = self._head_maps(features, None)
        if self.benchmark_network_speed:
            # MODEL.PANOPTIC_DEEPLAB.BENCHMARK_NETWORK_SPEED: time the network alone, as
            # Detectron2's PanopticDeepLab does: every head ran, no post-processing, no outputs.
            return []
        return [
            self._postprocess(x, size, {k: v[i] for k, v in maps.items()})
            for i, (x, size) in enumerate(zip(batched_inputs, images.image_sizes, strict=True))
        ]

    def _head_maps(
        self,
        features: dict[str, torch.Tensor],
        previous_features: dict[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        """Inference outputs of the heads at the padded input size.

        Returns ``sem_seg`` (N, C, H, W) logits, ``center`` (N, 1, H, W), ``offset`` (N, 2, H, W)
        pixels, ``depth`` (N, 1, H, W) meters and, given the previous frame's features and a
        next-frame branch, ``next_offset`` (N, 2, H, W) pixels from these frames' pixels to the
        previous frame's centers.
        """
        decoded, sem_logits = self._semantic(features)
        depth = self.depth_head(features, decoded)
        center, offset, _, _ = self.ins_embed_head(features)
        stride = self.sem_seg_head.common_stride
        sem_logits = F.interpolate(
            sem_logits, scale_factor=stride, mode="bilinear", align_corners=False
        )
        maps = {"sem_seg": sem_logits, "center": center, "offset": offset, "depth": depth}
        if previous_features is not None and self.next_frame_head is not None:
            maps["next_offset"] = self.next_frame_head(previous_features, features)
        return maps

    def _view_head_maps(
        self, views: list[torch.Tensor], previous_features: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(:meth:`_head_maps`, backbone features) of a batch of same-size (C, h, w) views: the
        ``run`` of :meth:`TestTimeAugmentation.head_maps`."""
        images = self._images([{"image": v} for v in views], "image")
        features = self.backbone(images.tensor)
        return self._head_maps(features, previous_features), features

    def _augmented_maps(
        self, inputs: dict[str, Any], previous: list[dict[str, torch.Tensor]] | None = None
    ) -> tuple[tuple[int, int], dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        """One frame's head maps averaged over the views of ``TEST.AUG``.

        Args:
            inputs: the frame's input dict.
            previous: the previous frame's backbone features, one dict per scale (as returned
                here), or None.

        Returns:
            (size, maps, features): the frame's requested (height, width) (default: the
            input's), where the maps (C, height, width) were averaged (see
            :meth:`_head_maps`; ``sem_seg`` logits), and the backbone features of each scale's
            views for the next frame of a sequence.
        """
        image = inputs["image"].to(self.device)
        size = (inputs.get("height", image.shape[-2]), inputs.get("width", image.shape[-1]))
        maps, features = self.tta.head_maps(image, size, self._view_head_maps, previous)
        return size, maps, features

    @torch.no_grad()
    def inference_sequence(self, frames: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Outputs of the frames of one sequence, in order, with sequence-consistent ids.

        The backbone runs once per frame; the next-frame branch reads the cached features of
        the previous frame and the current one. Instances are stitched by
        :class:`~panoptic_depthlab.runtime.stitching.InstanceTracker`. Each output is produced
        as soon as its frame is read, so a long video never sits in memory.

        Args:
            frames: the frames' input dicts (as for :meth:`forward`), in temporal order; all
                of one image size.

        Yields:
            Per frame the outputs of :meth:`forward`, with ``panoptic_seg`` ids that keep
            one object's id for as long as it is tracked and never reuse an id: (H, W) int64
            ``class * TRACK_LABEL_DIVISOR + track number`` (2**32; stuff: track number 0,
            void -1), not the dataset's ``label_divisor`` of single-frame outputs. Split them
            with ``split_panoptic(panoptic, TRACK_LABEL_DIVISOR, num_classes)``
            (:mod:`panoptic_depthlab.panoptic_ids`). A model without the next-frame branch
            (``MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED False``) links no frames: every
            instance gets a fresh id, which single-frame metrics (PQ, DVPQ at k = 1) ignore.
        """
        sequence = self.sequence_inference()
        for inputs in frames:
            yield sequence(inputs)
        sequence.reset()  # logs the tracker's counts

    def sequence_inference(self) -> SequenceInference:
        """Frame-by-frame inference of one video at a time with this model (see
        :class:`~panoptic_depthlab.runtime.sequence.SequenceInference`)."""
        return SequenceInference(
            self.frame_maps,
            self.panoptic_settings,
            self._size_divisibility(),
            self.tracker_settings,
            self.appearance,
        )

    def appearance(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(C, h, w) backbone features of a frame (:meth:`frame_maps`) at the coarsest scale
        (see :data:`~panoptic_depthlab.runtime.sequence.Appearance`)."""
        return features[self.appearance_feature][0]

    def frame_maps(
        self, inputs: dict[str, Any], previous: Any
    ) -> tuple[tuple[int, int], dict[str, torch.Tensor], Any]:
        """One frame's head maps, for :class:`~panoptic_depthlab.runtime.sequence.
        SequenceInference` (see :data:`~panoptic_depthlab.runtime.sequence.FrameMaps`).

        Args:
            inputs: the frame's input dict.
            previous: the ``features`` returned for the previous frame of the video, or None.

        Returns:
            ``(image_size, maps, features)``: the maps (no batch dimension) of
            :meth:`_head_maps` at the padded size, with ``next_offset`` given ``previous``, and
            the backbone features (with ``TEST.AUG``: the maps averaged over the views at the
            requested size, and the features of every scale).
        """
        if self.tta is not None:  # the views, each with its view of the previous frame
            return self._augmented_maps(inputs, previous)
        images = self._images([inputs], "image")
        features = self.backbone(images.tensor)
        maps = self._head_maps(features, previous)
        return images.image_sizes[0], {k: v[0] for k, v in maps.items()}, features

    def _losses(
        self,
        batched_inputs: list[dict[str, Any]],
        features: dict[str, torch.Tensor],
        next_features: dict[str, torch.Tensor] | None,
        sem_logits: torch.Tensor,
        depth: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        sem_seg = self._targets(batched_inputs, "sem_seg", self.ignore_value)
        losses = dict(
            self.sem_seg_head.losses(
                sem_logits, sem_seg, self._targets(batched_inputs, "sem_seg_weights")
            )
        )
        offset = self._targets(batched_inputs, "offset")
        offset_weights = self._targets(batched_inputs, "offset_weights")
        _, _, center_losses, offset_losses = self.ins_embed_head(
            features,
            self._targets(batched_inputs, "center").unsqueeze(1),
            self._targets(batched_inputs, "center_weights"),
            offset,
            offset_weights,
        )
        losses.update(center_losses)
        losses.update(offset_losses)
        if self.has_depth:
            losses.update(
                self._depth_losses(batched_inputs, depth, sem_seg, offset, offset_weights)
            )
        if self.next_frame_head is not None:
            next_offset = self.next_frame_head(features, next_features)
            losses.update(
                self.next_frame_head.losses(
                    next_offset,
                    self._targets(batched_inputs, "next_offset"),
                    self._targets(batched_inputs, "next_offset_weights"),
                )
            )
        return self.uncertainty(losses) if self.uncertainty is not None else losses

    def _depth_losses(
        self,
        batched_inputs: list[dict[str, Any]],
        depth: torch.Tensor,
        sem_seg: torch.Tensor,
        offset: torch.Tensor,
        offset_weights: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """``loss_depth`` and the panoptic-guided depth losses whose weights are > 0."""
        gt_depth = self._targets(batched_inputs, "depth")
        valid = self._targets(batched_inputs, "depth_valid")
        losses = {"loss_depth": self.depth_loss(depth, gt_depth, valid) * self.depth_loss_weight}
        guided = {
            "loss_depth_smoothness": lambda: panoptic_smoothness_loss(
                depth, sem_seg, offset, offset_weights, self.ignore_value
            ),
            "loss_depth_edge": lambda: panoptic_edge_loss(
                depth, sem_seg, offset, offset_weights, self.ignore_value
            ),
            "loss_depth_image_smoothness": lambda: image_smoothness_loss(
                depth, self._targets(batched_inputs, "image").float()
            ),
        }
        for name, weight in self.guided_loss_weights.items():
            if weight > 0:
                losses[name] = guided[name]() * weight
        return losses

    def _postprocess(
        self, inputs: dict[str, Any], image_size: tuple[int, int], maps: dict[str, torch.Tensor]
    ) -> dict[str, Any]:
        """Outputs of one image at its requested size (``height``, ``width``; default: input).

        Args:
            inputs: the image's input dict.
            image_size: (H, W) of the image before padding.
            maps: one image's :meth:`_head_maps` (no batch dimension).

        Returns:
            ``sem_seg``, ``depth``, ``panoptic_seg`` and, when ``maps`` has it, ``next_offset``
            (2, height, width) pixels.
        """
        size = (inputs.get("height", image_size[0]), inputs.get("width", image_size[1]))
        return frame_outputs(maps, image_size, size, self.panoptic_settings)
