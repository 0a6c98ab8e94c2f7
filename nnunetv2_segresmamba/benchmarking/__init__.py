"""Helpers of the benchmark scripts in scripts/: timing, memory and profiling of networks and of nnU-Net's
prediction."""
