"""Cross-modal BYOL (``method.name: xmodal``): image-text alignment without negatives.

Two towers map into one shared space of width ``method.crossmodal.embed_dim``:

- image: backbone -> projector -> predictor (online) and an EMA target backbone -> projector;
- text: text encoder (:mod:`xbyol.text`) -> projector -> predictor (online) and an EMA
  target text encoder -> projector.

The online image branch predicts the target text projection of its caption and the
online text branch predicts the target image projection (BYOL's normalised MSE
``2 - 2cos``, stop-gradient on targets, both directions summed; BraVe, Recasens et al.
2021, is the closest published template). Optional intra-modal BYOL terms: two BYOL
views of the image, and for text a second caption of the same image or a caption-dropout
view, each with its own weight.

Collapse is watched: ``training_step`` returns the online predictions as
``embed/image`` and ``embed/text`` (the trainer logs their std and effective rank; the
projections end in a BatchNorm that forces their std, the predictions do not), and a
warning is raised when either std falls below ``collapse_std_threshold / sqrt(d)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xbyol.augment import ByolViews, preprocess
from xbyol.augment.views import RandomResizedCropFlip
from xbyol.config import Config
from xbyol.data.base import SampleDataset
from xbyol.losses.byol import byol_loss
from xbyol.losses.cross_modal import cross_modal_byol_terms
from xbyol.methods.base import METHODS, Method
from xbyol.methods.collapse import embedding_std
from xbyol.models import create_backbone
from xbyol.models.ema import copy_as_target, update_momentum
from xbyol.models.heads import PredictionHead, ProjectionHead
from xbyol.text import build_text_encoder, item_captions, second_text_view


class CollapseWarning(UserWarning):
    """An embedding's per-dimension std fell below the configured fraction of ``1/sqrt(d)``."""


def projector_output_norm(kind: str, dim: int) -> nn.Module:
    """The last layer of a shared-space projector, ``[B, dim] -> [B, dim]``, no learnt parameters.

    - ``batch``: non-affine BatchNorm (SimSiam's projector output BN, Chen & He 2021): centres
      and standardises every dimension over the batch, so each sample's embedding depends on
      the other samples of its batch while training (running statistics at eval).
    - ``layer``: non-affine LayerNorm: centres and standardises each embedding over its own
      ``dim`` entries; no sample sees another's statistics.
    - ``none``: identity.
    """
    if kind == "batch":
        return nn.BatchNorm1d(dim, affine=False)
    if kind == "layer":
        return nn.LayerNorm(dim, elementwise_affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"method.crossmodal.projector_norm: unknown {kind!r}; choose batch, layer or none")


def shared_space_projector(in_dim: int, hidden: int, out_dim: int, norm: str) -> nn.Module:
    """BYOL projector ``[B, in_dim] -> [B, out_dim]`` followed by :func:`projector_output_norm`.

    Without an output normalisation the regression targets of cross-modal BYOL are dominated
    by their common mean, predictions shrink towards it and retrieval suffers; the batch
    variant removes that mean with batch statistics (benchmarks/BENCHMARKS.md compares the three).
    """
    head = ProjectionHead(in_dim, hidden, out_dim)
    if norm == "none":
        return head  # the bare head: the state-dict keys of runs saved with projector_bn false
    return nn.Sequential(head, projector_output_norm(norm, out_dim))


class CrossModalTowers(Method):
    """Image and text towers into a shared space; the part ``xmodal`` and ``clip`` share.

    Attributes:
        backbone: online image encoder (the representation probed and explained).
        text_encoder: online text encoder, ``forward(list[str]) -> [B, T]``.
        image_projector, text_projector: MLPs into the shared space ``[B, embed_dim]``.
    """

    def __init__(self, cfg: Config, dataset: SampleDataset) -> None:
        super().__init__(cfg, dataset)
        x = cfg.method.crossmodal
        self.backbone = create_backbone(cfg.model.backbone)
        captions = [c for caps in item_captions(dataset) for c in caps]
        self.text_encoder = build_text_encoder(x, captions)
        # attributes of the concrete towers; Method types them as nn.Module
        image_dim: int = self.backbone.num_features  # type: ignore[assignment]
        text_dim: int = self.text_encoder.out_dim  # type: ignore[assignment]
        self.image_projector = shared_space_projector(image_dim, x.hidden, x.embed_dim, x.projector_norm)
        self.text_projector = shared_space_projector(text_dim, x.hidden, x.embed_dim, x.projector_norm)
        self.pair_crop: RandomResizedCropFlip | None = None
        if x.image_aug == "crop":  # the views' crop, mild and without the flip
            self.pair_crop = RandomResizedCropFlip(cfg.data.image_size, scale=(0.8, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), flip_p=0.0)
        self._steps_seen = 0

    def paired_images(self, images: torch.Tensor) -> torch.Tensor:
        """The float input paired with the caption: preprocessed, mildly cropped when training."""
        x = preprocess(images)  # (B, 3, H, W)
        if self.training and self.pair_crop is not None:
            x, _ = self.pair_crop(x)
        return x

    def watch_collapse(self, embeds: dict[str, torch.Tensor]) -> None:
        """Warn (at most once per ``train.monitor_every`` steps) when an embedding collapses."""
        self._steps_seen += 1
        if (self._steps_seen - 1) % self.cfg.train.monitor_every:
            return
        frac = self.cfg.method.crossmodal.collapse_std_threshold
        for name, z in embeds.items():
            if z.shape[0] < 2:
                continue
            std, floor = embedding_std(z), frac / math.sqrt(z.shape[1])
            if std < floor:
                warnings.warn(
                    f"{self.cfg.method.name}: {name} embeddings are collapsing at training step {self._steps_seen}: "
                    f"per-dimension std {std:.4f} < {frac} / sqrt({z.shape[1]}) = {floor:.4f} "
                    "(healthy is about 1/sqrt(d)); lower train.lr, raise method.tau_base or add intra-modal terms",
                    CollapseWarning,
                    stacklevel=2,
                )

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone representation ``[B, D]`` of preprocessed images (for probes)."""
        return self.backbone(images)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Unit embeddings ``[B, E']`` of preprocessed images in the retrieval space."""
        raise NotImplementedError

    def embed_texts(self, texts: list[str]) -> torch.Tensor:  # pragma: no cover - abstract
        """Unit embeddings ``[B, E']`` of texts; ``embed_images(x) @ embed_texts(t).T`` scores pairs."""
        raise NotImplementedError


class CrossModalBYOL(CrossModalTowers):
    """Cross-modal BYOL (see the module docstring).

    Attributes:
        image_predictor, text_predictor: online predictors ``[B, E] -> [B, E]``.
        target_backbone, target_image_projector, target_text_encoder, target_text_projector:
            EMA copies, never receiving gradients (a frozen text encoder's cached
            feature table is shared, not copied).
        views: BYOL views for the optional image-image term.
    """

    def __init__(self, cfg: Config, dataset: SampleDataset) -> None:
        super().__init__(cfg, dataset)
        x = cfg.method.crossmodal
        self.image_predictor = PredictionHead(x.embed_dim, x.hidden, x.embed_dim)
        self.text_predictor = PredictionHead(x.embed_dim, x.hidden, x.embed_dim)
        self.target_backbone = copy_as_target(self.backbone)
        self.target_image_projector = copy_as_target(self.image_projector)
        self.target_text_encoder = copy_as_target(self.text_encoder)
        self.target_text_projector = copy_as_target(self.text_projector)
        self.views = ByolViews(cfg.aug, cfg.data.image_size) if x.image_intra_weight > 0 else None

    def _targets(self, images: torch.Tensor | None, texts: list[str] | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        with torch.no_grad():
            zi = self.target_image_projector(self.target_backbone(images)) if images is not None else None
            zt = self.target_text_projector(self.target_text_encoder(texts)) if texts is not None else None
        return zi, zt

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x_cfg = self.cfg.method.crossmodal
        images, texts = batch["image"], list(batch["caption"])
        b = images.shape[0]
        x = self.paired_images(images)  # (B, 3, H, W)
        image_in = x
        if x_cfg.image_intra_weight > 0:
            assert self.views is not None
            v1, v2 = self.views(images)
            image_in = torch.cat([x, v1, v2])  # (3B, 3, H, W), one pass keeps BN statistics shared
        text_in = texts
        if x_cfg.text_intra_weight > 0:
            text_in = texts + second_text_view(texts, batch.get("captions"), x_cfg.caption_dropout)

        z_img_all = self.image_projector(self.backbone(image_in))  # (B or 3B, E)
        p_img_all = self.image_predictor(z_img_all)
        z_txt_all = self.text_projector(self.text_encoder(text_in))  # (B or 2B, E)
        p_txt_all = self.text_predictor(z_txt_all)
        zt_img_all, zt_txt_all = self._targets(image_in, text_in)
        assert zt_img_all is not None and zt_txt_all is not None

        i2t, t2i = cross_modal_byol_terms(p_img_all[:b], p_txt_all[:b], zt_img_all[:b], zt_txt_all[:b])
        loss_xmodal = (i2t + t2i).mean()
        out: dict[str, torch.Tensor] = {
            "loss_xmodal": loss_xmodal,
            "loss_i2t": i2t.mean().detach(),
            "loss_t2i": t2i.mean().detach(),
        }
        loss = loss_xmodal
        if x_cfg.image_intra_weight > 0:
            _, p1, p2 = p_img_all.chunk(3)
            _, z1, z2 = zt_img_all.chunk(3)
            out["loss_image"] = byol_loss(p1, p2, z1, z2)
            loss = loss + x_cfg.image_intra_weight * out["loss_image"]
        if x_cfg.text_intra_weight > 0:
            p1, p2 = p_txt_all.chunk(2)
            z1, z2 = zt_txt_all.chunk(2)
            out["loss_text"] = byol_loss(p1, p2, z1, z2)
            loss = loss + x_cfg.text_intra_weight * out["loss_text"]
        out["loss"] = loss
        # the predictions are not standardised by the projector's output BatchNorm, so their
        # std and effective rank show collapse honestly
        out["embed/image"] = p_img_all[:b].detach()
        out["embed/text"] = p_txt_all[:b].detach()
        self.watch_collapse({"image": out["embed/image"], "text": out["embed/text"]})
        return out

    @torch.no_grad()
    def after_optimizer_step(self, tau: float) -> dict[str, float]:
        update_momentum(self.backbone, self.target_backbone, tau)
        update_momentum(self.image_projector, self.target_image_projector, tau)
        update_momentum(self.text_encoder, self.target_text_encoder, tau)
        update_momentum(self.text_projector, self.target_text_projector, tau)
        return {"tau": tau}

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[normalize(q_img(z_img)), normalize(z'_img)] / sqrt(2)``: ``[B, 2E]`` unit rows.

        With :meth:`embed_texts` the dot product is the mean of the two cosines the loss
        trained: ``cos(q_img, z'_txt)`` (image predicts target text) and
        ``cos(z'_img, q_txt)`` (text predicts target image).
        """
        p = self.image_predictor(self.image_projector(self.backbone(images)))  # (B, E)
        z_t = self.target_image_projector(self.target_backbone(images))  # (B, E)
        return torch.cat([F.normalize(p, dim=-1), F.normalize(z_t, dim=-1)], dim=1) / math.sqrt(2.0)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """``[normalize(z'_txt), normalize(q_txt(z_txt))] / sqrt(2)``: ``[B, 2E]`` unit rows."""
        texts = list(texts)
        z_t = self.target_text_projector(self.target_text_encoder(texts))  # (B, E)
        p = self.text_predictor(self.text_projector(self.text_encoder(texts)))  # (B, E)
        return torch.cat([F.normalize(z_t, dim=-1), F.normalize(p, dim=-1)], dim=1) / math.sqrt(2.0)


@METHODS.register("xmodal")
def _xmodal(cfg: Config, dataset: SampleDataset) -> CrossModalBYOL:
    """Cross-modal BYOL: image and text predict each other's EMA-target projections, no negatives."""
    return CrossModalBYOL(cfg, dataset)
