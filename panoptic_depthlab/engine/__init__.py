"""Training: the DVPS trainer, its hooks, and the setup shared by ``tools/train_net.py``."""

from .hooks import PredictionImageHook
from .launch import launch
from .setup import (
    LaunchError,
    add_override_arguments,
    check_launch,
    fall_back_to_cpu,
    load_config,
    setup,
)
from .trainer import DVPSTrainer

__all__ = [
    "DVPSTrainer",
    "LaunchError",
    "PredictionImageHook",
    "add_override_arguments",
    "check_launch",
    "fall_back_to_cpu",
    "launch",
    "load_config",
    "setup",
]
