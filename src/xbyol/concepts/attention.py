"""Concept attention: an image vector attends over the concept bank and is fused with
the attended concept context through a learned gate.

Formula (DESIGN.md item 2)::

    alpha_k = softmax_k(q . e_k / sqrt(d))       k = 1..K over the bank
    c       = sum_k alpha_k e_k
    z_hat   = g * z + (1 - g) * c                 g = gate(z, c) in (0, 1)

Making it well-defined. Written for one concept, ``softmax(z . e / sqrt(d))`` is a
softmax over a single score and equals 1 whatever the image. Here the softmax runs over
the index ``k`` of the ``K`` bank concepts, so ``alpha`` is a distribution over concepts;
``d = E`` is the width of the concept space, and ``z`` lives in that space (the projection
mapped by the method's concept head) so that ``z . e_k`` is defined. The concept
embeddings are unit vectors, so a plain ``z . e_k / sqrt(d)`` would leave the attention
sharpness to the arbitrary norm of ``z``: the query is ``q = s * z / |z|`` with a learned
scale ``s = exp(log_scale)`` initialised to ``sqrt(d) / T0`` (``T0 = 0.1``), so that at
initialisation ``alpha_k = softmax_k(cos(z, e_k) / T0)``, the same distribution the
contrastive semantic loss shapes. The fusion mixes the *unit* ``z / |z|`` with ``c``
(``|c| <= 1``) so neither term dominates by scale, and the gate is
``g = eps + (1 - 2 eps) * sigmoid(w . [z/|z|, c] + b)``, strictly inside (0, 1) even
when the sigmoid saturates in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class ConceptFusion(NamedTuple):
    """Output of :class:`ConceptAttention`.

    Attributes:
        fused: ``[B, E]`` fused representation ``z_hat``.
        alpha: ``[B, K]`` attention weights over the bank (rows sum to 1).
        gate: ``[B, 1]`` gate ``g`` in (0, 1) (weight of the image vector itself).
        context: ``[B, E]`` attended concept context ``c``.
    """

    fused: torch.Tensor
    alpha: torch.Tensor
    gate: torch.Tensor
    context: torch.Tensor


class ConceptAttention(nn.Module):
    """Attention of concept-space vectors over a concept bank, with gated fusion.

    Args:
        dim: width ``E`` of the concept space.
        init_temperature: ``T0``; the learned query scale starts at ``sqrt(E) / T0``.
        eps: the gate stays in ``[eps, 1 - eps]``.
    """

    def __init__(self, dim: int, init_temperature: float = 0.1, eps: float = 1e-3) -> None:
        super().__init__()
        if dim <= 0 or init_temperature <= 0 or not 0 < eps < 0.5:
            raise ValueError(f"ConceptAttention: need dim > 0, init_temperature > 0, 0 < eps < 0.5; got {dim}, {init_temperature}, {eps}")
        self.dim = dim
        self.eps = eps
        self.log_scale = nn.Parameter(torch.tensor(math.log(math.sqrt(dim) / init_temperature)))
        self.gate = nn.Linear(2 * dim, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)  # g = 0.5 at initialisation

    def attention(self, z: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
        """``alpha [B, K]`` of vectors ``z [B, E]`` over unit concept embeddings ``[K, E]``."""
        if z.ndim != 2 or concepts.ndim != 2 or z.shape[1] != self.dim or concepts.shape[1] != self.dim:
            raise ValueError(f"expected z [B, {self.dim}] and concepts [K, {self.dim}], got {list(z.shape)} and {list(concepts.shape)}")
        q = F.normalize(z, dim=-1) * self.log_scale.exp()  # (B, E)
        scores = q @ concepts.T / math.sqrt(self.dim)  # (B, K)
        return scores.softmax(dim=-1)  # (B, K)

    def forward(self, z: torch.Tensor, concepts: torch.Tensor) -> ConceptFusion:
        """Fuse ``z [B, E]`` with its attended concept context.

        Args:
            z: image vectors in the concept space ``[B, E]``.
            concepts: concept embeddings ``[K, E]`` (unit rows).

        Returns:
            :class:`ConceptFusion` with ``fused [B, E]``, ``alpha [B, K]``, ``gate [B, 1]``, ``context [B, E]``.
        """
        alpha = self.attention(z, concepts)  # (B, K)
        context = alpha @ concepts  # (B, E)
        z_unit = F.normalize(z, dim=-1)  # (B, E)
        gate = self.eps + (1.0 - 2.0 * self.eps) * torch.sigmoid(self.gate(torch.cat([z_unit, context], dim=-1)))  # (B, 1)
        fused = gate * z_unit + (1.0 - gate) * context  # (B, E)
        return ConceptFusion(fused, alpha, gate, context)
