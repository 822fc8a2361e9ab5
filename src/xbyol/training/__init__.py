"""The one trainer: ``train(cfg)`` -> run directory; ``resume_run(run_dir)`` continues one; ``Callback`` watches it."""

from xbyol.training.callbacks import Callback, StepInfo
from xbyol.training.trainer import TrainingDiverged, TrainingInterrupted, resume_run, train

__all__ = ["Callback", "StepInfo", "TrainingDiverged", "TrainingInterrupted", "resume_run", "train"]
