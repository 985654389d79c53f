"""DVPS evaluation: DVPQ, depth metrics, STQ/DSTQ, the official prediction file formats, the
file-based evaluation behind ``tools/eval_dvpq.py``, the Detectron2 evaluator and video inference
over a registered dataset."""

from .depth_metrics import DepthMetrics
from .dvpq import DVPQAccumulator, DVPQProtocol, DVPSFrame, FrameStatistics, frame_statistics
from .evaluate_files import DVPSInputError, evaluate_prediction_files
from .evaluator import DVPSEvaluator
from .formats import read_ground_truth, read_prediction, write_prediction
from .inference import inference_on_sequences
from .stq import STQAccumulator

__all__ = [
    "DVPQAccumulator",
    "DVPQProtocol",
    "DVPSEvaluator",
    "DVPSFrame",
    "DVPSInputError",
    "DepthMetrics",
    "FrameStatistics",
    "STQAccumulator",
    "evaluate_prediction_files",
    "frame_statistics",
    "inference_on_sequences",
    "read_ground_truth",
    "read_prediction",
    "write_prediction",
]
