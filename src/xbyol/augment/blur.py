"""The one Gaussian blur: a separable filter with per-sample 1-D taps.

The augmentation (random sigma per sample, reflect padding), activation maximisation
(one sigma, reflect padding) and the RISE insertion substrate of the faithfulness metrics
(RISE's reference taps, zero padding) all call :func:`separable_blur`; only the taps and
the padding differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xbyol.augment.preprocessing import move_like


def gaussian_taps(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``[B, K]`` (float64), one row per sigma.

    ``w_n = exp(-n^2 / (2 sigma^2)) / sum_m exp(-m^2 / (2 sigma^2))`` at integer offsets
    ``n = -K//2 .. K//2`` (kornia's ``get_gaussian_kernel1d``); a sigma too small for any
    off-centre weight gives the identity taps ``(0, .., 1, .., 0)``.

    Args:
        sigma: ``[B]`` standard deviations in pixels (> 0).
        kernel_size: odd number of taps ``K``.
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"gaussian_blur: kernel_size must be odd, got {kernel_size}")
    r = kernel_size // 2
    offsets = torch.arange(-r, r + 1, dtype=torch.float64)  # (K,)
    s = sigma.to(torch.float64).view(-1, 1)  # (B, 1)
    w = torch.exp(-(offsets**2) / (2 * s**2))  # (B, K)
    return w / w.sum(dim=1, keepdim=True)


def separable_blur(x: torch.Tensor, taps: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Filter rows then columns of ``x`` with the same 1-D taps (a kernel ``taps^T taps``).

    ``out[i, j] = sum_{a, b} taps[a] taps[b] xp[i + a, j + b]`` on ``x`` padded by ``K//2``
    on every side.

    Args:
        x: ``[B, C, H, W]`` float images.
        taps: ``[K]`` (one filter for all) or ``[B, K]`` (one per sample), ``K`` odd.
        padding: ``"reflect"`` (needs ``K//2 < H, W``) or ``"zeros"``.

    Returns:
        ``[B, C, H, W]`` in ``x``'s dtype.
    """
    if padding not in ("reflect", "zeros"):
        raise ValueError(f"separable_blur: padding must be 'reflect' or 'zeros', got {padding!r}")
    k = taps.shape[-1]
    if k % 2 != 1:
        raise ValueError(f"separable_blur: the number of taps must be odd, got {k}")
    r = k // 2
    w = move_like(taps.reshape(-1, k), x)  # (B or 1, K)
    mode = "reflect" if padding == "reflect" else "constant"
    h_, w_ = x.shape[-2:]
    # horizontal then vertical pass, each a sum of shifted copies weighted per sample
    tap = [w[:, t].view(-1, 1, 1, 1) for t in range(k)]  # K x (B or 1, 1, 1, 1)
    xp = F.pad(x, (r, r, 0, 0), mode=mode)  # (B, C, H, W + 2r)
    out = xp[..., 0:w_] * tap[0]
    for t in range(1, k):
        out.addcmul_(xp[..., t : t + w_], tap[t])
    xp = F.pad(out, (0, 0, r, r), mode=mode)  # (B, C, H + 2r, W)
    out = xp[..., 0:h_, :] * tap[0]
    for t in range(1, k):
        out.addcmul_(xp[..., t : t + h_, :], tap[t])
    return out  # (B, C, H, W)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample and reflect padding.

    Args:
        x: ``[B, C, H, W]`` float images.
        sigma: ``[B]`` standard deviations in pixels (> 0), or ``[1]`` for all.
        kernel_size: odd kernel side, smaller than the image side.

    Returns:
        ``[B, C, H, W]`` blurred images.
    """
    return separable_blur(x, gaussian_taps(sigma, kernel_size), "reflect")
