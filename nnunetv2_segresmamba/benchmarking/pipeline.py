"""Real ``nnUNetv2_train`` runs, one trainer after the other on one GPU, compared by median epoch time, GPU
utilisation and peak memory (recorded by the trainers in training/variants/benchmarking.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ..nnunet_cli import nnunet_command
from .pipeline_trainer import RESULT_FILE
from .report import add_ratios, markdown_table

DEFAULT_TRAINERS = ("nnUNetTrainerBenchmarkPipeline_5epochs", "nnUNetTrainerSegResMambaBenchmark_5epochs")
COLUMNS = ["trainer", "median_epoch_s", "median_epoch_s_ratio", "first_epoch_s", "first_epoch_s_ratio",
           "compile_s", "fastest_epoch_s", "gpu_util_pct", "peak_mem_GiB",
           "peak_mem_GiB_ratio", "peak_reserved_GiB", "peak_reserved_GiB_ratio", "batch_size",
           "iterations_per_epoch", "compiled"]


def train_and_collect(dataset: str, configuration: str, trainer: str, plans: str, log: Path) -> dict:
    """Runs ``nnUNetv2_train DATASET CONFIGURATION 0 -tr TRAINER -p PLANS`` and returns its recorded figures."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    command = [nnunet_command("nnUNetv2_train"), dataset, configuration, "0", "-tr", trainer, "-p", plans]
    print("$", " ".join(command[1:]), f"(log: {log})", flush=True)
    start = time.time()
    with open(log, "w") as handle:
        subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    folder = Path(get_output_folder(maybe_convert_to_dataset_name(dataset), trainer, plans, configuration, 0))
    result_file = folder / RESULT_FILE
    if not result_file.is_file() or result_file.stat().st_mtime < start:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{trainer} wrote no {RESULT_FILE}; last lines of {log}:\n{tail}")
    return json.loads(result_file.read_text())


def run(dataset: str, configuration: str, trainers: list[str], plans: str, logs: Path) -> dict:
    """The report: device, dataset, command and one row per trainer with ratios against the first."""
    logs.mkdir(parents=True, exist_ok=True)
    rows = [train_and_collect(dataset, configuration, trainers[0], plans, logs / f"{trainers[0]}.log")]
    for trainer in trainers[1:]:
        try:
            rows.append(train_and_collect(dataset, configuration, trainer, plans, logs / f"{trainer}.log"))
        except RuntimeError as error:  # the others' figures still count; the table says which one failed
            print(error, flush=True)
            rows.append(dict(trainer=trainer, device=rows[0]["device"], error=str(error).splitlines()[0]))
    add_ratios(rows, {"trainer": trainers[0]},
               ["median_epoch_s", "first_epoch_s", "peak_mem_GiB", "peak_reserved_GiB"], [])
    return dict(device=rows[0]["device"], dataset=dataset, configuration=configuration, plans=plans,
                command=" ".join(sys.argv), date=time.strftime("%Y-%m-%d %H:%M"), rows=rows)


def write(report: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(report, indent=1))
    columns = COLUMNS + (["error"] if any("error" in row for row in report["rows"]) else [])
    table = (f"Device: {report['device']}; dataset {report['dataset']} {report['configuration']}, fold 0; "
             f"`{report['command']}`\n\n" + markdown_table(report["rows"], columns))
    (out / "pipeline.md").write_text(table + "\n")
    return table
