"""One mergeable accumulator of everything a DVPS evaluation reports, fed one frame at a time.

A frame's walk: :meth:`DVPSAccumulator.add` reduces it at once to its DVPQ overlap tables
(:func:`~panoptic_depthlab.evaluation.dvpq.frame_statistics`), its depth metrics
(:class:`~panoptic_depthlab.evaluation.depth_metrics.DepthMetrics`) and, where the dataset's
protocol has them, its STQ/DSTQ statistics
(:class:`~panoptic_depthlab.evaluation.stq.STQAccumulator`); no frame is kept. Accumulators of
other processes or chunks are added with :meth:`merge`; :meth:`results` then forms the DVPQ
windows (per sequence, or over all frames for datasets whose windows cross sequences) and
returns the results. The Detectron2 evaluator and the file evaluation both run exactly this.

Results are in percent except the depth metrics, whose units are those of
:meth:`DepthMetrics.summary`:

``{"dataset", "dvpq": [{"k", "lambda", "pq", "pq_thing", "pq_stuff"}, ...],
"dvpq_mean": {"pq", "pq_thing", "pq_stuff"}, "per_class": {name: {...} | None},
"depth": {...}, "stq", "aq", "iou", "dq", "dstq"}`` (the STQ keys where the protocol has STQ;
``None`` where a mean has no class to average).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .depth_metrics import DepthMetrics
from .dvpq import DVPQAccumulator, DVPQProtocol, DVPSFrame, FrameStatistics, frame_statistics
from .stq import STQAccumulator

__all__ = ["DVPSAccumulator"]

logger = logging.getLogger(__name__)

_STQ_KEYS = ("stq", "aq", "iou", "dq", "dstq")  # the last two need depth


class DVPSAccumulator:
    """DVPQ for every (k, lambda), per-class PQ, depth metrics and, where the dataset's protocol
    has them (``evaluate_stq``), STQ and DSTQ; picklable and mergeable.

    Attributes:
        metadata: the dataset's metadata (``dvps_metadata`` keys).
        protocol: the DVPQ protocol.
        frames: ``(sequence_id, frame_index, statistics)`` of every frame added.
        depth: depth metrics.
        stq: STQ/DSTQ statistics, or None when the protocol has none.
    """

    def __init__(
        self,
        metadata: Mapping[str, Any],
        window_sizes: Sequence[int] | None = None,
        depth_thresholds: Sequence[float] | None = None,
    ):
        """
        Args:
            metadata: the dataset's metadata (``dvps_metadata(fmt)`` or the MetadataCatalog
                entry as a dict).
            window_sizes: k values; default the dataset's.
            depth_thresholds: lambda values; default the dataset's plus 0.

        Raises:
            ValueError: window sizes or thresholds out of range.
        """
        self.metadata = dict(metadata)
        self.protocol = DVPQProtocol.from_metadata(metadata, window_sizes, depth_thresholds)
        self.frames: list[tuple[Hashable, int, FrameStatistics]] = []
        self.depth = DepthMetrics()
        self.stq = None
        if metadata["evaluate_stq"]:
            self.stq = STQAccumulator(
                metadata["num_classes"], metadata["thing_ids"], metadata["ignore_label"]
            )

    def add(self, frame: DVPSFrame, sequence_id: Hashable, frame_index: int) -> None:
        """Add one frame of sequence ``sequence_id`` (frames may come in any order).

        Raises:
            ValueError: sizes differ, ids out of range or depth missing; the message names
                ``frame.name``.
        """
        statistics = frame_statistics(frame, self.protocol, self.depth)  # adds depth metrics
        if self.stq is not None:
            self.stq.add_frame(
                sequence_id,
                frame.pred_class,
                frame.pred_instance,
                frame.gt_class,
                frame.gt_instance,
                frame.pred_depth,
                frame.gt_depth,
            )
        self.frames.append((sequence_id, frame_index, statistics))

    def merge(self, other: DVPSAccumulator) -> None:
        """Add the frames of another accumulator of the same protocol."""
        if other.protocol != self.protocol:
            raise ValueError("cannot merge DVPS statistics computed with different protocols.")
        self.frames += other.frames
        self.depth.merge(other.depth)
        if self.stq is not None:
            self.stq.merge(other.stq)

    def _streams(self) -> list[list[FrameStatistics]]:
        """The frames' statistics in the streams the windows slide over: each sequence in frame
        order, or all frames in (sequence, frame) order, which is the order of the official
        names ``<sequence:06d>_<frame:06d>_...``, for protocols whose windows cross sequences."""
        frames = sorted(self.frames, key=lambda f: (f[0], f[1]))
        if self.protocol.windows_cross_sequences:
            return [[f[2] for f in frames]]
        streams: list[list[FrameStatistics]] = []
        for i, (sequence_id, _, statistics) in enumerate(frames):
            if i == 0 or sequence_id != frames[i - 1][0]:
                streams.append([])
            streams[-1].append(statistics)
        return streams

    def results(self) -> dict[str, Any]:
        """The results (keys in the module docstring), JSON-safe.

        Raises:
            ValueError: no frame was added.
        """
        if not self.frames:
            raise ValueError("no frames were evaluated.")
        protocol = self.protocol
        streams = self._streams()
        longest = max(len(s) for s in streams)
        too_long = [k for k in protocol.window_sizes if k > longest]
        if too_long:
            logger.warning(
                "no window of k = %s frames fits in the %s (longest: %d frames); those entries "
                "count no segment (%s)",
                ", ".join(map(str, too_long)),
                "frames" if protocol.windows_cross_sequences else "sequences",
                longest,
                "PQ 0" if protocol.absent_class_is_zero else "PQ None",
            )
        dvpq = DVPQAccumulator(protocol)
        for stream in streams:
            dvpq.add_stream(stream)
        results: dict[str, Any] = {
            "dataset": self.metadata["dataset_format"],
            **dvpq.summary(self.metadata["stuff_classes"]),
        }
        if self.metadata.get("has_depth", True):  # else: no depth metrics, VPQ only
            results["depth"] = self.depth.summary()
        if self.stq is not None:
            summary = self.stq.summary()
            keys = _STQ_KEYS if self.metadata.get("has_depth", True) else _STQ_KEYS[:3]
            results.update((key, summary[key]) for key in keys)  # no DQ / DSTQ without depth
        return _json_safe(results)


def _json_safe(value: Any) -> Any:
    """Copy of ``value`` with nan/inf floats replaced by None and numpy scalars made Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
