"""Adds nnunetv2_segresmamba's trainer folder to nnUNet_extTrainer, keeping whatever the user set.

Run at every interpreter start by the wheel's ``nnunetv2_segresmamba.pth`` file (one import line),
so stock ``nnUNetv2_train -tr nnUNetTrainerSegResMamba`` and ``nnUNetv2_predict`` find our trainers
with no user step. It is a top-level module beside the package, not part of it, so that the hook
imports only ``os`` (it runs before every Python program) and never pins the package itself.
An editable install does not install the .pth file; there, run
``export nnUNet_extTrainer=$(python -m nnunetv2_segresmamba_ext)`` once per shell.
"""

import os

ENV = "nnUNet_extTrainer"
TRAINER_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnunetv2_segresmamba", "_ext_trainers")


def with_our_folder(current: str | None) -> str:
    parts = [p for p in (current or "").split(os.pathsep) if p]
    if TRAINER_FOLDER not in parts:
        parts.append(TRAINER_FOLDER)
    return os.pathsep.join(parts)


def register() -> None:
    os.environ[ENV] = with_our_folder(os.environ.get(ENV))


register()

if __name__ == "__main__":
    print(os.environ[ENV])
