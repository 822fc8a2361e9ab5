"""Captum adapters: pixel attributions for embedding targets, with the explainer contract.

Each adapter wraps ``model`` and the target into one ``nn.Module`` whose forward returns
one score per row, ``target(model(x))`` (Captum's advice for non-classifier outputs,
captum#1254). Captum expands batches (IG steps, noise samples, occlusion windows, LIME
samples); a per-row sample index travels as an additional forward argument, which Captum
expands alongside the inputs, so per-sample targets (``[B, D]`` references, ``[B]``
classes) keep following their image (:func:`xbyol.explain.targets.score_rows`).

Channel reduction, ``[B, 3, H, W]`` attributions -> ``[B, H, W]`` map:

=====================  ===========================================================
saliency               ``sum_c |d y / d x_c|``
smoothgrad             ``sum_c mean_n |d y / d x_c|(x + noise_n)`` (NoiseTunnel over
                       Saliency(abs=True))
guided_backprop        ``sum_c |guided gradient_c|``
integrated_gradients   ``sum_c IG_c`` (signed; per-pixel completeness), then ``sign``
occlusion              the score drop when a window covering the pixel is set to the
                       baseline, averaged over windows (equal in every channel), then ``sign``
lime, kernelshap       the coefficient of the pixel's superpixel (equal in every
                       channel), then ``sign``
=====================  ===========================================================

``sign`` (signed methods only): ``"positive"`` (default; keeps evidence *for* the target,
like the ReLU of the CAMs), ``"absolute"`` or ``"all"``. Then ``normalize`` (per-image
min-max) applies as for every explainer. Baselines are 0 in normalised space, i.e. the
dataset-mean colour. LIME's surrogate is ridge regression (``alpha=1``, the ``lime``
package's default) rather than Captum's Lasso, which zeroes every coefficient for cosine
targets. Captum is imported lazily.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from xbyol.augment import unnormalize
from xbyol.explain.explainer import EXPLAINERS, Explainer
from xbyol.explain.targets import TargetFn, score_rows

__all__ = [
    "CaptumExplainer",
    "GuidedBackprop",
    "IntegratedGradients",
    "KernelShap",
    "Lime",
    "Occlusion",
    "Saliency",
    "SmoothGrad",
    "superpixel_mask",
]

_SIGNS = ("positive", "absolute", "all")
_CAPTUM_NOTICES = (
    r"Input Tensor \d+ did not already require gradients",
    r"Setting backward hooks on ReLU activations",
    r"You are providing multiple inputs for Lime / Kernel SHAP",
)


class _ScoreModel(nn.Module):
    """``(x [N, 3, H, W], sample_index [N]) -> target scores [N]`` for Captum."""

    def __init__(self, model: nn.Module, target: TargetFn, batch: int) -> None:
        super().__init__()
        self.model = model
        self.target = target
        self.batch = batch

    def forward(self, x: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        return score_rows(self.target, self.model(x), sample_index, self.batch)  # (N,)


def _apply_sign(maps: torch.Tensor, sign: str) -> torch.Tensor:
    if sign == "positive":
        return maps.clamp(min=0)
    if sign == "absolute":
        return maps.abs()
    return maps


class CaptumExplainer(Explainer):
    """Base of the Captum adapters: builds the score module, silences Captum's notices.

    Subclasses implement :meth:`captum_attribute` (``[B, 3, H, W]`` attributions) and
    :meth:`reduce` (``-> [B, H, W]``).

    Args:
        model: maps images ``[B, 3, H, W]`` to embeddings ``[B, D]``.
        layer: must be ``None`` (these methods attribute to input pixels).
        normalize: per-image min-max normalisation to [0, 1].
    """

    #: whether Captum differentiates the inputs
    uses_gradients: bool = True

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, normalize: bool = True) -> None:
        super().__init__(model, normalize=normalize)
        if layer is not None:
            raise ValueError(f"{type(self).__name__} attributes to input pixels; layer= is only used by CAM methods")

    def attribute(self, images: torch.Tensor, target: TargetFn | None) -> torch.Tensor:
        assert target is not None
        b = images.shape[0]
        forward = _ScoreModel(self.model, target, b)
        sample_index = torch.arange(b, device=images.device)  # (B,)
        x = images.detach().clone().requires_grad_(self.uses_gradients)
        with warnings.catch_warnings():
            for notice in _CAPTUM_NOTICES:
                warnings.filterwarnings("ignore", message=notice)
            with torch.enable_grad() if self.uses_gradients else torch.no_grad():
                attributions = self.captum_attribute(forward, x, sample_index)  # (B, 3, H, W)
        return self.reduce(attributions.detach())

    def captum_attribute(self, forward: nn.Module, x: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        """Run the Captum method; ``sample_index`` goes in ``additional_forward_args``."""
        raise NotImplementedError

    def reduce(self, attributions: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, H, W]``; default ``sum_c |a_c|``."""
        return attributions.abs().sum(dim=1)


class _SignedExplainer(CaptumExplainer):
    """Adapters whose attributions are signed evidence; ``sign`` picks what the map shows."""

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, normalize: bool = True, sign: str = "positive") -> None:
        super().__init__(model, layer=layer, normalize=normalize)
        if sign not in _SIGNS:
            raise ValueError(f"{type(self).__name__}: sign must be one of {_SIGNS}, got {sign!r}")
        self.sign = sign

    def reduce(self, attributions: torch.Tensor) -> torch.Tensor:
        # occlusion / LIME / KernelSHAP give every channel of a pixel the same value
        return _apply_sign(attributions.mean(dim=1), self.sign)


@EXPLAINERS.register("saliency", doc="Saliency: sum over channels of |d score / d pixel| (Captum)")
class Saliency(CaptumExplainer):
    """Vanilla gradients (Simonyan et al. 2014, arXiv 1312.6034), ``sum_c |dy/dx_c|``."""

    def captum_attribute(self, forward: nn.Module, x: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        from captum.attr import Saliency as _Saliency  # heavy: imported on first use

        return _Saliency(forward).attribute(x, abs=True, additional_forward_args=(sample_index,))


@EXPLAINERS.register("smoothgrad", doc="SmoothGrad: saliency averaged over noisy copies (Captum NoiseTunnel)")
class SmoothGrad(CaptumExplainer):
    """SmoothGrad (Smilkov et al. 2017, arXiv 1706.03825): mean of ``|dy/dx|`` over noisy inputs.

    Args:
        nt_samples: noisy copies per image (Captum's default is 5).
        stdevs: noise standard deviation **in normalised units**; 0.15 is about 0.034 in
            [0, 1] pixel units with the ImageNet std (~3 % of the pixel range; the paper
            suggests 10-20 %, i.e. ``stdevs`` of about 0.45-0.9).
        nt_samples_batch_size: noisy copies per forward pass (``None``: all at once).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str | None = None,
        normalize: bool = True,
        nt_samples: int = 8,
        stdevs: float = 0.15,
        nt_samples_batch_size: int | None = None,
    ) -> None:
        super().__init__(model, layer=layer, normalize=normalize)
        self.nt_samples = nt_samples
        self.stdevs = stdevs
        self.nt_samples_batch_size = nt_samples_batch_size

    def captum_attribute(self, forward: nn.Module, x: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        from captum.attr import NoiseTunnel  # heavy: imported on first use
        from captum.attr import Saliency as _Saliency  # heavy: imported on first use

        return NoiseTunnel(_Saliency(forward)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=self.nt_samples,
            nt_samples_batch_size=self.nt_samples_batch_size,
            stdevs=self.stdevs,
            abs=True,
            additional_forward_args=(sample_index,),
        )


@EXPLAINERS.register("guided_backprop", doc="Guided backpropagation: sum over channels of |guided gradient| (Captum)")
class GuidedBackprop(CaptumExplainer):
    """Guided backpropagation (Springenberg et al. 2015, arXiv 1412.6806); needs ``nn.ReLU`` modules."""

    def captum_attribute(self, forward: nn.Module, x: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        from captum.attr import GuidedBackprop as _GuidedBackprop  # heavy: imported on first use

        return _GuidedBackprop(forward).attribute(x, additional_forward_args=(sample_index,))


@EXPLAINERS.register("integrated_gradients", doc="Integrated gradients from a zero (mean-colour) baseline (Captum)")
class IntegratedGradients(_SignedExplainer):
    """Integrated gradients (Sundararajan et al. 2017, arXiv 1703.01365), ``sum_c IG_c``.

    The per-pixel sums add up to ``f(x) - f(baseline)`` (completeness). With an embedding
    target the attributions are all zero when the target scores the baseline like the
    input (e.g. a similarity target whose reference is the baseline's own embedding, or a
    baseline equal to the input: captum#873); choose a baseline the target tells apart.

    Args:
        n_steps: integration steps (Captum default 50, Gauss-Legendre).
        baseline: scalar or ``[B, 3, H, W]`` / ``[3, H, W]`` tensor in normalised space.
        internal_batch_size: images (steps x batch) per forward pass; ``None``: all at once.
        sign: ``"positive"`` | ``"absolute"`` | ``"all"``.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str | None = None,
        normalize: bool = True,
        n_steps: int = 50,
        baseline: float | torch.Tensor = 0.0,
        internal_batch_size: int | None = 256,
        sign: str = "positive",
    ) -> None:
        super().__init__(model, layer=layer, normalize=normalize, sign=sign)
        self.n_steps = n_steps
        self.baseline = baseline
        self.internal_batch_size = internal_batch_size

    def captum_attribute(self, forward: nn.Module, x: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        from captum.attr import IntegratedGradients as _IG  # heavy: imported on first use

        baseline = self.baseline
        if isinstance(baseline, torch.Tensor):
            baseline = baseline.to(x).expand_as(x)
        return _IG(forward).attribute(
            x,
            baselines=baseline,
            additional_forward_args=(sample_index,),
            n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size,
        )

    def reduce(self, attributions: torch.Tensor) -> torch.Tensor:
        return _apply_sign(attributions.sum(dim=1), self.sign)


@EXPLAINERS.register("occlusion", doc="Occlusion: score drop under a sliding baseline window (Captum)")
class Occlusion(_SignedExplainer):
    """Occlusion (Zeiler & Fergus 2014, arXiv 1311.2901) with a window scaled to the image.

    Args:
        window: window side in pixels; default ``max(1, round(min(H, W) / 8))``.
        stride: default ``max(1, window // 2)``.
        baseline: value the window is set to (0 = mean colour in normalised space).
        perturbations_per_eval: windows per forward pass (each covers the whole batch).
        sign: ``"positive"`` | ``"absolute"`` | ``"all"``.
    """

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str | None = None,
        normalize: bool = True,
        window: int | None = None,
        stride: int | None = None,
        baseline: float = 0.0,
        perturbations_per_eval: int = 16,
        sign: str = "positive",
    ) -> None:
        super().__init__(model, layer=layer, normalize=normalize, sign=sign)
        self.window = window
        self.stride = stride
        self.baseline = baseline
        self.perturbations_per_eval = perturbations_per_eval

    def captum_attribute(self, forward: nn.Module, x: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        from captum.attr import Occlusion as _Occlusion  # heavy: imported on first use

        c, h, w = x.shape[1:]
        window = self.window if self.window is not None else max(1, round(min(h, w) / 8))
        window = min(window, h, w)
        stride = self.stride if self.stride is not None else max(1, window // 2)
        return _Occlusion(forward).attribute(
            x,
            sliding_window_shapes=(c, window, window),
            strides=(c, stride, stride),
            baselines=self.baseline,
            additional_forward_args=(sample_index,),
            perturbations_per_eval=self.perturbations_per_eval,
        )


def superpixel_mask(
    images: torch.Tensor,
    n_segments: int = 32,
    method: str = "slic",
    compactness: float = 10.0,
) -> torch.Tensor:
    """Superpixel ids per pixel, for LIME / KernelSHAP interpretable features.

    ``"slic"``: ``skimage.segmentation.slic`` on the unnormalised image (CPU, NumPy at this
    boundary only; an image SLIC leaves in one piece, e.g. noise, falls back to the grid
    with a warning); ``"grid"``: a regular ``g x g`` grid with ``g = round(sqrt(n_segments))``.
    Ids are contiguous from 0 per image.

    Args:
        images: ``[B, 3, H, W]`` normalised float images.
        n_segments: approximate number of superpixels.
        method: ``"slic"`` or ``"grid"``.
        compactness: SLIC colour/space trade-off (Lab space).

    Returns:
        ``[B, H, W]`` long on the images' device.
    """
    b, _, h, w = images.shape
    if method == "grid":
        g = max(1, round(math.sqrt(n_segments)))
        rows = torch.arange(h, device=images.device) * g // h  # (H,)
        cols = torch.arange(w, device=images.device) * g // w  # (W,)
        grid = rows[:, None] * g + cols[None, :]  # (H, W)
        return grid.expand(b, h, w).clone()
    if method != "slic":
        raise ValueError(f"segments must be 'slic', 'grid' or an id tensor [B, H, W], got {method!r}")
    if images.shape[1] != 3:
        raise ValueError(f"SLIC superpixels need RGB images [B, 3, H, W], got {list(images.shape)}; use segments='grid'")
    from skimage.segmentation import slic  # heavy: imported on first use

    rgb = unnormalize(images.detach().float()).permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
    grid = superpixel_mask(images[:1], n_segments=n_segments, method="grid")[0].cpu()  # (H, W)
    masks = []
    for i, img in enumerate(rgb):
        labels = slic(img.astype(np.float64), n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
        _, contiguous = np.unique(labels, return_inverse=True)
        if contiguous.max() < 1:  # texture-like images (noise) can collapse to one segment
            warnings.warn(f"SLIC found a single superpixel in image {i}; using a regular grid for it", stacklevel=2)
            masks.append(grid)
            continue
        masks.append(torch.from_numpy(contiguous.reshape(h, w).astype(np.int64)))
    return torch.stack(masks).to(images.device)  # (B, H, W)


class _SurrogateExplainer(_SignedExplainer):
    """LIME / KernelSHAP over superpixels: per-image surrogate models (Captum loops over images)."""

    uses_gradients = False
    #: default perturbed samples per image: SAMPLES_PER_FEATURE x M + DEFAULT_EXTRA_SAMPLES for M superpixels
    #: (shap's KernelExplainer default, 2M + 2048; BENCHMARKS, "Explainers against references")
    SAMPLES_PER_FEATURE = 2
    DEFAULT_EXTRA_SAMPLES = 2048

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str | None = None,
        normalize: bool = True,
        n_samples: int | None = None,
        segments: str | torch.Tensor = "slic",
        n_segments: int = 32,
        baseline: float = 0.0,
        perturbations_per_eval: int = 16,
        sign: str = "positive",
    ) -> None:
        super().__init__(model, layer=layer, normalize=normalize, sign=sign)
        if n_samples is not None and n_samples < 1:
            raise ValueError(f"{type(self).__name__}: n_samples must be >= 1, got {n_samples}")
        self.n_samples = n_samples
        self.segments = segments
        self.n_segments = n_segments
        self.baseline = baseline
        self.perturbations_per_eval = perturbations_per_eval

    def feature_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]`` superpixel ids (broadcast over channels by Captum)."""
        b, _, h, w = x.shape
        if isinstance(self.segments, torch.Tensor):
            mask = self.segments.to(x.device).long()
            if mask.dim() == 4 and mask.shape[1] == 1:
                mask = mask[:, 0]
            if mask.shape != (b, h, w):
                raise ValueError(f"segments: expected superpixel ids [B, H, W] = [{b}, {h}, {w}], got {list(mask.shape)}")
        else:
            mask = superpixel_mask(x, n_segments=self.n_segments, method=self.segments)
        return mask[:, None]  # (B, 1, H, W)

    def surrogate(self, forward: nn.Module) -> Any:
        raise NotImplementedError

    def samples_for(self, n_features: int) -> int:
        """Perturbed samples per image: ``n_samples`` if given, else ``2 M + 2048`` for ``M`` superpixels."""
        if self.n_samples is not None:
            return self.n_samples
        return self.SAMPLES_PER_FEATURE * n_features + self.DEFAULT_EXTRA_SAMPLES

    def captum_attribute(self, forward: nn.Module, x: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        mask = self.feature_mask(x)  # (B, 1, H, W)
        n_features = int(mask.amax()) + 1  # the largest superpixel count of the batch
        return self.surrogate(forward).attribute(
            x,
            baselines=self.baseline,
            additional_forward_args=(sample_index,),
            feature_mask=mask,
            n_samples=self.samples_for(n_features),
            perturbations_per_eval=self.perturbations_per_eval,
        )


def surrogate_samples_rule() -> str:
    """LIME's and KernelSHAP's default perturbed samples per image as a rule in ``M`` superpixels
    (``"2M + 2048"``), for results that must say which default they ran at."""
    return f"{_SurrogateExplainer.SAMPLES_PER_FEATURE}M + {_SurrogateExplainer.DEFAULT_EXTRA_SAMPLES}"


@EXPLAINERS.register("lime", doc="LIME over SLIC superpixels (Captum; ridge surrogate, 2M + 2048 samples by default)")
class Lime(_SurrogateExplainer):
    """LIME (Ribeiro et al. 2016, arXiv 1602.04938) over superpixels.

    Surrogate: ridge regression with ``alpha=1`` by default, the original ``lime``
    package's choice. Captum's default, ``SkLearnLasso(alpha=0.01)`` (``surrogate="lasso"``),
    zeroes every coefficient for cosine targets, whose values move by ~0.01 between
    samples; ridge coefficients scale with the target instead. Similarity kernel: Captum's
    exponential kernel on cosine distance (width 1).

    Args:
        n_samples: perturbed samples per image (default ``2 M + 2048`` for ``M`` superpixels;
            Captum's LimeBase default of 50 left the surrogate with almost no fidelity on
            held-out coalitions of trained encoders: BENCHMARKS, "Explainers against references").
        segments: ``"slic"``, ``"grid"`` or superpixel ids ``[B, H, W]``.
        n_segments: approximate superpixels per image.
        baseline: value of switched-off superpixels (0 = mean colour).
        perturbations_per_eval: perturbed samples per forward pass.
        sign: ``"positive"`` | ``"absolute"`` | ``"all"``.
        surrogate: ``"ridge"`` or ``"lasso"``.
        alpha: regularisation of the surrogate (default 1.0 for ridge, 0.01 for lasso).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str | None = None,
        normalize: bool = True,
        n_samples: int | None = None,
        segments: str | torch.Tensor = "slic",
        n_segments: int = 32,
        baseline: float = 0.0,
        perturbations_per_eval: int = 16,
        sign: str = "positive",
        surrogate: str = "ridge",
        alpha: float | None = None,
    ) -> None:
        super().__init__(
            model, layer, normalize, n_samples, segments, n_segments, baseline, perturbations_per_eval, sign
        )
        if surrogate not in ("ridge", "lasso"):
            raise ValueError(f"lime: surrogate must be 'ridge' or 'lasso', got {surrogate!r}")
        self.surrogate_name = surrogate
        self.alpha = alpha if alpha is not None else (1.0 if surrogate == "ridge" else 0.01)

    def surrogate(self, forward: nn.Module) -> Any:
        from captum._utils.models.linear_model import SkLearnLasso, SkLearnRidge  # heavy: imported on first use
        from captum.attr import Lime as _Lime  # heavy: imported on first use

        model_cls = SkLearnRidge if self.surrogate_name == "ridge" else SkLearnLasso
        return _Lime(forward, interpretable_model=model_cls(alpha=self.alpha))


@EXPLAINERS.register("kernelshap", doc="KernelSHAP over SLIC superpixels (Captum; 2M + 2048 samples by default)")
class KernelShap(_SurrogateExplainer):
    """KernelSHAP (Lundberg & Lee 2017, arXiv 1705.07874) over superpixels.

    KernelSHAP fits a weighted linear regression with one coefficient per superpixel (plus
    an intercept) to the scores of perturbed images drawn from the Shapley kernel; Captum
    draws the coalitions with replacement, so the values carry sampling error that falls
    only like ``1 / sqrt(samples)``. With fewer than ``2 M`` samples (``M`` superpixels) the
    regression is close to underdetermined and asking for that warns. The default,
    ``2 M + DEFAULT_EXTRA_SAMPLES`` (shap's ``KernelExplainer`` default, ``2M + 2048``), was
    set against exact Shapley values on trained encoders (BENCHMARKS, "Explainers against
    references"), where fewer samples left larger errors.

    Args: as :class:`Lime`; ``n_samples`` defaults to ``2 M + 2048`` for the batch's
    most-segmented image.
    """

    def samples_for(self, n_features: int) -> int:
        needed = self.SAMPLES_PER_FEATURE * n_features  # the regression has M + 1 unknowns
        if self.n_samples is None:
            return needed + self.DEFAULT_EXTRA_SAMPLES
        if self.n_samples < needed:
            warnings.warn(
                f"kernelshap: n_samples={self.n_samples} is fewer than {self.SAMPLES_PER_FEATURE} x {n_features} "
                f"superpixels = {needed}; the Shapley regression is underdetermined and its values unreliable "
                "(leave n_samples unset for the default)",
                UserWarning,
                stacklevel=2,
            )
        return self.n_samples

    def surrogate(self, forward: nn.Module) -> Any:
        from captum.attr import KernelShap as _KernelShap  # heavy: imported on first use

        return _KernelShap(forward)
