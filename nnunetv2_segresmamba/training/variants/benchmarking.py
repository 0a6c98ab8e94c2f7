"""Pipeline speed benchmarks: nnU-Net's nnUNetTrainerBenchmark_5epochs (5 epochs, no checkpoints, no final
validation) with epoch times, GPU utilisation and peak memory recorded, for SegResMamba and for nnU-Net's
default network. Run them through scripts/benchmark_pipeline.py."""

from nnunetv2.training.nnUNetTrainer.variants.benchmarking.nnUNetTrainerBenchmark_5epochs import (
    nnUNetTrainerBenchmark_5epochs)

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba
from .cuda_graphs import nnUNetTrainerSegResMambaNoCudaGraphs
from ...benchmarking.pipeline_trainer import PipelineBenchmarkMixin


class nnUNetTrainerBenchmarkPipeline_5epochs(PipelineBenchmarkMixin, nnUNetTrainerBenchmark_5epochs):
    """nnU-Net's default network and recipe, compiled as nnU-Net compiles it."""


class nnUNetTrainerSegResMambaBenchmark_5epochs(PipelineBenchmarkMixin, nnUNetTrainerBenchmark_5epochs,
                                                nnUNetTrainerSegResMamba):
    """nnUNetTrainerSegResMamba, timed the same way."""


class nnUNetTrainerSegResMambaNoCudaGraphsBenchmark_5epochs(PipelineBenchmarkMixin, nnUNetTrainerBenchmark_5epochs,
                                                            nnUNetTrainerSegResMambaNoCudaGraphs):
    """nnUNetTrainerSegResMambaNoCudaGraphs, timed the same way."""
