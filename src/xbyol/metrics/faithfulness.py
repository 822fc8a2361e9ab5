"""Faithfulness metrics: does changing what the heatmap calls important change the score?

References:
    - Deletion / insertion: Petsiuk et al. 2018, "RISE: Randomized Input Sampling for
      Explanation of Black-box Models" (arXiv 1806.07421); reference code
      eclique/RISE ``evaluation.py::CausalMetric`` (step, zero substrate for deletion,
      Gaussian blur ``klen=11, sigma=5`` for insertion, and its ``auc``).
    - Infidelity: Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations"
      (arXiv 1901.09392); computed by ``captum.metrics.infidelity``.

``forward_fn(images [n, C, H, W]) -> [n]`` returns one scalar per image (a target score;
for a classifier, the caller passes the softmax probability of the class it explains).
Images are the float, normalised model inputs, so a zero image is the dataset mean.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch
from torch import Tensor

from xbyol.augment.blur import separable_blur
from xbyol.metrics.localization import _as_heatmaps

ForwardFn = Callable[[Tensor], Tensor]
Baseline = Union[str, Tensor]


def auc(curve: Tensor) -> Tensor:
    """Trapezoid area under uniformly spaced points on [0, 1] (RISE ``auc``).

    ``auc(a) = (sum(a) - a[0] / 2 - a[-1] / 2) / (n - 1)``.

    Args:
        curve: ``[..., n]`` with ``n >= 2``.

    Returns:
        ``[...]``.
    """
    n = curve.shape[-1]
    if n < 2:
        raise ValueError(f"auc: a curve needs at least 2 points, got {n}")
    return (curve.sum(-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / (n - 1)


def rise_gaussian_taps(klen: int = 11, sigma: float = 5.0) -> Tensor:
    """The 1-D taps ``[klen]`` (float64) of the RISE blur kernel.

    RISE builds its kernel as ``scipy.ndimage.gaussian_filter`` of a centred delta in a
    ``klen x klen`` array (default ``mode='reflect'``, ``truncate=4``); this reproduces
    that construction in torch: a 1-D Gaussian of radius ``int(4 sigma + 0.5)`` folded back
    into the array by half-sample reflection.
    """
    if klen < 1 or sigma <= 0:
        raise ValueError(f"rise_gaussian_kernel: need klen >= 1 and sigma > 0, got klen={klen}, sigma={sigma}")
    radius = int(4.0 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights = weights / weights.sum()  # (2r+1,)
    pos = torch.arange(klen, dtype=torch.int64)[:, None] + taps.to(torch.int64)[None, :]  # (klen, 2r+1)
    period = pos.remainder(2 * klen)
    source = torch.where(period < klen, period, 2 * klen - 1 - period)  # reflected index
    return torch.where(source == klen // 2, weights, torch.zeros_like(weights)).sum(1)  # (klen,)


def rise_gaussian_kernel(klen: int = 11, sigma: float = 5.0) -> Tensor:
    """The RISE blur kernel ``[klen, klen]``: the outer product of :func:`rise_gaussian_taps`."""
    k1 = rise_gaussian_taps(klen, sigma)  # (klen,)
    return (k1[:, None] * k1[None, :]).float()


def _blur_params(size: int, klen: int | None, sigma: float | None) -> tuple[int, float]:
    scale = size / 224.0
    if sigma is None:
        sigma = 5.0 * scale
    if klen is None:
        klen = 2 * max(1, round(5 * scale)) + 1
    return klen, sigma


def gaussian_blur(images: Tensor, klen: int | None = None, sigma: float | None = None) -> Tensor:
    """RISE insertion substrate: per-channel blur with ``rise_gaussian_kernel``, zero padding.

    The filter is :func:`xbyol.augment.blur.separable_blur` with :func:`rise_gaussian_taps`.

    Defaults are RISE's ``klen=11, sigma=5`` at 224 px, scaled by ``min(H, W) / 224``:
    ``sigma = 5 s`` and ``klen = 2 max(1, round(5 s)) + 1`` (so 11 at 224, 3 at 32). Small
    images therefore get a proportionally small blur; pass ``klen``/``sigma`` to override.
    Zero padding, as in RISE, darkens the border towards 0 (the mean in normalised space).

    Args:
        images: ``[B, C, H, W]``.
        klen: kernel size (odd).
        sigma: Gaussian standard deviation in pixels.

    Returns:
        ``[B, C, H, W]``.
    """
    height, width = images.shape[-2:]
    klen, sigma = _blur_params(min(height, width), klen, sigma)
    if klen % 2 == 0:
        raise ValueError(f"gaussian_blur: klen must be odd, got {klen}")
    return separable_blur(images, rise_gaussian_taps(klen, sigma), padding="zeros")


def _substrate(
    baseline: Baseline, images: Tensor, blur_klen: int | None, blur_sigma: float | None, where: str
) -> Tensor:
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(images)
        if baseline == "blur":
            return gaussian_blur(images, blur_klen, blur_sigma)
        raise ValueError(f"{where}: baseline must be 'zeros', 'blur' or a tensor, got {baseline!r}")
    if not isinstance(baseline, Tensor):
        raise TypeError(f"{where}: baseline must be 'zeros', 'blur' or a tensor, got {type(baseline).__name__}")
    try:
        return torch.broadcast_to(baseline.to(images), images.shape)
    except RuntimeError as err:
        raise ValueError(
            f"{where}: baseline shape {tuple(baseline.shape)} does not broadcast to images {tuple(images.shape)}"
        ) from err


def _check_scores(scores: Tensor, n: int, where: str) -> Tensor:
    if not isinstance(scores, Tensor) or scores.numel() != n or scores.dim() > 2:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"{where}: forward_fn must return [n] scores for n={n} images, got {shape}")
    return scores.reshape(n)


def _check_images(images: Tensor, heatmaps: Tensor, where: str) -> tuple[Tensor, Tensor]:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{where}: images must be a float tensor [B, C, H, W], got {shape}")
    h = _as_heatmaps(heatmaps, where).to(images.device)
    if h.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"{where}: heatmaps shape {tuple(h.shape)} must be [B, H, W] = "
            f"{(images.shape[0], *images.shape[2:])} for images {tuple(images.shape)}"
        )
    return images, h


def _causal_metric(
    forward_fn: ForwardFn,
    images: Tensor,
    heatmaps: Tensor,
    start: Tensor,
    finish: Tensor,
    step: int | None,
    batch_size: int,
    where: str,
) -> tuple[Tensor, Tensor]:
    """Scores along the path start -> finish, most salient pixels first. Returns (auc [B], curves [B, n+1])."""
    batch, _, height, width = images.shape
    n_pix = height * width
    step = math.ceil(n_pix / 16) if step is None else int(step)
    if step < 1:
        raise ValueError(f"{where}: step must be >= 1 pixel, got {step}")
    if batch_size < 1:
        raise ValueError(f"{where}: batch_size must be >= 1, got {batch_size}")
    finite = torch.isfinite(heatmaps).flatten(1).all(1)  # (B,)
    saliency = torch.where(torch.isfinite(heatmaps), heatmaps, 0.0).flatten(1)  # (B, N)
    order = saliency.sort(dim=1, descending=True, stable=True).indices  # (B, N) ties: lower index first
    positions = torch.arange(n_pix, device=images.device).expand(batch, n_pix)
    rank = torch.empty_like(order).scatter_(1, order, positions).view(batch, 1, height, width)
    n_steps = math.ceil(n_pix / step)
    total = batch * (n_steps + 1)
    chunks: list[Tensor] = []
    with torch.no_grad():
        # (step, sample) pairs in step-major order: all samples advance in lockstep.
        for first in range(0, total, batch_size):
            pair = torch.arange(first, min(first + batch_size, total), device=images.device)
            s, b = pair // batch, pair % batch
            changed = (s * step).view(-1, 1, 1, 1)  # (n, 1, 1, 1) pixels already changed
            x = torch.where(rank[b] < changed, finish[b], start[b])  # (n, C, H, W)
            chunks.append(_check_scores(forward_fn(x), len(pair), where).detach())
    curves = torch.cat(chunks).view(n_steps + 1, batch).T  # (B, n+1)
    areas = auc(curves)
    areas = torch.where(finite, areas, torch.full_like(areas, math.nan))
    return areas, curves


def deletion_auc(
    forward_fn: ForwardFn,
    images: Tensor,
    heatmaps: Tensor,
    step: int | None = None,
    baseline: Baseline = "zeros",
    batch_size: int = 64,
    return_curves: bool = False,
    blur_klen: int | None = None,
    blur_sigma: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Deletion AUC (Petsiuk et al. 2018): remove the most salient pixels first. Lower is better.

    Pixels are ranked by saliency, descending; ties are broken by ascending flat index
    (row-major), so the order is deterministic. Starting from ``images``, ``step`` pixels
    per iteration (all channels) are overwritten by the baseline, and ``forward_fn`` is
    evaluated before the first and after every iteration: ``n = ceil(H W / step)``
    iterations, ``n + 1`` points, ``auc`` with uniform spacing (as RISE, also when the last
    iteration is partial). The default step gives 16 iterations; RISE's evaluation used
    ``H W / 224`` (224 iterations) per image and 8x that for batches.

    Args:
        forward_fn: ``[n, C, H, W] -> [n]`` scalar score per image, called under no_grad.
        images: ``[B, C, H, W]`` normalised model inputs.
        heatmaps: ``[B, H, W]`` saliency maps at the image resolution.
        step: pixels changed per iteration; ``None`` = ``ceil(H W / 16)``.
        baseline: ``"zeros"`` (RISE; the dataset mean), ``"blur"`` or a tensor broadcastable
            to ``images``.
        batch_size: images per ``forward_fn`` call; the result does not depend on it.
        return_curves: also return the score curves.
        blur_klen: blur kernel size for ``"blur"`` (see ``gaussian_blur``).
        blur_sigma: blur sigma for ``"blur"``.

    Returns:
        ``[B]`` AUC (NaN for a non-finite heatmap), and ``[B, n + 1]`` curves if asked.
    """
    images, h = _check_images(images, heatmaps, "deletion_auc")
    finish = _substrate(baseline, images, blur_klen, blur_sigma, "deletion_auc")
    areas, curves = _causal_metric(forward_fn, images, h, images, finish, step, batch_size, "deletion_auc")
    return (areas, curves) if return_curves else areas


def insertion_auc(
    forward_fn: ForwardFn,
    images: Tensor,
    heatmaps: Tensor,
    step: int | None = None,
    baseline: Baseline = "blur",
    batch_size: int = 64,
    return_curves: bool = False,
    blur_klen: int | None = None,
    blur_sigma: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Insertion AUC (Petsiuk et al. 2018): reveal the most salient pixels first. Higher is better.

    Starts from the baseline (by default ``gaussian_blur(images)``, RISE's substrate) and
    writes the original pixels back, most salient first, ``step`` per iteration. Ranking,
    ties, steps and AUC are as in ``deletion_auc``.

    Args:
        forward_fn: ``[n, C, H, W] -> [n]`` scalar score per image, called under no_grad.
        images: ``[B, C, H, W]`` normalised model inputs.
        heatmaps: ``[B, H, W]`` saliency maps at the image resolution.
        step: pixels changed per iteration; ``None`` = ``ceil(H W / 16)``.
        baseline: ``"blur"`` (RISE), ``"zeros"`` or a tensor broadcastable to ``images``.
        batch_size: images per ``forward_fn`` call; the result does not depend on it.
        return_curves: also return the score curves.
        blur_klen: blur kernel size (see ``gaussian_blur``).
        blur_sigma: blur sigma.

    Returns:
        ``[B]`` AUC (NaN for a non-finite heatmap), and ``[B, n + 1]`` curves if asked.
    """
    images, h = _check_images(images, heatmaps, "insertion_auc")
    start = _substrate(baseline, images, blur_klen, blur_sigma, "insertion_auc")
    areas, curves = _causal_metric(forward_fn, images, h, start, images, step, batch_size, "insertion_auc")
    return (areas, curves) if return_curves else areas


def infidelity(
    forward_fn: ForwardFn,
    images: Tensor,
    attributions: Tensor,
    n_perturb: int = 10,
    noise_std: float = 0.2,
    seed: int = 0,
    normalize: bool = False,
    batch_size: int = 64,
    perturbations: Tensor | None = None,
) -> Tensor:
    """Infidelity (Yeh et al. 2019) with Gaussian perturbations, via ``captum.metrics.infidelity``.

    ``INFD = mean_I (I^T Phi - (f(x) - f(x - I)))^2`` over ``n_perturb`` perturbations
    ``I ~ N(0, noise_std^2)`` per element (Yeh et al.'s code perturbs with ``0.2 N(0, 1)``;
    the images are in normalised units). Lower is better. A ``[B, H, W]`` attribution is
    the same for every channel, so ``I^T Phi = sum_{c,y,x} I_cyx Phi_yx``. Noise is drawn
    on the CPU from ``torch.Generator().manual_seed(seed)``, one ``[n_perturb, C, H, W]``
    draw per sample in batch order, so results do not depend on ``batch_size``.

    Args:
        forward_fn: ``[n, C, H, W] -> [n]`` scalar score per image.
        images: ``[B, C, H, W]``.
        attributions: ``[B, C, H, W]`` or ``[B, H, W]`` (broadcast over channels).
        n_perturb: perturbations per sample.
        noise_std: standard deviation of the Gaussian perturbation.
        seed: seed of the noise.
        normalize: rescale ``Phi`` by the optimal scalar beta (Captum ``normalize``).
        batch_size: at most this many perturbed images per forward call (at least one
            sample's worth when ``batch_size < n_perturb``: then ``batch_size`` perturbations).
        perturbations: fixed perturbations ``[B, n_perturb, C, H, W]`` used instead of noise.

    Returns:
        ``[B]`` infidelity.
    """
    from captum.metrics import infidelity as captum_infidelity  # heavy: imported on first use

    where = "infidelity"
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"{where}: images must be a float tensor [B, C, H, W], got {getattr(images, 'shape', images)}")
    batch, channels, height, width = images.shape
    if attributions.dim() == 3:
        attributions = attributions.unsqueeze(1).expand(-1, channels, -1, -1)
    if attributions.shape != images.shape:
        raise ValueError(
            f"{where}: attributions shape {tuple(attributions.shape)} must be [B, C, H, W] "
            f"{tuple(images.shape)} or [B, H, W]"
        )
    attributions = attributions.to(images)
    if perturbations is not None:
        if perturbations.shape[:1] + perturbations.shape[2:] != images.shape or perturbations.dim() != 5:
            raise ValueError(
                f"{where}: perturbations must be [B, n, C, H, W] matching images {tuple(images.shape)}, "
                f"got {tuple(perturbations.shape)}"
            )
        n_perturb = perturbations.shape[1]
    if n_perturb < 1 or batch_size < 1:
        raise ValueError(f"{where}: n_perturb and batch_size must be >= 1, got {n_perturb}, {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    per_chunk = max(1, batch_size // n_perturb)
    results = []
    for lo in range(0, batch, per_chunk):
        hi = min(lo + per_chunk, batch)
        if perturbations is not None:
            noise = perturbations[lo:hi].to(images)  # (b, n, C, H, W)
        else:
            noise = torch.stack(
                [torch.randn((n_perturb, channels, height, width), generator=generator) for _ in range(lo, hi)]
            ).to(images) * noise_std
        results.append(
            captum_infidelity(
                forward_fn,
                _fixed_perturbations(noise),
                images[lo:hi],
                attributions[lo:hi],
                n_perturb_samples=n_perturb,
                max_examples_per_batch=min(batch_size, (hi - lo) * n_perturb),
                normalize=normalize,
            ).reshape(hi - lo)
        )
    return torch.cat(results)


def _fixed_perturbations(noise: Tensor) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Captum perturb_func serving ``noise [b, n, C, H, W]`` in Captum's repeat_interleave order."""
    used = 0

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal used
        count = inputs.shape[0] // noise.shape[0]  # perturbations per sample in this call
        chunk = noise[:, used : used + count].reshape(inputs.shape)  # (b * count, C, H, W)
        used += count
        return chunk, inputs - chunk

    return perturb
