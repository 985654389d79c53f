# The two commands of README.md: `make demo` and `make test`. Both set up .venv when needed.
PY := .venv/bin/python
DATASETS ?= datasets
DEMO_DATA := $(DATASETS)/synthetic-cityscapes-dvps

.PHONY: setup test demo lint format

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) tools/make_synthetic_dvps.py --format cityscapes_dvps --out $(DEMO_DATA) --split train --sequences 10 --frames 6 --height 256 --width 512 --seed 0
	$(PY) tools/make_synthetic_dvps.py --format cityscapes_dvps --out $(DEMO_DATA) --split val --sequences 4 --frames 6 --height 256 --width 512 --seed 1
	@echo ""
	@echo "Synthetic Cityscapes-DVPS is in $(DEMO_DATA)/video_sequence/{train,val}."
	@echo "The frame-pair mapper and the PanopticDepthLab model are in the package (see README)."
	@echo "Not in the demo yet: DVPQ/DSTQ evaluation (#5), video inference and pictures (#6),"
	@echo "training with before/after numbers (#7)."

lint: setup
	$(PY) -m ruff check .
	$(PY) -m black --check .

format: setup
	$(PY) -m black .
	$(PY) -m ruff check --fix .
