"""The benchmark tables: ratios against a baseline of the same run, and the baseline always measured."""

import pytest

from nnunetv2_segresmamba.benchmarking import networks
from nnunetv2_segresmamba.benchmarking.report import MissingBaselineError, add_ratios


def test_ratios_are_taken_against_the_matching_baseline_row():
    rows = [dict(network="PlainConvUNet", case="a", step=10.0), dict(network="SegResMamba", case="a", step=25.0),
            dict(network="PlainConvUNet", case="b", step=4.0), dict(network="SegResMamba", case="b", step=2.0)]
    add_ratios(rows, {"network": "PlainConvUNet"}, ["step"], ["case"])
    assert [row["step_ratio"] for row in rows] == [1.0, 2.5, 1.0, 0.5]


def test_a_missing_baseline_is_an_error_that_says_so():
    rows = [dict(network="SegResMamba", case="a", step=25.0)]
    with pytest.raises(MissingBaselineError, match="network=PlainConvUNet"):
        add_ratios(rows, {"network": "PlainConvUNet"}, ["step"], ["case"])


def test_networks_run_always_measures_its_baseline(monkeypatch):
    measured = []

    def fake_measure(name, case, mode, device, warmup, repeats):
        measured.append((name, mode))
        return dict(network=name, patch=case.label, batch=case.batch, compile=mode, train_step_ms=1.0 + len(measured))

    monkeypatch.setattr(networks, "measure_in_own_process", fake_measure)
    rows = networks.run([networks.Case((8, 8, 8), 2, 1)], ["SegResMamba"], ["default"], "cpu", 0, 1,
                        baseline_compile="none")
    assert ("PlainConvUNet", "none") in measured and ("SegResMamba", "default") in measured
    by_name = {(r["network"], r["compile"]): r for r in rows}
    assert by_name[("PlainConvUNet", "none")]["train_step_ms_ratio"] == 1.0
    assert by_name[("SegResMamba", "default")]["train_step_ms_ratio"] == pytest.approx(
        by_name[("SegResMamba", "default")]["train_step_ms"] / by_name[("PlainConvUNet", "none")]["train_step_ms"])
