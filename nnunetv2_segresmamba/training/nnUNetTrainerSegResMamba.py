"""nnUNetTrainerSegResMamba: nnU-Net's trainer with SegResMamba as its network."""

from __future__ import annotations

import torch
import torch.distributed as dist
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from .. import ssm
from ..network import SegResMamba, SegResMambaConfig, config_from_plans
from ..network.compile_settings import apply_inductor_settings
from ..network.scan_shapes import scan_shapes
from ..ssm.auto_select import fastest_backend
from ..ssm.registry import AUTO
from .cuda_graphs import CudaGraphStepsMixin
from .device_checks import check_build_device, check_training_device
from .energy import EnergyLoggingMixin
from .network_report import network_report
from .resilience import ResilientTrainingMixin
from .wrapped import unwrap


class nnUNetTrainerSegResMamba(CudaGraphStepsMixin, ResilientTrainingMixin, EnergyLoggingMixin, nnUNetTrainer):
    """SegResMamba in nnU-Net's pipeline with nnU-Net's own recipe: SGD with the poly schedule,
    Dice + CE, deep supervision on the decoder stages, GPU energy logged per epoch. Variants change
    one thing each. Wherever nnU-Net compiles (a GPU, nnUNet_compile not false) the network is compiled and its
    steps replay CUDA graphs (CudaGraphStepsMixin). Non-finite losses skip their step, checkpoints are written
    atomically and --c resumes from the newest one that loads (ResilientTrainingMixin)."""

    # SegResMambaConfig options that variants change (the ablations of the paper's Table 4).
    network_options: dict = {}
    # fp16 autocast for the network on CUDA; the noAMP variant trains it in fp32.
    use_amp: bool = True
    fp32_retrain_hint = "-tr nnUNetTrainerSegResMamba_noAMP (fp32)"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # Fail before nnU-Net creates the fold's folder and log, with advice, on a 2d configuration, a patch
        # the network cannot take, a GPU this machine does not have (nnU-Net's -device default) or a scan
        # backend that cannot run on this device. initialize() replaces network_config with the built
        # network's own configuration, which is what debug.json records.
        self.network_config = self.check_configuration(PlansManager(plans).get_configuration(configuration))
        check_training_device(device, self.network_config.scan_backend)
        super().__init__(plans, configuration, fold, dataset_json, device)
        if not self.use_amp:
            self.grad_scaler = None

    def initialize(self) -> None:
        super().initialize()
        self._choose_auto_scan_backend()
        self.network_config = unwrap(self.network).config

    def _choose_auto_scan_backend(self) -> None:
        """With ``auto`` on a GPU where more than one GPU backend is installed (mamba-ssm besides Triton), the
        one that runs this plan's scans fastest, timed here once; ``auto`` keeps its fixed order otherwise."""
        network = unwrap(self.network)
        candidates = [name for name in ssm.AUTO_PREFERENCE if ssm.available(name)]
        if network.config.scan_backend != AUTO or self.device.type != "cuda" or len(candidates) < 2:
            return
        shapes = scan_shapes(network.config, self.configuration_manager.patch_size, self.batch_size)
        try:
            choice, times = fastest_backend(shapes, candidates, self.device)
        except Exception as error:  # the fixed order still works
            self.print_to_log_file(f"WARNING: timing the scan backends failed ({type(error).__name__}: {error}); "
                                   f"'auto' keeps its fixed order.")
            choice, times = None, {}
        # The timing is not training: its memory neither counts towards the training's peak nor stays reserved.
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        if self.is_ddp:  # every rank takes part, and runs what rank 0 chose
            chosen = [choice]
            dist.broadcast_object_list(chosen, src=0)
            choice = chosen[0]
        if choice is None:
            return
        network.use_scan_backend(choice)
        timed = ", ".join(f"{name} {ms:.1f} ms" for name, ms in times.items())
        self.print_to_log_file(f"Scan backend 'auto': {choice} ({timed} for this plan's scans, forward and "
                               f"backward, on this GPU).")

    @classmethod
    def check_configuration(cls, configuration_manager: ConfigurationManager) -> SegResMambaConfig:
        """The network configuration for a plan's configuration, or UnsupportedConfigurationError /
        PatchTooSmallError (ValueErrors) that say what to use instead; channel and class counts do not matter
        for that. scripts/slurm_submit.py asks this before it writes any job."""
        return cls.config_for(configuration_manager, 1, 2, False)

    @classmethod
    def config_for(cls, configuration_manager: ConfigurationManager, num_input_channels: int,
                   num_output_channels: int, enable_deep_supervision: bool) -> SegResMambaConfig:
        return config_from_plans(configuration_manager, num_input_channels, num_output_channels,
                                 enable_deep_supervision, **cls.network_options)

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        # nnU-Net's predictor calls this on the class with deep supervision off and loads the weights
        # strictly: SegResMamba builds its deep supervision heads either way.
        config = cls.config_for(configuration_manager, num_input_channels, num_output_channels,
                                enable_deep_supervision)
        # The predictor gives no device: the check takes the predictor's own (nnUNetv2_predict -device).
        check_build_device(config.scan_backend)
        # Whoever compiles this network next (nnU-Net's trainer by default, its predictor with nnUNet_compile=true)
        # must do so with inductor's comprehensive padding off: network/compile_settings.py says why.
        apply_inductor_settings()
        network = SegResMamba(config)
        network.autocast_enabled = cls.use_amp
        if not enable_deep_supervision:
            # Unused heads must not ask for gradients, or DDP (-num_gpus N) waits for them forever.
            network.decoder.ds_heads.requires_grad_(False)
        return network

    def configure_optimizers(self):
        """nnU-Net's SGD and poly schedule; on a GPU in PyTorch's fused implementation (``fuses_optimizer``)."""
        optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                    momentum=0.99, nesterov=True, fused=self.fuses_optimizer())
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def fuses_optimizer(self) -> bool:
        """The same update in one kernel per step instead of several passes over SegResMamba's 13x more weights
        than nnU-Net's network, and one GPU sync less per step: with a fused optimizer, nnU-Net's GradScaler
        hands the optimizer its inf check instead of reading it back from the GPU."""
        return self.device.type == "cuda"

    def _get_deep_supervision_scales(self):
        return self.network_config.deep_supervision_scales if self.enable_deep_supervision else None

    def _do_i_compile(self) -> bool:
        """SegResMamba compiles whenever nnU-Net compiles its own networks (on a GPU, unless nnUNet_compile is
        false): the scan kernels are registered operators, so torch.compile traces the whole network. Inductor's
        comprehensive padding was turned off when the network was built (build_network_architecture; with it,
        torch 2.11 computed wrong gradients for SegResMamba). The pure-PyTorch scan would be unrolled into
        thousands of graph nodes: it never compiles."""
        if not super()._do_i_compile():
            return False
        backend = ssm.resolve_backend(self.device, self.network_config.scan_backend)
        if backend not in ssm.GPU_BACKENDS:
            self._log_once(f"INFO: torch.compile disabled because the selective scan runs on the {backend} backend; "
                           f"Triton (shipped with CUDA builds of PyTorch) or mamba-ssm enables it.")
            return False
        return True

    def _log_once(self, message: str) -> None:
        logged = self.__dict__.setdefault("_logged_once", set())
        if message not in logged:
            logged.add(message)
            self.print_to_log_file(message)

    def print_plans(self) -> None:
        super().print_plans()  # nnU-Net's dump of the plans, whose network_class_name is not what trains
        if self.local_rank == 0:
            backend = ssm.resolve_backend(self.device, self.network_config.scan_backend)
            self.print_to_log_file(network_report(self.network, self.__class__.__name__,
                                                  self.configuration_manager.network_arch_class_name,
                                                  self.configuration_manager.patch_size, self.device, backend),
                                   add_timestamp=False)
