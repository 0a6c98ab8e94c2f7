"""GPU energy (and peak GPU memory) per training epoch, from NVML's energy counter, logged the nnU-Net way.

Each epoch's energy (the counter's difference over the epoch, summed over the DDP ranks that measured;
every rank takes part in the reduction) goes into nnU-Net's logger (key ``epoch_energy_kJ``, one value per
epoch, NaN where no rank measured, so it lives in the checkpoint and survives ``--c``), into the training
log next to the epoch time, and into ``energy.json`` in the fold's folder (rewritten every epoch, so an
interrupted run keeps what it measured; peak GPU memory is the largest over all ranks). The counter measures
the whole GPU: each epoch also records how many other processes computed on it at the epoch's end (key
``epoch_gpu_other_processes``, the most on any rank; NaN where NVML cannot tell), so that the energy and epoch
time of a training that shared its GPU are not read as its own (scripts/compare.py leaves them out). CO2 = energy x
grid intensity, in kg CO2eq per kWh, from ``SEGRESMAMBA_GRID_INTENSITY``; the default 0.61 is the
intensity the paper used (AWS eu-central-1, from the Machine Learning Impact calculator of Lacoste et al.
2019), so that figures compare with its Table 5.
Where no rank has ever measured (no NVML, no GPU with the counter, a CPU run) nothing is recorded, not
even the logger key, and the log says why.
"""

from __future__ import annotations

import json
import math
import os
from os.path import join

import torch
import torch.distributed as dist

from ..benchmarking.nvml import GpuEnergyCounter

GRID_INTENSITY_ENV = "SEGRESMAMBA_GRID_INTENSITY"
DEFAULT_GRID_INTENSITY = 0.61  # kg CO2eq / kWh, AWS eu-central-1, as in the paper
LOG_KEY = "epoch_energy_kJ"
SHARED_KEY = "epoch_gpu_other_processes"
JOULES_PER_KWH = 3.6e6


def grid_intensity() -> float:
    return float(os.environ.get(GRID_INTENSITY_ENV, DEFAULT_GRID_INTENSITY))


class EnergyLoggingMixin:
    """Put before an nnUNetTrainer class in the bases: ``class X(EnergyLoggingMixin, nnUNetTrainer)``."""

    nvml_module = None  # tests put a fake NVML here

    def on_train_start(self):
        super().on_train_start()
        self._energy_counter, reason = GpuEnergyCounter.open(self.device, self.nvml_module)
        if self._energy_counter is None:
            self.print_to_log_file(f"GPU energy is not measured{' on this rank' if self.is_ddp else ''}: {reason}.")

    def on_epoch_start(self):
        super().on_epoch_start()
        counter = getattr(self, "_energy_counter", None)
        self._epoch_start_joules = counter.joules() if counter is not None else None

    def on_epoch_end(self):
        start = getattr(self, "_epoch_start_joules", None)
        joules = self._energy_counter.joules() - start if start is not None else None
        others = self._energy_counter.other_processes() if start is not None else None
        # Every rank takes part in the reduction, measured or not (a collective that only some ranks
        # enter never returns).
        self._record_epoch_energy(*self._reduce_over_ranks(joules, *_peak_memory_bytes(self.device), others))
        super().on_epoch_end()

    def _reduce_over_ranks(self, joules: float | None, peak_bytes: float | None, peak_reserved_bytes: float | None,
                           others: int | None = None) -> tuple[float, int, int, float, float, int | None]:
        """(joules summed over the ranks that measured, how many did, world size, peak memory allocated and
        reserved of any rank, the most other processes any rank saw on its GPU or None if no rank could tell)."""
        local = torch.tensor([joules or 0.0, float(joules is not None), peak_bytes or 0.0, peak_reserved_bytes or 0.0,
                              -1.0 if others is None else float(others)], dtype=torch.float64)
        if not self.is_ddp:
            ranks = [local]
        else:
            # NCCL reduces CUDA tensors only, gloo CPU tensors only.
            device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
            ranks = [torch.zeros(len(local), dtype=torch.float64, device=device)
                     for _ in range(dist.get_world_size())]
            dist.all_gather(ranks, local.to(device))
        table = torch.stack([r.cpu() for r in ranks])
        most_others = int(table[:, 4].max())
        return (float(table[:, 0].sum()), int(table[:, 1].sum()), len(ranks), float(table[:, 2].max()),
                float(table[:, 3].max()), None if most_others < 0 else most_others)

    def _record_epoch_energy(self, joules: float, ranks_measured: int, world_size: int, peak_bytes: float,
                             peak_reserved_bytes: float, others: int | None = None) -> None:
        history = self.logger.local_logger.my_fantastic_logging
        if not ranks_measured and LOG_KEY not in history:
            return  # nothing measured, ever: no key, so nnU-Net's progress.png keeps all epochs
        # Exactly one value per epoch once the key exists (nnU-Net plots only as many epochs as its shortest
        # list): NaN for an epoch nobody measured, e.g. after resuming on a machine without NVML.
        epoch = self.current_epoch
        for key, value in ((LOG_KEY, joules / 1e3 if ranks_measured else math.nan),
                           (SHARED_KEY, math.nan if others is None else others)):
            per_epoch = history.setdefault(key, [])
            per_epoch.extend([math.nan] * (epoch - len(per_epoch)))
            self.logger.log(key, value, epoch)
        per_epoch_kj = history[LOG_KEY][: epoch + 1]
        per_epoch_others = [None if math.isnan(n) else int(n) for n in history[SHARED_KEY][: epoch + 1]]
        known_others = [n for n in per_epoch_others if n is not None]
        total_kwh = sum(kj for kj in per_epoch_kj if not math.isnan(kj)) * 1e3 / JOULES_PER_KWH
        intensity = grid_intensity()
        if ranks_measured:
            shared = (f"; {others} other process{'es' if others > 1 else ''} computed on this GPU, whose energy "
                      f"this includes" if others else "")
            self.print_to_log_file(f"Epoch energy: {joules / 1e3:.2f} kJ (GPU, {ranks_measured} of {world_size} "
                                   f"ranks measured{shared}); total {total_kwh:.5f} kWh, "
                                   f"{total_kwh * intensity * 1e3:.2f} g CO2eq at {intensity} kg/kWh")
        if self.local_rank == 0:
            summary = dict(epochs=epoch + 1, epoch_energy_kJ=[None if math.isnan(kj) else kj for kj in per_epoch_kj],
                           total_kWh=total_kwh, grid_intensity_kg_per_kWh=intensity, co2_kg=total_kwh * intensity,
                           gpu=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
                           world_size=world_size, ranks_measured_last_epoch=ranks_measured,
                           epoch_gpu_other_processes=per_epoch_others,
                           gpu_other_processes_max=max(known_others) if known_others else None,
                           # the largest over all ranks, since this process started (a resumed run counts from
                           # the resume)
                           peak_gpu_memory_GiB=peak_bytes / 2 ** 30 if peak_bytes else None,
                           # what PyTorch's allocator held at most, its cache and CUDA graphs' memory pools
                           # included (memory replayed graphs use is reserved, not counted as allocated)
                           peak_gpu_reserved_GiB=peak_reserved_bytes / 2 ** 30 if peak_reserved_bytes else None)
            with open(join(self.output_folder, "energy.json"), "w") as handle:
                json.dump(summary, handle, indent=1)


def _peak_memory_bytes(device: torch.device) -> tuple[float | None, float | None]:
    """(peak allocated, peak reserved) of this process on ``device``, or Nones off CUDA."""
    if device.type != "cuda":
        return None, None
    return float(torch.cuda.max_memory_allocated(device)), float(torch.cuda.max_memory_reserved(device))
