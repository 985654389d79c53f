# The two commands of README.md: `make demo` and `make test`. Both set up .venv when needed.
PY := .venv/bin/python
DATASETS ?= datasets
DEMO_DATA := $(DATASETS)/synthetic-cityscapes-dvps

.PHONY: setup test demo lint format

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m pytest

DEMO_CONFIG := configs/synthetic/vip_depth_small.yaml
DEMO_OUT := output/demo
DEMO_EVAL := inference/synthetic_cityscapes_dvps_val/dvps_results.json

# The main job on synthetic Cityscapes-DVPS, about 10 minutes on 2 CPU cores: evaluate the
# untrained model, train it with 2 processes (Detectron2 evaluates it after the last step), draw
# its predictions on a validation sequence, and compare the two evaluations.
demo: setup
	rm -rf $(DEMO_OUT)
	@echo "== [1/5] Synthetic Cityscapes-DVPS (128x256) in $(DEMO_DATA)"
	$(PY) tools/make_synthetic_dvps.py --format cityscapes_dvps --out $(DEMO_DATA) --split train --sequences 40 --frames 6 --height 128 --width 256 --seed 0
	$(PY) tools/make_synthetic_dvps.py --format cityscapes_dvps --out $(DEMO_DATA) --split val --sequences 4 --frames 6 --height 128 --width 256 --seed 1
	@echo "== [2/5] Evaluating the untrained model"
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG) --eval-only OUTPUT_DIR $(DEMO_OUT)/untrained
	cp $(DEMO_OUT)/untrained/$(DEMO_EVAL) $(DEMO_OUT)/.eval_before.json && mv $(DEMO_OUT)/.eval_before.json $(DEMO_OUT)/eval_before.json
	@echo "== [3/5] Training with 2 processes (--num-gpus 2: gloo on CPU), then evaluating"
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG) --num-gpus 2 OUTPUT_DIR $(DEMO_OUT)/train
	cp $(DEMO_OUT)/train/$(DEMO_EVAL) $(DEMO_OUT)/.eval_after.json && mv $(DEMO_OUT)/.eval_after.json $(DEMO_OUT)/eval_after.json
	@echo "== [4/5] Pictures of a validation sequence"
	mkdir -p $(DEMO_OUT)/val_sequence && ln -sf $(abspath $(DEMO_DATA))/video_sequence/val/000000_*_leftImg8bit.png $(DEMO_OUT)/val_sequence/
	$(PY) tools/demo.py --config-file $(DEMO_CONFIG) --input $(DEMO_OUT)/val_sequence --output $(DEMO_OUT)/pictures MODEL.WEIGHTS $(DEMO_OUT)/train/model_final.pth
	@echo "== [5/5] The validation set before and after training"
	@$(PY) tools/compare_dvpq.py $(DEMO_OUT)/eval_before.json $(DEMO_OUT)/eval_after.json
	@echo ""
	@echo "Evaluations: $(DEMO_OUT)/eval_before.json, $(DEMO_OUT)/eval_after.json"
	@echo "Pictures:    $(DEMO_OUT)/pictures/val_sequence/vis/*.png, $(DEMO_OUT)/pictures/val_sequence/val_sequence.mp4"
	@echo "Curves:      .venv/bin/tensorboard --logdir $(DEMO_OUT)/train  (losses, LR, metrics, prediction pictures)"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m black --check .

format: setup
	$(PY) -m black .
	$(PY) -m ruff check --fix .
