#!/usr/bin/env bash
# Multi-GPU checks on a machine with >= 2 GPUs bootstrapped by scripts/gpu_bootstrap.sh:
#   bash scripts/gpu_bootstrap.sh -- bash scripts/gpu_multigpu.sh
# 1. step time and memory per GPU, 1 vs 2 GPUs, same global batch (scripts/benchmark_ddp.py);
# 2. `nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainerSegResMamba_1epochs -num_gpus 2` on Hippocampus, then
#    its checkpoint predicts fold 0's validation cases on one GPU and on the CPU;
# 3. the five folds in parallel, one per GPU, with a short variant, then find_best_configuration.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUT:-$ROOT/multigpu_out}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
WORK=${WORK:-/tmp/hippocampus}
export nnUNet_raw=$WORK/raw nnUNet_preprocessed=$WORK/preprocessed nnUNet_results=$WORK/results
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-8}
DS=Dataset004_Hippocampus
mkdir -p "$OUTDIR"

timeout 150 python3 "$ROOT/scripts/benchmark_ddp.py" --out "$OUTDIR" ${DDP_BENCH_ARGS:-} || echo "[multigpu] DDP benchmark failed"

if [ ! -d "$nnUNet_preprocessed/$DS" ]; then
  mkdir -p "$nnUNet_raw" && tar -xJf "$ROOT/.gpudata/hippocampus.tar.xz" -C "$nnUNet_raw"
  gzip -1 "$nnUNet_raw/$DS"/imagesTr/*.nii "$nnUNet_raw/$DS"/labelsTr/*.nii
  nnUNetv2_plan_and_preprocess -d 4 -c 3d_fullres -np 16 > "$WORK/preprocess.log"
fi

TRAINER=nnUNetTrainerSegResMamba_1epochs
t0=$(date +%s)
timeout 240 nnUNetv2_train 4 3d_fullres 0 -tr $TRAINER -num_gpus 2 2>&1 | tee "$WORK/ddp_train.log" | grep -E "Epoch|Pseudo|energy|Mean Validation|rror|worker" || true
echo "[multigpu] DDP training took $(( $(date +%s) - t0 )) s"
images=$WORK/val_images_10 && rm -rf "$images" && mkdir -p "$images"
for case in $(python3 -c "import json; print(' '.join(sorted(json.load(open('$nnUNet_preprocessed/$DS/splits_final.json'))[0]['val'])[:${PRED_CASES:-10}]))"); do
  cp "$nnUNet_raw/$DS/imagesTr/${case}_0000.nii.gz" "$images/"
done
for device in cuda cpu; do
  pred=$WORK/ddp_pred_$device
  CUDA_VISIBLE_DEVICES=0 nnUNetv2_predict -i "$images" -o "$pred" -d 4 -c 3d_fullres -tr $TRAINER -f 0 -device $device --disable_tta > /dev/null 2>&1
  nnUNetv2_evaluate_folder "$nnUNet_raw/$DS/labelsTr" "$pred" -djfile "$pred/dataset.json" -pfile "$pred/plans.json" --chill > /dev/null
  python3 -c "import json; s=json.load(open('$pred/summary.json')); print('[multigpu] DDP checkpoint predicted on $device:', len(s['metric_per_case']), 'cases, mean Dice', round(s['foreground_mean']['Dice'], 4))"
done
cp "$nnUNet_results/$DS/${TRAINER}__nnUNetPlans__3d_fullres/fold_0/energy.json" "$OUTDIR/ddp_energy.json" 2>/dev/null || true

t0=$(date +%s)
# DEADLINE (epoch seconds) bounds the whole script inside a device call; the folds get what is left.
left=$(( ${DEADLINE:-$(( t0 + 600 ))} - t0 - 15 ))
timeout -s INT $left python3 "$ROOT/scripts/train_folds.py" 4 ${FOLDS_TRAINER:-nnUNetTrainerSegResMamba_Demo} \
  --logs "$WORK/fold_logs" ${FOLDS_ARGS:-} || echo "[multigpu] parallel folds did not all finish"
echo "[multigpu] parallel folds took $(( $(date +%s) - t0 )) s"
grep -h "Mean Validation Dice" "$WORK"/fold_logs/*.log || true
