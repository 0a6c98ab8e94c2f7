"""How the network is compiled: nnUNetTrainerSegResMamba replays its steps from CUDA graphs
(training/cuda_graphs.py); this variant compiles as nnU-Net compiles its own networks."""

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMambaNoCudaGraphs(nnUNetTrainerSegResMamba):
    """``torch.compile(network)`` exactly as nnU-Net compiles, without CUDA graphs: slower steps at small patches,
    less memory reserved (no graph pool)."""

    compile_mode = None


class nnUNetTrainerSegResMambaCudaGraphs(nnUNetTrainerSegResMamba):
    """nnUNetTrainerSegResMamba under the name it had while CUDA graphs were a variant: results trained under
    this name still predict and resume."""
