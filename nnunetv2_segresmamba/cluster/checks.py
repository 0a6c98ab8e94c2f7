"""Checks of a submission before any job is written: every trainer name resolves through nnU-Net's own lookup
(nnunetv2.training.nnUNetTrainer, then the folders in nnUNet_extTrainer), every configuration is in the plans,
and every trainer can build it. A job array in which each task would fail is worse than no job at all."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import io
import os
import pkgutil
from pathlib import Path

import nnunetv2
from nnunetv2.paths import nnUNet_extTrainer
from nnunetv2.utilities.find_class_by_name import temporarily_cleanup_imports_from_path, temporarily_extend_syspath
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from .trainings import dataset_name, nnunet_folder

SUGGESTIONS = 5


class SubmissionError(ValueError):
    """What was asked cannot train; the message lists every problem and the valid names."""


def _quiet_lookup(name: str) -> type | None:
    """nnU-Net's trainer lookup, which prints every folder it searches; None where it finds nothing."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return recursive_find_trainer_class_by_name(name)
    except (RuntimeError, AssertionError):  # not found, or found but not an nnUNetTrainer
        return None


def _trainer_names_in_module(module) -> set[str]:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    return {name for name, value in vars(module).items()
            if inspect.isclass(value) and issubclass(value, nnUNetTrainer)}


def available_trainers() -> list[str]:
    """Every trainer name nnU-Net's lookup can find, for suggestions (the lookup itself imports the same
    modules when a name is missing)."""
    names: set[str] = set()
    package = Path(nnunetv2.__path__[0]) / "training" / "nnUNetTrainer"
    for info in pkgutil.walk_packages([str(package)], prefix="nnunetv2.training.nnUNetTrainer."):
        with contextlib.suppress(Exception):  # a variant needing an optional dependency
            names |= _trainer_names_in_module(importlib.import_module(info.name))
    folders = nnUNet_extTrainer.get().split(os.pathsep) if nnUNet_extTrainer.is_set() else []
    for folder in filter(os.path.isdir, folders):
        with temporarily_extend_syspath(folder), temporarily_cleanup_imports_from_path(folder):
            for info in pkgutil.iter_modules([folder]):
                with contextlib.suppress(Exception):
                    names |= _trainer_names_in_module(importlib.import_module(info.name))
    return sorted(names)


def _trainers_and_problems(names: list[str]) -> tuple[dict[str, type], list[str]]:
    """The trainers nnUNetv2_train finds by these names, and a line for each it does not (with close names)."""
    looked_up = {name: _quiet_lookup(name) for name in dict.fromkeys(names)}
    found = {name: cls for name, cls in looked_up.items() if cls is not None}
    unknown = [name for name in looked_up if name not in found]
    if not unknown:
        return found, []
    known = available_trainers()
    lines = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=SUGGESTIONS, cutoff=0.6)
        lines.append(f"unknown trainer {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    ext = os.environ.get("nnUNet_extTrainer", "")
    ours = ", ".join(name for name in known if name.startswith("nnUNetTrainerSegResMamba"))
    lines.append(f"nnU-Net finds {len(known)} trainers in nnunetv2.training.nnUNetTrainer and in "
                 f"nnUNet_extTrainer={ext!r}. SegResMamba's: "
                 + (ours or "none: install the plugin with pip install . (an editable install also needs "
                            "export nnUNet_extTrainer=$(python -m nnunetv2_segresmamba_ext))") + ".")
    return found, lines


def _configuration_problems(dataset: str, plans: str, configurations: list[str], trainers: dict[str, type]
                            ) -> list[str]:
    folder = nnunet_folder("nnUNet_preprocessed") / dataset_name(dataset)
    plans_file = folder / f"{plans}.json"
    if not plans_file.is_file():
        others = sorted(p.stem for p in folder.glob("*Plans*.json"))
        return [f"no plans {plans_file}: plan it with nnUNetv2_plan_and_preprocess (or nnUNetv2_plan_experiment) "
                f"first" + (f", or pick one of -p {', '.join(others)}" if others else "")]
    manager = PlansManager(str(plans_file))
    valid = list(manager.plans["configurations"])
    problems = [f"configuration {c!r} is not in {plans_file.name}; it has {', '.join(valid)}"
                for c in configurations if c not in valid]
    for configuration in (c for c in configurations if c in valid):
        for name, trainer in trainers.items():
            check = getattr(trainer, "check_configuration", None)  # SegResMamba's trainers have one
            if check is None:
                continue
            try:
                check(manager.get_configuration(configuration))
            except ValueError as error:
                problems.append(f"{name} cannot train {configuration}: {error}")
    return problems


def resolve_trainers(names: list[str]) -> dict[str, type]:
    """Each name's trainer class, as nnUNetv2_train would find it; SubmissionError naming close matches."""
    found, problems = _trainers_and_problems(names)
    if problems:
        raise SubmissionError("\n".join(problems))
    return found


def check_configurations(dataset: str, plans: str, configurations: list[str], trainers: dict[str, type]) -> None:
    """Every configuration is in the plans, and every trainer that can tell (SegResMamba's
    ``check_configuration``) can build it."""
    problems = _configuration_problems(dataset, plans, configurations, trainers)
    if problems:
        raise SubmissionError("\n".join(problems))


def check_submission(dataset: str, plans: str, configurations: list[str], trainer_names: list[str]) -> None:
    """Both checks at once, so that one run lists every mistake: unknown trainers, and the configurations that
    the plans lack or that the known trainers cannot build."""
    trainers, problems = _trainers_and_problems(trainer_names)
    problems += _configuration_problems(dataset, plans, configurations, trainers)
    if problems:
        raise SubmissionError("\n".join(problems))
