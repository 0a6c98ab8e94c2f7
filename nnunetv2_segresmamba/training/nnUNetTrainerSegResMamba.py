"""nnUNetTrainerSegResMamba: nnU-Net's trainer with SegResMamba as its network."""

from __future__ import annotations

from os.path import join
from time import time

import numpy as np
import torch
import torch.distributed as dist
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import autocast, nn

from .. import ssm
from ..network import SegResMamba, SegResMambaConfig, config_from_plans
from ..network.compile_settings import apply_inductor_settings
from ..ssm import resolve_backend
from .energy import EnergyLoggingMixin
from .nonfinite_loss import NonFiniteLossError, NonFiniteLossGuard
from .device_checks import check_build_device, check_training_device
from .network_report import network_report
from .resilience import ResumableCheckpointsMixin
from .wrapped import unwrap as _unwrap


class nnUNetTrainerSegResMamba(ResumableCheckpointsMixin, EnergyLoggingMixin, nnUNetTrainer):
    """SegResMamba in nnU-Net's pipeline with nnU-Net's own recipe: SGD with the poly schedule,
    Dice + CE, deep supervision on the decoder stages, GPU energy logged per epoch. Variants change
    one thing each. Checkpoints are written atomically and --c resumes from the newest one that loads
    (ResumableCheckpointsMixin)."""

    # SegResMambaConfig options that variants change (the ablations of the paper's Table 4).
    network_options: dict = {}
    # fp16 autocast for the network on CUDA; the noAMP variant trains it in fp32.
    use_amp: bool = True
    # Consecutive non-finite losses that are skipped before training stops.
    nonfinite_loss_patience: int = 5
    # checkpoint_latest.pth (what --c resumes from) is rewritten after the first epoch that ends this many
    # seconds after the last write; nnU-Net alone writes it only every 50 epochs.
    checkpoint_interval_s: float = 600.0
    # A training of at most this many epochs rewrites checkpoint_latest.pth after every epoch.
    checkpoint_every_epoch_up_to: int = 50

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # Fail before nnU-Net creates the fold's folder and log, with advice, on a 2d configuration, a patch
        # the network cannot take, a GPU this machine does not have (nnU-Net's -device default) or a scan
        # backend that cannot run on this device. initialize() replaces network_config with the built
        # network's own configuration, which is what debug.json records.
        self.network_config = self.check_configuration(PlansManager(plans).get_configuration(configuration))
        check_training_device(device)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.nonfinite_guard = NonFiniteLossGuard(self.nonfinite_loss_patience)
        self._last_latest_checkpoint = time()
        if not self.use_amp:
            self.grad_scaler = None

    def initialize(self) -> None:
        super().initialize()
        self.network_config = _unwrap(self.network).config

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
        # strictly: SegResMamba builds its deep supervision heads either way. The predictor gives no device:
        # the check takes the predictor's own (nnUNetv2_predict -device).
        check_build_device()
        # Whoever compiles this network next (nnU-Net's trainer by default, its predictor with nnUNet_compile=true)
        # must do so with inductor's comprehensive padding off: network/compile_settings.py says why.
        apply_inductor_settings()
        network = SegResMamba(cls.config_for(configuration_manager, num_input_channels, num_output_channels,
                                             enable_deep_supervision))
        network.autocast_enabled = cls.use_amp
        if not enable_deep_supervision:
            # Unused heads must not ask for gradients, or DDP (-num_gpus N) waits for them forever.
            network.decoder.ds_heads.requires_grad_(False)
        return network

    def _get_deep_supervision_scales(self):
        return self.network_config.deep_supervision_scales if self.enable_deep_supervision else None

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        _unwrap(self.network).deep_supervision = enabled

    def _do_i_compile(self) -> bool:
        """SegResMamba compiles whenever nnU-Net compiles its own networks (on a GPU, unless nnUNet_compile is
        false): the scan kernels are registered operators, so torch.compile traces the whole network. Inductor's
        comprehensive padding was turned off when the network was built (build_network_architecture; with it,
        torch 2.11 computed wrong gradients for SegResMamba). The pure-PyTorch scan would be unrolled into
        thousands of graph nodes: it never compiles."""
        if not super()._do_i_compile():
            return False
        backend = ssm.resolve_backend(self.device)
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

    def on_train_start(self) -> None:
        super().on_train_start()
        self._last_latest_checkpoint = time()
        if self._resumed_from is not None:
            self.print_to_log_file(f"Resuming training at epoch {self.current_epoch} (of {self.num_epochs}) from "
                                   f"{self._resumed_from}.")
        elif self._continue_requested:
            self.print_to_log_file(f"WARNING: --c found no checkpoint (checkpoint_final/latest/best.pth) in "
                                   f"{self.output_folder}; training starts at epoch 0.")

    def print_plans(self) -> None:
        super().print_plans()  # nnU-Net's dump of the plans, whose network_class_name is not what trains
        if self.local_rank == 0:
            self.print_to_log_file(network_report(self.network, self.__class__.__name__,
                                                  self.configuration_manager.network_arch_class_name,
                                                  self.configuration_manager.patch_size, self.device,
                                                  resolve_backend(self.device)), add_timestamp=False)

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        """The epoch's train loss over the steps that were not skipped (nnU-Net's mean would be NaN after one
        skipped step), and how many were skipped."""
        losses = np.array([float(output["loss"]) for output in train_outputs])
        skipped = int((~np.isfinite(losses)).sum())  # the same on every rank: ranks skip together
        if self.is_ddp:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, losses)
            losses = np.concatenate(gathered)
        finite = losses[np.isfinite(losses)]
        if skipped:
            self.print_to_log_file(f"{skipped} of {len(train_outputs)} training steps in epoch {self.current_epoch} "
                                   f"had a non-finite loss and were skipped; train_loss averages the others.")
        self.logger.log("train_losses", float(finite.mean()) if finite.size else float("nan"), self.current_epoch)

    def on_epoch_end(self) -> None:
        epoch = self.current_epoch
        super().on_epoch_end()  # nnU-Net's logging, its every-50-epochs latest checkpoint, the best one
        if (epoch + 1) % self.save_every == 0:
            self._last_latest_checkpoint = time()  # nnU-Net has just written it
        elif self._latest_checkpoint_due(epoch):
            self._save_checkpoint_resuming_at(epoch + 1)
            self._last_latest_checkpoint = time()

    def _latest_checkpoint_due(self, epoch: int) -> bool:
        if epoch >= self.num_epochs - 1:
            return False  # on_train_end writes checkpoint_final.pth
        return (self.num_epochs <= self.checkpoint_every_epoch_up_to
                or time() - self._last_latest_checkpoint >= self.checkpoint_interval_s)

    def _save_checkpoint_resuming_at(self, epoch: int) -> None:
        """Write checkpoint_latest.pth so that --c starts with ``epoch`` (save_checkpoint records
        current_epoch + 1)."""
        current = self.current_epoch
        self.current_epoch = epoch - 1
        try:
            self.save_checkpoint(join(self.output_folder, "checkpoint_latest.pth"))
        finally:
            self.current_epoch = current

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's train step, plus: a non-finite loss skips the update instead of corrupting the
        weights, and several in a row stop training with a resumable checkpoint."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            loss = self.loss(output, target)

        if not self._loss_is_usable(self._worst_loss_over_ranks(loss.detach())):
            return {"loss": np.array(np.nan)}
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy()}

    def _worst_loss_over_ranks(self, loss: torch.Tensor) -> float:
        """This rank's loss, or under DDP a non-finite value if any rank's loss is non-finite, so that all
        ranks skip a step together (a rank that skipped backward alone would hang the others)."""
        if not self.is_ddp:
            return float(loss)
        finite = torch.isfinite(loss).to(torch.int32).reshape(1)
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return float(loss) if finite.item() else float("nan")

    def _loss_is_usable(self, loss: float) -> bool:
        verdict = self.nonfinite_guard.record(loss)
        if verdict == "skip":
            self.print_to_log_file(f"WARNING: training loss {loss} in epoch {self.current_epoch}; step skipped "
                                   f"({self.nonfinite_guard.consecutive} in a row, stopping at "
                                   f"{self.nonfinite_guard.patience}).")
        if verdict == "stop":
            kept = self._save_resumable_checkpoint()
            message = (f"The training loss was {loss} for {self.nonfinite_guard.consecutive} consecutive steps in "
                       f"epoch {self.current_epoch}. fp16 overflow is the usual cause: retrain with "
                       f"-tr nnUNetTrainerSegResMamba_noAMP (fp32), or lower the learning rate. {kept}")
            self.print_to_log_file(message)
            raise NonFiniteLossError(message)
        return verdict == "ok"

    def _save_resumable_checkpoint(self) -> str:
        """Keep the weights of the last good step (the failing steps were skipped) so --c can resume."""
        if not all(torch.isfinite(p).all() for p in self.network.parameters()):
            return "The weights are not finite, so no checkpoint was written; the last one on disk is kept."
        self._save_checkpoint_resuming_at(self.current_epoch)  # --c repeats this epoch
        return (f"The last good weights are in {join(self.output_folder, 'checkpoint_latest.pth')}; "
                f"`nnUNetv2_train ... --c` resumes from the start of epoch {self.current_epoch}.")
