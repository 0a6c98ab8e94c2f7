"""SegResMamba (MIDL 2025) as an nnU-Net v2 trainer plugin.

This package's top level stays free of heavy imports: the `.pth` hook that registers our trainers
with nnU-Net imports `nnunetv2_segresmamba._ext_path` at every interpreter start.
"""

__version__ = "0.1.0"
