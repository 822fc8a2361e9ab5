"""CLIP baseline (``method.name: clip``) on the same towers as cross-modal BYOL.

The image and text towers (encoders and projectors) are built exactly as in
:class:`xbyol.methods.xmodal.CrossModalTowers`; only the objective differs: symmetric
InfoNCE over the batch with a learnable temperature (Radford et al. 2021; open_clip
``ClipLoss``). The logit scale is kept as a log, initialised to
``log(1 / clip_temperature)`` (CLIP: 1/0.07) and clamped to ``[0, log 100]`` after every
optimiser step. A contrastive objective needs neither predictors nor EMA targets, so
CLIP has none. With ``clip_equal_captions`` (default) batch items whose captions are the
same string are positives of each other rather than negatives (with distinct captions
this is exactly CLIP's loss).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xbyol.config import Config
from xbyol.data.base import SampleDataset
from xbyol.losses.clip import clamp_log_scale_, clip_loss, equal_caption_mask
from xbyol.methods.base import METHODS
from xbyol.methods.xmodal import CrossModalTowers


class CLIP(CrossModalTowers):
    """Contrastive image-text baseline.

    Attributes:
        log_logit_scale: scalar parameter, ``log`` of the logit multiplier.
    """

    def __init__(self, cfg: Config, dataset: SampleDataset) -> None:
        super().__init__(cfg, dataset)
        t0 = cfg.method.crossmodal.clip_temperature
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / t0)))

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        texts = list(batch["caption"])
        z_img = self.image_projector(self.backbone(self.paired_images(batch["image"])))  # (B, E)
        z_txt = self.text_projector(self.text_encoder(texts))  # (B, E)
        positives = equal_caption_mask(texts) if self.cfg.method.crossmodal.clip_equal_captions else None
        loss = clip_loss(z_img, z_txt, self.log_logit_scale.exp(), positives)
        out = {
            "loss": loss,
            "loss_clip": loss.detach(),
            "logit_scale": self.log_logit_scale.detach().exp(),
            "embed/image": z_img.detach(),
            "embed/text": z_txt.detach(),
        }
        self.watch_collapse({"image": out["embed/image"], "text": out["embed/text"]})
        return out

    @torch.no_grad()
    def after_optimizer_step(self, tau: float) -> dict[str, float]:
        clamp_log_scale_(self.log_logit_scale)
        return {"logit_scale": float(self.log_logit_scale.exp())}

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit image projections ``[B, E]``."""
        return F.normalize(self.image_projector(self.backbone(images)), dim=-1)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit text projections ``[B, E]``."""
        return F.normalize(self.text_projector(self.text_encoder(list(texts))), dim=-1)


@METHODS.register("clip")
def _clip(cfg: Config, dataset: SampleDataset) -> CLIP:
    """CLIP baseline: symmetric InfoNCE with a learnable temperature on the cross-modal towers."""
    return CLIP(cfg, dataset)
