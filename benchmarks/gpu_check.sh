#!/usr/bin/env bash
# GPU check of panoptic_depthlab: one prepared run for a machine with a CUDA GPU (one NVIDIA H200
# in practice, 16 CPU cores) that finishes within 10 minutes. After `make setup`, from anywhere:
#
#     bash benchmarks/gpu_check.sh
#
# Steps, each with its own time limit (and all of them within GPU_CHECK_BUDGET_S, default 570 s;
# a step that no longer fits is skipped), each logged to its own file:
#   1  synthetic Cityscapes-DVPS at 512x1024 (train: 8 x 4 frames, val: 2 x 4) in a temporary
#      DETECTRON2_DATASETS, registered as synthetic_cityscapes_dvps_{train,val}
#   2  1-GPU training smoke run, AMP on: configs/synthetic/vip_depth_small.yaml, 512x1024 crops,
#      20 iterations (then Detectron2's evaluation on val)
#   3  2-process training smoke run: --num-gpus 2 on CUDA (NCCL) with 2 or more GPUs; with one
#      GPU on CPU over gloo (NCCL refuses two processes on one GPU), at 256x512 crops
#   4  --eval-only of step 2's model_final.pth on val
#   5  training iterations/s and peak GPU memory of configs/vip_depth.yaml: 512x1024 crops,
#      IMS_PER_BATCH 8 on 1 GPU, AMP on, SyncBN -> BN, random init, 30 iterations (5 untimed)
#   6  inference frames/s at 1024x2048 of configs/vip_depth.yaml (random weights): eager
#      Predictor, and the ONNX and pt2 exports of tools/export_model.py via
#      Predictor.from_exported (2 untimed frames, then 10)
#
# Output: a header per step, `FIGURE <name> <value> <unit>` and `NOTE ...` lines, the last 40
# lines of a failed step's log, and a summary at the end (step statuses, every FIGURE). Exit code:
# 0 every step passed, 1 a step failed, timed out or was skipped, 2 not set up (no .venv),
# 3 no CUDA GPU. The temporary folder (data, logs, checkpoints, exports) is kept and named at the
# end.
#
# Environment:
#   GPU_CHECK_BUDGET_S  seconds all steps may take together (default 570)
#   GPU_CHECK_LOGS      a folder to copy the logs, figures and summary to at the end
#   GPU_CHECK_SELFTEST  1: a plumbing test on a machine without a GPU: no GPU check, every step
#                       on CPU at tiny sizes; its figures mean nothing
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
BUDGET_S=${GPU_CHECK_BUDGET_S:-570}
SELFTEST=${GPU_CHECK_SELFTEST:-0}
RESERVE_S=15  # kept for the summary
MIN_STEP_S=20 # a step given less than this is skipped

if [[ ! -x $PY ]]; then
    echo "gpu_check: $PY not found: run 'make setup' in $ROOT first." >&2
    exit 2
fi

if [[ $SELFTEST == 1 ]]; then
    DEVICE=cpu
    DATA_H=128 DATA_W=256 # synthetic frames, training crops of steps 2 and 4
    CPU_CROP="(128, 256)" # step 3 on CPU
    SMOKE_ITERS=4 CPU_ITERS=2
    BENCH_CROP="(128, 256)" BENCH_BATCH=2 BENCH_ITERS=4 BENCH_WARMUP=2 BENCH_WORKERS=2
    INFER_H=256 INFER_W=512 INFER_WARMUP=1 INFER_FRAMES=2
else
    DEVICE=cuda
    DATA_H=512 DATA_W=1024
    CPU_CROP="(256, 512)"
    SMOKE_ITERS=20 CPU_ITERS=4
    BENCH_CROP="(512, 1024)" BENCH_BATCH=8 BENCH_ITERS=30 BENCH_WARMUP=5 BENCH_WORKERS=8
    INFER_H=1024 INFER_W=2048 INFER_WARMUP=2 INFER_FRAMES=10
fi
SMOKE_CROP="($DATA_H, $DATA_W)"
SMALL_CONFIG=configs/synthetic/vip_depth_small.yaml
BIG_CONFIG=configs/vip_depth.yaml
VAL_RESULTS=inference/synthetic_cityscapes_dvps_val/dvps_results.json

# ---- 0: the GPU (before anything is written) ------------------------------------------------
printf '\n==== [0] GPU\n'
if [[ $SELFTEST == 1 ]]; then
    echo "GPU_CHECK_SELFTEST=1: no GPU check; every step on CPU at tiny sizes; figures mean nothing"
    GPUS=0
else
    if ! command -v nvidia-smi >/dev/null; then
        echo "gpu_check: no GPU: nvidia-smi is not installed (no NVIDIA driver on this machine)." \
            "This check needs a CUDA GPU; nothing was run." >&2
        exit 3
    fi
    if ! timeout 30 nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv; then
        echo "gpu_check: no GPU: nvidia-smi finds no usable NVIDIA GPU (its output is above);" \
            "nothing was run." >&2
        exit 3
    fi
    rc=0
    GPUS=$(timeout 120 "$PY" -c \
        'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)') ||
        rc=$?
    if ((rc != 0)) || ! [[ $GPUS =~ ^[0-9]+$ ]]; then
        echo "gpu_check: could not ask torch for its CUDA devices (exit $rc); nothing was run." >&2
        exit 3
    fi
    if ((GPUS < 1)); then
        echo "gpu_check: no GPU: torch.cuda.is_available() is False (a torch without CUDA, or a" \
            "driver it cannot use; CUDA_VISIBLE_DEVICES='${CUDA_VISIBLE_DEVICES:-}');" \
            "nothing was run." >&2
        exit 3
    fi
    timeout 60 "$PY" -c 'import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x "
      f"{torch.cuda.get_device_name(0)}")' || true
fi

WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
LOGS=$WORK/logs
FIGURES=$WORK/figures.txt
NOTES=$WORK/notes.txt
STATUS=$WORK/status.txt
HELPER=$WORK/gpu_check_helper.py
mkdir -p "$LOGS"
: >"$FIGURES"
: >"$NOTES"
: >"$STATUS"
export DETECTRON2_DATASETS=$WORK/datasets
export PYTHONUNBUFFERED=1
DATA=$DETECTRON2_DATASETS/synthetic-cityscapes-dvps

header() {
    printf '\n==== [%s] %s  (%d s of %d s used)\n' "$1" "$2" "$SECONDS" "$BUDGET_S"
}

figure() {
    echo "FIGURE $1 $2 $3" | tee -a "$FIGURES"
}

note() {
    echo "NOTE $*" | tee -a "$NOTES"
}

record() {
    printf '%-14s %s\n' "$1" "$2" | tee -a "$STATUS"
}

copy_logs() {
    if [[ -n ${GPU_CHECK_LOGS:-} ]]; then
        mkdir -p "$GPU_CHECK_LOGS" && cp -r "$LOGS" "$FIGURES" "$NOTES" "$STATUS" "$GPU_CHECK_LOGS"/ ||
            echo "gpu_check: could not copy the logs to $GPU_CHECK_LOGS" >&2
    fi
}
trap copy_logs EXIT

# run_step NAME TITLE LIMIT_S COMMAND...: run COMMAND (output to $LOGS/NAME.log) under its time
# limit, cut to what is left of the budget; print its FIGURE and NOTE lines, its wall time, and
# on failure the end of its log. Returns 0 if it passed.
run_step() {
    local name=$1 title=$2 limit=$3
    shift 3
    header "$name" "$title"
    local left=$((BUDGET_S - RESERVE_S - SECONDS))
    if ((left < MIN_STEP_S)); then
        record "$name" "SKIP (${left} s left of the ${BUDGET_S} s budget)"
        return 1
    fi
    if ((limit > left)); then
        limit=$left
    fi
    local log=$LOGS/$name.log
    echo "limit ${limit} s, log $log"
    printf '$'
    printf ' %q' "$@"
    echo
    local start=$SECONDS rc=0
    timeout --kill-after=15 "$limit" "$@" >"$log" 2>&1 || rc=$?
    local wall=$((SECONDS - start))
    grep '^FIGURE ' "$log" | tee -a "$FIGURES" || true
    grep '^NOTE ' "$log" | tee -a "$NOTES" || true
    figure "step_${name}_wall" "$wall" s
    if ((rc == 0)); then
        record "$name" "OK (${wall} s)"
        return 0
    fi
    if ((rc == 124 || rc == 137)); then
        record "$name" "TIMEOUT (killed after ${limit} s)"
    else
        record "$name" "FAIL (exit ${rc} after ${wall} s)"
    fi
    echo "---- last 40 lines of $log"
    tail -n 40 "$log"
    echo "----"
    return 1
}

# collect NAME COMMAND...: a short command (60 s at most) whose FIGURE and NOTE lines are kept.
collect() {
    local log=$LOGS/$1.log
    shift
    timeout 60 "$@" >"$log" 2>&1 || {
        echo "gpu_check: failed: $*"
        tail -n 20 "$log"
    }
    grep '^FIGURE ' "$log" | tee -a "$FIGURES" || true
    grep '^NOTE ' "$log" | tee -a "$NOTES" || true
}

# skip NAME REASON: a step that cannot run because an earlier one failed.
skip() {
    header "$1" "skipped"
    record "$1" "SKIP ($2)"
}

# ---- the helper for steps 2 and 4 (figures), 5 (training) and 6 (inference) ------------------
cat >"$HELPER" <<'PYEOF'
"""Helper of benchmarks/gpu_check.sh; prints FIGURE <name> <value> <unit> and NOTE lines."""

import argparse
import glob
import json
import os
import sys
import time


def figure(name, value, unit):
    print(f"FIGURE {name} {value} {unit}", flush=True)


def note(text):
    print(f"NOTE {text}", flush=True)


def eval_figures(args):
    """DVPQ and depth figures of a dvps_results.json; with --compare, also those of another
    evaluation of the same weights, which should match."""
    with open(args.results) as f:
        results = json.load(f)
    figure(f"{args.prefix}_dvpq", f"{results['dvpq_mean']['pq']:.3f}", "percent")
    figure(f"{args.prefix}_abs_rel", f"{results['depth']['abs_rel']:.5f}", "ratio")
    figure(f"{args.prefix}_frames", results["depth"]["frames"], "frames")
    if args.compare:
        with open(args.compare) as f:
            other = json.load(f)
        same = (
            abs(other["depth"]["abs_rel"] - results["depth"]["abs_rel"])
            <= 1e-3 * max(1.0, abs(results["depth"]["abs_rel"]))
            and abs(other["dvpq_mean"]["pq"] - results["dvpq_mean"]["pq"]) <= 0.1
        )
        note(
            f"{args.prefix} vs {args.compare}: abs_rel {results['depth']['abs_rel']:.5f} / "
            f"{other['depth']['abs_rel']:.5f}, DVPQ {results['dvpq_mean']['pq']:.3f} / "
            f"{other['dvpq_mean']['pq']:.3f}: {'match' if same else 'DIFFER'}"
        )


def sync_bn_keys(node, prefix=""):
    """The config keys set to SyncBN."""
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from sync_bn_keys(value, f"{prefix}{key}.")
        elif value == "SyncBN":
            yield prefix + key


def train_bench(args):
    """Training iterations/s (StepTimes of benchmarks/train_throughput.py: wall time at the end of
    every iteration, the first --warmup iterations untimed) and peak GPU memory."""
    import torch
    from detectron2.engine import default_argument_parser

    from panoptic_depthlab.engine import load_config, setup

    sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
    from train_throughput import TIMES_FILE, BenchTrainer  # no eval / checkpoint hooks

    parsed = default_argument_parser().parse_args(
        ["--config-file", args.config, "--num-gpus", "1", *args.opts]
    )
    changed = sorted(sync_bn_keys(load_config(parsed)))
    for key in changed:  # one process: nothing to synchronize
        parsed.opts += [key, "BN"]
    cfg = setup(parsed)
    note(f"SyncBN -> BN on 1 GPU: {', '.join(changed) or 'none was SyncBN'}")
    note(
        f"train bench: {args.config}, device {cfg.MODEL.DEVICE}, AMP {cfg.SOLVER.AMP.ENABLED}, "
        f"batch {cfg.SOLVER.IMS_PER_BATCH}, crop {tuple(cfg.INPUT.CROP.SIZE)}, "
        f"{cfg.SOLVER.MAX_ITER} iterations ({args.warmup} untimed), "
        f"{cfg.DATALOADER.NUM_WORKERS} loader workers"
    )
    cuda = cfg.MODEL.DEVICE.startswith("cuda")
    trainer = BenchTrainer(cfg)
    trainer.resume_or_load(resume=False)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    with open(os.path.join(cfg.OUTPUT_DIR, TIMES_FILE)) as f:
        times = json.load(f)
    ends = times["ends"]
    if len(ends) != cfg.SOLVER.MAX_ITER:
        raise SystemExit(f"{len(ends)} iterations recorded of {cfg.SOLVER.MAX_ITER}")
    timed = len(ends) - args.warmup
    per_iter = (ends[-1] - ends[args.warmup - 1]) / timed
    data = times["data_time"][args.warmup :]
    batch = cfg.SOLVER.IMS_PER_BATCH
    figure("train_bench_iters_per_s", f"{1 / per_iter:.3f}", "it/s")
    figure("train_bench_pairs_per_s", f"{batch / per_iter:.2f}", "frame-pairs/s")
    figure("train_bench_s_per_iter", f"{per_iter:.4f}", "s")
    if data:
        figure("train_bench_data_time", f"{sum(data) / len(data):.4f}", "s/iter")
    if cuda:
        figure("train_bench_peak_mem_allocated", torch.cuda.max_memory_allocated() >> 20, "MiB")
        figure("train_bench_peak_mem_reserved", torch.cuda.max_memory_reserved() >> 20, "MiB")


def test_frames(frames_dir, height, width, count):
    """BGR frames of the synthetic val set resized to (height, width), else noise."""
    import cv2
    import numpy as np

    paths = sorted(glob.glob(os.path.join(frames_dir or "", "*_leftImg8bit.png")))
    frames = [cv2.resize(cv2.imread(p), (width, height)) for p in paths[:count]]
    if not frames:
        note(f"no frames in {frames_dir}: timing random noise")
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (height, width, 3), np.uint8) for _ in range(count)]
    return frames


def infer_bench(args):
    """Frames/s of Predictor (eager, or from an exported folder) on one video."""
    import torch

    from panoptic_depthlab import Predictor

    device, label = args.device, args.label
    if args.exported and label == "onnx" and device.startswith("cuda"):
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        note(f"onnxruntime {onnxruntime.__version__} providers: {', '.join(providers)}")
        if "CUDAExecutionProvider" not in providers:
            note("no CUDAExecutionProvider (onnxruntime-gpu not installed): ONNX timed on CPU")
            device, label = "cpu", "onnx_cpu"
            args.warmup, args.frames = 1, 3
    start = time.perf_counter()
    if args.exported:
        predictor = Predictor.from_exported(args.exported, device=device)
    else:
        from panoptic_depthlab.engine import load_config

        opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device]
        predictor = Predictor(load_config(argparse.Namespace(config_file=args.config, opts=opts)))
    figure(f"infer_{label}_load", f"{time.perf_counter() - start:.2f}", "s")
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    height, width = args.size
    frames = test_frames(args.frames_dir, height, width, args.warmup + args.frames)
    predictor.reset()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup):
        predictor(frames[i % len(frames)])
        sync()
    start = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.frames):
        outputs = predictor(frames[i % len(frames)])
        sync()
    seconds = time.perf_counter() - start
    ids, segments = outputs["panoptic_seg"]
    shapes = (tuple(ids.shape), tuple(outputs["depth"].shape))
    if shapes != ((height, width), (height, width)):
        raise SystemExit(f"outputs of shapes {shapes}; expected {(height, width)} each")
    figure(f"infer_{label}_fps", f"{args.frames / seconds:.3f}", "frames/s")
    figure(f"infer_{label}_latency", f"{1000 * seconds / args.frames:.1f}", "ms/frame")
    if cuda and not (args.exported and label.startswith("onnx")):
        figure(f"infer_{label}_peak_mem_allocated", torch.cuda.max_memory_allocated() >> 20, "MiB")
    note(
        f"infer {label}: {args.frames} frames of {height}x{width} on {device} after "
        f"{args.warmup} untimed; last frame: {len(segments)} segments"
    )


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("eval-figures")
    p.add_argument("--prefix", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--compare")
    p = commands.add_parser("train-bench")
    p.add_argument("--config", required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("opts", nargs=argparse.REMAINDER)
    p = commands.add_parser("infer-bench")
    p.add_argument("--label", required=True)
    p.add_argument("--config")
    p.add_argument("--exported")
    p.add_argument("--device", required=True)
    p.add_argument("--size", type=int, nargs=2, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--frames-dir")
    args = parser.parse_args()
    {"eval-figures": eval_figures, "train-bench": train_bench, "infer-bench": infer_bench}[
        args.command
    ](args)


if __name__ == "__main__":
    main()
PYEOF

echo "work folder: $WORK"
figure gpus "$GPUS" devices

# ---- 1: synthetic data --------------------------------------------------------------------
DATA_OK=1
run_step 1-data-train "synthetic train split, ${DATA_H}x${DATA_W}" 90 \
    "$PY" tools/make_synthetic_dvps.py --format cityscapes_dvps --out "$DATA" --split train \
    --sequences 8 --frames 4 --height "$DATA_H" --width "$DATA_W" --seed 0 || DATA_OK=0
run_step 1-data-val "synthetic val split, ${DATA_H}x${DATA_W}" 60 \
    "$PY" tools/make_synthetic_dvps.py --format cityscapes_dvps --out "$DATA" --split val \
    --sequences 2 --frames 4 --height "$DATA_H" --width "$DATA_W" --seed 1 || DATA_OK=0

# ---- 2: 1-GPU training smoke run ------------------------------------------------------------
TRAIN1=$WORK/train1
if ((DATA_OK)); then
    if run_step 2-train-1gpu "1-process training, AMP, ${SMOKE_ITERS} iterations" 150 \
        "$PY" tools/train_net.py --config-file "$SMALL_CONFIG" --num-gpus 1 \
        SOLVER.AMP.ENABLED True SOLVER.MAX_ITER "$SMOKE_ITERS" SOLVER.CHECKPOINT_PERIOD 10 \
        VIS_PERIOD 10 MODEL.DEVICE "$DEVICE" INPUT.CROP.SIZE "$SMOKE_CROP" \
        DATALOADER.NUM_WORKERS 4 SEED 0 OUTPUT_DIR "$TRAIN1"; then
        collect 2-figures "$PY" "$HELPER" eval-figures --prefix train1_final \
            --results "$TRAIN1/$VAL_RESULTS"
    fi
else
    skip 2-train-1gpu "no data"
fi

# ---- 3: 2-process training smoke run --------------------------------------------------------
if ((!DATA_OK)); then
    skip 3-train-2proc "no data"
elif ((GPUS >= 2)); then
    run_step 3-train-2proc "2 processes on 2 GPUs (NCCL), AMP" 150 \
        "$PY" tools/train_net.py --config-file "$SMALL_CONFIG" --num-gpus 2 \
        SOLVER.AMP.ENABLED True SOLVER.MAX_ITER "$SMOKE_ITERS" MODEL.DEVICE cuda \
        INPUT.CROP.SIZE "$SMOKE_CROP" DATALOADER.NUM_WORKERS 4 SEED 0 \
        OUTPUT_DIR "$WORK/train2" || true
else
    note "${GPUS} GPU(s): the 2-process run goes on CPU over gloo (NCCL refuses two processes" \
        "on one GPU), ${CPU_ITERS} iterations at ${CPU_CROP} crops"
    run_step 3-train-2proc "2 CPU processes over gloo (CUDA_VISIBLE_DEVICES='')" 120 \
        env CUDA_VISIBLE_DEVICES= "$PY" tools/train_net.py --config-file "$SMALL_CONFIG" \
        --num-gpus 2 MODEL.DEVICE cpu SOLVER.MAX_ITER "$CPU_ITERS" INPUT.CROP.SIZE "$CPU_CROP" \
        VIS_PERIOD 0 SEED 0 OUTPUT_DIR "$WORK/train2" || true
fi

# ---- 4: --eval-only of step 2's checkpoint ---------------------------------------------------
if [[ -f $TRAIN1/model_final.pth ]]; then
    # the training crop size too: ASPP pools over a window of it at inference
    if run_step 4-eval-only "--eval-only of $TRAIN1/model_final.pth on val" 90 \
        "$PY" tools/train_net.py --config-file "$SMALL_CONFIG" --eval-only \
        MODEL.WEIGHTS "$TRAIN1/model_final.pth" MODEL.DEVICE "$DEVICE" \
        INPUT.CROP.SIZE "$SMOKE_CROP" OUTPUT_DIR "$WORK/eval1"; then
        compare=()
        if [[ -f $TRAIN1/$VAL_RESULTS ]]; then
            compare=(--compare "$TRAIN1/$VAL_RESULTS")
        fi
        collect 4-figures "$PY" "$HELPER" eval-figures --prefix eval_only \
            --results "$WORK/eval1/$VAL_RESULTS" "${compare[@]}"
    fi
else
    skip 4-eval-only "step 2 wrote no model_final.pth"
fi

# ---- 5: training throughput and memory of configs/vip_depth.yaml -----------------------------
if ((DATA_OK)); then
    run_step 5-train-bench "vip_depth.yaml: ${BENCH_ITERS} iterations, batch ${BENCH_BATCH}" 150 \
        "$PY" "$HELPER" train-bench --config "$BIG_CONFIG" --warmup "$BENCH_WARMUP" \
        MODEL.WEIGHTS "" MODEL.DEVICE "$DEVICE" SOLVER.AMP.ENABLED True \
        SOLVER.IMS_PER_BATCH "$BENCH_BATCH" SOLVER.MAX_ITER "$BENCH_ITERS" \
        INPUT.CROP.SIZE "$BENCH_CROP" DATASETS.TRAIN "('synthetic_cityscapes_dvps_train',)" \
        DATASETS.TEST "()" TEST.EVAL_PERIOD 0 VIS_PERIOD 0 SOLVER.CHECKPOINT_PERIOD 1000000 \
        DATALOADER.NUM_WORKERS "$BENCH_WORKERS" SEED 0 OUTPUT_DIR "$WORK/bench" || true
else
    skip 5-train-bench "no data"
fi

# ---- 6: inference frames/s, eager and exported -----------------------------------------------
infer() { # infer LABEL LIMIT_S ARGS...: time Predictor on INFER_HxINFER_W frames
    local label=$1 limit=$2
    shift 2
    run_step "6-infer-$label" "Predictor ($label), ${INFER_H}x${INFER_W}" "$limit" \
        "$PY" "$HELPER" infer-bench --label "$label" --device "$DEVICE" \
        --size "$INFER_H" "$INFER_W" --warmup "$INFER_WARMUP" --frames "$INFER_FRAMES" \
        --frames-dir "$DATA/video_sequence/val" "$@" || true
}
export_model() { # export_model FORMAT LIMIT_S: tools/export_model.py to $WORK/export_FORMAT
    run_step "6-export-$1" "tools/export_model.py --format $1, ${INFER_H}x${INFER_W}" "$2" \
        "$PY" tools/export_model.py --config-file "$BIG_CONFIG" --format "$1" \
        --output "$WORK/export_$1" --sample-size "$INFER_H" "$INFER_W" \
        MODEL.WEIGHTS "" MODEL.DEVICE "$DEVICE"
}
infer eager 120 --config "$BIG_CONFIG"
for format in onnx pt2; do
    if export_model "$format" 180; then
        infer "$format" 120 --exported "$WORK/export_$format"
    else
        skip "6-infer-$format" "no $format export"
    fi
done

# ---- summary --------------------------------------------------------------------------------
echo
echo "==== SUMMARY  (${SECONDS} s of ${BUDGET_S} s; work folder $WORK)"
cat "$STATUS"
echo
cat "$NOTES"
echo
cat "$FIGURES"
if grep -qvE ' OK \(' "$STATUS"; then
    echo "gpu_check: FAILED: a step failed, timed out or was skipped (above; logs in $LOGS)."
    exit 1
fi
echo "gpu_check: every step passed."
