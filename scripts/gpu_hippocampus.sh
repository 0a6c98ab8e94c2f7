#!/usr/bin/env bash
# A short real training run on the shared Hippocampus data (fold 0), on a GPU machine bootstrapped by
# scripts/gpu_bootstrap.sh. Usage, with .whl/ and .gpudata/ carried (see docs/gpu.md):
#
#   bash scripts/gpu_bootstrap.sh -- bash scripts/gpu_hippocampus.sh TRAINER [TRAINER ...]
#
# .gpudata/hippocampus.tar.xz holds ../shared/data/Dataset004_Hippocampus with its volumes un-gzipped
# (11 MB as xz instead of 16 MB as .nii.gz); they are gzipped back here. For each TRAINER: train fold 0
# (nnU-Net's final validation included), then predict fold 0's validation cases without test-time
# mirroring twice from the same checkpoint: on the GPU (CUDA scan backend) and on the CPU (torch scan
# backend), and evaluate both. The wall time of each nnUNetv2_predict call goes into the fold's
# inference_time.json (the format nnunetv2_segresmamba/comparison.py documents and scripts/compare.py
# reads: the GPU run at the top level, both runs under "runs"). Results (small files) are packed into
# $OUT/hippocampus_results.tar.gz.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/hippocampus}
OUTDIR=${OUT:-$ROOT/hippocampus_out}
mkdir -p "$WORK" "$OUTDIR"
export nnUNet_raw=$WORK/raw nnUNet_preprocessed=$WORK/preprocessed nnUNet_results=$WORK/results
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-12}
DS=Dataset004_Hippocampus

pack_results() {  # logs, summaries, plots, energy: everything but weights, probabilities and images
  (cd "$WORK" && tar -czf "$OUTDIR/hippocampus_results.tar.gz" --exclude="*.pth" --exclude="*.npz" \
     --exclude="*.nii.gz" --exclude="*.pkl" results $(ls -d eval_* 2>/dev/null)) || true
}
trap pack_results EXIT

# write_inference_time FOLD_FOLDER TORCH_DEVICE DEVICE_NAME CASES SECONDS [TORCH_DEVICE DEVICE_NAME CASES SECONDS ...]
# One inference_time.json for the runs so far (no TTA); the first run is the top level, read by compare.py.
write_inference_time() {
  python3 - "$@" <<'PY'
import json, sys
from pathlib import Path
folder, values = Path(sys.argv[1]), sys.argv[2:]
runs = [{"device": name, "torch_device": torch_device, "cases": int(cases), "seconds": round(float(seconds), 2),
         "tta": False} for torch_device, name, cases, seconds in zip(*[iter(values)] * 4)]
record = dict(runs[0], measured="wall time of one nnUNetv2_predict process (-f 0 --disable_tta) over the fold's "
              "validation cases: process start-up, checkpoint loading, preprocessing, sliding-window prediction "
              "and export included", command="scripts/gpu_hippocampus.sh", runs=runs)
(folder / "inference_time.json").write_text(json.dumps(record, indent=1) + "\n")
PY
}

if [ ! -d "$nnUNet_preprocessed/$DS" ]; then
  mkdir -p "$nnUNet_raw" && tar -xJf "$ROOT/.gpudata/hippocampus.tar.xz" -C "$nnUNet_raw"
  gzip -1 "$nnUNet_raw/$DS"/imagesTr/*.nii "$nnUNet_raw/$DS"/labelsTr/*.nii
  nnUNetv2_plan_and_preprocess -d 4 -c 3d_fullres -np 16
fi

GPU_NAME=$(python3 -c "import torch; print(torch.cuda.get_device_name())")
CPU_NAME=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
CPU_NAME="${CPU_NAME:-CPU} ($(nproc) threads)"

for TRAINER in "$@"; do
  start=$(date +%s)
  nnUNetv2_train 4 3d_fullres 0 -tr "$TRAINER"
  echo "[hippocampus] $TRAINER trained in $(( $(date +%s) - start )) s"
  images=$WORK/val_images
  rm -rf "$images" && mkdir -p "$images"
  for case in $(python3 -c "import json; print(' '.join(json.load(open('$nnUNet_preprocessed/$DS/splits_final.json'))[0]['val']))"); do
    cp "$nnUNet_raw/$DS/imagesTr/${case}_0000.nii.gz" "$images/"
  done
  fold=$nnUNet_results/$DS/${TRAINER}__nnUNetPlans__3d_fullres/fold_0
  runs=()
  for device in cuda cpu; do
    pred=$WORK/eval_${TRAINER}_$device
    t0=$(date +%s.%N)
    nnUNetv2_predict -i "$images" -o "$pred" -d 4 -c 3d_fullres -tr "$TRAINER" -f 0 -device $device --disable_tta
    seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    cases=$(find "$pred" -maxdepth 1 -name "*.nii.gz" | wc -l)
    echo "[hippocampus] $TRAINER predicted $cases of $(ls "$images" | wc -l) cases on $device in $seconds s"
    if [ "$device" = cuda ]; then name=$GPU_NAME; else name=$CPU_NAME; fi
    runs+=("$device" "$name" "$cases" "$seconds")
    write_inference_time "$fold" "${runs[@]}"  # after each run, so a failing CPU run keeps the GPU's
    nnUNetv2_evaluate_folder "$nnUNet_raw/$DS/labelsTr" "$pred" -djfile "$pred/dataset.json" -pfile "$pred/plans.json" --chill > /dev/null
    python3 -c "import json; s=json.load(open('$pred/summary.json')); print('[hippocampus] $TRAINER $device Dice', {k: round(v['Dice'], 4) for k, v in s['mean'].items()}, 'mean', round(s['foreground_mean']['Dice'], 4))"
    find "$pred" -name "*.nii.gz" -delete
  done
done
