"""BYOL's two asymmetric augmented views, made with kornia on whole batches.

Per view (Grill et al. 2020, Table 6; REFERENCES.md section 1):

1. ``RandomResizedCrop`` to ``image_size``: area ``(crop_scale_min, crop_scale_max)``,
   aspect ratio (3/4, 4/3), bilinear, ``cropping_mode="resample"`` (one batched warp,
   no per-image loop; kornia's "slice" mode loops over the batch).
2. ``RandomHorizontalFlip(flip_p)``.
3. ``ColorJitter(*jitter, p=jitter_p)``: kornia's ``ColorJitter`` uses torchvision's
   formulas (brightness multiplies, contrast/saturation blend with the grayscale mean /
   grayscale image, hue shifts by a fraction of a turn), which is what BYOL and lightly
   use; ``ColorJiggle`` uses additive brightness and HSV saturation and differs. The
   order of the four steps is random per call (shared by the batch); factors are per
   sample.
4. ``RandomGrayscale(grayscale_p)`` (ITU-R 601 weights 0.299, 0.587, 0.114).
5. ``RandomGaussianBlur``: kernel :func:`blur_kernel_size` (odd, about
   ``blur_kernel_frac * image_size``), sigma in ``blur_sigma``, reflect padding,
   ``p = blur_p[view]``; skipped when the kernel would be smaller than 3 px.
6. ``RandomSolarize(thresholds=0.0, additions=0.0)``: kornia's scalar ``thresholds`` is
   a half-width around 0.5 and ``additions`` a half-width around 0, so this is a fixed
   threshold 0.5 with no brightness shift: ``x if x < 0.5 else 1 - x``;
   ``p = solarize_p[view]``.
7. ``(x - IMAGE_MEAN) / IMAGE_STD`` when ``normalize`` is set (otherwise views stay in [0, 1]).

Random parameters are drawn per sample (``same_on_batch=False``). Steps with
probability 0 are left out of the pipeline.

Determinism: kornia draws from torch's global RNG (CPU generator by default, or the
device the module was moved to). ``forward(images, seed=s)`` runs inside
``torch.random.fork_rng`` seeded with ``s``, so the same seed gives identical views and
the caller's RNG state is left untouched. Without a seed, seed the process with
``torch.manual_seed`` as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import kornia.augmentation as K
import torch
from torch import nn

from xbyol.augment import normalize, to_unit_float
from xbyol.config import AugCfg, Config


def blur_kernel_size(frac: float, image_size: int) -> int:
    """Odd Gaussian-blur kernel side ``~ frac * image_size`` (23 at 224 px, 3 at 32 px).

    Args:
        frac: kernel side as a fraction of the image side.
        image_size: image side in pixels.

    Returns:
        ``round(frac * image_size)`` made odd by adding 1 when even; a value below 3
        means "no blur" (images too small for a meaningful kernel).
    """
    k = int(round(frac * image_size))
    if k % 2 == 0:
        k += 1
    return k if k >= 3 else 0


def _view_pipeline(cfg: AugCfg, image_size: int, blur_p: float, solarize_p: float) -> K.AugmentationSequential:
    ops: list[nn.Module] = [
        K.RandomResizedCrop(
            (image_size, image_size),
            scale=(cfg.crop_scale_min, cfg.crop_scale_max),
            ratio=(3.0 / 4.0, 4.0 / 3.0),
            resample="bilinear",
            cropping_mode="resample",
        )
    ]
    if cfg.flip_p > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg.flip_p))
    if cfg.jitter_p > 0 and any(j > 0 for j in cfg.jitter):
        b, c, s, h = cfg.jitter
        ops.append(K.ColorJitter(b, c, s, h, p=cfg.jitter_p))
    if cfg.grayscale_p > 0:
        ops.append(K.RandomGrayscale(p=cfg.grayscale_p))
    kernel = blur_kernel_size(cfg.blur_kernel_frac, image_size)
    if blur_p > 0 and kernel >= 3:
        ops.append(K.RandomGaussianBlur((kernel, kernel), tuple(cfg.blur_sigma), border_type="reflect", p=blur_p))
    if solarize_p > 0:
        ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=solarize_p))
    return K.AugmentationSequential(*ops, same_on_batch=False)


def _check_cfg(cfg: AugCfg, image_size: int) -> None:
    if image_size < 1:
        raise ValueError(f"image_size: expected a positive number of pixels, got {image_size}")
    if not 0 < cfg.crop_scale_min <= cfg.crop_scale_max <= 1:
        raise ValueError(
            f"aug.crop_scale_min/crop_scale_max: expected 0 < min <= max <= 1, "
            f"got ({cfg.crop_scale_min}, {cfg.crop_scale_max})"
        )
    for name in ("blur_p", "solarize_p"):
        ps = getattr(cfg, name)
        if len(ps) != 2 or not all(0 <= p <= 1 for p in ps):
            raise ValueError(f"aug.{name}: expected two probabilities in [0, 1] (view 1, view 2), got {ps!r}")
    lo, hi = cfg.blur_sigma
    if not 0 < lo <= hi:
        raise ValueError(f"aug.blur_sigma: expected 0 < low <= high, got {cfg.blur_sigma!r}")


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with torch's RNG (CPU and ``device``) seeded, restoring it afterwards."""
    if seed is None:
        yield
        return
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for idx in cuda:
            with torch.cuda.device(idx):
                torch.cuda.manual_seed(seed)
        yield


class ByolViews(nn.Module):
    """Two BYOL views of a batch: view 1 always blurred, never solarised; view 2 rarely blurred, sometimes solarised.

    Args:
        cfg: augmentation settings (``xbyol.config.AugCfg``).
        image_size: side of the square output views, pixels.

    Example:
        >>> views = ByolViews(AugCfg(), image_size=32)
        >>> v1, v2 = views(torch.zeros(8, 3, 32, 32, dtype=torch.uint8), seed=0)
    """

    def __init__(self, cfg: AugCfg, image_size: int) -> None:
        super().__init__()
        _check_cfg(cfg, image_size)
        self.cfg = cfg
        self.image_size = int(image_size)
        self.view1 = _view_pipeline(cfg, self.image_size, cfg.blur_p[0], cfg.solarize_p[0])
        self.view2 = _view_pipeline(cfg, self.image_size, cfg.blur_p[1], cfg.solarize_p[1])

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x) if self.cfg.normalize else x

    def forward(self, images: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Make both views.

        Args:
            images: ``[B, 3, H, W]`` uint8 (or float in [0, 1]) on any device.
            seed: when given, the views depend only on ``images`` and ``seed``.

        Returns:
            ``(view1, view2)``, each ``[B, 3, image_size, image_size]`` float on ``images.device``,
            normalised when ``cfg.normalize`` (else in [0, 1]).
        """
        x = to_unit_float(images)  # (B, 3, H, W) in [0, 1]
        with _seeded(seed, x.device):
            v1 = self.view1(x)  # (B, 3, S, S)
            v2 = self.view2(x)  # (B, 3, S, S)
        return self._finish(v1), self._finish(v2)

    def forward_with_masks(
        self, images: torch.Tensor, masks: torch.Tensor, seed: int | None = None
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Make both views and carry per-pixel masks through the same crop and flip.

        Masks are resampled with nearest interpolation; colour, blur and solarisation touch
        only the images. For the same ``seed`` the images equal those of :meth:`forward`.

        Args:
            images: ``[B, 3, H, W]`` uint8 (or float in [0, 1]).
            masks: ``[B, K, H, W]`` bool, aligned with ``images``.
            seed: as in :meth:`forward`.

        Returns:
            ``((view1, masks1), (view2, masks2))``; views ``[B, 3, S, S]`` float, masks
            ``[B, K, S, S]`` bool, all on ``images.device``.
        """
        x = to_unit_float(images)  # (B, 3, H, W)
        if masks.dim() != 4 or masks.shape[0] != x.shape[0] or masks.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"masks: expected [B, K, H, W] matching images {list(x.shape)}, got {list(masks.shape)}"
            )
        if masks.dtype != torch.bool:
            raise TypeError(f"masks: expected dtype torch.bool, got {masks.dtype}")
        m = masks.to(device=x.device, dtype=x.dtype)  # (B, K, H, W) in {0, 1}
        if m.shape[1] == 0:  # kornia cannot warp a tensor without channels; carry a dummy one
            m = x.new_zeros(x.shape[0], 1, *x.shape[-2:])
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        with _seeded(seed, x.device):
            for pipe in (self.view1, self.view2):
                v, mv = pipe(x, m, data_keys=["input", "mask"])  # (B, 3, S, S), (B, K, S, S)
                mv = (mv > 0.5)[:, : masks.shape[1]]
                out.append((self._finish(v), mv))
        return out[0], out[1]

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, normalize={self.cfg.normalize}"


def make_views(cfg: AugCfg | Config, image_size: int | None = None) -> ByolViews:
    """Build :class:`ByolViews` from ``cfg.aug`` and ``cfg.data.image_size`` of a run config, or from an ``AugCfg``.

    Args:
        cfg: a full :class:`~xbyol.config.Config` or its ``AugCfg``.
        image_size: output side; required with an ``AugCfg``, defaults to ``cfg.data.image_size``.
    """
    if isinstance(cfg, Config):
        return ByolViews(cfg.aug, image_size if image_size is not None else cfg.data.image_size)
    if image_size is None:
        raise ValueError("make_views: image_size is required when cfg is an AugCfg")
    return ByolViews(cfg, image_size)


__all__ = ["ByolViews", "blur_kernel_size", "make_views"]
