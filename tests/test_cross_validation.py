"""scripts/cross_validation.py on a fake nnUNet_results tree: fold Dice from nnU-Net's summaries, the paired
per-case difference and its standard error, missing folds kept as missing."""

import json
import math
import runpy
import statistics
import sys
from pathlib import Path

import pytest

from nnunetv2_segresmamba.comparison import cross_validation

REPO = Path(__file__).resolve().parents[1]
BASE, OURS = "nnUNetTrainerEnergy_50epochs", "nnUNetTrainerSegResMamba_50epochs"


def summary(cases: dict[str, tuple[float, float]]) -> dict:
    """nnU-Net's summary.json layout: per case per label Dice, and the foreground mean of the label means."""
    per_case = [{"reference_file": f"/gt/{case}.nii.gz", "prediction_file": f"/pred/{case}.nii.gz",
                 "metrics": {"1": {"Dice": a}, "2": {"Dice": b}}} for case, (a, b) in cases.items()]
    label_means = [statistics.fmean(v[i] for v in cases.values() if not math.isnan(v[i])) for i in (0, 1)]
    return {"metric_per_case": per_case, "mean": {"1": {"Dice": label_means[0]}, "2": {"Dice": label_means[1]}},
            "foreground_mean": {"Dice": statistics.fmean(label_means)}}


def make_results(root: Path, dice: dict[str, dict[int, dict[str, tuple[float, float]]]]) -> Path:
    for trainer, folds in dice.items():
        folder = root / "Dataset004_Hippocampus" / f"{trainer}__nnUNetPlans__3d_fullres"
        folder.mkdir(parents=True)
        (folder / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz"}))
        for fold, cases in folds.items():
            (folder / f"fold_{fold}" / "validation").mkdir(parents=True)
            (folder / f"fold_{fold}" / "validation" / "summary.json").write_text(json.dumps(summary(cases)))
            (folder / f"fold_{fold}" / "debug.json").write_text(json.dumps({"num_epochs": "50", "gpu_name": "GPU X"}))
    return root


# Two cases per fold; ours is better on case 0 of each fold, worse on case 1 of fold 0 and has no fold 4.
BASE_DICE = {f: {f"hippocampus_{2 * f}": (0.80, 0.70), f"hippocampus_{2 * f + 1}": (0.90, 0.80)} for f in range(5)}
OURS_DICE = {f: {f"hippocampus_{2 * f}": (0.84, 0.72), f"hippocampus_{2 * f + 1}": (0.88 if f == 0 else 0.90, 0.80)}
             for f in range(4)}


def test_fold_dice_and_paired_difference(tmp_path):
    results = make_results(tmp_path, {BASE: BASE_DICE, OURS: OURS_DICE})
    cv = cross_validation.cross_validation(results, 4, [BASE, OURS])
    base, ours = cv["rows"]
    assert cv["device"] == "GPU X" and base["epochs"] == ours["epochs"] == 50
    assert base["fold_dice"] == pytest.approx([0.80] * 5)
    assert ours["fold_dice"][:4] == pytest.approx([0.81, 0.815, 0.815, 0.815]) and ours["fold_dice"][4] is None
    assert ours["mean_dice"] == pytest.approx(statistics.fmean([0.81, 0.815, 0.815, 0.815]))
    # Per case: mean over the two labels; differences over the 8 cases both have.
    differences = [0.03, -0.01] + [0.03, 0.0] * 3
    paired = ours["paired_vs_first"]
    assert paired["cases"] == 8 and (paired["better"], paired["worse"]) == (4, 1)
    assert paired["mean"] == pytest.approx(statistics.fmean(differences))
    assert paired["standard_error"] == pytest.approx(statistics.stdev(differences) / math.sqrt(8))
    assert base["paired_vs_first"]["mean"] == 0.0


def test_a_label_absent_from_a_case_is_left_out_of_its_mean(tmp_path):
    dice = {0: {"case_a": (0.6, math.nan), "case_b": (0.8, 0.4)}}
    results = make_results(tmp_path, {BASE: dice})
    cases = cross_validation.trainer_cross_validation(results / "Dataset004_Hippocampus", BASE, "nnUNetPlans",
                                                      "3d_fullres")["cases"]
    assert cases == pytest.approx({"case_a": 0.6, "case_b": 0.6})


def test_the_script_prints_the_table_and_writes_the_json(tmp_path, monkeypatch, capsys):
    results = make_results(tmp_path / "results", {BASE: BASE_DICE, OURS: OURS_DICE})
    out = tmp_path / "cv.json"
    monkeypatch.setattr(sys, "argv", ["cross_validation.py", "--results", str(results), "--dataset", "4",
                                      "--trainers", BASE, OURS, "--out", str(out)])
    runpy.run_path(str(REPO / "scripts" / "cross_validation.py"), run_name="__main__")
    table = capsys.readouterr().out
    mean = statistics.fmean([0.81, 0.815, 0.815, 0.815])
    assert (f"| {OURS} | 50 | {mean:.4f} (4 of 5 folds) | 0.8100 / 0.8150 / 0.8150 / 0.8150 / — "
            f"| 0.0138 (0.0063), 8 | 4 / 1 |") in table
    written = json.loads(out.read_text())
    assert f"| {BASE} | 50 | 0.8000 | " in table  # all five folds: no count
    assert list(written)[:3] == ["device", "dataset", "command"]
    assert [row["trainer"] for row in written["rows"]] == [BASE, OURS]


def test_a_missing_dataset_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["cross_validation.py", "--results", str(tmp_path), "--dataset", "4",
                                      "--trainers", BASE])
    with pytest.raises(SystemExit):
        runpy.run_path(str(REPO / "scripts" / "cross_validation.py"), run_name="__main__")
    assert "expected one folder" in capsys.readouterr().err
