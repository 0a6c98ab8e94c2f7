"""Less training memory for the same network: recompute activations in backward instead of storing them."""

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMamba_recomputeToM0(nnUNetTrainerSegResMamba):
    """The ToM layers of encoder level 0 (the largest grid: 64^3 tokens at a 128^3 patch) recompute their
    activations during backward. Same outputs and gradients; more time per step, less memory."""

    network_options = dict(recompute_tom_levels=(0,))
