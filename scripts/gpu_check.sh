#!/usr/bin/env bash
# GPU smoke check of the cascade model's full preset: install, build a synthetic store of
# face-like crops with landmarks, train a few steps of `--preset full` (SBI's 384 px crops,
# batch 32) with online self-blending, CUDA and AMP, then evaluate; print samples/s and peak
# GPU memory. Falls back to --device cpu (and says so) when CUDA is absent.
#
#   scripts/gpu_check.sh [STEPS] [BACKBONE] [SIZE] [BATCH]
#   defaults:              30      efficientnet-lite0  384  32
# Env: PYTHON (default python), SKIP_INSTALL=1 to skip pip, WORK (default a temp folder).
set -euo pipefail
STEPS=${1:-30}
BACKBONE=${2:-efficientnet-lite0}
SIZE=${3:-384}
BATCH=${4:-32}
PYTHON=${PYTHON:-python}
WORK=${WORK:-$(mktemp -d)}
cd "$(dirname "$0")/.."

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
    "$PYTHON" -m pip install -q -r requirements.txt -e .
fi

"$PYTHON" - "$STEPS" "$BACKBONE" "$SIZE" "$BATCH" "$WORK" <<'PY'
import sys, time
import torch
from fusion.cascade.data import synthetic_faces_store
from fusion.cascade.config import PRESETS, TrainConfig
from fusion.cascade.inference import evaluate
from fusion.cascade.train import train

steps, backbone, size, batch, work = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if torch.cuda.is_available():
    device = "cuda"
    print(f"CUDA: {torch.cuda.get_device_name(0)}; training with AMP (fp16 autocast + GradScaler)")
else:
    device = "cpu"
    torch.set_num_threads(1)  # shared CPUs: one thread per process is much faster here
    steps = min(steps, 3)
    print("NO CUDA on this machine: falling back to --device cpu, float32, "
          f"{steps} steps only (numbers below are CPU numbers, not GPU ones)")
n = max(2 * batch * min(steps, 8), 64)
store = synthetic_faces_store(f"{work}/synthetic.h5", n=n, size=size, seed=0, splits=(0.8, 0.1, 0.1))
print(f"synthetic store: {store} ({n} samples, {size} px, landmarks)")
print(f"preset full: {PRESETS['full']} (epochs capped to 1 x {steps} steps here)")
config = TrainConfig(store=str(store), out=f"{work}/run", epochs=1, batch_size=batch, size=size,
                     backbone=backbone, device=device, max_steps=steps, amp=True, sbi="online")
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
result = train(config, progress=False)
row = result["history"][-1]
print(f"RESULT device={device} backbone={backbone} size={size} batch={batch} steps={steps}: "
      f"{row['samples_per_s']:.1f} train samples/s (epoch {row['seconds']:.1f} s, incl. warm-up); "
      f"total with validation {time.perf_counter() - t0:.1f} s")
metrics = evaluate(f"{work}/run", store, "test", f"{work}/eval", device=device, overlays=2,
                   n_boot=0)
loc = metrics["localization"]
print(f"eval on the test split: AUC {metrics['classification']['auc']:.3f}, IoU {loc['all']['iou']:.3f} "
      f"(prior {loc['prior']['all']['iou']:.3f}); a smoke check, not a result")
if device == "cuda":
    print(f"peak GPU memory (torch.cuda.max_memory_allocated): "
          f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
PY
