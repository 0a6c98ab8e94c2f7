"""The inductor setting under which SegResMamba compiles correctly, applied wherever it is compiled.

Inductor (torch.compile's default backend) pads the strides of intermediate GPU buffers ("comprehensive
padding") where a stride exceeds 1024 elements and is not a multiple of 128 bytes. In torch 2.11 that
padding can leave a buffer whose consumer indexes it with a layout it no longer has, so the consumer reads
padding and uninitialised memory (pytorch/pytorch#194281, fixed upstream by pytorch/pytorch#192575).
SegResMamba runs into it exactly: a Tri-oriented Mamba layer on a 10x14x10 grid holds 1400 tokens per
channel (not a multiple of 32 fp32 values), and compiled training computed gradients for the layer before
it that were unrelated to the eager ones (the scan's upstream gradient off by 100 %), so the network did
not learn. Grids whose token count is a multiple of 32, or at most 1024, were not affected, which is why
small test patches passed. With padding off, compiled gradients match eager ones (docs/benchmarks.md).
"""

from __future__ import annotations


def apply_inductor_settings() -> None:
    """Turn inductor's comprehensive padding off for this process, before SegResMamba is compiled.

    A process-wide setting, read when a compiled module first runs: call it before the first forward pass
    of ``torch.compile(network)``. It only changes the memory layout inductor picks for intermediate
    buffers (a performance heuristic), never what any network computes."""
    import torch._inductor.config as inductor_config

    inductor_config.comprehensive_padding = False
