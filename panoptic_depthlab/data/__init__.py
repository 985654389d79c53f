"""DVPS data: dataset registration and the synthetic DVPS generator."""

from .datasets import *  # noqa: F401,F403
