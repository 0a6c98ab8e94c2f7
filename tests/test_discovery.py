"""After `pip install`, nnU-Net finds our trainers and its own, and a user's nnUNet_extTrainer is kept."""

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, os
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
found = {name: find(name).__module__ for name in json.loads(os.environ["PROBE_NAMES"])}
print(json.dumps({"env": os.environ.get("nnUNet_extTrainer"), "found": found}))
"""


def probe(names, ext_trainer=None):
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    if ext_trainer is not None:
        env["nnUNet_extTrainer"] = ext_trainer
    env["PROBE_NAMES"] = json.dumps(names)
    # A fresh interpreter started outside the repo: only the installed package and its .pth hook count.
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd="/", capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_installed_package_registers_its_trainers():
    result = probe(["nnUNetTrainerSegResMamba", "nnUNetTrainerSegResMamba_noAMP", "nnUNetTrainer",
                    "nnUNetTrainer_5epochs", "nnUNetTrainerNoMirroring"])
    assert result["env"] and result["env"].endswith(os.path.join("nnunetv2_segresmamba", "_ext_trainers")), (
        "the .pth hook did not run: install the package non-editable (pip install .)")
    assert result["found"]["nnUNetTrainerSegResMamba"].startswith("nnunetv2_segresmamba.training")
    assert result["found"]["nnUNetTrainer"].startswith("nnunetv2.training")
    assert result["found"]["nnUNetTrainer_5epochs"].startswith("nnunetv2.training")


def test_users_own_extra_trainer_folder_is_kept_and_searched():
    user_folder = str(Path(__file__).parent / "ext_trainers")
    result = probe(["nnUNetTrainerSegResMamba_CITiny", "nnUNetTrainerSegResMamba"], ext_trainer=user_folder)
    parts = result["env"].split(os.pathsep)
    assert parts[0] == user_folder and len(parts) == 2
    assert result["found"]["nnUNetTrainerSegResMamba_CITiny"] == "segresmamba_ci_trainers"
