"""DVPS data: dataset registration, the frame-pair mapper and its targets, loaders."""

from . import datasets
from .build import build_dvps_train_loader
from .dataset_mapper import DVPSDatasetMapper
from .datasets import *  # noqa: F401,F403
from .sampler import FramePairTrainingSampler
from .target_generator import DVPSTargetGenerator

__all__ = [
    "DVPSDatasetMapper",
    "DVPSTargetGenerator",
    "FramePairTrainingSampler",
    "build_dvps_train_loader",
    *datasets.__all__,
]
