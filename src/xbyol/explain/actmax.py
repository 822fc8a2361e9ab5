"""Activation maximisation: optimise an input image so that a unit, a channel or an
embedding direction responds as strongly as possible (Erhan et al. 2009; Simonyan et al.
2014; Yosinski et al. 2015; Olah et al. 2017, "Feature Visualization", Distill).

``maximize(model, objective, image_size)`` runs Adam on an image parameterisation and
returns images in [0, 1]. Regularisers: random jitter (a roll of up to ``jitter`` pixels
each step), total variation, a Gaussian blur of the pixel parameters every ``blur_every``
steps (Yosinski et al. 2015), and optionally a Fourier parameterisation with a 1/f
spectrum scaling and a decorrelated colour space (Olah et al. 2017). The image is
``sigmoid`` of the parameterised values, so it is always a valid image; the model sees it
after :func:`xbyol.augment.normalize`, like every dataset image.

Objectives are callables ``objective(model, x [N,3,H,W] normalised) -> [N]`` scores:
:class:`ChannelObjective` (mean of a channel's map, or its centre position, read with a
forward hook that is removed after every call) and :class:`DirectionObjective` (cosine
of the model's output, optionally through a head such as a concept-space projection, with
a direction). Results are deterministic under ``seed`` on the CPU: the initialisation and
the jitter draw from their own seeded generator.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from xbyol.augment import normalize
from xbyol.augment.blur import gaussian_blur
from xbyol.explain.hooks import ActivationsAndGradients, resolve_layer

__all__ = [
    "COLOR_CORRELATION_SQRT",
    "ChannelObjective",
    "DirectionObjective",
    "Objective",
    "image_grid",
    "maximize",
    "parse_unit",
    "save_grid",
    "total_variation",
]

# Square root of the colour covariance of natural (ImageNet) images, columns = principal
# colour directions; the published constant of Olah et al. 2017 (Feature Visualization,
# "decorrelated space"), normalised below so that its largest column has norm 1.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


class Objective(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor: ...


class ChannelObjective:
    """Activation of one channel of a layer.

    Args:
        layer: dotted module name, module, or ``None`` for ``model.feature_layer``.
        channel: channel (unit) index.
        where: ``"mean"`` (channel objective: the map's spatial mean) or ``"centre"``
            (spatial unit objective: the value at the centre position).
    """

    def __init__(self, layer: str | nn.Module | None, channel: int, where: str = "mean") -> None:
        if where not in ("mean", "centre"):
            raise ValueError(f"ChannelObjective: where must be 'mean' or 'centre', got {where!r}")
        if channel < 0:
            raise ValueError(f"ChannelObjective: channel must be >= 0, got {channel}")
        self.layer = layer
        self.channel = channel
        self.where = where

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        module = resolve_layer(model, self.layer)
        with ActivationsAndGradients(module, gradients=False) as rec:
            model(x)
        a = rec.activations
        if a is None or a.dim() != 4:
            shape = None if a is None else list(a.shape)
            raise ValueError(f"ChannelObjective: layer {self.layer!r} must output [B, C, h, w] maps, got {shape}")
        if self.channel >= a.shape[1]:
            raise ValueError(f"ChannelObjective: channel {self.channel} out of range for {a.shape[1]} channels of {self.layer!r}")
        m = a[:, self.channel]  # (N, h, w)
        if self.where == "mean":
            return m.mean(dim=(1, 2))  # (N,)
        return m[:, m.shape[1] // 2, m.shape[2] // 2]  # (N,)

    def __repr__(self) -> str:
        return f"ChannelObjective({self.layer!r}, {self.channel}, {self.where!r})"


class DirectionObjective:
    """Cosine between the model's output (through ``head`` when given) and a direction.

    Args:
        direction: ``[D]`` target direction (e.g. a concept's text embedding in concept space).
        head: optional module ``[N, D_model] -> [N, D]`` applied to ``model(x)`` (e.g. the
            run's concept projection).
    """

    def __init__(self, direction: torch.Tensor, head: nn.Module | Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if direction.dim() != 1:
            raise ValueError(f"DirectionObjective: direction must be [D], got {list(direction.shape)}")
        self.direction = direction.detach().float()
        self.head = head

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        z = model(x)  # (N, D_model)
        if self.head is not None:
            z = self.head(z)  # (N, D)
        d = self.direction.to(z.device, z.dtype)
        if z.dim() != 2 or z.shape[1] != d.shape[0]:
            raise ValueError(f"DirectionObjective: outputs {list(z.shape)} do not match the direction [{d.shape[0]}]")
        return F.cosine_similarity(z, d[None], dim=1)  # (N,)


def parse_unit(spec: str) -> tuple[str, int]:
    """``"stages.3:12"`` -> ``("stages.3", 12)``."""
    name, sep, k = spec.rpartition(":")
    if not sep or not name or not k.isdigit():
        raise ValueError(f"unit must look like LAYER:CHANNEL (e.g. stages.3:12), got {spec!r}")
    return name, int(k)


def total_variation(img: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per image ``[N]`` (anisotropic TV)."""
    dy = (img[:, :, 1:, :] - img[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (img[:, :, :, 1:] - img[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    return dx + dy  # (N,)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``x [N, C, H, W]`` with taps out to ``max(1, ceil(2 sigma))`` pixels, reflect padding."""
    radius = max(1, int(math.ceil(2 * sigma)))
    return gaussian_blur(x, torch.tensor([float(sigma)]), 2 * radius + 1)


class _Image(nn.Module):
    """Parameterised images: ``sigmoid(colour(spatial(params)))`` in [0, 1]."""

    scale: torch.Tensor  # buffers (typed here: register_buffer does not tell mypy)
    colour: torch.Tensor

    def __init__(
        self, n: int, size: int, param: str, decorrelate: bool, generator: torch.Generator, init_std: float = 0.01
    ) -> None:
        super().__init__()
        self.size, self.param, self.decorrelate = size, param, decorrelate
        if param == "pixel":
            init = init_std * torch.randn(n, 3, size, size, generator=generator)
        else:
            # real and imaginary parts of the rfft2 spectrum
            init = init_std * torch.randn(n, 3, size, size // 2 + 1, 2, generator=generator)
            fy = torch.fft.fftfreq(size)[:, None]
            fx = torch.fft.rfftfreq(size)[None, :]
            freq = torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / size)  # (size, size//2+1)
            self.register_buffer("scale", (1.0 / freq) / size)  # 1/f spectrum; /size keeps pixels O(1)
        self.params = nn.Parameter(init)
        cc = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()
        self.register_buffer("colour", cc)

    def forward(self) -> torch.Tensor:
        x: torch.Tensor
        if self.param == "pixel":
            x = self.params
        else:
            spec = torch.view_as_complex(self.params) * self.scale  # (N, 3, S, S//2+1)
            x = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho")  # (N, 3, S, S)
        if self.decorrelate:
            x = torch.einsum("ij,njhw->nihw", self.colour, x)
        return torch.sigmoid(x)  # (N, 3, S, S)


def maximize(
    model: nn.Module,
    objective: Objective,
    image_size: int,
    steps: int = 256,
    lr: float = 0.1,
    jitter: int | None = None,
    tv_weight: float = 0.01,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    param: str = "pixel",
    decorrelate: bool = True,
    seed: int = 0,
    n: int = 1,
    device: str | torch.device = "cpu",
    init_std: float | None = None,
) -> torch.Tensor:
    """Images that maximise ``objective``.

    Args:
        model: the network; run in eval mode (mode restored), its parameters untouched
            (gradients are taken w.r.t. the image only).
        objective: ``objective(model, x_normalised [N,3,H,W]) -> [N]`` scores to maximise.
        image_size: side of the square images.
        steps: Adam steps.
        lr: Adam learning rate.
        jitter: maximum random shift (pixels, both axes) applied before every forward;
            default ``max(1, image_size // 32)`` (1 px at 32 px: 2 px already halves what
            a 32 px image reaches on the small ResNets).
        tv_weight: weight of :func:`total_variation` of the [0, 1] image.
        blur_every: blur the pixel parameters every this many steps (0: never; ignored
            with ``param="fourier"``, whose 1/f scaling already damps high frequencies).
        blur_sigma: sigma of that blur, pixels.
        param: ``"pixel"`` or ``"fourier"``.
        decorrelate: optimise in a decorrelated colour space.
        seed: seed of the initialisation and of the jitter.
        n: number of images (independent starts).
        device: where to optimise.
        init_std: standard deviation of the initial parameters; default 1.0 for ``"pixel"`` (a
            noise image, sigmoid of N(0, 1)) and 0.01 for ``"fourier"``. A near-grey start
            (0.01) leaves a ReLU unit that is silent on grey images with no gradient, so it
            never moves (BENCHMARKS, "Explainers against references").

    Returns:
        ``[n, 3, image_size, image_size]`` float in [0, 1] on the CPU.
    """
    if param not in ("pixel", "fourier"):
        raise ValueError(f"maximize: param must be 'pixel' or 'fourier', got {param!r}")
    if steps < 1 or n < 1 or image_size < 2:
        raise ValueError(f"maximize: steps, n must be >= 1 and image_size >= 2; got {steps}, {n}, {image_size}")
    device = torch.device(device)
    if jitter is None:
        jitter = max(1, image_size // 32)
    if init_std is None:
        init_std = 1.0 if param == "pixel" else 0.01
    gen = torch.Generator().manual_seed(seed)
    image = _Image(n, image_size, param, decorrelate, gen, init_std).to(device)
    opt = torch.optim.Adam([image.params], lr=lr)
    was_training = model.training
    model.eval()
    try:
        for step in range(steps):
            img = image()  # (N, 3, S, S)
            x = img
            if jitter > 0:
                dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            score = objective(model, normalize(x))  # (N,)
            loss = -score.sum() + tv_weight * total_variation(img).sum()
            (grad,) = torch.autograd.grad(loss, [image.params])
            image.params.grad = grad
            opt.step()
            if param == "pixel" and blur_every and (step + 1) % blur_every == 0 and step + 1 < steps:
                with torch.no_grad():
                    image.params.copy_(_blur(image.params, blur_sigma))
        with torch.no_grad():
            return image().detach().cpu()
    finally:
        model.train(was_training)


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2, scale: int = 1) -> torch.Tensor:
    """Tile ``[N, 3, H, W]`` images in [0, 1] into one ``[3, H', W']`` image (white padding),
    each image enlarged ``scale`` times (nearest neighbour)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"image_grid: expected [N, 3, H, W], got {list(images.shape)}")
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    n, _, h, w = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = torch.ones(3, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[:, y : y + h, x : x + w] = images[i].clamp(0, 1)
    return grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, min_side: int = 96) -> Path:
    """Write images in [0, 1] as one PNG grid, enlarging small images to at least ``min_side`` pixels."""
    from PIL import Image

    scale = max(1, math.ceil(min_side / images.shape[-1]))
    grid = image_grid(images, nrow=nrow, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(arr).save(path)
    return path
