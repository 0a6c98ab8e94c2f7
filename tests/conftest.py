"""Test-session set-up shared by every test module."""

import os

import torch

if not torch.cuda.is_available():
    # Without a GPU, Triton kernels run in Triton's interpreter (NumPy on the CPU): tests/test_triton_scan.py
    # then checks the kernels' logic in CI. Triton reads the flag when a kernel is defined, so set it first.
    os.environ.setdefault("TRITON_INTERPRET", "1")
