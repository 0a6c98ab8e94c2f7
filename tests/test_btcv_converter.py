"""The BTCV converter on a small synthetic replica of the download's layout."""

import filecmp
import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_segresmamba.dataset_conversion import btcv

CASES = [1, 2, 3, 4, 21, 22, 35, 40]  # BTCV numbers its 30 labelled cases 1-10 and 21-40: gaps are normal


def write_volume(array: np.ndarray, path, spacing=(0.8, 0.7, 3.0), origin=(-170.0, -160.0, -300.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


@pytest.fixture
def raw(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "btcv_download"
    for n in CASES:
        write_volume(rng.integers(-1000, 1500, (8, 8, 8)).astype(np.int16),
                     root / "RawData" / "Training" / "img" / f"img{n:04d}.nii.gz")
        write_volume(rng.integers(0, 14, (8, 8, 8)).astype(np.uint8),
                     root / "RawData" / "Training" / "label" / f"label{n:04d}.nii.gz")
    write_volume(np.zeros((8, 8, 8), np.int16), root / "RawData" / "Testing" / "img" / "img0061.nii.gz")
    return root


def test_convert_copies_cases_and_writes_dataset_json(raw, tmp_path):
    target = btcv.convert(raw, 101, tmp_path / "nnUNet_raw")
    assert target == tmp_path / "nnUNet_raw" / "Dataset101_BTCV"
    ids = [f"btcv_{n:04d}" for n in CASES]
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == [f"{i}_0000.nii.gz" for i in ids]
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == [f"{i}.nii.gz" for i in ids]
    assert not (target / "imagesTs").exists()  # the unlabelled Testing folder is not converted

    meta = json.loads((target / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["numTraining"] == len(CASES) and meta["file_ending"] == ".nii.gz"
    assert sorted(meta["labels"].values()) == list(range(14)) and meta["labels"]["background"] == 0
    expected = {"spleen": 1, "right_kidney": 2, "left_kidney": 3, "gallbladder": 4, "esophagus": 5, "liver": 6,
                "stomach": 7, "aorta": 8, "inferior_vena_cava": 9, "portal_vein_and_splenic_vein": 10,
                "pancreas": 11, "right_adrenal_gland": 12, "left_adrenal_gland": 13}
    assert {k: v for k, v in meta["labels"].items() if k != "background"} == expected

    for n in CASES:
        pairs = [(raw / "RawData" / "Training" / "img" / f"img{n:04d}.nii.gz", target / "imagesTr" / f"btcv_{n:04d}_0000.nii.gz"),
                 (raw / "RawData" / "Training" / "label" / f"label{n:04d}.nii.gz", target / "labelsTr" / f"btcv_{n:04d}.nii.gz")]
        for source, copied in pairs:
            a, b = sitk.ReadImage(str(source)), sitk.ReadImage(str(copied))
            np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
            assert a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
            assert filecmp.cmp(source, copied, shallow=False)  # no resampling, no re-encoding


def test_unpaired_cases_and_taken_ids_are_refused(raw, tmp_path):
    (tmp_path / "nnUNet_raw" / "Dataset101_Other").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="Dataset101_Other"):
        btcv.convert(raw, 101, tmp_path / "nnUNet_raw")
    (raw / "RawData" / "Training" / "label" / "label0022.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="0022"):
        btcv.convert(raw, 102, tmp_path / "nnUNet_raw")


def test_paper_split_defaults_to_the_last_six_and_takes_a_given_list():
    ids = [f"btcv_{n:04d}" for n in CASES]
    [default] = btcv.paper_split(ids)
    assert default["val"] == ["btcv_0003", "btcv_0004", "btcv_0021", "btcv_0022", "btcv_0035", "btcv_0040"]
    assert default["train"] == ["btcv_0001", "btcv_0002"]

    [given] = btcv.paper_split(ids, [1, "0002", "btcv_0021", "22", 35, "btcv_0040"])
    assert given["val"] == ["btcv_0001", "btcv_0002", "btcv_0021", "btcv_0022", "btcv_0035", "btcv_0040"]
    assert given["train"] == ["btcv_0003", "btcv_0004"]
    assert not set(given["train"]) & set(given["val"])
    with pytest.raises(ValueError, match="99"):
        btcv.paper_split(ids, [1, 99])


def test_command_line_needs_nnunet_raw_and_writes_the_split_into_the_raw_dataset(raw, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)  # not needed, --split included
    with pytest.raises(SystemExit):
        btcv.main([str(raw), "--id", "101"])
    assert "nnUNet_raw is not set" in capsys.readouterr().err

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    btcv.main([str(raw), "--id", "101", "--split", "--test-cases", "1", "2", "3", "4", "21", "22"])
    target = tmp_path / "raw" / "Dataset101_BTCV"
    assert (target / "dataset.json").is_file()
    # where nnU-Net's planner looks for it (and copies it into nnUNet_preprocessed from)
    split = json.loads((target / "splits_final.json").read_text())
    assert split == [{"train": ["btcv_0035", "btcv_0040"],
                      "val": ["btcv_0001", "btcv_0002", "btcv_0003", "btcv_0004", "btcv_0021", "btcv_0022"]}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["btcv_download", "raw"]  # nothing else written
    assert "train fold 0 only" in capsys.readouterr().out

    btcv.main([str(raw), "--id", "101"])  # converting again without --split keeps the file, and says so
    assert (target / "splits_final.json").is_file()
    assert "left from an earlier --split" in capsys.readouterr().out
