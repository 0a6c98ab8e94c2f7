"""scripts/compare.py on a fake nnUNet_results tree: what is collected, what is reported missing, the outputs."""

import contextlib
import copy
import csv
import io
import json
import math
import runpy
import statistics
import sys
from pathlib import Path

import pytest

from nnunetv2_segresmamba.comparison import (FIGURE_PANELS, epoch_times, figure_panels, figure_points,
                                             find_dataset_folder, label_names, markdown, network_figures)

REPO = Path(__file__).resolve().parents[1]
PLANS = json.loads((Path(__file__).parent / "data" / "hippocampus_plans.json").read_text())
DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
                "numTraining": 200, "file_ending": ".nii.gz"}
BASELINE, OURS, UNKNOWN = "nnUNetTrainer", "nnUNetTrainerSegResMamba", "nnUNetTrainerDoesNotExist"

# fold -> (Dice Anterior, Dice Posterior, foreground mean), and the epoch times of each training log
DICE = {BASELINE: {0: (0.80, 0.70, 0.75)},
        OURS: {0: (0.90, 0.80, 0.85), 1: (0.70, math.nan, 0.60)}}
LOGS = {BASELINE: {0: [[60.0, 10.0, 12.0]]},
        OURS: {0: [[90.0, 20.0, 22.0], [70.0, 24.0]],  # resumed with --c: a second log, warm-up again
               1: [[80.0, 30.0], [26.0]]}}  # a log of one epoch keeps it
ENERGY = {0: dict(total_kWh=0.0087, co2_kg=0.0053, peak_gpu_memory_GiB=2.1, peak_gpu_reserved_GiB=3.9),
          1: dict(total_kWh=0.0013, co2_kg=0.0008, peak_gpu_memory_GiB=2.5, peak_gpu_reserved_GiB=3.0)}


def small_plans() -> dict:
    plans = copy.deepcopy(PLANS)
    config = plans["configurations"]["3d_fullres"]
    config["batch_size"] = 2
    assert config["patch_size"] == [40, 56, 40]
    assert config["architecture"]["arch_kwargs"]["strides"] == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    return plans


def log_text(times: list[float]) -> str:
    lines = ["2026-11-26 16:42:45.607065: do_dummy_2d_data_aug: False "]
    for epoch, seconds in enumerate(times):
        lines += [f"2026-11-26 16:43:{epoch:02d}.001646: Epoch {epoch} ",
                  f"2026-11-26 16:43:{epoch:02d}.259804: Epoch time: {seconds} s "]
    return "\n".join(lines) + "\n"


def make_results(root: Path) -> Path:
    dataset = root / "Dataset004_Hippocampus"
    for trainer in (BASELINE, OURS, UNKNOWN):
        folder = dataset / f"{trainer}__nnUNetPlans__3d_fullres"
        folder.mkdir(parents=True)
        (folder / "plans.json").write_text(json.dumps(small_plans()))
        (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
        for fold, (anterior, posterior, mean) in DICE.get(trainer, {}).items():
            fold_folder = folder / f"fold_{fold}"
            (fold_folder / "validation").mkdir(parents=True)
            summary = {"foreground_mean": {"Dice": mean}, "metric_per_case": [],
                       "mean": {"1": {"Dice": anterior, "IoU": 0.5}, "2": {"Dice": posterior, "IoU": 0.5}}}
            (fold_folder / "validation" / "summary.json").write_text(json.dumps(summary))  # NaN as nnU-Net writes it
            for i, times in enumerate(LOGS[trainer][fold]):
                (fold_folder / f"training_log_2026_11_26_16_4{i}_00.txt").write_text(log_text(times))
            (fold_folder / "debug.json").write_text(json.dumps({"gpu_name": "Fake GPU"}))
            if trainer == OURS:
                (fold_folder / "energy.json").write_text(json.dumps(
                    dict(epochs=3, epoch_energy_kJ=[1.0, 2.0], grid_intensity_kg_per_kWh=0.61, gpu="Fake GPU",
                         world_size=1, **ENERGY[fold])))
        if trainer == OURS:
            (folder / "fold_0" / "inference_time.json").write_text(
                json.dumps({"device": "Fake GPU", "cases": 40, "seconds": 47.0, "tta": False}))
    (dataset / f"{BASELINE}__nnUNetPlans__3d_fullres" / "fold_3").mkdir()  # started, never validated
    return root


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Runs the command line once (building the networks is the slow part) and reads back what it wrote."""
    root = tmp_path_factory.mktemp("compare")
    results, out = make_results(root / "results"), root / "out"
    argv = ["compare.py", "--results", str(results), "--dataset", "4", "--trainers", BASELINE, OURS, UNKNOWN,
            "--out", str(out)]
    printed = io.StringIO()
    old_argv, sys.argv = sys.argv, argv
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(REPO / "scripts" / "compare.py"), run_name="__main__")
    finally:
        sys.argv = old_argv
    data = json.loads((out / "comparison.json").read_text())
    return dict(out=out, printed=printed.getvalue(), data=data,
                rows={row["trainer"]: row for row in data["rows"]})


def test_dice_per_class_and_mean_over_the_present_folds(compared):
    baseline, ours = compared["rows"][BASELINE], compared["rows"][OURS]
    assert baseline["dice_per_class"] == pytest.approx({"Anterior": 0.80, "Posterior": 0.70})
    assert baseline["mean_dice"] == pytest.approx(0.75)
    # fold 1's Posterior is NaN (nnU-Net's empty class): averaged over fold 0 only, not counted as 0
    assert ours["dice_per_class"] == pytest.approx({"Anterior": 0.80, "Posterior": 0.80})
    assert ours["mean_dice"] == pytest.approx(0.725)
    assert ours["per_fold"]["1"]["dice_per_class"]["Posterior"] is None


def test_folds_present_missing_and_unfinished(compared):
    baseline, ours, unknown = (compared["rows"][t] for t in (BASELINE, OURS, UNKNOWN))
    assert (baseline["folds_present"], baseline["folds_missing"], baseline["folds_unfinished"]) == ([0], [1, 2, 3, 4], [3])
    assert (ours["folds_present"], ours["folds_missing"], ours["folds_unfinished"]) == ([0, 1], [2, 3, 4], [])
    assert unknown["folds_present"] == [] and unknown["mean_dice"] is None
    assert "folds 1, 2, 3, 4" in baseline["missing"] and "folds 2, 3, 4" in ours["missing"]
    assert "validation/summary.json (fold 3, unfinished?)" in baseline["missing"]


def test_epoch_time_skips_the_first_epoch_of_each_log(compared):
    baseline, ours = compared["rows"][BASELINE], compared["rows"][OURS]
    assert baseline["epoch_time_s"] == pytest.approx(11.0)
    assert ours["epoch_time_s"] == pytest.approx(statistics.fmean([20.0, 22.0, 24.0, 30.0, 26.0]))
    assert (ours["epochs_timed"], ours["first_epochs_skipped"]) == (5, 3)
    assert "first epoch" in ours["epoch_time_note"]


def test_energy_memory_and_inference_summed_or_reported_missing(compared):
    baseline, ours = compared["rows"][BASELINE], compared["rows"][OURS]
    assert ours["energy_kWh"] == pytest.approx(0.0100) and ours["co2_kg"] == pytest.approx(0.0061)
    assert ours["energy_folds"] == [0, 1] and ours["peak_gpu_memory_GiB"] == pytest.approx(2.5)
    assert ours["peak_gpu_reserved_GiB"] == pytest.approx(3.9)  # the largest over folds, like allocated memory
    assert ours["inference_s_per_case"] == pytest.approx(47.0 / 40) and ours["inference_folds"] == [0]
    assert ours["inference_devices"] == ["Fake GPU"] and ours["inference_tta"] == [False]
    assert "inference_time.json (fold 1)" in ours["missing"]
    for key in ("energy_kWh", "co2_kg", "peak_gpu_memory_GiB", "inference_s_per_case"):
        assert baseline[key] is None, key  # missing, not 0
    assert "energy.json (fold 0)" in baseline["missing"] and "peak GPU memory" in baseline["missing"]
    assert baseline["gpus"] == ["Fake GPU"]  # from debug.json when there is no energy.json


def test_network_figures_from_each_trainers_own_network(compared):
    baseline, ours, unknown = (compared["rows"][t] for t in (BASELINE, OURS, UNKNOWN))
    for row in (baseline, ours):
        assert row["network_error"] is None
        assert isinstance(row["params"], int) and row["params"] > 0
        assert isinstance(row["macs"], int) and row["macs"] > 0
        assert row["macs_input_shape"] == [1, 1, 40, 56, 40]
    assert ours["params"] > 10 * baseline["params"]  # SegResMamba (~76 M) against PlainConvUNet (~5.6 M)
    assert unknown["params"] is None and unknown["macs"] is None
    assert UNKNOWN in unknown["network_error"]


def test_outputs_are_written_and_agree(compared):
    out, printed = compared["out"], compared["printed"]
    for name in ("comparison.md", "comparison.csv", "comparison.json", "comparison.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| " + OURS + " |" in printed and "Missing:" in printed
    assert f"- {OURS}: trained on Fake GPU; inference timed on Fake GPU (without TTA);" in printed

    table = [line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    baseline_cells = [c.strip() for c in next(l for l in table if l.startswith(f"| {BASELINE} |")).strip("|").split("|")]
    assert header[:5] == ["trainer", "folds present", "Dice Anterior", "Dice Posterior", "mean Dice"]
    assert baseline_cells[header.index("energy (kWh)")] == "—"
    assert baseline_cells[header.index("mean Dice")] == "0.7500"

    with open(out / "comparison.csv", newline="") as handle:
        csv_rows = {row["trainer"]: row for row in csv.DictReader(handle)}
    assert list(csv_rows) == [BASELINE, OURS, UNKNOWN]
    assert csv_rows[BASELINE]["energy (kWh)"] == "" and float(csv_rows[OURS]["energy (kWh)"]) == pytest.approx(0.01)
    assert csv_rows[OURS]["folds present"] == "0 1"
    assert float(csv_rows[OURS]["params (M)"]) == pytest.approx(compared["rows"][OURS]["params"] / 1e6)


def test_the_figure_leaves_out_trainers_without_memory(compared):
    shown, hidden = figure_points(compared["data"]["rows"])
    assert [row["trainer"] for row in shown] == [OURS]
    assert hidden == [BASELINE, UNKNOWN]
    assert [key for key, _ in figure_panels(compared["data"]["rows"])] == [key for key, _ in FIGURE_PANELS]
    shown, hidden = figure_points(compared["data"]["rows"], "epoch_time_s")
    assert [row["trainer"] for row in shown] == [BASELINE, OURS] and hidden == [UNKNOWN]


def test_the_figure_without_recorded_memory_plots_dice_against_energy_and_time(compared, tmp_path):
    # energy.json written before it recorded peak memory (as the Hippocampus run of docs/results): the figure
    # must not come out empty
    from nnunetv2_segresmamba.comparison import write_outputs
    data = copy.deepcopy(compared["data"])
    for row in data["rows"]:
        row["peak_gpu_memory_GiB"] = row["peak_gpu_reserved_GiB"] = None
    assert [key for key, _ in figure_panels(data["rows"])] == ["energy_kWh", "epoch_time_s"]
    assert (write_outputs(data, tmp_path)["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nothing = [dict(row, peak_gpu_memory_GiB=None, peak_gpu_reserved_GiB=None, energy_kWh=None, epoch_time_s=None)
               for row in data["rows"]]
    assert figure_panels(nothing) == [FIGURE_PANELS[0]]  # one panel that says so


def test_dataset_by_id_or_name_and_nnunet_extras(tmp_path):
    results = make_results(tmp_path)
    folder = results / "Dataset004_Hippocampus"
    for dataset in (4, "004", "Dataset004_Hippocampus", "Hippocampus"):
        assert find_dataset_folder(results, dataset) == folder
    with pytest.raises(FileNotFoundError):
        find_dataset_folder(results, 5)

    (folder / "inference_information.json").write_text(json.dumps({
        "all_results": {f"{OURS}__nnUNetPlans__3d_fullres": 0.72},
        "best_model_or_ensemble": {"result_on_crossval_pre_pp": 0.72, "result_on_crossval_post_pp": 0.73,
                                   "selected_model_or_models": [{"trainer": OURS, "plans_identifier": "nnUNetPlans",
                                                                 "configuration": "3d_fullres"}]}}))
    ensemble = folder / "ensembles" / f"ensemble___{BASELINE}__nnUNetPlans__3d_fullres___{OURS}__nnUNetPlans__3d_fullres___0_1"
    ensemble.mkdir(parents=True)
    (ensemble / "summary.json").write_text(json.dumps({"foreground_mean": {"Dice": 0.74}}))

    from nnunetv2_segresmamba.comparison import collect
    data = collect(results, 4, [OURS], with_network=False)
    assert data["best_configuration"]["selected"] == [f"{OURS}__nnUNetPlans__3d_fullres"]
    assert data["best_configuration"]["dice_after_postprocessing"] == pytest.approx(0.73)
    assert data["ensembles"] == [{"name": ensemble.name, "mean_dice": 0.74}]
    assert data["rows"][0]["network_error"] == "not computed"
    text = markdown(data)
    assert "find_best_configuration selected" in text and ensemble.name in text


def test_log_parsing_and_region_labels(tmp_path):
    (tmp_path / "training_log_1.txt").write_text(log_text([5.0]) + "2026-11-26 16:44:00.0: Epoch time: 7.5 s\n")
    assert epoch_times(tmp_path) == ([7.5], 1)
    regions = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "enhancing tumor": [3], "edema": 2}}
    assert label_names(regions) == {"(1, 2, 3)": "whole tumor", "(3,)": "enhancing tumor", "2": "edema"}


def test_network_figures_count_a_cascades_label_inputs():
    # nnU-Net's cascade feeds the previous stage's segmentation as one extra input per foreground label
    plans = small_plans()
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    figures = network_figures(BASELINE, plans, DATASET_JSON, "3d_cascade_fullres")
    assert figures["network_error"] is None
    assert figures["macs_input_shape"] == [1, 3, 40, 56, 40]  # 1 MRI channel + Anterior + Posterior


def test_folds_that_shared_their_gpu_give_no_epoch_time_or_energy(tmp_path):
    from nnunetv2_segresmamba.comparison.collect import collect_trainer
    folder = tmp_path / "Dataset004_Hippocampus" / f"{OURS}__nnUNetPlans__3d_fullres"
    for fold, others, times in ((0, [0, 0, 0], [99.0, 20.0, 22.0]), (1, [0, 2, 2], [99.0, 40.0, 44.0])):
        fold_folder = folder / f"fold_{fold}"
        (fold_folder / "validation").mkdir(parents=True)
        (fold_folder / "validation" / "summary.json").write_text(json.dumps(
            {"foreground_mean": {"Dice": 0.8}, "mean": {"1": {"Dice": 0.8}}}))
        (fold_folder / "training_log_2026_11_26_16_40_00.txt").write_text(log_text(times))
        (fold_folder / "energy.json").write_text(json.dumps(dict(
            total_kWh=0.01 * (fold + 1), co2_kg=0.0, epoch_gpu_other_processes=others,
            gpu_other_processes_max=max(others))))
    row = collect_trainer(folder.parent, OURS, "nnUNetPlans", "3d_fullres", with_network=False)
    assert row["folds_sharing_gpu"] == [1]
    assert row["epoch_time_s"] == pytest.approx(21.0) and row["energy_kWh"] == pytest.approx(0.01)
    assert row["energy_folds"] == [0] and not any("alone" in m for m in row["missing"])
    (folder / "fold_0" / "energy.json").write_text(json.dumps(dict(total_kWh=0.01, gpu_other_processes_max=1)))
    row = collect_trainer(folder.parent, OURS, "nnUNetPlans", "3d_fullres", with_network=False)
    assert row["epoch_time_s"] is None and row["energy_kWh"] is None
    assert "epoch time and energy of a training alone on its GPU (folds 0, 1 shared theirs)" in row["missing"]
