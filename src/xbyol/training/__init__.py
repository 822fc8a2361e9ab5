"""The one trainer: ``train(cfg)`` -> run directory; ``resume_run(run_dir)`` continues one."""

from xbyol.training.trainer import TrainingDiverged, TrainingInterrupted, resume_run, train

__all__ = ["TrainingDiverged", "TrainingInterrupted", "resume_run", "train"]
