"""Start a run from another run's encoder (``train.init_from``): fine-tuning a trained model."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from xbyol.errors import CheckpointError
from xbyol.rundir import RunDir
from xbyol.training.checkpoint import load_checkpoint, load_latest_checkpoint

ENCODER_PREFIXES = ("backbone.", "projector.", "target_backbone.", "target_projector.")


def initialise_from(method: nn.Module, source: str | Path) -> list[str]:
    """Copy the encoder weights of a finished run into ``method`` before its first step.

    The encoder is every tensor under ``backbone.``, ``projector.`` and their EMA copies
    ``target_backbone.``, ``target_projector.`` (parameters and BatchNorm statistics). The
    rest of ``method`` (predictor, concept head, attention) keeps its fresh initialisation,
    so a BYOL run can be fine-tuned as xbyol, or xbyol continued with other settings.

    Args:
        method: the freshly built method.
        source: a run directory (its newest checkpoint, ``last.pt`` else ``prev.pt``) or a
            checkpoint file.

    Returns:
        The names of the tensors copied (sorted).

    Raises:
        CheckpointError: ``source`` is not a readable xbyol checkpoint or run directory, holds no
            encoder, or a tensor's shape differs from ``method``'s (the key and both shapes
            are named).
    """
    path = Path(source)
    if path.is_dir():
        ckpt_dir = RunDir(path).checkpoints if RunDir(path).checkpoints.is_dir() else path
        _, ckpt = load_latest_checkpoint(ckpt_dir)
    else:
        ckpt = load_checkpoint(path)
    state = {k: v for k, v in ckpt["method"].items() if k.startswith(ENCODER_PREFIXES)}
    if not state:
        raise CheckpointError(f"train.init_from={source}: the checkpoint holds no encoder weights ({', '.join(ENCODER_PREFIXES)})")
    own = method.state_dict()
    for key, value in state.items():
        if key not in own:
            raise CheckpointError(f"train.init_from={source}: {key} has no counterpart in this model (another backbone?)")
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"train.init_from={source}: {key} has shape {list(value.shape)}, this model expects {list(own[key].shape)}"
            )
    method.load_state_dict(state, strict=False)
    return sorted(state)
