"""Dataset converters into nnU-Net v2's raw layout (BTCV; see btcv.py for the paper's other datasets)."""
