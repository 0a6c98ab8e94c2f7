"""Epoch time, GPU utilisation and peak memory of a real ``nnUNetv2_train`` run, for pipeline benchmarks.

Built on nnU-Net's own ``nnUNetTrainerBenchmark_5epochs`` (5 epochs, no checkpoints, no final validation):
the mixin adds what that trainer does not record. The first epoch (data loader start-up, torch.compile,
cuDNN autotuning) is the warm-up, recorded on its own; the other figures are over the epochs after it: median
epoch time, mean GPU utilisation sampled every 0.1 s by NVML, and the peak of memory allocated by PyTorch.
The train loss and pseudo Dice of every epoch are recorded too, so that runs can be compared on what they
learned as well as on speed, and the seconds torch.compile spent, so that the first epoch can be split into
compiling and the rest (data loaders, cuDNN autotuning, capturing CUDA graphs). They go into
``pipeline_benchmark.json`` in the fold's output folder, which ``scripts/benchmark_pipeline.py`` collects.
"""

from __future__ import annotations

import json
import statistics
import threading
from os.path import join

import torch

from .nvml import nvml_handle

RESULT_FILE = "pipeline_benchmark.json"
WARMUP_EPOCHS = 1


class _UtilisationSampler(threading.Thread):
    """Samples NVML's GPU utilisation (percent of time a kernel ran) until stopped."""

    def __init__(self, device: torch.device, interval_s: float = 0.1):
        super().__init__(daemon=True)
        import pynvml
        pynvml.nvmlInit()
        self._nvml, self._handle = pynvml, nvml_handle(device, pynvml)
        self._interval, self._stop_event, self.samples = interval_s, threading.Event(), []

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def stop(self) -> list[int]:
        self._stop_event.set()
        self.join()
        return self.samples


def compile_seconds() -> dict[str, float]:
    """Seconds torch.compile has spent in this process, by phase, as Dynamo accounts them
    (``entire_frame_compile``: tracing and compiling forward graphs, ``entire_backward_compile``: the backward
    graphs, compiled at the first backward pass; ``inductor_compile`` and ``code_gen`` within those), plus
    ``compile_s``, the two together. Empty where this PyTorch does not account them."""
    try:
        from torch._dynamo.utils import calculate_time_spent
        phases = {name: float(seconds) for name, seconds in calculate_time_spent().items()}
    except Exception:  # a private API: absent or changed in another PyTorch
        return {}
    phases["compile_s"] = phases.get("entire_frame_compile", 0.0) + phases.get("entire_backward_compile", 0.0)
    return phases


class PipelineBenchmarkMixin:
    """Put first in the bases of a trainer derived from nnUNetTrainerBenchmark_5epochs."""

    def on_epoch_start(self):
        if self.current_epoch == WARMUP_EPOCHS and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            try:
                self._sampler = _UtilisationSampler(self.device)
                self._sampler.start()
            except Exception as error:  # no nvidia-ml-py, no NVML
                self.print_to_log_file(f"GPU utilisation is not measured: {type(error).__name__}: {error}")
        super().on_epoch_start()

    def on_train_end(self):
        super().on_train_end()
        if self.local_rank != 0 or self.device.type != "cuda":
            return
        sampler = getattr(self, "_sampler", None)
        utilisation = sampler.stop() if sampler is not None else []
        starts = self.logger.get_value("epoch_start_timestamps", step=None)
        ends = self.logger.get_value("epoch_end_timestamps", step=None)
        epochs = [end - start for start, end in zip(starts, ends)]
        if not epochs:
            self.print_to_log_file(f"No epoch finished: {RESULT_FILE} is not written.")
            return
        timed = epochs[WARMUP_EPOCHS:] or epochs
        compile_time = compile_seconds()
        result = dict(trainer=self.__class__.__name__, device=torch.cuda.get_device_name(self.device),
                      epoch_s=epochs, first_epoch_s=epochs[0], median_epoch_s=statistics.median(timed),
                      fastest_epoch_s=min(timed),
                      gpu_util_pct=statistics.fmean(utilisation) if utilisation else None,
                      peak_mem_GiB=torch.cuda.max_memory_allocated(self.device) / 2 ** 30,
                      # CUDA graphs keep their memory pool reserved, not allocated: this column counts it
                      peak_reserved_GiB=torch.cuda.max_memory_reserved(self.device) / 2 ** 30,
                      iterations_per_epoch=self.num_iterations_per_epoch,
                      batch_size=self.configuration_manager.batch_size,
                      compiled=self._do_i_compile(), crashed=self.crashed_with_runtime_error,
                      compile_time_s=compile_time, compile_s=compile_time.get("compile_s"),
                      # what it learned, epoch by epoch: compiled and eager runs side by side
                      train_loss=[float(v) for v in self.logger.get_value("train_losses", step=None)],
                      pseudo_dice=[float(v) for v in self.logger.get_value("mean_fg_dice", step=None)])
        with open(join(self.output_folder, RESULT_FILE), "w") as handle:
            json.dump(result, handle, indent=1)
