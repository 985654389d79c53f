# The two commands of README.md: `make demo` and `make test`. Both set up .venv when needed.
PY := .venv/bin/python
DATA_ROOT ?= datasets

.PHONY: setup test demo lint format

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) tools/make_synthetic_dvps.py --format cityscapes_dvps --out $(DATA_ROOT) --split train --sequences 10 --frames 6 --height 256 --width 512 --seed 0
	$(PY) tools/make_synthetic_dvps.py --format cityscapes_dvps --out $(DATA_ROOT) --split val --sequences 4 --frames 6 --height 256 --width 512 --seed 1
	@echo ""
	@echo "Synthetic Cityscapes-DVPS written under $(DATA_ROOT)/synthetic-cityscapes-dvps (see datasets/README.md)."
	@echo "Still missing from the demo: evaluation, training and visualization (open issues #3-#7)."

lint: setup
	$(PY) -m ruff check .
	$(PY) -m black --check .

format: setup
	$(PY) -m black .
	$(PY) -m ruff check --fix .
