#!/usr/bin/env python3
"""Train the five folds in parallel, one fold per visible GPU at a time, then find the best configuration.

    python scripts/train_folds.py DATASET TRAINER [TRAINER ...] [--configuration 3d_fullres]
                                  [--folds 0 1 2 3 4] [--gpus 0 1] [--per-gpu 1] [--cpu-jobs N]
                                  [--plans nnUNetPlans] [--logs DIR]

Each fold runs as its own stock `nnUNetv2_train DATASET CONF FOLD -tr TRAINER --npz` with
CUDA_VISIBLE_DEVICES set to one GPU; when a fold finishes, the next waiting fold takes its GPU. Several
trainers share the same slots, their folds queued trainer after trainer. --per-gpu N
trains N folds at a time on each GPU: at small patches one training leaves most of a large GPU idle. Folds
that shared a GPU say so in their energy.json, and scripts/compare.py takes epoch time and energy only from
folds that had their GPU to themselves: train at least one fold alone for those columns. Then
`nnUNetv2_find_best_configuration DATASET -c CONF -tr TRAINER [TRAINER ...] -f FOLDS` runs on the folds that
every trainer finished.
Run it again after an interruption: finished folds (checkpoint_final.pth and the validation summary
written) are skipped, the others resume with `--c`. On a SLURM cluster, use scripts/slurm_submit.py.
Logs: one file per training under --logs (fold_F.log; TRAINER_fold_F.log with several trainers). At the end it
prints how many trainings finished per hour with that many at once (to choose --per-gpu by). Exit code 1
if any training failed (the others still run).
--cpu-jobs N trains N folds at a time with `-device cpu` instead (small trainers, tests).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunetv2_segresmamba.cluster.trainings import (State, Training, find_best_command,  # noqa: E402
                                                    training_matrix, training_states)


def visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [g for g in listed.split(",") if g.strip()]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())]


def training_slots(gpus: list[str], per_gpu: int, cpu_jobs: int) -> dict[str, dict[str, str]]:
    """Each slot trains one fold at a time: its name, and what it adds to the fold's environment. With cpu_jobs,
    that many CPU slots; else per_gpu slots on each GPU, the GPUs taken in turn so that folds spread over them."""
    if cpu_jobs > 0:
        return {f"CPU job {i}": {} for i in range(cpu_jobs)}
    if per_gpu == 1:
        return {f"GPU {gpu}": {"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus}
    return {f"GPU {gpu} job {job}": {"CUDA_VISIBLE_DEVICES": gpu} for job in range(per_gpu) for gpu in gpus}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("trainers", nargs="+", metavar="TRAINER")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--gpus", nargs="+", default=None, help="GPU ids (default: all visible)")
    parser.add_argument("--per-gpu", type=int, default=1, help="folds trained at once on each GPU (default 1)")
    parser.add_argument("--cpu-jobs", type=int, default=0, help="train on the CPU, this many folds at a time")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--logs", type=Path, default=Path("fold_logs"))
    args = parser.parse_args()

    on_cpu = args.cpu_jobs > 0
    if args.per_gpu < 1:
        parser.error(f"--per-gpu must be 1 or more, not {args.per_gpu}")
    slots = training_slots([] if on_cpu else (args.gpus or visible_gpus()), args.per_gpu, args.cpu_jobs)
    if not slots:
        parser.error("no GPU visible: set CUDA_VISIBLE_DEVICES, pass --gpus, or train on the CPU with --cpu-jobs N")
    try:
        states = training_states(training_matrix(args.dataset, args.trainers, [args.configuration], args.folds,
                                                 args.plans))
    except (RuntimeError, ValueError) as error:
        parser.error(str(error))
    args.logs.mkdir(parents=True, exist_ok=True)
    several = len(args.trainers) > 1

    def name(training: Training) -> str:  # how the messages call a training
        return f"{training.trainer} fold {training.fold}" if several else f"fold {training.fold}"

    def log_file(training: Training) -> Path:
        return args.logs / (f"{training.trainer}_fold_{training.fold}.log" if several else f"fold_{training.fold}.log")

    done = [t for t, state in states.items() if state == State.FINISHED]
    waiting = [t for t, state in states.items() if state != State.FINISHED]
    running, failed = {}, []
    for training in done:
        print(f"{name(training)}: finished already, skipped", flush=True)
    queued = [t.fold for t in waiting] if not several else [f"{t.trainer} {t.fold}" for t in waiting]
    print(f"folds {queued} on {', '.join(slots)}", flush=True)
    started, skipped = time.time(), len(done)
    while waiting or running:
        for slot in [s for s in slots if s not in running]:
            if not waiting:
                break
            training = waiting.pop(0)
            resume = states[training] == State.RESUMABLE
            log = open(log_file(training), "a" if resume else "w")
            command = training.command(resume, device="cpu" if on_cpu else "cuda")
            process = subprocess.Popen(command, env={**os.environ, **slots[slot]}, stdout=log, stderr=subprocess.STDOUT)
            running[slot] = (training, process, time.time())
            print(f"{name(training)} {'resumed with --c' if resume else 'started'} on {slot}", flush=True)
        time.sleep(2)
        for slot, (training, process, start) in list(running.items()):
            if process.poll() is not None:
                del running[slot]
                (done if process.returncode == 0 else failed).append(training)
                print(f"{name(training)} on {slot}: {'done' if process.returncode == 0 else 'FAILED'} "
                      f"after {time.time() - start:.0f} s (log {log_file(training)})", flush=True)
    trained = len(done) - skipped
    if trained:  # what --per-gpu is chosen by: trainings finished per hour with this many at once
        hours = (time.time() - started) / 3600
        print(f"{trained} training{'s' if trained > 1 else ''} finished in {hours * 60:.1f} min with "
              f"{len(slots)} at once: {trained / hours:.2f} per hour", flush=True)
    # find_best_configuration compares the trainers on the same folds: those that every trainer finished.
    common = sorted(set.intersection(*({t.fold for t in done if t.trainer == trainer} for trainer in args.trainers)))
    if common:
        subprocess.run(find_best_command(args.dataset, args.trainers, [args.configuration], common, args.plans),
                       check=not failed)
    elif done:
        print("no fold finished for every trainer: nnUNetv2_find_best_configuration not run", flush=True)
    if failed:
        print(f"failed: {', '.join(name(t) for t in failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
