"""Kept so that ``nnunetv2_segresmamba.baselines`` still imports: the module is ``benchmarking/baselines.py``."""

from .benchmarking.baselines import *  # noqa: F401,F403
