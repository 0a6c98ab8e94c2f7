"""Training and validation steps replayed from CUDA graphs instead of launched kernel by kernel from Python.

At nnU-Net's small patches (Hippocampus: 40x56x40, batch 7) a SegResMamba step issues about 1700 kernels, and the
CPU issuing them, not the GPU computing them, sets the step time. ``torch.compile(mode="reduce-overhead")``
captures the compiled network's forward and backward passes in CUDA graphs; the loss, the gradient scaler and
the optimizer stay as in nnU-Net. The graphs keep their own memory pool (reserved by PyTorch's allocator, not
counted as allocated).
"""

from __future__ import annotations

import torch

from .wrapped import is_compiled, unwrap


class CudaGraphStepsMixin:
    """Wherever nnU-Net compiles the network (a GPU, nnUNet_compile not false) and on one GPU, compiles it again in
    ``compile_mode``; ``None`` keeps nnU-Net's own ``torch.compile(network)``. Under DDP (-num_gpus N) the network
    stays as nnU-Net compiled it. Put it first in the bases: it marks each step before anything else runs."""

    compile_mode: str | None = "reduce-overhead"

    def initialize(self) -> None:
        super().initialize()  # nnU-Net's torch.compile(network), then DDP around it where -num_gpus > 1
        if self.compile_mode is not None and is_compiled(self.network) and not self.is_ddp:
            self.network = torch.compile(unwrap(self.network), mode=self.compile_mode)
            self.print_to_log_file(f"Compiled again with mode={self.compile_mode!r}: the training and validation "
                                   f"steps replay CUDA graphs.")

    def _uses_cuda_graphs(self) -> bool:
        return (self.compile_mode is not None and self.was_initialized and is_compiled(self.network)
                and not self.is_ddp)

    def _new_step(self) -> None:
        # Every step's outputs live in the graphs' memory pool until the next replay overwrites them; marking the
        # step tells PyTorch that the previous step's outputs are no longer read.
        if self._uses_cuda_graphs():
            torch.compiler.cudagraph_mark_step_begin()

    def train_step(self, batch: dict) -> dict:
        self._new_step()
        return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        self._new_step()
        return super().validation_step(batch)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """The final sliding-window validation adds each output to the ones before it (and to its mirrored
        copies), which replays would overwrite: it runs on the uncompiled network, the same weights."""
        captured = self.network
        if self._uses_cuda_graphs():
            self.network = unwrap(captured)
        try:
            super().perform_actual_validation(save_probabilities)
        finally:
            self.network = captured
