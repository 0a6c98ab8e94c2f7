"""CUDA-graph steps (training/cuda_graphs.py) without a GPU: SegResMamba's trainer compiles again, with CUDA
graphs, only what nnU-Net compiled; it marks every training and validation step as a new one for the graphs and
runs the final validation on the uncompiled network; the NoCudaGraphs variant keeps nnU-Net's own compile.
Whether the graphs are fast is measured in docs/benchmarks.md, not here; tests/test_gpu_training.py trains with
them through nnUNetv2_train on a GPU."""

from pathlib import Path

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from test_trainer import make_trainer, nnunet_folders  # noqa: F401  (a fixture)

from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba, nnUNetTrainerSegResMambaNoCudaGraphs
from nnunetv2_segresmamba.training.wrapped import is_compiled, unwrap

SMALL = dict(network_options=dict(widths=(8, 16, 16, 32)))
Small = type("Small", (nnUNetTrainerSegResMamba,), dict(SMALL))
SmallNoCudaGraphs = type("SmallNoCudaGraphs", (nnUNetTrainerSegResMambaNoCudaGraphs,), dict(SMALL))


@pytest.fixture
def trainer(nnunet_folders):  # noqa: F811
    return make_trainer(Small)


@pytest.fixture
def step_marks(monkeypatch) -> list:
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append("mark"))
    return marks


def compiling(monkeypatch) -> None:
    """As on a GPU where nnU-Net compiles (nothing runs until the first step, so the CPU can stand in)."""
    monkeypatch.setattr(nnUNetTrainerSegResMamba, "_do_i_compile", lambda self: True)


def test_where_nnunet_does_not_compile_nothing_is_compiled_or_marked(trainer, step_marks, monkeypatch):
    trainer.initialize()  # on a CPU nnU-Net does not compile
    assert not is_compiled(trainer.network)
    monkeypatch.setattr(nnUNetTrainer, "train_step", lambda self, batch: {"loss": 0.0})
    trainer.train_step({})
    assert step_marks == []


def test_where_nnunet_compiles_the_default_trainer_compiles_with_cuda_graphs(trainer, monkeypatch):
    compiling(monkeypatch)
    trainer.initialize()  # nnU-Net's torch.compile(network), then the trainer's; neither runs anything yet
    assert is_compiled(trainer.network) and not is_compiled(unwrap(trainer.network))
    assert "mode='reduce-overhead'" in Path(trainer.log_file).read_text()
    assert trainer._uses_cuda_graphs()


def test_the_no_cuda_graphs_variant_keeps_nnunets_compile_and_marks_nothing(nnunet_folders, step_marks,  # noqa: F811
                                                                             monkeypatch):
    compiling(monkeypatch)
    trainer = make_trainer(SmallNoCudaGraphs)
    trainer.initialize()
    assert is_compiled(trainer.network) and not trainer._uses_cuda_graphs()
    assert "mode=" not in Path(trainer.log_file).read_text()
    monkeypatch.setattr(nnUNetTrainer, "train_step", lambda self, batch: {"loss": 0.0})
    trainer.train_step({})
    assert step_marks == []


def test_every_compiled_step_is_marked_before_the_network_runs(trainer, step_marks, monkeypatch):
    compiling(monkeypatch)
    trainer.initialize()
    seen = []
    monkeypatch.setattr(nnUNetTrainer, "train_step", lambda self, batch: seen.append(list(step_marks)))
    monkeypatch.setattr(nnUNetTrainer, "validation_step", lambda self, batch: seen.append(list(step_marks)))
    trainer.train_step({})
    trainer.validation_step({})
    assert seen == [["mark"], ["mark", "mark"]]


def test_the_final_validation_runs_the_uncompiled_network_with_the_same_weights(trainer, monkeypatch):
    compiling(monkeypatch)
    trainer.initialize()
    compiled = trainer.network
    validated_with = []
    monkeypatch.setattr(nnUNetTrainer, "perform_actual_validation",
                        lambda self, save_probabilities=False: validated_with.append(self.network))
    trainer.perform_actual_validation()
    assert validated_with == [unwrap(compiled)] and not is_compiled(validated_with[0])
    assert trainer.network is compiled

