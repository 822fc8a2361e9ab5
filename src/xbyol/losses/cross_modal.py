"""Cross-modal BYOL: each modality's online branch regresses the other's target projection.

The image branch predicts the EMA-target text projection of its caption and the text
branch predicts the EMA-target image projection, with BYOL's normalised MSE
``2 - 2 cos(q, sg(z))`` and no negatives (BraVe, Recasens et al. 2021, arXiv 2103.16559,
``deepmind/brave: brave/models/brave/brave.py::_regression_loss`` uses half of it).
"""

from __future__ import annotations

import torch

from xbyol.losses.byol import byol_pair_loss


def cross_modal_byol_terms(
    p_image: torch.Tensor, p_text: torch.Tensor, z_image: torch.Tensor, z_text: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cross-modal regression terms, one per direction.

    Args:
        p_image: online image predictions ``[B, D]``.
        p_text: online text predictions ``[B, D]`` (row ``i`` is the caption of image ``i``).
        z_image: target image projections ``[B, D]``; no gradient flows into them.
        z_text: target text projections ``[B, D]``; no gradient flows into them.

    Returns:
        ``(image_to_text, text_to_image)``, each ``[B]`` in ``[0, 4]``:
        ``2 - 2 cos(p_image, sg z_text)`` and ``2 - 2 cos(p_text, sg z_image)``.
    """
    shapes = {tuple(t.shape) for t in (p_image, p_text, z_image, z_text)}
    if len(shapes) != 1:
        raise ValueError(
            "cross-modal BYOL needs four [B, D] tensors of one shape, got "
            f"p_image {tuple(p_image.shape)}, p_text {tuple(p_text.shape)}, "
            f"z_image {tuple(z_image.shape)}, z_text {tuple(z_text.shape)}"
        )
    return byol_pair_loss(p_image, z_text), byol_pair_loss(p_text, z_image)


def cross_modal_byol_loss(
    p_image: torch.Tensor, p_text: torch.Tensor, z_image: torch.Tensor, z_text: torch.Tensor
) -> torch.Tensor:
    """``mean_B[(2 - 2cos(p_image, sg z_text)) + (2 - 2cos(p_text, sg z_image))]``.

    The two directions are summed, as BYOL sums its two views (REFERENCES.md section 1).

    Args:
        p_image, p_text: online predictions ``[B, D]`` of the image and text branches.
        z_image, z_text: target projections ``[B, D]`` of the image and text branches.

    Returns:
        Scalar loss in ``[0, 8]``.
    """
    i2t, t2i = cross_modal_byol_terms(p_image, p_text, z_image, z_text)
    return (i2t + t2i).mean()
