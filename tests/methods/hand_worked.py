"""Fixed pieces for the loss tests worked by hand: known views, linear maps, flat-colour images."""

from __future__ import annotations

import torch
from torch import nn


class FixedViews(nn.Module):
    """Stands in for the augmentation: always returns the two given views."""

    def __init__(self, v1: torch.Tensor, v2: torch.Tensor) -> None:
        super().__init__()
        self.v1, self.v2 = v1, v2

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.v1, self.v2


def linear(rows: list[list[float]]) -> nn.Linear:
    """A bias-free linear map with the given weight rows ``[out, in]``."""
    w = torch.tensor(rows, dtype=torch.float32)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin


def flat(colours: list[tuple[float, float, float]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images ``[B, 3, 2, 2]`` of one colour each."""
    return torch.tensor(colours, dtype=dtype)[:, :, None, None].expand(-1, -1, 2, 2).contiguous()
