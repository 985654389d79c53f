"""Inference with PyTorch alone: post-processing, tracking, ``Predictor``, exported graphs.

Nothing here imports Detectron2, so a deployment that runs exported graphs
(``Predictor.from_exported``) works in a Python without it. The eager model
(:class:`~panoptic_depthlab.modeling.PanopticDepthLab`) calls the same post-processing and tracker.
"""
