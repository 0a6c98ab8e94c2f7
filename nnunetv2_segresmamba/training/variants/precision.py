"""fp32 training: the remedy when fp16 autocast overflows (NaN losses)."""

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMamba_noAMP(nnUNetTrainerSegResMamba):
    """The network runs in fp32 (no autocast, no GradScaler); slower and larger, never overflows fp16."""

    use_amp = False
