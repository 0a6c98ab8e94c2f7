"""The pipeline benchmark's report (scripts/benchmark_pipeline.py): ratios against the first trainer, the first
epoch beside the median, and a trainer that failed kept as a row that says so."""

import json

import pytest

from nnunetv2_segresmamba.benchmarking import pipeline


def fake_runs(monkeypatch, results: dict) -> None:
    def train_and_collect(dataset, configuration, trainer, plans, log):
        outcome = results[trainer]
        if isinstance(outcome, Exception):
            raise outcome
        return dict(trainer=trainer, device="GPU X", **outcome)
    monkeypatch.setattr(pipeline, "train_and_collect", train_and_collect)


def test_report_gives_ratios_and_keeps_a_failed_trainer_as_a_row(monkeypatch, tmp_path):
    fake_runs(monkeypatch, {
        "Base": dict(median_epoch_s=5.0, first_epoch_s=40.0, peak_mem_GiB=1.0),
        "Ours": dict(median_epoch_s=10.0, first_epoch_s=60.0, peak_mem_GiB=3.0,
                     compile_time_s=dict(entire_frame_compile=30.0, compile_s=35.5), compile_s=35.5),
        "Broken": RuntimeError("Broken wrote no pipeline_benchmark.json; last lines of its log:\nTraceback ..."),
    })
    report = pipeline.run("4", "3d_fullres", ["Base", "Ours", "Broken"], "nnUNetPlans", tmp_path / "logs")
    base, ours, broken = report["rows"]
    assert (ours["median_epoch_s_ratio"], ours["first_epoch_s_ratio"], ours["peak_mem_GiB_ratio"]) == (2.0, 1.5, 3.0)
    assert base["median_epoch_s_ratio"] == 1.0
    assert (base.get("compile_s"), ours["compile_s"]) == (None, 35.5)  # of Ours' 60 s first epoch
    assert broken["error"] == "Broken wrote no pipeline_benchmark.json; last lines of its log:"
    assert "median_epoch_s" not in broken
    table = pipeline.write(report, tmp_path / "out")
    assert table.splitlines()[2].split("|")[1:3] == [" trainer ", " median_epoch_s "]
    assert "| error |" in table and broken["error"] in table
    assert json.loads((tmp_path / "out" / "pipeline.json").read_text())["rows"][1]["first_epoch_s"] == 60.0


def test_a_failed_baseline_stops_the_report(monkeypatch, tmp_path):
    fake_runs(monkeypatch, {"Base": RuntimeError("Base wrote no pipeline_benchmark.json"),
                            "Ours": dict(median_epoch_s=10.0, first_epoch_s=60.0, peak_mem_GiB=3.0)})
    with pytest.raises(RuntimeError, match="Base wrote no"):
        pipeline.run("4", "3d_fullres", ["Base", "Ours"], "nnUNetPlans", tmp_path / "logs")


def test_compile_seconds_are_dynamos_own_accounting():
    import torch
    from nnunetv2_segresmamba.benchmarking.pipeline_trainer import compile_seconds
    before = compile_seconds()
    torch._dynamo.reset()
    double = torch.compile(lambda x: (x * 2).sin(), backend="aot_eager")
    double(torch.randn(8, requires_grad=True)).sum().backward()
    after = compile_seconds()
    if not after:
        pytest.skip("this PyTorch does not account compile time (torch._dynamo.utils.calculate_time_spent)")
    assert after["compile_s"] > before.get("compile_s", 0.0)
    assert after["compile_s"] == pytest.approx(after["entire_frame_compile"] + after.get("entire_backward_compile", 0))
