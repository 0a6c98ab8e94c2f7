#!/usr/bin/env python3
"""Submit nnU-Net trainings (trainers x configurations x folds) to SLURM as one job array, then a job that
runs nnUNetv2_find_best_configuration and scripts/compare.py once every training succeeded.

    python scripts/slurm_submit.py DATASET -tr TRAINER [TRAINER ...] [-c 3d_fullres ...] [-f 0 1 2 3 4]
        [-p nnUNetPlans] [--device cuda|cpu] [--num-gpus N] [--gpus-per-task G]
        [--partition P] [--account A] [--time 2-00:00:00] [--mem 64G] [--cpus-per-task C]
        [--max-parallel K] [--sbatch OPTION ...] [--job-name NAME] [--logs DIR] [--comparison DIR] [--dry-run]

Before it writes anything it resolves every trainer through nnU-Net's own lookup (nnUNet_extTrainer included)
and checks every configuration against the plans and against what each trainer can build (SegResMamba: 3D
only); a mistake stops it with exit code 2 and the valid names.
Run it where nnUNet_raw, nnUNet_preprocessed and nnUNet_results are set, after nnUNetv2_plan_and_preprocess;
the jobs get every nnUNet_* and SEGRESMAMBA_* variable of this shell and run this environment's nnU-Net
commands, so both must be reachable from the compute nodes (a shared file system).
Each array task runs `nnUNetv2_train DATASET CONF FOLD -tr TRAINER -p PLANS --npz`, with `-num_gpus N` when
N > 1, on a node with --gpus-per-task GPUs (default N; 0 writes no --gres line). Once the jobs have ended, run
the same command again after a failure, a time limit or a scancel: finished trainings (checkpoint_final.pth and the
validation summary written) are skipped, the others resume with `--c`. --dry-run prints the sbatch scripts instead.
Job logs go to --logs; the comparison (compare.py) to --comparison/<configuration>.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunetv2_segresmamba.cluster.checks import check_submission  # noqa: E402
from nnunetv2_segresmamba.cluster.slurm import SbatchOptions, dry_run_text, prepare, submit  # noqa: E402
from nnunetv2_segresmamba.cluster.trainings import (find_best_command, nnunet_folder, training_matrix,  # noqa: E402
                                                    training_states)

COMPARE = Path(__file__).resolve().with_name("compare.py")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="id or name, as for nnUNetv2_train")
    parser.add_argument("-tr", "--trainers", nargs="+", required=True)
    parser.add_argument("-c", "--configurations", nargs="+", default=["3d_fullres"])
    parser.add_argument("-f", "--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--num-gpus", type=int, default=1, help="nnUNetv2_train -num_gpus (DDP) in each task")
    parser.add_argument("--gpus-per-task", type=int, default=None, help="--gres=gpu:G per task (default: --num-gpus)")
    parser.add_argument("--partition")
    parser.add_argument("--account")
    parser.add_argument("--time", help="time limit of each task, e.g. 2-00:00:00")
    parser.add_argument("--mem", help="memory per node, e.g. 64G")
    parser.add_argument("--cpus-per-task", type=int)
    parser.add_argument("--max-parallel", type=int, help="run at most this many tasks at once (--array=...%%K)")
    parser.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                        help="one more #SBATCH line for both jobs, e.g. --sbatch qos=high (repeatable)")
    parser.add_argument("--job-name", default="nnunet")
    parser.add_argument("--logs", type=Path, default=Path("slurm_logs"))
    parser.add_argument("--comparison", type=Path, default=None, help="compare.py output (default: LOGS/comparison)")
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch scripts, submit nothing")
    args = parser.parse_args(argv)
    if args.num_gpus < 1:
        parser.error("--num-gpus must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = SbatchOptions(logs=args.logs, job_name=args.job_name, partition=args.partition, account=args.account,
                            time=args.time, mem=args.mem, cpus_per_task=args.cpus_per_task,
                            gpus_per_task=args.num_gpus if args.gpus_per_task is None else args.gpus_per_task,
                            max_parallel=args.max_parallel, extra=tuple(args.sbatch))
    comparison = (args.comparison or args.logs / "comparison").absolute()
    try:
        # Before anything is written: names as nnUNetv2_train resolves them, configurations the trainers can build.
        check_submission(args.dataset, args.plans, args.configurations, args.trainers)
        trainings = training_matrix(args.dataset, args.trainers, args.configurations, args.folds, args.plans)
        states = training_states(trainings)
        summary = [find_best_command(args.dataset, args.trainers, args.configurations, args.folds, args.plans)]
        summary += [[sys.executable, str(COMPARE), "--results", str(nnunet_folder("nnUNet_results")),
                     "--dataset", args.dataset, "--trainers", *args.trainers, "--plans", args.plans,
                     "--configuration", configuration, "--out", str(comparison / configuration)]
                    for configuration in args.configurations]
        submission = prepare(states, options, summary, device=args.device, num_gpus=args.num_gpus)
    except (RuntimeError, ValueError, FileNotFoundError) as error:  # FileNotFoundError: nnU-Net not installed
        print(f"error: {error}", file=sys.stderr)
        return 2
    for training in submission.skipped:
        print(f"finished, skipped: {training.label()}")
    for task in submission.tasks:
        print(f"{'resumes with --c' if task.resume else 'new'}: {task.training.label()}")
    if args.dry_run:
        print(dry_run_text(submission))
        return 0
    try:
        array_id, summary_id = submit(submission, options)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if array_id is None:
        print(f"every training is finished: summary job {summary_id}")
    else:
        print(f"array job {array_id} ({len(submission.tasks)} tasks), then summary job {summary_id}")
    print(f"logs: {args.logs.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
