"""BYOL (Grill et al. 2020, arXiv 2006.07733): online encoder+projector+predictor,
EMA target encoder+projector, symmetric ``2 - 2cos`` loss."""

from __future__ import annotations

from typing import Any

import torch

from xbyol.augment import ByolViews
from xbyol.config import Config
from xbyol.data.base import SampleDataset
from xbyol.losses.byol import byol_loss
from xbyol.methods.base import METHODS, Method
from xbyol.models import ResNet, create_backbone
from xbyol.models.ema import copy_as_target, update_momentum
from xbyol.models.heads import PredictionHead, ProjectionHead
from xbyol.models.interpretable import InterpretableBackbone, wrap_interpretable


def resolve_concat_views(value: bool | str) -> bool:
    """``method.concat_views`` as a bool: ``"auto"`` -> one concatenated batch, on CPU and CUDA alike
    (measured: benchmarks/BENCHMARKS.md, sections "Training throughput (CPU)" and "GPU"). The method
    resolves it once; the trainer reads the result from ``method.concat_views``."""
    if value == "auto":
        return True
    return bool(value)


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
        self.backbone: ResNet | InterpretableBackbone = create_backbone(m.backbone)
        if m.interpretable_layer:
            self.backbone = wrap_interpretable(self.backbone, m.interpretable_weight, tau=m.interpretable_tau)
        dim = self.backbone.num_features
        self.projector = ProjectionHead(dim, m.proj_hidden, m.proj_dim)
        self.predictor = PredictionHead(m.proj_dim, m.pred_hidden, m.proj_dim)
        self.target_backbone = copy_as_target(self.backbone)
        self.target_projector = copy_as_target(self.projector)
        self.views = ByolViews(cfg.aug, cfg.data.image_size)
        self.concat_views = resolve_concat_views(cfg.method.concat_views)

    def online_projection(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))  # (B, P)

    @torch.no_grad()
    def target_projection(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone(x))  # (B, P)

    def byol_terms(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """BYOL loss of two views ``[B, 3, H, W]``.

        Returns:
            ``(terms, z_online)``: ``terms`` holds ``loss_byol``, the online projection of
            view 1 for the collapse monitors, and ``loss_filter`` (already weighted) when the
            backbone carries an interpretable layer; ``z_online`` is ``[2B, P]`` (both views).
        """
        if self.concat_views:  # one pass: BatchNorm statistics are shared by both views
            v = torch.cat([v1, v2])
            z_online = self.online_projection(v)  # (2B, P)
            p1, p2 = self.predictor(z_online).chunk(2)
            z1_t, z2_t = self.target_projection(v).chunk(2)
        else:  # one view at a time: BatchNorm statistics per view
            z1, z2 = self.online_projection(v1), self.online_projection(v2)  # (B, P) each
            z_online = torch.cat([z1, z2])  # (2B, P)
            p1, p2 = self.predictor(z1), self.predictor(z2)
            z1_t, z2_t = self.target_projection(v1), self.target_projection(v2)
        terms = {"loss_byol": byol_loss(p1, p2, z1_t, z2_t), "embed/projection": z_online.detach()[: v1.shape[0]]}
        if isinstance(self.backbone, InterpretableBackbone):
            terms["loss_filter"] = self.backbone.aux_loss()  # filter loss of this forward (Zhang et al. 2018)
        return terms, z_online

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        v1, v2 = self.views(batch["image"])
        out, _ = self.byol_terms(v1, v2)
        out["loss"] = out["loss_byol"] + out.get("loss_filter", 0.0)
        return out

    @torch.no_grad()
    def after_optimizer_step(self, tau: float) -> dict[str, float]:
        update_momentum(self.backbone, self.target_backbone, tau)
        update_momentum(self.projector, self.target_projector, tau)
        return {"tau": tau}


@METHODS.register("byol")
def _byol(cfg: Config, dataset: SampleDataset) -> BYOL:
    """BYOL with the paper's asymmetric views and cosine EMA schedule."""
    return BYOL(cfg, dataset)
