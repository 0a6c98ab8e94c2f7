"""Side-by-side comparison of trainers on one dataset: ``collect`` reads what nnU-Net and our trainers
wrote into an ``nnUNet_results`` tree, ``render`` writes the table, JSON and figure. The one file of the
comparison that nnU-Net does not write, ``inference_time.json``, comes from ``benchmarking/inference_time.py``."""

from .collect import (EXPECTED_FOLDS, collect, collect_fold, collect_trainer, epoch_times, find_dataset_folder,
                      label_names, network_figures)
from .render import FIGURE_PANELS, figure_panels, figure_points, markdown, table_rows, write_csv, write_outputs

__all__ = ["EXPECTED_FOLDS", "FIGURE_PANELS", "collect", "collect_fold", "collect_trainer", "epoch_times",
           "figure_panels", "figure_points", "find_dataset_folder", "label_names", "markdown", "network_figures",
           "table_rows", "write_csv", "write_outputs"]
