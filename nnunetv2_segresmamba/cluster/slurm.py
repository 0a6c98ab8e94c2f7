"""nnU-Net trainings as one SLURM job array, and a summary job that runs once every array task succeeded.

The array has one task per training still to do (finished ones are left out, interrupted ones resume with
``--c``), so the same command, run again after a failure, a preemption or a ``scancel``, submits exactly
what is left. The summary job runs ``nnUNetv2_find_best_configuration`` and the comparison; it depends on
the array with ``afterok`` and is cancelled by SLURM (``--kill-on-invalid-dep=yes``) when a task fails,
instead of waiting forever.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .trainings import State, Training

# Passed into the jobs explicitly (not only through sbatch's default --export=ALL, which clusters may turn
# off): nnU-Net's folders and settings, and this package's own settings.
PASSED_PREFIXES = ("nnUNet_", "SEGRESMAMBA_")


@dataclass
class SbatchOptions:
    """What goes into the #SBATCH lines. ``extra``: further sbatch options, e.g. ``("--qos=high",)``."""

    logs: Path
    job_name: str = "nnunet"
    partition: str | None = None
    account: str | None = None
    time: str | None = None
    mem: str | None = None
    cpus_per_task: int | None = None
    gpus_per_task: int = 1
    max_parallel: int | None = None
    extra: tuple[str, ...] = ()

    def directives(self, with_gpus: bool) -> list[str]:
        values = {"partition": self.partition, "account": self.account, "time": self.time, "mem": self.mem,
                  "cpus-per-task": self.cpus_per_task}
        lines = [f"#SBATCH --{name}={value}" for name, value in values.items() if value is not None]
        if with_gpus and self.gpus_per_task > 0:
            lines.append(f"#SBATCH --gres=gpu:{self.gpus_per_task}")
        lines += [f"#SBATCH {option if option.startswith('-') else '--' + option}" for option in self.extra]
        return lines


@dataclass
class ArrayTask:
    training: Training
    command: list[str]
    resume: bool


@dataclass
class Submission:
    """What one run of the submit command sends: the array (None when nothing is left to train)."""

    tasks: list[ArrayTask]
    skipped: list[Training]
    array_script: str | None
    summary_script: str


def passed_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items()) if k.startswith(PASSED_PREFIXES)}


def shell_line(command: list[str]) -> str:
    return " ".join(shlex.quote(str(part)) for part in command)


def _header(name: str, output: str, directives: list[str]) -> list[str]:
    return ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={output}", *directives]


def _exports(environment: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]


def render_array_script(tasks: list[ArrayTask], options: SbatchOptions, environment: dict[str, str],
                        with_gpus: bool) -> str:
    """One array task per training; ``$SLURM_ARRAY_TASK_ID`` picks the command."""
    if not tasks:
        raise ValueError("an array needs at least one training")
    throttle = f"%{options.max_parallel}" if options.max_parallel else ""
    lines = _header(f"{options.job_name}_train", str(options.logs.absolute() / "%x_%A_%a.out"),
                    [f"#SBATCH --array=0-{len(tasks) - 1}{throttle}", *options.directives(with_gpus)])
    lines += ["", "# One nnU-Net training per array task; '--c' resumes a training from its checkpoint.",
              "set -euo pipefail", *_exports(environment), "",
              'case "${SLURM_ARRAY_TASK_ID:?submit this script with sbatch}" in']
    for index, task in enumerate(tasks):
        lines += [f"  {index})  # {task.training.label()}{' (resumed)' if task.resume else ''}",
                  f"    command=({shell_line(task.command)}) ;;"]
    lines += ['  *) echo "no training for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac",
              'echo "$(hostname): ${command[*]}"',
              'exec "${command[@]}"', ""]
    return "\n".join(lines)


def render_summary_script(commands: list[list[str]], options: SbatchOptions, environment: dict[str, str]) -> str:
    """The job that runs after the array; no GPU: it evaluates and ensembles saved predictions."""
    lines = _header(f"{options.job_name}_summary", str(options.logs.absolute() / "%x_%j.out"),
                    options.directives(with_gpus=False))
    lines += ["", "set -euo pipefail", *_exports(environment), "", *map(shell_line, commands), ""]
    return "\n".join(lines)


def prepare(states: dict[Training, State], options: SbatchOptions, summary_commands: list[list[str]],
            device: str = "cuda", num_gpus: int = 1, environment: dict[str, str] | None = None) -> Submission:
    """The scripts for the trainings not finished yet (each with ``--c`` where it has a checkpoint)."""
    # 0 GPUs per task: no --gres line, for clusters that hand out GPUs another way (partition, --gpus).
    if device == "cuda" and 0 < options.gpus_per_task < num_gpus:
        raise ValueError(f"-num_gpus {num_gpus} needs at least {num_gpus} GPUs per array task "
                         f"(--gpus-per-task is {options.gpus_per_task})")
    environment = passed_environment() if environment is None else environment
    tasks = [ArrayTask(t, t.command(state == State.RESUMABLE, device, num_gpus), state == State.RESUMABLE)
             for t, state in states.items() if state != State.FINISHED]
    skipped = [t for t, state in states.items() if state == State.FINISHED]
    array = render_array_script(tasks, options, environment, with_gpus=device == "cuda") if tasks else None
    return Submission(tasks, skipped, array, render_summary_script(summary_commands, options, environment))


def dependency_flags(array_job_id: str) -> list[str]:
    return [f"--dependency=afterok:{array_job_id}", "--kill-on-invalid-dep=yes"]


def sbatch(script: str, flags: list[str] | None = None) -> str:
    """Submit ``script`` (given on stdin); returns the job id."""
    command = ["sbatch", "--parsable", *(flags or [])]
    try:
        result = subprocess.run(command, input=script, text=True, capture_output=True)
    except FileNotFoundError:
        raise RuntimeError("sbatch not found: submit from a machine of the SLURM cluster, or print the scripts "
                           "with --dry-run") from None
    if result.returncode != 0:
        raise RuntimeError(f"{shell_line(command)} failed with exit code {result.returncode}: "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]  # "jobid" or "jobid;cluster"


def submit(submission: Submission, options: SbatchOptions) -> tuple[str | None, str]:
    """Submits the array (if any) and the summary job after it; returns both job ids."""
    options.logs.mkdir(parents=True, exist_ok=True)  # SLURM does not create the folder of --output
    if submission.array_script is None:
        return None, sbatch(submission.summary_script)
    array_id = sbatch(submission.array_script)
    return array_id, sbatch(submission.summary_script, dependency_flags(array_id))


def dry_run_text(submission: Submission) -> str:
    """Both scripts, each after the sbatch command that would submit it."""
    parts = []
    if submission.array_script is not None:
        parts += ["# sbatch --parsable <<'EOF'", submission.array_script + "EOF", ""]
        flags = shell_line(dependency_flags("<job id of the array above>"))
        parts += [f"# sbatch --parsable {flags} <<'EOF'"]
    else:
        parts += ["# sbatch --parsable <<'EOF'"]
    parts += [submission.summary_script + "EOF"]
    return "\n".join(parts)
