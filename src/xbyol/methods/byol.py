"""BYOL (Grill et al. 2020, arXiv 2006.07733): online encoder+projector+predictor,
EMA target encoder+projector, symmetric ``2 - 2cos`` loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xbyol.augment import ByolViews
from xbyol.config import Config
from xbyol.data.base import SampleDataset
from xbyol.losses.byol import byol_loss
from xbyol.methods.base import METHODS, Method
from xbyol.models import create_backbone
from xbyol.models.ema import copy_as_target, update_momentum
from xbyol.models.heads import PredictionHead, ProjectionHead
from xbyol.train.schedules import tau_at


class BYOL(Method):
    """Online network ``f -> g -> q`` and target network ``f' -> g'`` (EMA of ``f -> g``).

    Attributes:
        backbone: online encoder f (the representation evaluated and explained).
        projector: online projector g.
        predictor: online predictor q.
        target_backbone, target_projector: EMA copies, never receiving gradients.
        views: batched augmentation producing the two asymmetric views on the device.
    """

    def __init__(self, cfg: Config, dataset: SampleDataset) -> None:
        super().__init__(cfg, dataset)
        m = cfg.model
        self.backbone = create_backbone(m.backbone)
        dim = self.backbone.num_features
        self.projector = ProjectionHead(dim, m.proj_hidden, m.proj_dim)
        self.predictor = PredictionHead(m.proj_dim, m.pred_hidden, m.proj_dim)
        self.target_backbone = copy_as_target(self.backbone)
        self.target_projector = copy_as_target(self.projector)
        self.views = ByolViews(cfg.aug, cfg.data.image_size)

    def online_projection(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))  # (B, P)

    @torch.no_grad()
    def target_projection(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone(x))  # (B, P)

    def byol_terms(self, v1: torch.Tensor, v2: torch.Tensor) -> dict[str, torch.Tensor]:
        """BYOL loss of two views ``[B, 3, H, W]``, with the online projection for monitors."""
        v = torch.cat([v1, v2])  # one pass over both views keeps BatchNorm statistics shared
        z_online = self.online_projection(v)  # (2B, P)
        p1, p2 = self.predictor(z_online).chunk(2)
        z1_t, z2_t = self.target_projection(v).chunk(2)
        loss = byol_loss(p1, p2, z1_t, z2_t)
        return {"loss_byol": loss, "embed/projection": z_online.detach()[: v1.shape[0]]}

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        v1, v2 = self.views(batch["image"])
        out = self.byol_terms(v1, v2)
        out["loss"] = out["loss_byol"]
        return out

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> dict[str, float]:
        tau = tau_at(step, total_steps, self.cfg.method.tau_base)
        update_momentum(self.backbone, self.target_backbone, tau)
        update_momentum(self.projector, self.target_projector, tau)
        return {"tau": tau}


@METHODS.register("byol")
def _byol(cfg: Config, dataset: SampleDataset) -> BYOL:
    """BYOL with the paper's asymmetric views and cosine EMA schedule."""
    return BYOL(cfg, dataset)
