"""NVML (``pynvml``, from nvidia-ml-py) for the measurements: the handle of a CUDA device, its energy counter."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def nvml_handle(device: torch.device, nvml):
    """NVML's handle of a CUDA device."""
    # NVML numbers GPUs physically, CUDA after CUDA_VISIBLE_DEVICES: match them by PCI bus id.
    props = torch.cuda.get_device_properties(device)
    bus_id = getattr(props, "pci_bus_id", None)
    if bus_id is not None:
        domain = getattr(props, "pci_domain_id", 0)
        return nvml.nvmlDeviceGetHandleByPciBusId(f"{domain:08x}:{bus_id:02x}:{props.pci_device_id:02x}.0")
    return nvml.nvmlDeviceGetHandleByIndex(device.index or 0)


class GpuEnergyCounter:
    """Reads NVML's energy counter (millijoules since the driver loaded) of one CUDA device."""

    def __init__(self, handle, nvml) -> None:
        self._handle, self._nvml = handle, nvml

    @classmethod
    def open(cls, device: torch.device, nvml=None) -> tuple["GpuEnergyCounter | None", str]:
        """(counter, "") or (None, why not)."""
        if device.type != "cuda":
            return None, f"the device is {device.type}, not a CUDA GPU"
        try:
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
            handle = nvml_handle(device, nvml)
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except ImportError:
            return None, "nvidia-ml-py is not installed (pip install 'nnunetv2-segresmamba[energy]')"
        except Exception as error:  # NVMLError_NotSupported on GPUs older than Volta, no driver, ...
            return None, f"NVML cannot read the energy counter ({type(error).__name__}: {error})"
        return cls(handle, nvml), ""

    def joules(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3

    def other_processes(self) -> int | None:
        """How many processes that are neither this one nor its children (data loaders, compile workers) compute
        on this GPU now: the counter measures their work too. None where NVML cannot tell: listing fails, or
        this process is not among those listed (a container's own process ids are not the host's that NVML
        reports)."""
        try:
            pids = {process.pid for process in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)}
        except Exception:  # NVMLError (no permission, not supported), or an NVML without the call
            return None
        own = os.getpid()
        return len(pids - {own} - descendants(own)) if own in pids else None


def descendants(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """The process ids of ``pid``'s children, their children and so on, from ``/proc`` (empty without it)."""
    children: dict[int, list[int]] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "PID (COMMAND) STATE PPID ...": the command may hold spaces and parentheses, so split after its end
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):  # the process ended meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, waiting = set(), [pid]
    while waiting:
        for child in children.get(waiting.pop(), []):
            if child not in found:
                found.add(child)
                waiting.append(child)
    return found
