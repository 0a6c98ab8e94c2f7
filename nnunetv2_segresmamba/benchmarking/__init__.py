"""Measuring speed and memory: the helpers behind scripts/benchmark*.py and scripts/profile_network.py."""
