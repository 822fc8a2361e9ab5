"""BYOL's two asymmetric augmented views, made on whole batches in plain torch.

Per view (Grill et al. 2020, Table 6; REFERENCES.md section 1):

1. Random resized crop to ``image_size``: area ``(crop_scale_min, crop_scale_max)`` of
   the image, aspect ratio (3/4, 4/3), integer box drawn as in torchvision / kornia
   (ten tries per sample, first box that fits, else the whole image), resampled
   bilinearly with the box's corner pixels mapped onto the output's corner pixels
   (kornia ``RandomResizedCrop(cropping_mode="resample")``).
2. Horizontal flip with probability ``flip_p``, folded into the crop's sampling grid, so
   crop and flip are one ``grid_sample`` pass.
3. Colour jitter ``(brightness, contrast, saturation, hue)`` with probability
   ``jitter_p``, torchvision's formulas as in kornia's ``ColorJitter`` (what BYOL and
   lightly use): brightness multiplies by ``b``; contrast blends with the image's mean
   grey level, ``c x + (1 - c) mean``; saturation blends with the grey image,
   ``s x + (1 - s) grey``; hue turns the HSV hue by ``h`` of a full turn. Each step is
   clamped to [0, 1]. Factors are per sample (``b, c, s`` uniform in ``[max(0, 1 - j), 1 + j]``,
   ``h`` in ``[-j, j]``); the order of the four steps is random per call and shared by
   the batch (kornia's convention).
4. Grayscale with probability ``grayscale_p`` (ITU-R 601 weights 0.299, 0.587, 0.114).
5. Gaussian blur: kernel :func:`blur_kernel_size` (odd, about
   ``blur_kernel_frac * image_size``), one sigma per sample uniform in ``blur_sigma``
   for both axes, reflect padding, ``p = blur_p[view]``; left out when the kernel would
   be smaller than 3 px.
6. Solarisation ``x if x < 0.5 else 1 - x`` with ``p = solarize_p[view]``.
7. ``(x - IMAGE_MEAN) / IMAGE_STD`` when ``normalize`` is set (otherwise views stay in [0, 1]).

Every random parameter is drawn per sample (an op with probability ``p`` changes the
samples whose draw fell below ``p``, and only those). Steps with probability 0 are
left out of the pipeline. Each op is checked against kornia's implementation in
``tests/augment/test_views.py``; the ops are written here, rather than composed from
``kornia.augmentation``, because the photometric steps need far fewer passes over the
batch this way (about 4x more views per second on one CPU thread at 32 px).

Precision and layout: views are always computed in the input's float precision
(float32 for uint8 images) with autocast disabled, whatever the caller's autocast
context, and come out in the input's memory format (``channels_last`` images give
``channels_last`` views, so a channels-last network gets the layout it was converted to).

Two ways to apply the drawn parameters (``aug.compile``): on the CPU each op runs eagerly
on the samples it touches (the fastest there); on CUDA, by default, a view is one
compiled graph (:mod:`xbyol.augment.batched`: every op on the whole batch, the crop's grid
built on the device, the jitter's order as data), a handful of fused kernels instead of
about a hundred eager ones. Both draw the same parameters in the same order, so a seed
gives the same views either way, up to float rounding.

Determinism: all random parameters are drawn on the CPU from torch's global generator
and then moved to the images' device, so the same seed gives the same parameters on
every device. The moves never wait for the device (non-blocking copies,
:func:`~xbyol.augment.preprocessing.move_like`), so on CUDA the host queues a view's
kernels without stalling on the ones before them. ``forward(images, seed=s)`` runs
inside ``torch.random.fork_rng`` seeded with ``s``: the same seed gives identical views
and the caller's RNG state is left untouched. Without a seed, seed the process with
``torch.manual_seed`` as usual.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xbyol.augment import batched
from xbyol.augment.batched import HUE_OFFSETS, LUMA, ViewSpec, to_grid
from xbyol.augment.blur import gaussian_blur, gaussian_taps
from xbyol.augment.preprocessing import move_like, normalize, to_unit_float
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


def _uniform(lo: float, hi: float, n: int) -> torch.Tensor:
    return torch.rand(n) * (hi - lo) + lo  # (n,) on the CPU


def _bernoulli(p: float, n: int) -> torch.Tensor:
    return torch.rand(n) < p  # (n,) bool on the CPU


def _keep(apply: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``apply [B]`` (CPU bool) as 0 / 1 weights ``[B, 1, 1, 1]`` in ``x``'s dtype on its device."""
    return move_like(apply, x).view(-1, 1, 1, 1)


def grey(x: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of ``[B, 3, H, W]`` images -> ``[B, 1, H, W]``."""
    r, g, b = x.unbind(1)
    return torch.mul(r, LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(1)  # (B, 1, H, W)


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return move_like(v, x).view(-1, 1, 1, 1)  # (B, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(b x)`` with one factor per sample: ``x [B, 3, H, W]``, ``factor [B]``."""
    return (x * _per_sample(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(c x + (1 - c) mean(grey(x)))`` per sample: ``x [B, 3, H, W]``, ``factor [B]``."""
    c = _per_sample(factor, x)  # (B, 1, 1, 1)
    w = move_like(torch.tensor(LUMA), x)
    mean = (x.mean(dim=(2, 3)) @ w).view(-1, 1, 1, 1)  # (B, 1, 1, 1): mean grey level (grey is linear)
    return (x * c).add_(mean * (1 - c)).clamp_(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(s x + (1 - s) grey(x))`` per sample: ``x [B, 3, H, W]``, ``factor [B]``."""
    s = _per_sample(factor, x)  # (B, 1, 1, 1)
    return torch.lerp(grey(x).expand_as(x), x, s).clamp_(0.0, 1.0)  # grey + s (x - grey), one pass


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Turn the HSV hue by ``factor`` of a full turn per sample, keeping S and V.

    Computed without the HSV round trip: with ``M = max``, ``C = max - min`` and the hue
    ``h`` in sextants, the turned hue ``h'`` gives each channel as ``M - C w`` with
    ``w = clamp(min(k, 4 - k), 0, 1)``, ``k = (n + h') mod 6`` and ``n = 5, 3, 1`` for R, G, B
    (the standard HSV -> RGB formula), so only ``h`` needs the usual branches. ``w`` is a
    trapezoid of period 6: ``w = clamp(|t - 3| - 1, 0, 1)`` with ``t = (h' + n - 2) mod 6``,
    evaluated for the three channels at once. Every step is a vectorised elementwise
    kernel: comparisons write float masks directly and the modulo is ``y - 6 floor(y / 6)``
    (``torch.remainder``, boolean tensors and ``torch.where`` take several times longer
    on the CPU).

    Args:
        x: ``[B, 3, H, W]`` images in [0, 1].
        factor: ``[B]`` fractions of a turn (``0.1`` = 36 degrees).

    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    r, g, b = x.unbind(1)  # (B, H, W) each
    mx = torch.maximum(r, g)
    torch.maximum(mx, b, out=mx)  # (B, H, W)
    chroma = torch.minimum(r, g)
    torch.minimum(chroma, b, out=chroma)
    chroma.neg_().add_(mx)  # max - min
    # hue in sextants before the turn: (g - b) / C, (b - r) / C + 2 or (r - g) / C + 4 by the max
    # channel (first of r, g, b on ties, which give the same hue)
    is_r = torch.eq(r, mx, out=torch.empty_like(mx))  # float 0 / 1
    is_g = torch.eq(g, mx, out=torch.empty_like(mx))
    is_g.addcmul_(is_g, is_r, value=-1.0)  # g is the max and r is not
    is_b = torch.add(is_r, is_g).neg_().add_(1.0)
    num = torch.sub(g, b).mul_(is_r)
    num.addcmul_(torch.sub(b, r).add_(chroma, alpha=2.0), is_g)
    num.addcmul_(torch.sub(r, g).add_(chroma, alpha=4.0), is_b)
    # grey pixels (C = 0) have num = 0, so any hue works and they stay grey; |num| <= C keeps h bounded
    h = num.div_(chroma.clamp_min(1e-12))
    h.add_(move_like(factor * 6.0, x).view(-1, 1, 1))  # turned hue, in [-4, 8]
    offsets = move_like(torch.tensor(HUE_OFFSETS), x).view(1, 3, 1, 1)
    t = torch.add(h.unsqueeze(1), offsets)  # (B, 3, H, W): h' + n - 2 for R, G, B
    # mod 6; a rounding slip of the floor at a multiple of 6 is harmless, as w is continuous there
    t.sub_(torch.mul(t, 1.0 / 6.0).floor_(), alpha=6.0)
    w = t.sub_(3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
    # 0 <= M - C w <= M also in floating point (C = fl(M - min) <= M and w <= 1), so no clamp is needed
    return torch.addcmul(mx.unsqueeze(1), chroma.unsqueeze(1), w, value=-1.0)  # (B, 3, H, W)


def solarize(x: torch.Tensor) -> torch.Tensor:
    """``x if x < 0.5 else 1 - x`` (threshold 0.5, no brightness shift), computed as ``min(x, 1 - x)``.

    The two agree on [0, 1] (below 0.5, ``x < 1 - x``; from 0.5 up, ``1 - x <= x``) and the
    minimum is one vectorised kernel, several times faster than ``torch.where`` on the CPU.
    """
    return torch.minimum(x, 1.0 - x)


def _on_subset(x: torch.Tensor, apply: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn(x[idx], idx)`` on the samples where ``apply [B]`` (CPU bool) is set; the others pass unchanged.

    ``fn`` works sample by sample (its result for one sample does not depend on the others),
    so it may run on more samples than ``apply`` selects. When most are selected it runs on
    the whole batch and ``torch.lerp`` with 0 / 1 weights keeps its result where ``apply``
    is set and ``x`` elsewhere (both exact): cheaper on the CPU than gathering the subset and
    scattering it back. Small subsets are gathered with ``index_select`` and written into a
    copy of the batch with ``index_copy_``.
    """
    n = x.shape[0]
    count = int(apply.sum())
    if count == n:
        return fn(x, torch.arange(n))
    if count == 0:
        return x
    if 2 * count > n:
        keep = move_like(apply, x).view(-1, *([1] * (x.dim() - 1)))  # (B, 1, ...)
        return torch.lerp(x, fn(x, torch.arange(n)).expand_as(x), keep)
    idx = apply.nonzero().squeeze(1)  # (count,) CPU
    didx = move_like(idx, x, idx.dtype)
    return x.clone().index_copy_(0, didx, fn(x.index_select(0, didx), idx).expand(count, *x.shape[1:]))


class RandomResizedCropFlip(nn.Module):
    """Random resized crop followed by a random horizontal flip, as one sampling grid per sample.

    Args:
        size: output side ``S``.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the crop's aspect ratio (width / height).
        flip_p: probability of the horizontal flip.
    """

    def __init__(self, size: int, scale: tuple[float, float], ratio: tuple[float, float], flip_p: float) -> None:
        super().__init__()
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip_p = float(flip_p)

    def sample_boxes(self, n: int, height: int, width: int) -> torch.Tensor:
        """Draw ``[n, 4]`` integer boxes ``(x0, y0, w, h)`` (float tensor, CPU), torchvision's rule.

        Ten candidate ``(area, log aspect)`` pairs per sample; the first whose rounded
        ``w, h`` fit in the image wins; samples with none fall back to the whole image
        (or the largest centred box of the extreme ratio for very elongated images).
        The top-left corner is uniform over the valid integer positions.
        """
        area = _uniform(*self.scale, n * 10).view(n, 10) * (height * width)  # (n, 10)
        log_r = _uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), n * 10).view(n, 10)
        aspect = log_r.exp()
        w = (area * aspect).sqrt().round()  # (n, 10)
        h = (area / aspect).sqrt().round()
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (n, 10)
        first = (fits.cumsum(1) == 1) & fits
        found, pick = first.int().max(dim=1)  # (n,)
        rows = torch.arange(n)
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            fw, fh = float(width), float(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            fw, fh = float(round(height * max(self.ratio))), float(height)
        else:
            fw, fh = float(width), float(height)
        w = torch.where(found.bool(), w[rows, pick], torch.tensor(fw)).clamp(1, width)  # (n,)
        h = torch.where(found.bool(), h[rows, pick], torch.tensor(fh)).clamp(1, height)
        x0 = (torch.rand(n) * (width - w + 1)).floor().clamp(max=width - w)
        y0 = (torch.rand(n) * (height - h + 1)).floor().clamp(max=height - h)
        return torch.stack([x0, y0, w, h], dim=1)  # (n, 4)

    def sample(self, n: int, height: int, width: int) -> dict[str, Any]:
        """Draw ``boxes [n, 4]`` (float64) and ``flip [n]`` (bool) for ``n`` images ``[H, W]``, on the CPU."""
        boxes = self.sample_boxes(n, height, width).to(torch.float64)  # (n, 4)
        flip = _bernoulli(self.flip_p, n) if self.flip_p > 0 else torch.zeros(n, dtype=torch.bool)
        return {"boxes": boxes, "flip": flip, "height": height, "width": width}

    def sample_grid(self, n: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Draw boxes and flips for ``n`` images ``[H, W]``; return the ``grid_sample`` grid ``[n, S, S, 2]`` (a strided view)."""
        return self.grid(self.sample(n, height, width), device, dtype)

    def grid(self, q: dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The ``grid_sample`` grid ``[n, S, S, 2]`` of drawn boxes and flips, built on the CPU and moved to ``device``.

        The source points are :func:`xbyol.augment.batched.crop_source_coords` of the
        float64 boxes: the box's corner pixels land on the output's corner pixels.
        """
        boxes, flip, height, width = q["boxes"], q["flip"], q["height"], q["width"]
        n = boxes.shape[0]
        s = self.size
        src_x, src_y = batched.crop_source_coords(boxes, flip, s)  # (n, S) each, float64 on the CPU
        # filled as two planes and handed over as a permuted view: writing the interleaved (x, y) pairs
        # directly takes several times longer, and grid_sample reads the grid through its strides
        grid = torch.empty(n, 2, s, s, dtype=dtype)
        grid[:, 0] = to_grid(src_x, width).view(n, 1, s)  # x varies along the output's columns
        grid[:, 1] = to_grid(src_y, height).view(n, s, 1)
        return grid.to(device, non_blocking=True).permute(0, 2, 3, 1)  # (n, S, S, 2); non-blocking: see move_like

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Crop and flip ``x [B, C, H, W]`` (bilinear) and ``masks [B, K, H, W]`` float (nearest) alike."""
        return self.apply_params(x, self.sample(x.shape[0], x.shape[-2], x.shape[-1]), masks)

    def apply_params(self, x: torch.Tensor, q: dict[str, Any], masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` with the boxes and flips ``q`` drawn by :meth:`sample`."""
        grid = self.grid(q, x.device, x.dtype)
        out = F.grid_sample(x.contiguous(), grid, mode="bilinear", padding_mode="border", align_corners=True)
        m = None
        if masks is not None:
            m = F.grid_sample(masks.contiguous(), grid, mode="nearest", padding_mode="border", align_corners=True)
        return out, m

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, flip_p={self.flip_p}"


class PhotometricOp(nn.Module):
    """A random colour/filter op: parameters drawn on the CPU by :meth:`sample`, applied by :meth:`apply_params`."""

    def sample(self, n: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply_params(self, x: torch.Tensor, q: dict[str, Any]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def batched(self, q: dict[str, Any], x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """``q`` as :func:`~xbyol.augment.batched.batched_view` takes it, on ``x``'s device."""
        raise NotImplementedError


class ColorJitter(PhotometricOp):
    """Brightness, contrast, saturation and hue jitter in a random order (see the module docstring).

    Args:
        brightness, contrast, saturation: ``j`` of the factor range ``[max(0, 1 - j), 1 + j]``.
        hue: ``j`` of the hue-turn range ``[-j, j]`` (at most 0.5).
        p: probability per sample.
    """

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float) -> None:
        super().__init__()
        self.jitter = (float(brightness), float(contrast), float(saturation), float(hue))
        self.p = float(p)

    @property
    def active(self) -> tuple[int, ...]:
        """Indices (brightness, contrast, saturation, hue = 0..3) of the steps with a non-zero range."""
        return tuple(i for i in range(4) if self.jitter[i] > 0)

    def sample(self, n: int) -> dict[str, Any]:
        """Draw ``apply [n]``, the four factors ``[4, n]`` and the steps' ``order`` (shared by the batch), on the CPU."""
        apply = _bernoulli(self.p, n)
        b, c, s, h = self.jitter
        factors = [_uniform(max(0.0, 1 - j), 1 + j, n) for j in (b, c, s)] + [_uniform(-h, h, n)]  # 4 x (n,)
        order = torch.randperm(4).tolist()
        return {"apply": apply, "factors": torch.stack(factors), "order": order}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_params(x, self.sample(x.shape[0]))

    def apply_params(self, x: torch.Tensor, q: dict[str, Any]) -> torch.Tensor:
        """:meth:`forward` with the parameters ``q`` drawn by :meth:`sample`."""
        factors = q["factors"]
        steps = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        active = [i for i in q["order"] if self.jitter[i] > 0]

        def jitter(xs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            for i in active:
                xs = steps[i](xs, factors[i][idx])
            return xs

        return _on_subset(x, q["apply"], jitter)

    def batched(self, q: dict[str, Any], x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``q`` as :func:`~xbyol.augment.batched.batched_view` takes it, on ``x``'s device.

        ``jitter_sel[k, a] = 1`` where the ``k``-th step applied is active step ``a``.
        """
        active = self.active
        applied = [i for i in q["order"] if i in active]
        sel = torch.zeros(len(active), len(active))
        for k, i in enumerate(applied):
            sel[k, active.index(i)] = 1.0
        return {
            "jitter_keep": _keep(q["apply"], x),
            "jitter_factors": move_like(q["factors"], x).view(4, -1, 1, 1, 1),
            "jitter_sel": move_like(sel, x),
        }

    def extra_repr(self) -> str:
        return f"jitter={self.jitter}, p={self.p}"


class RandomGrayscale(PhotometricOp):
    """Replace the three channels by the luma with probability ``p`` per sample."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def sample(self, n: int) -> dict[str, Any]:
        return {"apply": _bernoulli(self.p, n)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_params(x, self.sample(x.shape[0]))

    def apply_params(self, x: torch.Tensor, q: dict[str, Any]) -> torch.Tensor:
        return _on_subset(x, q["apply"], lambda xs, _: grey(xs).expand_as(xs))

    def batched(self, q: dict[str, Any], x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gray_keep": _keep(q["apply"], x)}

    def extra_repr(self) -> str:
        return f"p={self.p}"


class RandomGaussianBlur(PhotometricOp):
    """Gaussian blur with probability ``p`` per sample, sigma uniform in ``sigma`` per sample.

    Attributes:
        kernel_size: odd kernel side in pixels.
    """

    def __init__(self, kernel_size: int, sigma: tuple[float, float], p: float) -> None:
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.p = float(p)

    def sample(self, n: int) -> dict[str, Any]:
        apply = _bernoulli(self.p, n)
        return {"apply": apply, "sigma": _uniform(*self.sigma, n)}  # (n,) each

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_params(x, self.sample(x.shape[0]))

    def apply_params(self, x: torch.Tensor, q: dict[str, Any]) -> torch.Tensor:
        sigma = q["sigma"]
        return _on_subset(x, q["apply"], lambda xs, idx: gaussian_blur(xs, sigma[idx], self.kernel_size))

    def batched(self, q: dict[str, Any], x: torch.Tensor) -> dict[str, torch.Tensor]:
        taps = gaussian_taps(q["sigma"], self.kernel_size)  # (n, K) float64 on the CPU, as gaussian_blur makes them
        return {"blur_keep": _keep(q["apply"], x), "blur_taps": move_like(taps, x)}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, p={self.p}"


class RandomSolarize(PhotometricOp):
    """Solarise (threshold 0.5) with probability ``p`` per sample."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def sample(self, n: int) -> dict[str, Any]:
        return {"apply": _bernoulli(self.p, n)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_params(x, self.sample(x.shape[0]))

    def apply_params(self, x: torch.Tensor, q: dict[str, Any]) -> torch.Tensor:
        return _on_subset(x, q["apply"], lambda xs, _: solarize(xs))

    def batched(self, q: dict[str, Any], x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"solarize_keep": _keep(q["apply"], x)}

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ViewPipeline(nn.Module):
    """One view's augmentation: a geometric step (crop + flip) then photometric steps.

    Iterating yields the steps in order (the first is :class:`RandomResizedCropFlip`).
    """

    def __init__(self, geometry: RandomResizedCropFlip, photometric: list[PhotometricOp], normalize: bool = False) -> None:
        super().__init__()
        self.geometry = geometry
        self.photometric = nn.ModuleList(photometric)
        self._ops = list(photometric)  # the same modules, typed
        ops = {type(op): op for op in photometric}
        jitter = ops.get(ColorJitter)
        blur = ops.get(RandomGaussianBlur)
        self.spec = ViewSpec(
            size=geometry.size,
            jitter=jitter.active if isinstance(jitter, ColorJitter) else (),
            grayscale=RandomGrayscale in ops,
            blur=blur.kernel_size if isinstance(blur, RandomGaussianBlur) else 0,
            solarize=RandomSolarize in ops,
            normalize=normalize,
        )

    def __iter__(self) -> Iterator[nn.Module]:
        yield self.geometry
        yield from self.photometric

    def __len__(self) -> int:
        return 1 + len(self.photometric)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [B, 3, H, W]`` float in [0, 1] (and optional float masks) -> view ``[B, 3, S, S]`` in [0, 1]."""
        return self.apply_params(x, self.sample(x.shape[0], x.shape[-2], x.shape[-1]), masks)

    def sample(self, n: int, height: int, width: int) -> list[dict[str, Any]]:
        """Every step's random parameters for ``n`` images ``[H, W]``, drawn on the CPU in the order :meth:`forward` draws them."""
        return [self.geometry.sample(n, height, width)] + [op.sample(n) for op in self._ops]

    def apply_params(
        self, x: torch.Tensor, params: list[dict[str, Any]], masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The eager view of ``x`` with drawn ``params`` (:meth:`sample`): each op on the samples it touches."""
        v, m = self.geometry.apply_params(x, params[0], masks)
        for op, q in zip(self._ops, params[1:]):
            v = op.apply_params(v, q)
        return v, m

    def batched_params(self, params: list[dict[str, Any]], x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``params`` (:meth:`sample`) as :func:`~xbyol.augment.batched.batched_view` takes them, on ``x``'s device.

        Every copy is non-blocking (:func:`~xbyol.augment.preprocessing.move_like`).
        """
        geo = params[0]
        out = {"boxes": move_like(geo["boxes"], x, torch.float64), "flip": move_like(geo["flip"], x, torch.bool)}
        for op, q in zip(self._ops, params[1:]):
            out.update(op.batched(q, x))
        return out


def _view_pipeline(cfg: AugCfg, image_size: int, blur_p: float, solarize_p: float) -> ViewPipeline:
    geometry = RandomResizedCropFlip(
        image_size, (cfg.crop_scale_min, cfg.crop_scale_max), (3.0 / 4.0, 4.0 / 3.0), cfg.flip_p
    )
    ops: list[PhotometricOp] = []
    if cfg.jitter_p > 0 and any(j > 0 for j in cfg.jitter):
        ops.append(ColorJitter(*cfg.jitter, p=cfg.jitter_p))
    if cfg.grayscale_p > 0:
        ops.append(RandomGrayscale(cfg.grayscale_p))
    kernel = blur_kernel_size(cfg.blur_kernel_frac, image_size)
    if blur_p > 0 and kernel >= 3:
        ops.append(RandomGaussianBlur(kernel, (cfg.blur_sigma[0], cfg.blur_sigma[1]), blur_p))
    if solarize_p > 0:
        ops.append(RandomSolarize(solarize_p))
    return ViewPipeline(geometry, ops, cfg.normalize)


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
    if len(cfg.jitter) != 4 or any(j < 0 for j in cfg.jitter) or cfg.jitter[3] > 0.5:
        raise ValueError(
            f"aug.jitter: expected four non-negative values (brightness, contrast, saturation, hue <= 0.5), got {cfg.jitter!r}"
        )


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded, restoring it afterwards (parameters are drawn on the CPU)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


class ByolViews(nn.Module):
    """Two BYOL views of a batch: view 1 always blurred, never solarised; view 2 rarely blurred, sometimes solarised.

    Args:
        cfg: augmentation settings (``xbyol.config.AugCfg``).
        image_size: side of the square output views, pixels.

    Attributes:
        view1, view2: :class:`ViewPipeline` of each view; iterating one yields its steps.

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
        self._compile_state = "untried"  # "untried" -> "works" after a compiled view ran, or "failed" (eager from then on)

    def compiles(self, device: torch.device) -> bool:
        """Whether views of images on ``device`` are made by the compiled batched graph (``aug.compile``)."""
        if self._compile_state == "failed":
            return False
        setting = self.cfg.compile
        return device.type == "cuda" if setting == "auto" else bool(setting)

    def _view(self, pipe: ViewPipeline, x: torch.Tensor, compiled: bool) -> torch.Tensor:
        """One view of ``x [B, 3, H, W]`` in [0, 1], normalised when ``cfg.normalize``, in NCHW."""
        params = pipe.sample(x.shape[0], x.shape[-2], x.shape[-1])
        if compiled:
            try:
                v = batched.compiled_batched_view()(x, pipe.batched_params(params, x), pipe.spec)
                self._compile_state = "works"
                return v
            except Exception as exc:  # compiling failed (no compiler, an unsupported op): eager from now on
                if self._compile_state == "works":
                    raise
                self._compile_state = "failed"
                batched.warn_fallback(exc)
        v, _ = pipe.apply_params(x, params)
        return normalize(v) if self.cfg.normalize else v

    def _finish(self, x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
        """Normalise (when ``cfg.normalize``) and put ``x [B, 3, S, S]`` in memory format ``fmt``.

        Normalising in NCHW and then copying into ``fmt`` is about twice as fast on the CPU as
        writing the normalised values straight into a channels-last tensor (the elementwise
        kernel would then loop over the 3 channels innermost, reading with a stride of ``S * S``).
        """
        return (normalize(x) if self.cfg.normalize else x).contiguous(memory_format=fmt)


    def forward(self, images: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Make both views.

        Args:
            images: ``[B, 3, H, W]`` uint8 (or float in [0, 1]) on any device.
            seed: when given, the views depend only on ``images`` and ``seed``.

        Returns:
            ``(view1, view2)``, each ``[B, 3, image_size, image_size]`` float (float32 for
            uint8 input, never the caller's autocast dtype) on ``images.device``, in the
            memory format of ``images``; normalised when ``cfg.normalize`` (else in [0, 1]).
        """
        fmt = _memory_format(images)
        with torch.autocast(images.device.type, enabled=False), _seeded(seed):
            x = to_unit_float(images.contiguous())  # (B, 3, H, W) in [0, 1], NCHW for the sampler
            if self.compiles(x.device):
                v1 = self._view(self.view1, x, compiled=True)  # (B, 3, S, S), normalised
                v2 = self._view(self.view2, x, compiled=self.compiles(x.device))
                return v1.contiguous(memory_format=fmt), v2.contiguous(memory_format=fmt)
            v1, _ = self.view1(x)  # (B, 3, S, S)
            v2, _ = self.view2(x)  # (B, 3, S, S)
            return self._finish(v1, fmt), self._finish(v2, fmt)

    def forward_with_masks(
        self, images: torch.Tensor, masks: torch.Tensor, seed: int | None = None
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Make both views and carry per-pixel masks through the same crop and flip.

        Masks are resampled with nearest interpolation on the images' sampling grid;
        colour, blur and solarisation touch only the images. For the same ``seed`` the
        images equal those of :meth:`forward`.

        Args:
            images: ``[B, 3, H, W]`` uint8 (or float in [0, 1]).
            masks: ``[B, K, H, W]`` bool, aligned with ``images``.
            seed: as in :meth:`forward`.

        Returns:
            ``((view1, masks1), (view2, masks2))``; views ``[B, 3, S, S]`` float, masks
            ``[B, K, S, S]`` bool, all on ``images.device``.
        """
        fmt = _memory_format(images)
        with torch.autocast(images.device.type, enabled=False):
            x = to_unit_float(images.contiguous())  # (B, 3, H, W)
        if masks.dim() != 4 or masks.shape[0] != x.shape[0] or masks.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"masks: expected [B, K, H, W] matching images {list(x.shape)}, got {list(masks.shape)}"
            )
        if masks.dtype != torch.bool:
            raise TypeError(f"masks: expected dtype torch.bool, got {masks.dtype}")
        m = masks.to(device=x.device, dtype=x.dtype)  # (B, K, H, W) in {0, 1}
        if m.shape[1] == 0:  # grid_sample needs at least one channel; carry a dummy one
            m = x.new_zeros(x.shape[0], 1, *x.shape[-2:])
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        with torch.autocast(images.device.type, enabled=False), _seeded(seed):
            for pipe in (self.view1, self.view2):
                v, mv = pipe(x, m)  # (B, 3, S, S), (B, K, S, S)
                assert mv is not None
                out.append((self._finish(v, fmt), (mv > 0.5)[:, : masks.shape[1]]))
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
