"""Dataset converters into nnU-Net v2's raw layout (BTCV; see btcv.py for the paper's other datasets), and a
synthetic dataset of large volumes for timing large patches (synthetic.py)."""
