"""Two-process DDP on the CPU (gloo): what -num_gpus 2 relies on, checked without GPUs.

Rank 1's first batch is NaN: both ranks must skip that step together (a rank that skipped backward alone
would leave the other waiting in DDP's gradient all-reduce), and train_loss averages the other steps. The
trainer has deep supervision off, so its heads must be frozen (DDP without find_unused_parameters fails
on the step after one that left parameters without a gradient). Energy: only rank 0 has an energy counter
(fake NVML); the reduction must still run on both ranks and keep the larger peak memory.
A collective that only one rank enters fails here by gloo's timeout instead of hanging.
"""

import importlib
import json
import os
import socket
import types
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT = timedelta(seconds=45)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def energy_on_rank(rank: int, folder: Path) -> dict:
    from test_energy import FakeNVML, Trainer, run_epochs

    from nnunetv2_segresmamba.training import energy

    props = types.SimpleNamespace(pci_bus_id=0x1A + rank, pci_device_id=0, pci_domain_id=0)
    torch.cuda.get_device_properties = lambda device: props
    torch.cuda.get_device_name = lambda device: "Fake GPU"
    torch.cuda.max_memory_allocated = lambda device: (3 + 2 * rank) * 2 ** 30  # rank 1 peaks higher
    torch.cuda.max_memory_reserved = lambda device: (6 - 2 * rank) * 2 ** 30  # rank 0 reserves more
    trainer = Trainer(folder, torch.device("cuda", 0))
    trainer.is_ddp, trainer.local_rank = True, rank
    trainer.nvml_module = FakeNVML(supported=rank == 0)
    run_epochs(trainer, 2)
    return dict(logged=trainer.logger.local_logger.my_fantastic_logging[energy.LOG_KEY])


def training_on_rank(rank: int, folder: Path) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba_noDS

    class SmallNoDS(nnUNetTrainerSegResMamba_noDS):
        network_options = dict(widths=(8, 16, 16, 32))

    # nnU-Net's initialize() passes CUDA device ids to DDP; on the CPU, DDP takes none.
    nnunet_trainer_module = importlib.import_module("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    nnunet_trainer_module.DDP = lambda module, device_ids: DistributedDataParallel(module)
    data = Path(__file__).parent / "data"
    plans = json.loads((data / "hippocampus_plans.json").read_text())
    plans["configurations"]["3d_fullres"].update(patch_size=[16, 24, 16], batch_size=2, batch_dice=False)
    plans["continue_training"] = False
    dataset = json.loads((data / "hippocampus_dataset.json").read_text())
    trainer = SmallNoDS(plans, "3d_fullres", 0, dataset, torch.device("cpu"))
    trainer.device, trainer.grad_scaler = torch.device("cpu"), None  # nnU-Net's DDP assumes CUDA
    torch.manual_seed(0)  # the same initial weights on both ranks, as DDP broadcasts anyway
    trainer.initialize()
    heads = trainer.network.module.decoder.ds_heads
    assert not any(p.requires_grad for p in heads.parameters())

    def weights() -> list[torch.Tensor]:
        return [p.detach().clone() for p in trainer.network.parameters()]

    generator = torch.Generator().manual_seed(rank)
    batches = []
    for step in range(3):
        data = torch.randn(1, 1, 16, 24, 16, generator=generator)  # batch 2 split over 2 ranks
        if step == 0 and rank == 1:
            data[:] = float("nan")
        batches.append({"data": data, "target": torch.randint(0, 3, (1, 1, 16, 24, 16), generator=generator)})
    initial = weights()
    outputs = [trainer.train_step(batches[0])]
    after_skip = weights()
    outputs += [trainer.train_step(b) for b in batches[1:]]
    trainer.on_train_epoch_end(outputs)
    final = torch.cat([p.flatten() for p in trainer.network.parameters()])
    return dict(skip_left_weights=all(torch.equal(a, b) for a, b in zip(initial, after_skip)),
                trained=not all(torch.equal(a, b) for a, b in zip(initial, weights())),
                losses=[float(o["loss"]) for o in outputs],
                train_loss=trainer.logger.get_value("train_losses", step=-1),
                checksum=float(final.double().sum()), consecutive_nonfinite=trainer.nonfinite_guard.consecutive)


def worker(rank: int, world_size: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), nnUNet_results=f"{folder}/results",
                      nnUNet_preprocessed=f"{folder}/preprocessed", nnUNet_raw=f"{folder}/raw")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=TIMEOUT)
    try:
        result = dict(energy=energy_on_rank(rank, Path(folder) / "energy"),
                      training=training_on_rank(rank, Path(folder)))
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_two_ranks_on_gloo(tmp_path):
    (tmp_path / "energy").mkdir()
    preprocessed = tmp_path / "preprocessed" / "Dataset004_Hippocampus" / "nnUNetPlans_3d_fullres"
    preprocessed.mkdir(parents=True)
    (preprocessed / "case.b2nd").touch()  # initialize() infers the dataset class from file endings only
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    # energy: rank 0's 1.5 kJ per epoch on both ranks, peak memory of rank 1
    assert [r["energy"]["logged"] for r in ranks] == [[1.5, 1.5], [1.5, 1.5]]
    summary = json.loads((tmp_path / "energy" / "energy.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_measured_last_epoch"] == 1
    assert summary["peak_gpu_memory_GiB"] == 5
    assert summary["peak_gpu_reserved_GiB"] == 6

    # training: the NaN step skipped on both ranks, the other two applied identically
    first, second = (r["training"] for r in ranks)
    assert np.isnan(first["losses"][0]) and np.isnan(second["losses"][0])
    assert first["skip_left_weights"] and second["skip_left_weights"]
    assert first["trained"] and first["checksum"] == second["checksum"]
    assert first["consecutive_nonfinite"] == 0
    assert first["train_loss"] == pytest.approx(np.mean(first["losses"][1:] + second["losses"][1:]))
    assert np.isfinite(first["train_loss"]) and first["train_loss"] == second["train_loss"]
