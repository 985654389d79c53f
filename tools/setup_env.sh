#!/usr/bin/env bash
# Create .venv and install everything panoptic_depthlab needs, from the package registries only.
#
#   make setup                                   # the default: registry wheels, pinned
#   DETECTRON2_SOURCE=/path/to/detectron2 make setup   # any pip-installable Detectron2 instead,
#   DETECTRON2_SOURCE='git+https://github.com/facebookresearch/detectron2.git' make setup
#
# Every version comes from constraints.txt. A second run with the same inputs (this script,
# constraints.txt, setup.py, DETECTRON2_SOURCE, the Python) returns in about a second.
set -euo pipefail

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
DETECTRON2_SOURCE=${DETECTRON2_SOURCE:-}
# sha256 of sal_detectron2-0.7.2-cp310-none-any.whl (upstream detectron2, pure-Python part used).
DETECTRON2_WHEEL_SHA256=491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561

cd "$(dirname "$0")/.."
STAMP="$VENV/.setup-stamp"
# No wheel cache: on a fresh machine it would hold a second copy of the 3+ GB of CUDA wheels.
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input --no-cache-dir)

current_step="(none)"
fail() {
    echo "" >&2
    echo "make setup: FAILED at step '$current_step'." >&2
    echo "  $*" >&2
    echo "  Fix the cause and run 'make setup' again; finished steps are redone quickly." >&2
    exit 1
}
trap 'fail "the command above exited with status $? (its output is printed above)."' ERR
step() {
    current_step=$1
    echo "==> [setup] $1"
}

fingerprint() {
    {
        cat tools/setup_env.sh constraints.txt setup.py
        echo "DETECTRON2_SOURCE=$DETECTRON2_SOURCE"
        "$PYTHON" --version 2>&1
    } | sha256sum | cut -d' ' -f1
}

step "check the Python interpreter ($PYTHON)"
command -v "$PYTHON" >/dev/null || fail "'$PYTHON' is not on PATH. Install Python 3.11 or run 'PYTHON=/path/to/python3.11 make setup'."
want=$(fingerprint)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
    echo "==> [setup] $VENV is up to date (delete $STAMP to force a reinstall)."
    exit 0
fi
rm -f "$STAMP"

step "create the virtual environment $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"

step "install PyTorch and torchvision (several GB with CUDA libraries on the first run)"
"${PIP[@]}" install -c constraints.txt torch torchvision

SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [[ -n "$DETECTRON2_SOURCE" ]]; then
    step "install Detectron2 from DETECTRON2_SOURCE=$DETECTRON2_SOURCE"
    "${PIP[@]}" uninstall -y sal-detectron2 >/dev/null 2>&1 || true
    # A source build compiles against the torch installed above, hence no build isolation.
    "${PIP[@]}" install -c constraints.txt --no-build-isolation "$DETECTRON2_SOURCE"
else
    step "download the Detectron2 wheel sal-detectron2 (version from constraints.txt)"
    wheels="$VENV/wheels"
    mkdir -p "$wheels"
    "${PIP[@]}" download --no-deps --only-binary=:all: --python-version 3.10 \
        -c constraints.txt -d "$wheels" sal-detectron2
    wheel=$(ls "$wheels"/sal_detectron2-*.whl)
    step "verify the sha256 of $wheel"
    got=$(sha256sum "$wheel" | cut -d' ' -f1)
    [[ "$got" == "$DETECTRON2_WHEEL_SHA256" ]] ||
        fail "sha256 mismatch for $wheel: got $got, expected $DETECTRON2_WHEEL_SHA256. Refusing to install it."
    step "install the pure-Python part of Detectron2 into $SITE"
    # The wheel is tagged for CPython 3.10; its Python code runs on 3.11, its compiled _C does not.
    rm -rf "$SITE/detectron2" "$SITE"/sal_detectron2-*.dist-info
    "${PIP[@]}" install --no-deps --only-binary=:all: --python-version 3.10 \
        --target "$SITE" "$wheel"
    rm -f "$SITE"/detectron2/_C.*.so
    step "install Detectron2's own requirements"
    "$VENV/bin/python" - >"$VENV/detectron2-requirements.txt" <<'PY'
from importlib.metadata import requires
print("\n".join(r for r in requires("sal-detectron2") or [] if "extra ==" not in r))
PY
    "${PIP[@]}" install -c constraints.txt -r "$VENV/detectron2-requirements.txt"
fi

step "install panoptic_depthlab (editable) with its test tools"
"${PIP[@]}" install -c constraints.txt --no-build-isolation -e ".[dev]"

step "check that Detectron2, the ONNX tools and panoptic_depthlab import"
"$VENV/bin/python" -W ignore -c "import panoptic_depthlab, detectron2.evaluation, detectron2.projects.panoptic_deeplab, onnx, onnxscript, onnxruntime" ||
    fail "the environment was installed but does not import (see the traceback above)."

fingerprint >"$STAMP"
echo "==> [setup] done: $VENV is ready."
