"""DVPSTrainer's solver parts, built from the config as tools/train_net.py builds them."""

from __future__ import annotations

import pytest
import torch
from detectron2.projects.deeplab.lr_scheduler import WarmupPolyLR

from panoptic_depthlab.engine import DVPSTrainer
from tests.conftest import small_model_cfg


def solver_cfg(**overrides):
    cfg = small_model_cfg("synthetic_cityscapes_dvps_train")
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.MAX_ITER = 100
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


def test_adam_with_the_configured_lr_and_gradient_clipping():
    model = torch.nn.Linear(3, 1)
    plain = DVPSTrainer.build_optimizer(solver_cfg(), model)
    assert type(plain) is torch.optim.Adam and plain.param_groups[0]["lr"] == 0.01
    cfg = solver_cfg(
        **{"SOLVER.CLIP_GRADIENTS.ENABLED": "True", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "norm",
           "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": "0.5"}
    )  # fmt: skip
    clipped = DVPSTrainer.build_optimizer(cfg, model)
    assert isinstance(clipped, torch.optim.Adam) and type(clipped) is not torch.optim.Adam
    model.weight.grad = torch.full_like(model.weight, 100.0)
    model.bias.grad = torch.zeros_like(model.bias)
    clipped.step()  # the step clips the gradient norm to 0.5 first
    assert torch.linalg.vector_norm(model.weight.grad) == pytest.approx(0.5, rel=1e-5)


def test_sgd_is_detectron2s_and_other_names_are_refused():
    model = torch.nn.Linear(3, 1)
    assert type(DVPSTrainer.build_optimizer(solver_cfg(**{"SOLVER.OPTIMIZER": "SGD"}), model)) is (
        torch.optim.SGD
    )
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER = 'LAMB'; expected ADAM or SGD"):
        DVPSTrainer.build_optimizer(solver_cfg(**{"SOLVER.OPTIMIZER": "LAMB"}), model)


def test_warmup_poly_schedule():
    cfg = solver_cfg(
        **{"SOLVER.LR_SCHEDULER_NAME": "WarmupPolyLR", "SOLVER.WARMUP_ITERS": "10",
           "SOLVER.WARMUP_FACTOR": "0.1"}
    )  # fmt: skip
    optimizer = DVPSTrainer.build_optimizer(cfg, torch.nn.Linear(3, 1))
    scheduler = DVPSTrainer.build_lr_scheduler(cfg, optimizer)
    assert isinstance(scheduler, WarmupPolyLR)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # linear warm-up from 0.1 x, then (1 - t / T) ** 0.9 (Detectron2's DeepLab schedule)
    assert lrs[0] == pytest.approx(0.01 * 0.1)
    assert lrs[50] == pytest.approx(0.01 * (1 - 50 / 100) ** 0.9)
    assert lrs[99] == pytest.approx(0.01 * (1 - 99 / 100) ** 0.9)
