"""Running nnU-Net's own command-line tools from Python (the demo, the comparison, the tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from nnunetv2_segresmamba_ext import ENV as EXT_TRAINER_ENV
from nnunetv2_segresmamba_ext import with_our_folder


def nnunet_command(name: str) -> str:
    """Path of an nnU-Net console script (nnUNetv2_train, ...), preferring this interpreter's environment."""
    beside_python = Path(sys.executable).with_name(name)
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: is nnunetv2 installed in this environment ({sys.executable})?")
    return found


def nnunet_environment(work_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment with nnU-Net's three folders under ``work_dir`` and our trainers findable
    (the latter matters for editable installs, which do not run the package's .pth hook)."""
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(work_dir / name)
        (work_dir / name).mkdir(parents=True, exist_ok=True)
    env[EXT_TRAINER_ENV] = with_our_folder(env.get(EXT_TRAINER_ENV))
    env.update(extra or {})
    return env


def run_nnunet(name: str, *args: str, env: dict[str, str], log: Path | None = None) -> None:
    """Run one nnU-Net tool; its output goes to the terminal (or to ``log``); a failure raises with the tail."""
    command = [nnunet_command(name), *map(str, args)]
    print("$", " ".join([name, *map(str, args)]), flush=True)
    if log is None:
        subprocess.run(command, env=env, check=True)
        return
    with open(log, "a") as handle:
        result = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "".join(open(log).readlines()[-40:])
        raise RuntimeError(f"{name} failed with exit code {result.returncode}; last lines of {log}:\n{tail}")
