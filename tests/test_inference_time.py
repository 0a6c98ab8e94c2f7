"""inference_time.json: what time_fold_inference writes is what the comparison reads; the fold's cases."""

import json

import pytest

from nnunetv2_segresmamba.comparison import collect_fold
from nnunetv2_segresmamba.benchmarking.inference_time import copy_case_images, inference_record, write_inference_time
from nnunetv2_segresmamba.nnunet_paths import validation_cases

RUNS = [{"device": "NVIDIA H100 80GB HBM3", "torch_device": "cuda", "cases": 40, "seconds": 47.3, "tta": False},
        {"device": "Some CPU (16 threads)", "torch_device": "cpu", "cases": 40, "seconds": 95.0, "tta": False}]


def test_the_first_run_is_what_the_comparison_reads(tmp_path):
    write_inference_time(tmp_path, RUNS, "scripts/time_inference.py 4 T -f 0 --devices cuda cpu")
    fold = collect_fold(tmp_path, {})
    assert (fold["inference_seconds"], fold["inference_cases"]) == (47.3, 40)
    assert (fold["inference_device"], fold["inference_tta"]) == ("NVIDIA H100 80GB HBM3", False)
    record = json.loads((tmp_path / "inference_time.json").read_text())
    assert record["runs"] == RUNS and "wall time" in record["measured"]
    with pytest.raises(ValueError, match="no timed run"):
        inference_record([], "")


def test_validation_cases_of_a_fold(tmp_path):
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": ["a", "b"], "val": ["d", "c"]}]))
    assert validation_cases(tmp_path, 0) == ["c", "d"]
    with pytest.raises(ValueError, match="fold 3"):
        validation_cases(tmp_path, 3)
    with pytest.raises(FileNotFoundError, match="train the fold first"):
        validation_cases(tmp_path / "missing", 0)


def test_every_channel_of_a_case_is_copied(tmp_path):
    images = tmp_path / "raw" / "imagesTr"
    images.mkdir(parents=True)
    for name in ("case_1_0000.nii.gz", "case_1_0001.nii.gz", "case_10_0000.nii.gz", "case_2_0000.nii.gz"):
        (images / name).write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    assert copy_case_images(tmp_path / "raw", ["case_1"], out) == 2  # not case_10's file
    assert sorted(p.name for p in out.iterdir()) == ["case_1_0000.nii.gz", "case_1_0001.nii.gz"]
    with pytest.raises(FileNotFoundError, match="case_3"):
        copy_case_images(tmp_path / "raw", ["case_3"], out)
