"""Loss functions: pure functions on tensors."""

from xbyol.losses.byol import byol_loss, byol_pair_loss

__all__ = ["byol_loss", "byol_pair_loss"]
