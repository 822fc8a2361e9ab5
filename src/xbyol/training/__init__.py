"""The one trainer: ``train(cfg)`` -> run directory."""

from xbyol.training.trainer import TrainingDiverged, build_dataset, train

__all__ = ["TrainingDiverged", "build_dataset", "train"]
