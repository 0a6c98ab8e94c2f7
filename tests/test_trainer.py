"""The trainers inside nnU-Net, without data loading: set-up checks, multi-channel training steps, fp32 for
noAMP, the epoch's train loss, checkpoint writing, and a strict checkpoint round trip through nnU-Net's
predictor for every trainer variant. Plans are nnU-Net's own plans for Hippocampus (tests/data)."""

import copy
import errno
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.run.run_training import maybe_load_checkpoint
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_segresmamba import ssm, training
from nnunetv2_segresmamba.network import UnsupportedConfigurationError
from nnunetv2_segresmamba.ssm import BACKEND_ENV, ScanBackendError
from nnunetv2_segresmamba.training import (NonFiniteLossError, nnUNetTrainerSegResMamba,
                                           nnUNetTrainerSegResMamba_noAMP)
from nnunetv2_segresmamba.training.device_checks import DeviceUnavailableError
from nnunetv2_segresmamba.training.resilience import (CheckpointWriteError, ResilientTrainingMixin,
                                                      UnusableCheckpointError)

DATA = Path(__file__).parent / "data"
PLANS = json.loads((DATA / "hippocampus_plans.json").read_text())
DATASET = json.loads((DATA / "hippocampus_dataset.json").read_text())
SMALL_PATCH = [16, 24, 16]  # the plan's strides need multiples of 8; small keeps full-width networks fast


class SmallTrainer(nnUNetTrainerSegResMamba):
    network_options = dict(widths=(8, 16, 16, 32))


def plans(patch=SMALL_PATCH, continue_training=False) -> dict:
    out = copy.deepcopy(PLANS)
    out["configurations"]["3d_fullres"]["patch_size"] = list(patch)
    out["continue_training"] = continue_training  # nnU-Net's run_training adds this key
    return out


@pytest.fixture
def nnunet_folders(tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))
    # initialize() only infers the dataset class from the preprocessed folder's file endings.
    preprocessed = tmp_path / "nnUNet_preprocessed" / PLANS["dataset_name"] / "nnUNetPlans_3d_fullres"
    preprocessed.mkdir(parents=True)
    (preprocessed / "case.b2nd").touch()
    return tmp_path


def make_trainer(cls=SmallTrainer, dataset=DATASET, **plan_options):
    return cls(plans(**plan_options), "3d_fullres", 0, copy.deepcopy(dataset), torch.device("cpu"))


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*")] if folder.exists() else []


# --- set-up checks (fail before anything is written) ---------------------------------------------------------

def test_2d_configuration_fails_before_anything_is_written(nnunet_folders):
    with pytest.raises(UnsupportedConfigurationError, match="3d_fullres"):
        nnUNetTrainerSegResMamba(plans(), "2d", 0, copy.deepcopy(DATASET), torch.device("cpu"))
    assert files_under(nnunet_folders / "nnUNet_results") == []


@pytest.mark.parametrize("backend,device,advice", [("bogus", "cpu", "bogus"), ("cuda", "cpu", "cuda")])
def test_unusable_scan_backend_fails_when_the_trainer_is_set_up(nnunet_folders, monkeypatch, backend, device, advice):
    monkeypatch.setenv(BACKEND_ENV, backend)
    with pytest.raises(ScanBackendError, match=advice):
        nnUNetTrainerSegResMamba(plans(), "3d_fullres", 0, copy.deepcopy(DATASET), torch.device(device))
    assert files_under(nnunet_folders / "nnUNet_results") == []


def test_training_without_a_gpu_and_without_device_cpu_fails_before_anything_is_written(nnunet_folders,
                                                                                       monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="add `-device cpu`"):
        nnUNetTrainerSegResMamba(plans(), "3d_fullres", 0, copy.deepcopy(DATASET), torch.device("cuda"))
    assert files_under(nnunet_folders / "nnUNet_results") == []


# --- training steps ------------------------------------------------------------------------------------------

def batch_for(trainer, batch_size=2, seed=0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    patch = trainer.configuration_manager.patch_size
    data = torch.randn(batch_size, trainer.num_input_channels, *patch, generator=generator)
    seg = torch.randint(0, 3, (batch_size, 1, *patch), generator=generator, dtype=torch.int16)
    downsample = DownsampleSegForDSTransform(trainer._get_deep_supervision_scales())
    per_case = [downsample(segmentation=s)["segmentation"] for s in seg]
    target = [torch.stack([case[i] for case in per_case]) for i in range(len(per_case[0]))]
    return {"data": data, "target": target}


def test_multichannel_input_and_a_patch_off_the_strides_train_through_the_trainer(nnunet_folders):
    """Three input channels, and a hand-edited patch that is not a multiple of the plan's strides (8): the
    deep-supervision targets nnU-Net makes for it (18 / 4 = 4.5 -> 4) must match the outputs."""
    dataset = copy.deepcopy(DATASET)
    dataset["channel_names"] = {"0": "T1", "1": "T2", "2": "FLAIR"}
    trainer = make_trainer(dataset=dataset, patch=[18, 24, 16])
    trainer.initialize()
    assert trainer.num_input_channels == 3 and trainer.network_config.in_channels == 3
    assert trainer.network.stem.in_channels == 3
    loss = trainer.train_step(batch_for(trainer))["loss"]
    assert np.isfinite(loss)
    # deep supervision on: every parameter got a gradient from the step, except the coarsest head, which
    # nnU-Net's deep-supervision loss weights with 0
    missing = [n for n, p in trainer.network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == ["decoder.seg_layers.3.weight", "decoder.seg_layers.3.bias"], missing


def test_noamp_keeps_the_network_in_fp32_under_autocast(nnunet_folders, monkeypatch):
    manager = PlansManager(plans())
    configuration = manager.get_configuration("3d_fullres")
    x = torch.randn(1, 1, *SMALL_PATCH)
    dtypes = {}
    for cls in (nnUNetTrainerSegResMamba, nnUNetTrainerSegResMamba_noAMP):
        network = cls.build_network_architecture(manager, configuration, 1, 3, False)
        seen = set()
        hooks = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
                 for m in network.modules() if isinstance(m, (nn.Conv3d, nn.Linear))]
        # bfloat16 autocast on the CPU stands in for fp16 autocast on a GPU: the same switch in the network
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = network(x)
        for hook in hooks:
            hook.remove()
        dtypes[cls.__name__] = (seen, out.dtype)
    assert dtypes["nnUNetTrainerSegResMamba"] == ({torch.bfloat16}, torch.bfloat16)
    assert dtypes["nnUNetTrainerSegResMamba_noAMP"] == ({torch.float32}, torch.float32)
    # and no GradScaler: the fp32 loss is not scaled (device "cuda" as on a GPU; nothing runs on it here)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda_trainer = nnUNetTrainerSegResMamba_noAMP(plans(), "3d_fullres", 0, copy.deepcopy(DATASET),
                                                  torch.device("cuda"))
    assert cuda_trainer.grad_scaler is None


def test_train_loss_averages_the_steps_that_were_not_skipped(nnunet_folders):
    trainer = make_trainer()
    outputs = [{"loss": np.array(1.0)}, {"loss": np.array(np.nan)}, {"loss": np.array(3.0)}]
    trainer.on_train_epoch_end(outputs)
    assert trainer.logger.get_value("train_losses", step=-1) == pytest.approx(2.0)
    log = Path(trainer.log_file).read_text()
    assert "1 of 3 training steps in epoch 0 had a non-finite loss" in log
    trainer.current_epoch = 1
    trainer.on_train_epoch_end([{"loss": np.array(np.inf)}])  # every step skipped: NaN, not a number
    assert math.isnan(trainer.logger.get_value("train_losses", step=-1))


# --- non-finite losses --------------------------------------------------------------------------------------

class DefaultNetworkResilientTrainer(ResilientTrainingMixin, nnUNetTrainer):
    """The resilience mixins on nnU-Net's own trainer and network."""


def nan_loss(output, target) -> torch.Tensor:
    return torch.tensor(float("nan"))


def weights_of(trainer) -> dict:
    return {name: value.clone() for name, value in trainer.network.state_dict().items()}


@pytest.mark.parametrize("cls", [SmallTrainer, DefaultNetworkResilientTrainer])
def test_a_nan_loss_skips_its_step_and_the_next_finite_one_trains(nnunet_folders, cls):
    trainer = make_trainer(cls)
    trainer.initialize()
    batch, loss = batch_for(trainer), trainer.loss
    before = weights_of(trainer)
    trainer.loss = nan_loss
    assert np.isnan(trainer.train_step(batch)["loss"])
    assert all(torch.equal(before[name], value) for name, value in trainer.network.state_dict().items())
    assert "training loss nan in epoch 0; step skipped (1 in a row" in Path(trainer.log_file).read_text()
    trainer.loss = loss
    assert np.isfinite(trainer.train_step(batch)["loss"])
    assert trainer.nonfinite_guard.consecutive == 0
    assert not all(torch.equal(before[name], value) for name, value in trainer.network.state_dict().items())
    # a validation step is not guarded: its NaN loss is nnU-Net's to report
    trainer.loss = nan_loss
    assert np.isnan(trainer.validation_step(batch)["loss"]) and trainer.nonfinite_guard.consecutive == 0


def test_nan_losses_in_a_row_stop_with_advice_and_the_last_good_weights(nnunet_folders):
    trainer = make_trainer()
    trainer.initialize()
    trainer.current_epoch = 7
    trainer.loss = nan_loss
    batch = batch_for(trainer)
    for _ in range(trainer.nonfinite_loss_patience - 1):
        trainer.train_step(batch)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.train_step(batch)
    message = str(error.value)
    assert "epoch 7" in message and "-tr nnUNetTrainerSegResMamba_noAMP" in message and "--c" in message
    assert latest_epoch(trainer) == 7  # --c repeats epoch 7
    assert trainer.current_epoch == 7


def test_no_checkpoint_is_written_from_broken_weights(nnunet_folders):
    trainer = make_trainer()
    trainer.initialize()
    with torch.no_grad():
        next(trainer.network.parameters()).fill_(float("nan"))
    trainer.loss = nan_loss
    batch = batch_for(trainer)
    for _ in range(trainer.nonfinite_loss_patience - 1):
        trainer.train_step(batch)
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        trainer.train_step(batch)
    assert latest_epoch(trainer) is None


# --- checkpoints ---------------------------------------------------------------------------------------------

def finish_epoch(trainer) -> None:
    """What nnU-Net logs in one epoch, without running it."""
    trainer.on_epoch_start()
    trainer.logger.log("lrs", 0.01, trainer.current_epoch)
    trainer.logger.log("train_losses", 1.0, trainer.current_epoch)
    trainer.logger.log("val_losses", 1.0, trainer.current_epoch)
    trainer.logger.log("mean_fg_dice", 0.5, trainer.current_epoch)
    trainer.logger.log("dice_per_class_or_region", [0.5, 0.5], trainer.current_epoch)
    trainer.on_epoch_end()


def latest_epoch(trainer) -> int | None:
    path = Path(trainer.output_folder) / "checkpoint_latest.pth"
    return torch.load(path, weights_only=False)["current_epoch"] if path.exists() else None


def test_short_trainings_write_the_latest_checkpoint_every_epoch(nnunet_folders):
    trainer = make_trainer()
    trainer.num_epochs = 3
    trainer.initialize()
    finish_epoch(trainer)
    assert latest_epoch(trainer) == 1  # --c starts with epoch 1
    finish_epoch(trainer)
    assert latest_epoch(trainer) == 2
    assert not list(Path(trainer.output_folder).glob("*.partial"))


def test_long_trainings_write_the_latest_checkpoint_by_wall_time(nnunet_folders):
    trainer = make_trainer()
    trainer.num_epochs = 1000
    trainer.initialize()
    finish_epoch(trainer)
    assert latest_epoch(trainer) is None  # less than checkpoint_interval_s since the start
    trainer._last_latest_checkpoint -= trainer.checkpoint_interval_s
    finish_epoch(trainer)
    assert latest_epoch(trainer) == 2


def test_progress_png_shows_every_epoch_on_a_cpu_run(nnunet_folders):
    trainer = make_trainer()
    trainer.num_epochs = 3
    trainer.initialize()
    trainer._energy_counter = None  # what on_train_start finds on a CPU
    finish_epoch(trainer)
    finish_epoch(trainer)
    lengths = {key: len(values) for key, values in trainer.logger.local_logger.my_fantastic_logging.items()}
    # nnU-Net's plot_progress_png draws min(lengths) epochs
    assert min(lengths.values()) == 2, lengths


# --- --c with damaged or foreign checkpoints, and a checkpoint write that fails -----------------------------

def three_epochs_trained() -> Path:
    """A fold folder after 3 of 5 epochs: checkpoint_best.pth from epoch 0 (the pseudo Dice stays the same
    afterwards), checkpoint_latest.pth resuming at epoch 3."""
    trainer = make_trainer()
    trainer.num_epochs = 5
    trainer.initialize()
    for _ in range(3):
        finish_epoch(trainer)
    return Path(trainer.output_folder)


def resume(**plan_options):
    """What `nnUNetv2_train ... --c` does before it trains: nnU-Net's own checkpoint choice, then ours."""
    trainer = make_trainer(continue_training=True, **plan_options)
    trainer.num_epochs = 5
    maybe_load_checkpoint(trainer, continue_training=True, validation_only=False)
    return trainer, Path(trainer.log_file).read_text()


def other_class_count_checkpoint(path: Path) -> None:
    dataset = copy.deepcopy(DATASET)
    dataset["labels"]["Extra"] = 3
    trainer = make_trainer(dataset=dataset)
    trainer.initialize()
    trainer.save_checkpoint(str(path))


@pytest.mark.parametrize("damage,reason", [
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "it cannot be read, it is truncated"),
    (lambda p: p.write_bytes(b""), r"it is empty \(0 bytes\)"),
    (lambda p: p.write_bytes(bytes(p.stat().st_size)), "it cannot be read, it is truncated"),
    (other_class_count_checkpoint, "it was trained for 4 output classes and this dataset has 3"),
], ids=["truncated", "empty", "zero-filled", "other-class-count"])
def test_continue_falls_back_to_the_newest_checkpoint_that_loads(nnunet_folders, damage, reason):
    folder = three_epochs_trained()
    damage(folder / "checkpoint_latest.pth")
    trainer, log = resume()
    assert trainer.current_epoch == 1  # checkpoint_best.pth, written after epoch 0
    assert re.search(rf"checkpoint_latest\.pth cannot be resumed from: {reason}.*Taking checkpoint_best\.pth "
                     rf"\(resumes at epoch 1\)", log), log
    # set aside, so that nothing reads it again; the next checkpoint_latest.pth is a new one
    assert not (folder / "checkpoint_latest.pth").exists() and (folder / "checkpoint_latest.pth.unusable").exists()


def test_continue_with_no_loadable_checkpoint_stops_and_changes_nothing(nnunet_folders):
    folder = three_epochs_trained()
    (folder / "checkpoint_best.pth").unlink()
    latest = folder / "checkpoint_latest.pth"
    latest.write_bytes(latest.read_bytes()[:1000])
    with pytest.raises(UnusableCheckpointError, match=r"checkpoint_latest\.pth: it cannot be read.*without --c"):
        resume()
    assert latest.stat().st_size == 1000 and sorted(p.name for p in folder.glob("checkpoint*")) == [latest.name]


def test_validation_only_with_a_damaged_final_checkpoint_names_it_and_how_to_retrain(nnunet_folders):
    folder = three_epochs_trained()
    (folder / "checkpoint_final.pth").write_bytes(b"")
    trainer = make_trainer()
    with pytest.raises(UnusableCheckpointError, match=r"checkpoint_final\.pth: it is empty.*Restore the file, or let "
                                                      r"`nnUNetv2_train Dataset004_Hippocampus 3d_fullres 0"):
        maybe_load_checkpoint(trainer, continue_training=False, validation_only=True)  # nnUNetv2_train ... --val


def test_continue_takes_the_checkpoint_with_the_most_epochs_whatever_the_file_times(nnunet_folders):
    """A finished training continued for more epochs and interrupted: checkpoint_latest.pth has more epochs
    than checkpoint_final.pth, even where copying the folder gave it the older time stamp."""
    folder = three_epochs_trained()
    final = folder / "checkpoint_final.pth"
    checkpoint = torch.load(folder / "checkpoint_latest.pth", weights_only=False)
    checkpoint["current_epoch"] = 2
    torch.save(checkpoint, final)
    os.utime(folder / "checkpoint_latest.pth", (1, 1))
    trainer, log = resume()
    assert trainer.current_epoch == 3
    assert "nnU-Net would have taken checkpoint_final.pth" in log and final.exists()


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_says_how_to_resume(nnunet_folders, monkeypatch):
    trainer = make_trainer()
    trainer.num_epochs = 5
    trainer.initialize()
    finish_epoch(trainer)
    latest = Path(trainer.output_folder) / "checkpoint_latest.pth"
    before = latest.read_bytes()

    def full_disk(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    no_space = r"checkpoint_latest\.pth \(OSError: \[Errno 28\] No space left"
    with pytest.raises(CheckpointWriteError, match=no_space) as error:
        finish_epoch(trainer)
    assert latest.read_bytes() == before and not list(latest.parent.glob("*.partial"))
    assert ("`nnUNetv2_train Dataset004_Hippocampus 3d_fullres 0 -tr SmallTrainer -p nnUNetPlans -device cpu --c`"
            in str(error.value)) and "checkpoint_latest.pth, checkpoint_best.pth are intact" in str(error.value)


# --- the training log states the network that was built ----------------------------------------------------

def test_the_log_states_the_network_that_was_built(nnunet_folders):
    trainer = make_trainer()
    trainer.initialize()
    trainer.print_plans()
    log = Path(trainer.log_file).read_text()
    assert "'network_class_name': 'dynamic_network_architectures" in log or "PlainConvUNet" in log  # nnU-Net's dump
    assert re.search(r"Network built by SmallTrainer: SegResMamba, 0\.\d\d M parameters", log), log
    # the plan pools 8x on every axis: levels on nnU-Net's stage grids, each CMMB's first ToM one stage coarser
    for line in ("  0      8      8x12x8      4x6x4, 8x12x8", "  1      16     4x6x4       2x3x2, 4x6x4",
                 "  3      32     2x3x2       2x3x2, 2x3x2"):
        assert line in log.splitlines(), log
    assert "scan backend: torch (SEGRESMAMBA_SCAN_BACKEND=auto, on cpu); torch.compile: no; precision: fp32" in log


# --- every variant: trained weights load strictly into the network nnU-Net's predictor builds ---------------

def build(cls, deep_supervision: bool) -> nn.Module:
    manager = PlansManager(plans())
    return cls.build_network_architecture(manager, manager.get_configuration("3d_fullres"), 1, 3, deep_supervision)


@pytest.mark.parametrize("name", training.TRAINERS)
def test_every_variant_loads_its_training_weights_strictly_for_prediction(name):
    """Training builds with deep supervision on, the predictor with it off and loads strictly. On the meta
    device: the module structure without the cost of initialising 76 M parameters 25 times."""
    cls = getattr(training, name)
    with torch.device("meta"):
        trained, for_prediction = build(cls, True), build(cls, False)
    assert for_prediction.load_state_dict(trained.state_dict(), strict=True, assign=True)
    assert list(trained.state_dict()) == list(for_prediction.state_dict())


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    (folder / "plans.json").write_text(json.dumps(plans()))
    (folder / "dataset.json").write_text(json.dumps(DATASET))
    (folder / "fold_0").mkdir()
    return folder


# The two network widths the variants build (the paper's and the CPU demo's), through a real checkpoint file.
@pytest.mark.parametrize("name", ["nnUNetTrainerSegResMamba", "nnUNetTrainerSegResMamba_DemoCPU"])
def test_checkpoint_round_trip_through_the_predictor(model_folder, name):
    torch.manual_seed(0)
    trained = build(getattr(training, name), True)  # as initialize() builds it
    torch.save({"network_weights": trained.state_dict(), "trainer_name": name,
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": None},
               model_folder / "fold_0" / "checkpoint_final.pth")
    predictor = nnUNetPredictor(device=torch.device("cpu"))
    predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=(0,))  # loads strictly
    x = torch.randn(1, 1, *SMALL_PATCH)
    trained.eval().deep_supervision = False
    with torch.no_grad():
        assert torch.equal(predictor.network.eval()(x), trained(x))


def test_the_predictor_checks_the_scan_backend(model_folder, monkeypatch):
    torch.save({"network_weights": {}, "trainer_name": "nnUNetTrainerSegResMamba",
                "init_args": {"configuration": "3d_fullres"}}, model_folder / "fold_0" / "checkpoint_final.pth")
    monkeypatch.setenv(BACKEND_ENV, "bogus")
    with pytest.raises(ScanBackendError, match="bogus"):
        nnUNetPredictor(device=torch.device("cpu")).initialize_from_trained_model_folder(str(model_folder), (0,))


def test_the_predictor_checks_the_scan_backend_against_its_own_device(model_folder, monkeypatch):
    """On a GPU machine, nnUNetv2_predict -device cpu cannot run the Triton scan: the check must take the
    predictor's device, not the machine's GPU."""
    torch.save({"network_weights": {}, "trainer_name": "nnUNetTrainerSegResMamba",
                "init_args": {"configuration": "3d_fullres"}}, model_folder / "fold_0" / "checkpoint_final.pth")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ssm.registry, "unavailable_reason", lambda backend: None)  # both GPU kernels import, as on a GPU
    monkeypatch.setenv(BACKEND_ENV, "triton")
    with pytest.raises(ScanBackendError, match="tensors are on cpu"):
        nnUNetPredictor(device=torch.device("cpu")).initialize_from_trained_model_folder(str(model_folder), (0,))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="nnUNetv2_predict runs on a CUDA GPU.*add `-device cpu`"):
        nnUNetPredictor(device=torch.device("cuda")).initialize_from_trained_model_folder(str(model_folder), (0,))
