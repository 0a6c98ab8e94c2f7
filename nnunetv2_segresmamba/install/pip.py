"""Running pip (the one of this interpreter) and reading its failures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


class PipError(RuntimeError):
    """pip failed; the message ends with the tail of its output."""


def run_pip(*args: str | Path, env: dict[str, str] | None = None, quiet: bool = True,
            log: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m pip ARGS`` with this interpreter; its output is captured (and appended to ``log``)."""
    command = [sys.executable, "-m", "pip", *map(str, args)]
    if quiet:
        command.insert(3, "--quiet")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if log is not None:
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    return result


def check(result: subprocess.CompletedProcess, what: str, hint: str = "") -> subprocess.CompletedProcess:
    """``result`` if pip succeeded, else a PipError naming ``what`` failed, with pip's last lines."""
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise PipError(f"{what} failed (pip exit code {result.returncode}):\n{tail}" + (f"\n{hint}" if hint else ""))
    return result


def normalized_name(name: str) -> str:
    """PEP 503's normal form: ``SimpleITK`` and ``simpleitk``, ``acvl_utils`` and ``acvl-utils`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()
