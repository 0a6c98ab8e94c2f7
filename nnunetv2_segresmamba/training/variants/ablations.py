"""The ablations of the paper's Table 4 (Exp 3, the full model, is nnUNetTrainerSegResMamba itself)."""

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMamba_Exp1SegMambaEncoder(nnUNetTrainerSegResMamba):
    """Exp 1: SegMamba-style encoder stages (gated spatial conv + ToM) with the light ResNet decoder."""

    network_options = dict(encoder_block="segmamba", extra_conv_before_downsampling=False)


class nnUNetTrainerSegResMamba_Exp2NoExtraConv(nnUNetTrainerSegResMamba):
    """Exp 2: CMMB encoder stages, without the extra conv before each downsampling."""

    network_options = dict(encoder_block="cmmb", extra_conv_before_downsampling=False)
