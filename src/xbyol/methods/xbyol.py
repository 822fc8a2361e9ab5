"""Explainable BYOL: BYOL plus a semantic loss toward concept text embeddings and a
concept-attention fusion that gives every embedding its top concepts.

Architecture (online branch)::

    x -> backbone f -> h [B, D] -> projector g -> p [B, P] -> concept head W -> z [B, E]
                                                  |-> predictor q (BYOL)
    z -> ConceptAttention over the bank [K, E] -> (z_hat [B, E], alpha [B, K], gate [B, 1])

Map direction: the concept head maps the *projection* space into the concept
(sentence-embedding) space, ``W: R^P -> R^E``. The bank stays fixed, so concept
embeddings keep their meaning and new texts (``"red circle"``) embedded later by the
same text model are directly comparable with images; the reverse map (texts into the
projection space) would have to be re-applied to every query text and would move the
text geometry during training.

Loss: ``L = L_byol + lambda * L_sem``. ``L_sem`` is the semantic loss (``contrastive``
multi-label InfoNCE over the bank, or ``cosine``) of ``z``; with fusion enabled it is the
mean of the losses of ``z`` and of the fused ``z_hat``, which is what trains the
attention scale and the gate. Images without any known concept add nothing to
``L_sem``. By default the semantic term sees the un-augmented images (one extra forward
of the online branch), because colour jitter, grayscale and crops can contradict the
labels; ``method.semantic.input: views`` reuses the two BYOL views at no extra cost.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xbyol.augment import preprocess, to_unit_float
from xbyol.concepts.attention import ConceptAttention, ConceptFusion
from xbyol.concepts.bank import ConceptBank
from xbyol.concepts.build import bank_for
from xbyol.concepts.projection import ConceptMap
from xbyol.concepts.vocabulary import ConceptLabeler
from xbyol.config import Config
from xbyol.data.base import SampleDataset
from xbyol.losses.semantic import semantic_loss
from xbyol.methods.base import METHODS
from xbyol.methods.byol import BYOL


class XBYOL(BYOL):
    """BYOL with a concept head, a semantic loss and concept attention.

    Attributes:
        concept_head: ``nn.Linear(P, E)`` from the projection into the concept space.
        attention: :class:`ConceptAttention` (``None`` when ``method.semantic.fusion`` is off).
        concept_embeddings: buffer ``[K, E]``, the bank (saved in every checkpoint).
        labeler: per-image positives of a batch, ``[B, K]`` bool.
    """

    concept_embeddings: torch.Tensor  # a buffer (typed here: register_buffer does not tell mypy)

    def __init__(self, cfg: Config, dataset: SampleDataset) -> None:
        super().__init__(cfg, dataset)
        s = cfg.method.semantic
        bank = bank_for(s, dataset, cfg.run_dir)
        self.labeler = ConceptLabeler(bank.texts, dataset)
        if self.labeler.num_labelled == 0:
            raise ValueError(
                f"method xbyol: none of the {len(bank)} concepts ({', '.join(bank.texts[:5])}, ...) can be read from "
                f"dataset {cfg.data.name!r} (no matching concept vocabulary, captions or class names); "
                "check method.semantic.concepts_file"
            )
        self._bank_meta = bank  # texts, groups, prompt, provenance; embeddings live in the buffer
        self.register_buffer("concept_embeddings", bank.embeddings.clone())
        self.concept_head = nn.Linear(cfg.model.proj_dim, bank.dim)
        self.attention = ConceptAttention(bank.dim, init_temperature=s.temperature) if s.fusion else None
        self._bank_saved = False

    # ------------------------------------------------------------------ bank
    @property
    def bank(self) -> ConceptBank:
        """The concept bank, with the embeddings of this module's buffer."""
        b = self._bank_meta
        return ConceptBank(b.texts, self.concept_embeddings.detach().cpu(), b.groups, b.prompt, b.model, b.cache_dir)

    def concept_map(self) -> ConceptMap:
        """Representation ``[B, D]`` -> concept space ``[B, E]`` (shares this method's modules)."""
        return ConceptMap(self.projector, self.concept_head)

    def _save_bank_once(self) -> None:
        """Write the bank into the run directory at the first training step (main process only)."""
        if self._bank_saved:
            return
        self._bank_saved = True
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return
        self.bank.save(self.cfg.run_dir)

    # ------------------------------------------------------------------ training
    def _clean(self, images: torch.Tensor) -> torch.Tensor:
        return preprocess(images) if self.cfg.aug.normalize else to_unit_float(images)

    def semantic_terms(self, z: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Semantic loss of concept-space vectors ``z [N, E]`` with positives ``[N, K]``."""
        s = self.cfg.method.semantic
        bank = self.concept_embeddings
        loss = semantic_loss(s.loss, z, bank, targets, s.temperature)
        out = {"loss_semantic_z": loss.detach()}
        if self.attention is not None:
            fusion = self.attention(z, bank)
            loss_fused = semantic_loss(s.loss, fusion.fused, bank, targets, s.temperature)
            out["loss_semantic_fused"] = loss_fused.detach()
            out["gate"] = fusion.gate.detach().mean()
            out["attention_scale"] = self.attention.log_scale.detach().exp()
            loss = 0.5 * (loss + loss_fused)
        out["loss_semantic"] = loss
        return out

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self._save_bank_once()
        s = self.cfg.method.semantic
        images = batch["image"]
        v1, v2 = self.views(images)
        out, z_online = self.byol_terms(v1, v2)

        targets = self.labeler(batch)  # (B, K)
        if s.input == "clean":
            z = self.concept_head(self.online_projection(self._clean(images)))  # (B, E)
        else:
            z = self.concept_head(z_online)  # (2B, E)
            targets = targets.repeat(2, 1)  # (2B, K)
        out.update(self.semantic_terms(z, targets))
        out["labelled_fraction"] = targets.any(dim=1).float().mean()
        out["loss"] = s.byol_weight * out["loss_byol"] + s.weight * out["loss_semantic"] + out.get("loss_filter", 0.0)
        out["embed/concept"] = z.detach()
        return out

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def concept_encoding(self, images: torch.Tensor) -> ConceptFusion:
        """Concept-mode encoding of preprocessed images ``[B, 3, H, W]``.

        Returns:
            :class:`ConceptFusion`: ``fused [B, E]``, ``alpha [B, K]``, ``gate [B, 1]``, ``context [B, E]``.
            Without fusion, ``fused`` is the unit ``z``, ``alpha = softmax_k(cos(z, e_k) / T)`` and ``gate`` is 1.
        """
        z = self.concept_head(self.projector(self.backbone(images)))  # (B, E)
        if self.attention is not None:
            return self.attention(z, self.concept_embeddings)
        z_unit = F.normalize(z, dim=-1)
        alpha = (z_unit @ self.concept_embeddings.T / self.cfg.method.semantic.temperature).softmax(-1)  # (B, K)
        return ConceptFusion(z_unit, alpha, torch.ones_like(z[:, :1]), alpha @ self.concept_embeddings)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, concept_mode: bool = False):  # type: ignore[override]
        """Representation ``[B, D]`` (default), or in concept mode ``(z_hat [B, E], alpha [B, K])``.

        The default keeps the backbone representation so linear probes compare with BYOL;
        ``concept_mode=True`` returns the fused representation with its attention over the bank.
        """
        if not concept_mode:
            return self.backbone(images)
        enc = self.concept_encoding(images)
        return enc.fused, enc.alpha

    def extra_state(self) -> dict[str, Any]:
        return {"concepts": {k: v for k, v in self.bank.record().items()}}


@METHODS.register("xbyol")
def _xbyol(cfg: Config, dataset: SampleDataset) -> XBYOL:
    """Explainable BYOL: BYOL + semantic loss toward concept text embeddings + concept attention."""
    return XBYOL(cfg, dataset)
