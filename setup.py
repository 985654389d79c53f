"""Install panoptic_depthlab.

Detectron2 is not listed in ``install_requires``: it is not on the package registry under its
own name. ``make setup`` (tools/setup_env.sh) installs it, either from the hash-pinned
``sal-detectron2`` wheel or from ``$DETECTRON2_SOURCE``. Versions are pinned in constraints.txt.
"""

from setuptools import find_packages, setup

setup(
    name="panoptic_depthlab",
    version="0.1.0",
    description="Depth-aware video panoptic segmentation (DVPS) on Detectron2",
    python_requires=">=3.10",
    packages=find_packages(include=["panoptic_depthlab", "panoptic_depthlab.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "fvcore",
        "iopath",
        "pycocotools",
        "panopticapi-lite",
        "opencv-python-headless",
        "numpy<2",
        "Pillow",
        "tensorboard",
        "tqdm",
        # the tracker's one-to-one revival assignment (linear_sum_assignment)
        "scipy",
        # export to ONNX (torch.onnx's dynamo exporter) and the ONNX runtime of exported models
        "onnx",
        "onnxscript",
        "onnxruntime",
        # detectron2.model_zoo imports pkg_resources, removed in setuptools 81.
        "setuptools<81",
    ],
    extras_require={"dev": ["pytest", "black", "ruff"]},
)
