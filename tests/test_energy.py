"""Energy logging with a fake NVML: per-epoch energy in the log, in nnU-Net's logger and in energy.json."""

import json
import math
import os
import types

import pytest
import torch
from nnunetv2.training.logging.nnunet_logger import MetaLogger

from nnunetv2_segresmamba.benchmarking import nvml as energy_nvml
from nnunetv2_segresmamba.training import energy
from nnunetv2_segresmamba.training.energy import EnergyLoggingMixin, GpuEnergyCounter


class FakeNVML:
    """Counts 1.5 kJ (in mJ) more at every read."""

    def __init__(self, supported=True):
        self.supported, self.reads = supported, 0

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        return "gpu0"

    def nvmlDeviceGetHandleByIndex(self, index):
        return "gpu0"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        self.reads += 1
        return 1_500_000 * self.reads


class BaseTrainer:
    """Just what the mixin touches of nnUNetTrainer, with nnU-Net's own logger."""

    def __init__(self, output_folder, device):
        self.output_folder, self.device, self.is_ddp, self.local_rank = str(output_folder), device, False, 0
        self.current_epoch, self.lines = 0, []
        self.logger = MetaLogger(str(output_folder), False)

    def print_to_log_file(self, *args, **kwargs):
        self.lines.append(" ".join(map(str, args)))

    def on_train_start(self):
        pass

    def on_epoch_start(self):
        pass

    def on_epoch_end(self):
        self.logger.log("epoch_end_timestamps", 0.0, self.current_epoch)
        self.current_epoch += 1


class Trainer(EnergyLoggingMixin, BaseTrainer):
    pass


def run_epochs(trainer, n):
    trainer.on_train_start()
    for _ in range(n):
        trainer.on_epoch_start()
        trainer.on_epoch_end()


@pytest.fixture
def fake_gpu(monkeypatch):
    props = types.SimpleNamespace(pci_bus_id=0x1A, pci_device_id=0, pci_domain_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 3 * 2 ** 30)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device: 4 * 2 ** 30)


def test_energy_per_epoch_is_logged_and_summarised(tmp_path, fake_gpu, monkeypatch):
    monkeypatch.setenv(energy.GRID_INTENSITY_ENV, "0.5")
    trainer = Trainer(tmp_path, torch.device("cuda", 0))
    trainer.nvml_module = FakeNVML()
    run_epochs(trainer, 3)
    assert trainer.logger.local_logger.my_fantastic_logging[energy.LOG_KEY] == [1.5, 1.5, 1.5]
    summary = json.loads((tmp_path / "energy.json").read_text())
    assert summary["epochs"] == 3
    assert summary["total_kWh"] == pytest.approx(4.5e3 / 3.6e6)
    assert summary["co2_kg"] == pytest.approx(0.5 * 4.5e3 / 3.6e6)
    assert summary["peak_gpu_memory_GiB"] == 3
    assert summary["peak_gpu_reserved_GiB"] == 4
    assert sum("Epoch energy: 1.50 kJ" in line for line in trainer.lines) == 3


@pytest.mark.parametrize("device,nvml,reason", [
    (torch.device("cpu"), FakeNVML(), "not a CUDA GPU"),
    (torch.device("cuda", 0), FakeNVML(supported=False), "NVML cannot read the energy counter"),
])
def test_nothing_is_recorded_without_a_counter(tmp_path, fake_gpu, device, nvml, reason):
    trainer = Trainer(tmp_path, device)
    trainer.nvml_module = nvml
    run_epochs(trainer, 2)
    assert not (tmp_path / "energy.json").exists()
    # No key at all: an empty list would make nnU-Net's progress.png (min over its lists) show no epoch.
    assert energy.LOG_KEY not in trainer.logger.local_logger.my_fantastic_logging
    assert any(reason in line for line in trainer.lines)


def test_one_value_per_epoch_once_anything_was_measured(tmp_path, fake_gpu):
    """A run resumed on a machine with (or without) the counter keeps one value per epoch, NaN where unmeasured."""
    trainer = Trainer(tmp_path, torch.device("cuda", 0))
    trainer.nvml_module = FakeNVML(supported=False)
    run_epochs(trainer, 2)
    trainer.nvml_module = FakeNVML()
    run_epochs(trainer, 1)
    trainer.nvml_module = FakeNVML(supported=False)
    run_epochs(trainer, 1)
    logged = trainer.logger.local_logger.my_fantastic_logging[energy.LOG_KEY]
    assert len(logged) == 4 and [math.isnan(v) for v in logged] == [True, True, False, True] and logged[2] == 1.5
    summary = json.loads((tmp_path / "energy.json").read_text())
    assert summary["epoch_energy_kJ"] == [None, None, 1.5, None]
    assert summary["total_kWh"] == pytest.approx(1.5e3 / 3.6e6)


class SharedGpuNVML(FakeNVML):
    """A GPU on which other processes compute too, listed by NVML as ``pids`` (our own among them or not)."""

    def __init__(self, pids):
        super().__init__()
        self.pids = pids

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=0) for pid in self.pids]


def test_a_shared_gpu_is_recorded_so_its_energy_is_not_read_as_the_trainings_own(tmp_path, fake_gpu):
    trainer = Trainer(tmp_path, torch.device("cuda", 0))
    trainer.nvml_module = SharedGpuNVML([os.getpid()])
    run_epochs(trainer, 1)  # alone
    trainer._energy_counter._nvml.pids = [os.getpid(), 10**7, 10**7 + 1]
    run_epochs(trainer, 1)  # two other trainings started
    trainer._energy_counter._nvml.pids = [10**7]  # our process id is not NVML's (a container): unknown
    run_epochs(trainer, 1)
    summary = json.loads((tmp_path / "energy.json").read_text())
    assert summary["epoch_gpu_other_processes"] == [0, 2, None] and summary["gpu_other_processes_max"] == 2
    logged = trainer.logger.local_logger.my_fantastic_logging[energy.SHARED_KEY]
    assert logged[:2] == [0, 2] and math.isnan(logged[2])
    assert ["other processes" in line for line in trainer.lines if "Epoch energy" in line] == [False, True, False]
    assert any("2 other processes computed on this GPU, whose energy this includes" in line for line in trainer.lines)


def test_the_trainings_own_child_processes_do_not_count_as_sharing_the_gpu(tmp_path, fake_gpu):
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # e.g. a compile worker
    try:
        assert child.pid in energy_nvml.descendants(os.getpid())
        trainer = Trainer(tmp_path, torch.device("cuda", 0))
        trainer.nvml_module = SharedGpuNVML([os.getpid(), child.pid])
        run_epochs(trainer, 1)
        trainer._energy_counter._nvml.pids = [os.getpid(), child.pid, 10**7]
        run_epochs(trainer, 1)
    finally:
        child.kill()
        child.wait()
    assert json.loads((tmp_path / "energy.json").read_text())["epoch_gpu_other_processes"] == [0, 1]


def test_descendants_follow_parents_in_proc(tmp_path):
    for pid, parent, command in ((10, 1, "init"), (20, 10, "python (x) y"), (30, 20, "w"), (40, 1, "other")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({command}) S {parent} 0 0")
    assert energy_nvml.descendants(10, tmp_path) == {20, 30} and energy_nvml.descendants(40, tmp_path) == set()


def test_missing_nvidia_ml_py_is_explained(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    counter, reason = GpuEnergyCounter.open(torch.device("cuda", 0))
    assert counter is None and "nvidia-ml-py" in reason
