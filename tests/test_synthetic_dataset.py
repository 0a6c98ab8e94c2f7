"""The synthetic large-volume dataset: reproducible cases, both structures present, a raw dataset nnU-Net
accepts, and clear errors before anything is written."""

import numpy as np
import pytest

from nnunetv2_segresmamba.dataset_conversion import synthetic


def test_a_case_is_the_same_wherever_it_is_made_and_differs_from_the_next():
    image, labels = synthetic.synthetic_case((24, 32, 28), seed=7)
    again, again_labels = synthetic.synthetic_case((24, 32, 28), seed=7)
    other, other_labels = synthetic.synthetic_case((24, 32, 28), seed=8)
    assert image.shape == labels.shape == (24, 32, 28) and image.dtype == np.float32 and labels.dtype == np.uint8
    assert np.array_equal(image, again) and np.array_equal(labels, again_labels)
    assert not np.array_equal(labels, other_labels)
    assert set(np.unique(labels)) == {0, 1, 2}
    # The two structures and the background differ in intensity, so they can be learned.
    assert image[labels == 1].mean() > image[labels == 2].mean() > image[labels == 0].mean()


def test_the_dataset_passes_nnunets_integrity_check(tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    folder = synthetic.make_dataset(tmp_path, 990, cases=5, shape=(20, 24, 16))
    assert folder.name == "Dataset990_SyntheticLarge"
    assert len(list((folder / "imagesTr").glob("*_0000.nii.gz"))) == len(list((folder / "labelsTr").iterdir())) == 5
    verify_dataset_integrity(str(folder), 1)  # raises on any mismatch of geometry, labels or dataset.json


@pytest.mark.parametrize("kwargs,message", [(dict(cases=4, shape=(32, 32, 32)), "at least 5"),
                                            (dict(cases=5, shape=(8, 32, 32)), "at least 16")])
def test_bad_sizes_are_refused_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.make_dataset(tmp_path, 990, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_taken_dataset_id_is_refused(tmp_path):
    (tmp_path / "Dataset990_Other").mkdir()
    with pytest.raises(FileExistsError, match="choose another --id"):
        synthetic.make_dataset(tmp_path, 990, cases=5, shape=(16, 16, 16))
