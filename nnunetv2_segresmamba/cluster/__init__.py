"""Running many nnU-Net trainings: which ones, their state on disk, and SLURM job arrays for them."""
