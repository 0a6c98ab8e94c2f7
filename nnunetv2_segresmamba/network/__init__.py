"""SegResMamba: building blocks, ToM, CMMB, decoder, the network, and "plans -> config"."""

from .config import SegResMambaConfig
from .from_plans import (PatchTooSmallError, UnsupportedConfigurationError, config_from_patch_and_strides,
                         config_from_plans)
from .segresmamba import SegResMamba
from .tom import SCAN_ORDERS, TriOrientedMamba

__all__ = ["PatchTooSmallError", "SCAN_ORDERS", "SegResMamba", "SegResMambaConfig", "TriOrientedMamba",
           "UnsupportedConfigurationError", "config_from_patch_and_strides", "config_from_plans"]
