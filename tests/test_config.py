"""Defaults of the config keys panoptic_depthlab adds."""

from detectron2.config import get_cfg

from panoptic_depthlab.config import add_panoptic_depthlab_config


def test_defaults():
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    assert (cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, cfg.INPUT.SCALE_STEP) == (0.5, 2.0, 0.1)
    assert cfg.INPUT.CROP.ENABLED and tuple(cfg.INPUT.CROP.SIZE) == (512, 1024)
    assert cfg.INPUT.CROP.TYPE == "absolute"
    assert cfg.INPUT.GAUSSIAN_SIGMA == 8
    assert (cfg.INPUT.SMALL_INSTANCE_AREA, cfg.INPUT.SMALL_INSTANCE_WEIGHT) == (4096, 3)
    assert cfg.INPUT.RANDOM_FLIP == "horizontal"
    assert cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE == 255
