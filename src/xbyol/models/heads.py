"""Projection and prediction MLPs of BYOL: Linear -> BN -> ReLU -> Linear (Grill et al. 2020, App. A)."""

from __future__ import annotations

import torch
from torch import nn


class MLPHead(nn.Module):
    """``Linear(in, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, out)``; no BN on the output.

    Args:
        in_dim: input width.
        hidden_dim: hidden width (4096 in the paper).
        out_dim: output width (256 in the paper).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, out_dim)


class ProjectionHead(MLPHead):
    """BYOL projector g: representation [B, D] -> projection [B, out_dim]."""


class PredictionHead(MLPHead):
    """BYOL predictor q: projection [B, P] -> prediction [B, P]."""
