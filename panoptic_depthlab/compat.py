"""The one place that adapts panoptic_depthlab to the installed Detectron2.

The default environment installs the pure-Python part of a Detectron2 wheel whose compiled
extension ``detectron2._C`` cannot load here (see README, "Installation"). Panoptic-DeepLab needs
none of the compiled ops, so a missing extension is replaced by :class:`MissingCompiledOps`, a
placeholder module whose every attribute access raises a :class:`MissingCompiledOpError` naming
the op. A Detectron2 built from source keeps its real ``_C`` untouched.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

import detectron2

__all__ = ["HAS_COMPILED_OPS", "MissingCompiledOpError", "MissingCompiledOps"]

# fvcore.nn and detectron2.modeling apply torch.jit.script when imported, which torch >= 2.10
# answers with a FutureWarning users cannot act on; silence it for these imports only.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
    )
    for _module in ("fvcore.nn", "detectron2.modeling"):
        importlib.import_module(_module)


class MissingCompiledOpError(RuntimeError):
    """A compiled Detectron2 op was called, but ``detectron2._C`` is not available."""


class MissingCompiledOps(types.ModuleType):
    """Stands in for ``detectron2._C`` when the compiled extension cannot be imported.

    Importing it succeeds; using any op (``_C.deform_conv_forward``, ``_C.nms_rotated``, ...)
    raises :class:`MissingCompiledOpError` with the op's name and the reason the real extension
    did not load.
    """

    def __init__(self, reason: str):
        super().__init__("detectron2._C")
        self.__file__ = None
        self._reason = reason

    # Informational functions, called by Detectron2's collect_env_info (default_setup's log).
    def get_compiler_version(self) -> str:
        return f"none: no compiled extension ({self._reason})"

    def get_cuda_version(self) -> str:
        return "none: no compiled extension"

    def has_cuda(self) -> bool:
        return False

    def __getattr__(self, op: str):
        if op.startswith("__") and op.endswith("__"):
            raise AttributeError(op)
        raise MissingCompiledOpError(
            f"detectron2._C.{op} is a compiled Detectron2 op, and this Detectron2 has no usable "
            f"compiled extension ({self._reason}). panoptic_depthlab does not need it; to use "
            "it, install a Detectron2 built from source: "
            "DETECTRON2_SOURCE=<path or git URL> make setup."
        )


def _install_placeholder_if_missing() -> bool:
    """Return True if ``detectron2._C`` loads, else install the placeholder and return False."""
    try:
        importlib.import_module("detectron2._C")
        return True
    except (ImportError, OSError) as e:
        reason = f"{type(e).__name__}: {e}"
    # Import the evaluation package while _C is still absent: its COCO evaluator then selects
    # the pure-Python COCOeval instead of the compiled one, whichever package a user imports first.
    importlib.import_module("detectron2.evaluation")
    placeholder = MissingCompiledOps(reason)
    sys.modules["detectron2._C"] = placeholder
    detectron2._C = placeholder
    return False


HAS_COMPILED_OPS: bool = _install_placeholder_if_missing()
