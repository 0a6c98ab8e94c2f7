"""nnUNetTrainerSegResMambaCudaGraphs without a GPU: it compiles (again, with CUDA graphs) only what nnU-Net
compiled, marks every training and validation step as a new one for the graphs, and runs the final validation on
the uncompiled network. Whether the graphs are fast is measured in docs/benchmarks.md, not here."""

from pathlib import Path

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from test_trainer import make_trainer, nnunet_folders  # noqa: F401  (a fixture)

from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba, nnUNetTrainerSegResMambaCudaGraphs
from nnunetv2_segresmamba.training.wrapped import is_compiled, unwrap


class SmallCudaGraphs(nnUNetTrainerSegResMambaCudaGraphs):
    network_options = dict(widths=(8, 16, 16, 32))


@pytest.fixture
def trainer(nnunet_folders):  # noqa: F811
    return make_trainer(SmallCudaGraphs)


@pytest.fixture
def step_marks(monkeypatch) -> list:
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append("mark"))
    return marks


def test_where_nnunet_does_not_compile_nothing_is_compiled_or_marked(trainer, step_marks, monkeypatch):
    trainer.initialize()  # on a CPU nnU-Net does not compile
    assert not is_compiled(trainer.network)
    monkeypatch.setattr(nnUNetTrainerSegResMamba, "train_step", lambda self, batch: {"loss": 0.0})
    trainer.train_step({})
    assert step_marks == []


def test_where_the_trainer_compiles_the_network_is_compiled_with_cuda_graphs(trainer, monkeypatch):
    monkeypatch.setattr(nnUNetTrainerSegResMamba, "_do_i_compile", lambda self: True)
    trainer.initialize()  # nnU-Net's torch.compile(network), then the variant's; neither runs anything yet
    assert is_compiled(trainer.network) and not is_compiled(unwrap(trainer.network))
    assert "mode='reduce-overhead'" in Path(trainer.log_file).read_text()


def test_every_compiled_step_is_marked_before_the_network_runs(trainer, step_marks, monkeypatch):
    monkeypatch.setattr(nnUNetTrainerSegResMamba, "_do_i_compile", lambda self: True)
    trainer.initialize()
    seen = []
    monkeypatch.setattr(nnUNetTrainerSegResMamba, "train_step", lambda self, batch: seen.append(list(step_marks)))
    monkeypatch.setattr(nnUNetTrainerSegResMamba, "validation_step",
                        lambda self, batch: seen.append(list(step_marks)))
    trainer.train_step({})
    trainer.validation_step({})
    assert seen == [["mark"], ["mark", "mark"]]


def test_the_final_validation_runs_the_uncompiled_network_with_the_same_weights(trainer, monkeypatch):
    monkeypatch.setattr(nnUNetTrainerSegResMamba, "_do_i_compile", lambda self: True)
    trainer.initialize()
    compiled = trainer.network
    validated_with = []
    monkeypatch.setattr(nnUNetTrainer, "perform_actual_validation",
                        lambda self, save_probabilities=False: validated_with.append(self.network))
    trainer.perform_actual_validation()
    assert validated_with == [unwrap(compiled)] and not is_compiled(validated_with[0])
    assert trainer.network is compiled
