"""Interpretable conv layer (Zhang, Wu & Zhu, "Interpretable Convolutional Neural Networks", CVPR 2018, arXiv 1710.00935).

Each filter of the layer is pushed to fire at one place of one object part. For a
filter's ``h x w`` feature map ``x`` (after ReLU) the paper defines ``n^2`` positive
templates, one per position ``mu``,

    T_mu[i] = tau * max(1 - beta * ||i - mu||_1 / n, -1),

and one negative template ``T^- = -tau`` (no part in the image), with priors
``p(T_mu) = alpha / n^2`` and ``p(T^-) = 1 - alpha``. The filter loss is the negative mutual
information between the filter's feature maps ``X`` and the templates ``T``:

    Loss_f = -MI(X; T) = -H(T) + sum_x p(x) H(T | X = x),
    p(x | T) = exp(tr(x . T)) / Z_T,   Z_T = sum_{x in X} exp(tr(x . T)),
    p(x) = sum_T p(T) p(x | T),

which is low when each feature map fits one template well (a single sharp peak) and
different images pick different templates or the negative one. In the forward pass the
feature map is masked by the template of its strongest position, ``mu_hat = argmax_i x_i``:
``x_masked = max(x * M_mu_hat, 0)``, suppressing activations far from the peak.

Simplifications, stated exactly:

- The set ``X`` of the paper is every image of the training set; here it is the
  mini-batch (the normaliser ``Z_T`` and ``p(x)`` are batch estimates).
- The paper's constants are kept: ``beta = 4``, ``tau = 0.5 / n^2``,
  ``alpha = n^2 / (1 + n^2)``. For a non-square ``h x w`` map, ``n^2`` becomes ``h * w`` and
  the distance is normalised by ``n = max(h, w)``.
- The forward mask is the template *without* ``tau`` (``M_mu = max(1 - beta d / n, -1)``,
  1 at the peak), so masking keeps the magnitude of the peak; ``tau`` only enters the loss.
  ``mu_hat`` is not differentiated; gradients flow through ``x * M``.
- The paper sums the filter losses; :func:`filter_loss` averages them over filters so the
  weight does not depend on the width. The paper's learned-``beta`` extension of its
  release is not implemented.
"""

from __future__ import annotations

import torch
from torch import nn

from xbyol.models.resnet import ResNet

BETA = 4.0


def position_masks(
    h: int, w: int, beta: float = BETA, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Unscaled positive templates ``max(1 - beta * ||i - mu||_1 / n, -1)``, ``n = max(h, w)``.

    Returns:
        ``[h * w, h, w]`` of ``dtype``: row ``mu`` (row-major position ``mu = r * w + c``) is the
        mask centred on position ``mu``.
    """
    n = max(h, w)
    rr, cc = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([rr.flatten(), cc.flatten()], dim=1).to(dtype)  # (P, 2)
    dist = torch.cdist(pos, pos, p=1)  # (P_mu, P_i)
    return (1.0 - beta * dist / n).clamp(min=-1.0).view(h * w, h, w)


def templates(
    h: int,
    w: int,
    beta: float = BETA,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    tau: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's templates and their priors for ``h x w`` maps.

    Returns:
        ``(T, prior)``: ``T`` ``[h*w + 1, h, w]`` with the ``h*w`` positive templates
        ``tau * mask_mu`` followed by the negative template ``-tau``; ``prior`` ``[h*w + 1]``
        with ``alpha / (h*w)`` for each positive template and ``1 - alpha`` for the negative one
        (``tau = 0.5 / (h*w)`` unless given, ``alpha = h*w / (1 + h*w)``).
    """
    p = h * w
    tau = 0.5 / p if tau is None else tau
    alpha = p / (1.0 + p)
    pos = tau * position_masks(h, w, beta, device, dtype)  # (P, h, w)
    neg = torch.full((1, h, w), -tau, device=device, dtype=dtype)
    prior = torch.tensor([alpha / p] * p + [1.0 - alpha], device=device, dtype=dtype)
    return torch.cat([pos, neg]), prior


def filter_loss(activations: torch.Tensor, beta: float = BETA, tau: float | None = None) -> torch.Tensor:
    """Mean over filters of ``-MI(X; T)`` (Zhang et al. 2018, eq. 3), the batch as ``X``.

    Args:
        activations: ``[B, C, h, w]`` non-negative feature maps of the filters (after ReLU,
            before masking).
        beta: template decay.
        tau: template scale (default the paper's ``0.5 / (h*w)``). ``tr(x . T)`` is ``tau``
            times a sum of activations, so with small activations (``~1`` after a
            BatchNorm'd backbone) ``p(x | T)`` is nearly flat and the loss nearly 0; a larger
            ``tau`` sharpens it.

    Returns:
        Scalar tensor: ``mean_f (-H(T) + sum_x p(x) H(T | X = x))``, in ``[-H(T), 0]``.
    """
    if activations.dim() != 4:
        raise ValueError(f"activations: expected [B, C, h, w], got {list(activations.shape)}")
    if activations.dtype not in (torch.float32, torch.float64):
        activations = activations.float()  # exp/log of small differences need more than 16 bits
    b, c, h, w = activations.shape
    # autocast off: under bf16 autocast the einsum would run in bf16 again (8 bits of mantissa: scores
    # of ~100 lose 0.5), and the MI estimate left its bounds [0, H(T)]
    with torch.autocast(activations.device.type, enabled=False):
        t, prior = templates(h, w, beta, activations.device, activations.dtype, tau)
        score = torch.einsum("bchw,thw->cbt", activations, t)  # (C, B, T): tr(x . T)
        log_px_t = score - score.logsumexp(dim=1, keepdim=True)  # (C, B, T): log p(x | T), normalised over X
        log_joint = log_px_t + prior.log()  # (C, B, T): log p(x, T)
        log_px = log_joint.logsumexp(dim=2, keepdim=True)  # (C, B, 1): log p(x)
        mi = (log_joint.exp() * (log_px_t - log_px)).sum(dim=(1, 2))  # (C,)
    return -mi.mean()


def mask_features(x: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """``max(x * M_mu_hat, 0)`` with ``mu_hat`` the argmax position of each map.

    Args:
        x: ``[B, C, h, w]`` feature maps.

    Returns:
        ``[B, C, h, w]`` masked maps.
    """
    b, c, h, w = x.shape
    masks = position_masks(h, w, beta, x.device, x.dtype)  # (P, h, w)
    mu_hat = x.detach().flatten(2).argmax(dim=2)  # (B, C)
    return (x * masks[mu_hat]).clamp(min=0.0)  # (B, C, h, w)


class InterpretableConv(nn.Module):
    """Conv + ReLU whose filters are masked by their positional template; keeps the last
    pre-mask activations for :func:`filter_loss`.

    Args:
        in_ch: input channels.
        out_ch: filters.
        kernel_size: odd kernel side (the paper adds a 3x3 conv layer); padding keeps the size.
        beta: template decay (paper 4).
        tau: template scale of the loss (default the paper's ``0.5 / (h*w)``).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, beta: float = BETA, tau: float | None = None) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        self.beta = beta
        self.tau = tau
        self.last_activations: torch.Tensor | None = None
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv.bias)  # type: ignore[arg-type]  # a Conv2d made with a bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv(x))  # (B, C, h, w)
        self.last_activations = a
        return mask_features(a, self.beta)

    def __getstate__(self) -> dict:
        # the kept activations belong to one forward's graph: never copy or pickle them
        state = super().__getstate__()
        state["last_activations"] = None
        return state

    def loss(self) -> torch.Tensor:
        """:func:`filter_loss` of the activations of the last forward."""
        if self.last_activations is None:
            raise RuntimeError("InterpretableConv.loss(): call forward first")
        return filter_loss(self.last_activations, self.beta, self.tau)


class InterpretableBackbone(nn.Module):
    """A backbone with an :class:`InterpretableConv` on top of its feature map.

    Keeps the backbone contract: ``forward_features`` (the masked maps ``[B, C, h, w]``),
    ``forward_head``, ``forward``, ``num_features``, ``feature_layer`` (the interpretable
    conv), ``stages`` (the wrapped backbone's), and adds :meth:`aux_loss`.

    Args:
        backbone: a backbone with ``forward_features``/``forward_head``/``num_features``.
        weight: factor of the filter loss returned by :meth:`aux_loss`.
        kernel_size: kernel side of the added conv.
        tau: template scale of the loss (default the paper's ``0.5 / (h*w)``).
    """

    def __init__(self, backbone: ResNet, weight: float = 0.1, kernel_size: int = 3, tau: float | None = None) -> None:
        super().__init__()
        for attr in ("forward_features", "forward_head", "num_features"):
            if not hasattr(backbone, attr):
                raise TypeError(f"wrap_interpretable: backbone {type(backbone).__name__} has no {attr!r}")
        if weight < 0:
            raise ValueError(f"wrap_interpretable: weight must be >= 0, got {weight!r}")
        self.backbone = backbone
        self.num_features: int = backbone.num_features
        self.interpretable = InterpretableConv(self.num_features, self.num_features, kernel_size, tau=tau)
        self.weight = float(weight)

    @property
    def feature_layer(self) -> nn.Module:
        return self.interpretable

    @property
    def stages(self) -> nn.Module:
        return self.backbone.stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.interpretable(self.backbone.forward_features(x))  # (B, C, h, w)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(f)  # (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def aux_loss(self) -> torch.Tensor:
        """``weight * filter_loss`` of the last forward (scalar, differentiable)."""
        return self.weight * self.interpretable.loss()


def wrap_interpretable(
    backbone: ResNet, weight: float = 0.1, kernel_size: int = 3, tau: float | None = None
) -> InterpretableBackbone:
    """Put an interpretable conv layer on top of ``backbone``; see :class:`InterpretableBackbone`."""
    return InterpretableBackbone(backbone, weight, kernel_size, tau)


def entropy_of_prior(h: int, w: int) -> float:
    """``H(T)`` of the template prior for ``h x w`` maps (the loss is ``>= -H(T)``)."""
    _, prior = templates(h, w)
    return float(-(prior * prior.log()).sum())


__all__ = [
    "BETA",
    "InterpretableBackbone",
    "InterpretableConv",
    "entropy_of_prior",
    "filter_loss",
    "mask_features",
    "position_masks",
    "templates",
    "wrap_interpretable",
]
