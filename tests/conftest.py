"""Test-session set-up shared by every test module, and the fault-injection table printed at the end."""

import os
import shutil
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Without a GPU, Triton kernels run in Triton's interpreter (NumPy on the CPU): tests/test_triton_scan.py
    # then checks the kernels' logic in CI. Triton reads the flag when a kernel is defined, so set it first.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# For the suites that run nnU-Net's commands: one worker process per pool where nnU-Net would start up to 8 (export,
# ensembling, evaluation: nnUNet_def_n_proc; nnUNetv2_predict's preprocessing and export: nnUNet_npp, nnUNet_nps).
# Each worker is a fresh interpreter that imports torch and nnU-Net; on a small CI machine starting them costs
# more than the work they share.
FEW_WORKERS = {"nnUNet_def_n_proc": "1", "nnUNet_npp": "1", "nnUNet_nps": "1"}

# Rows of tests/test_fault_injection.py: one dict per fault (column -> cell), in the order the faults were injected.
FAULT_ROWS = pytest.StashKey[list]()
# Where the table is also written as Markdown (docs/reliability.md keeps the latest one).
FAULT_TABLE_ENV = "SEGRESMAMBA_FAULT_TABLE"


@pytest.fixture(scope="session")
def demo_preprocessed(tmp_path_factory) -> Path:
    """The bundled demo dataset, planned and preprocessed once per test session by nnUNetv2_plan_and_preprocess;
    suites copy it into their own nnU-Net folders (copy_demo_preprocessed) and train from there."""
    from nnunetv2_segresmamba.demo.run_demo import DATA, DATASET_ID, DATASET_NAME
    from nnunetv2_segresmamba.nnunet_cli import nnunet_environment, run_nnunet

    work = tmp_path_factory.mktemp("demo_preprocessed")
    shutil.copytree(DATA, work / "nnUNet_raw" / DATASET_NAME)
    # (the planner sets torch's thread count to nnUNet_n_proc_DA, which must not be 0 there)
    env = nnunet_environment(work, {**FEW_WORKERS, "nnUNet_n_proc_DA": "2"})
    run_nnunet("nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", "3d_fullres", "-np", "2", env=env,
               log=work / "plan_and_preprocess.log")
    return work


def copy_demo_preprocessed(source: Path, work: Path) -> None:
    """nnUNet_raw and nnUNet_preprocessed of ``demo_preprocessed`` into ``work``: each suite writes its own splits
    and results."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(source / name, work / name, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def fault_table(request) -> list:
    return request.config.stash.setdefault(FAULT_ROWS, [])


def fault_table_markdown(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| # | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for number, row in enumerate(rows, 1):
        cells = [str(row.get(column, "")).replace("|", "\\|") for column in columns]
        lines.append(f"| {number} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = config.stash.get(FAULT_ROWS, [])
    if not rows:
        return
    table = fault_table_markdown(rows)
    terminalreporter.section("fault injection")
    terminalreporter.write(table)
    if os.environ.get(FAULT_TABLE_ENV):
        Path(os.environ[FAULT_TABLE_ENV]).write_text(table)
