"""Test-session set-up shared by every test module, and the fault-injection table printed at the end."""

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Without a GPU, Triton kernels run in Triton's interpreter (NumPy on the CPU): tests/test_triton_scan.py
    # then checks the kernels' logic in CI. Triton reads the flag when a kernel is defined, so set it first.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Rows of tests/test_fault_injection.py: one dict per fault (column -> cell), in the order the faults were injected.
FAULT_ROWS = pytest.StashKey[list]()
# Where the table is also written as Markdown (docs/reliability.md keeps the latest one).
FAULT_TABLE_ENV = "SEGRESMAMBA_FAULT_TABLE"


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
