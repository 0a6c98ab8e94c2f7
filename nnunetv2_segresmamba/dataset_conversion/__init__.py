"""Dataset converters into nnU-Net v2's raw layout (BTCV; see btcv.py for the paper's other datasets), and a
synthetic dataset of large volumes for timing large patches (synthetic.py)."""

from pathlib import Path


def raw_dataset_folder(nnunet_raw: Path, folder_name: str, dataset_id: int) -> Path:
    """``nnunet_raw/folder_name`` with empty imagesTr/ and labelsTr/ made; refuses an id another dataset
    there already has (nnU-Net could not tell them apart)."""
    target = Path(nnunet_raw) / folder_name
    clash = [p.name for p in Path(nnunet_raw).glob(f"Dataset{dataset_id:03d}_*") if p != target]
    if clash:
        raise FileExistsError(f"id {dataset_id} is taken in {nnunet_raw} by {', '.join(clash)}: choose another --id")
    (target / "imagesTr").mkdir(parents=True, exist_ok=True)
    (target / "labelsTr").mkdir(parents=True, exist_ok=True)
    return target
