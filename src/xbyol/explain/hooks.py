"""Recording a layer's activations and gradients, with hooks that are always released.

A forward hook stores the layer's output; ``tensor.register_hook`` on that output stores
its gradient when the target is differentiated (module *backward* hooks are avoided: they
misbehave with in-place ops, pytorch#61519). Everything is released on ``__exit__``, also
when the forward or backward pass raised.
"""

from __future__ import annotations

from types import TracebackType

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["ActivationsAndGradients", "resolve_layer"]


def resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """The layer to explain: a submodule, a dotted name (``"stages.3"``) or ``model.feature_layer``.

    Args:
        model: the network.
        layer: a submodule of ``model``, its dotted name, or ``None`` for ``model.feature_layer``.

    Returns:
        The module.

    Raises:
        ValueError: the layer is not part of ``model``, the name is unknown, or ``layer`` is
            ``None`` and the model has no ``feature_layer``.
    """
    if layer is None:
        found = getattr(model, "feature_layer", None)
        if not isinstance(found, nn.Module):
            raise ValueError(
                f"{type(model).__name__} has no `feature_layer`; pass layer= as an nn.Module or a dotted "
                f"module name, one of: {', '.join(n for n, _ in model.named_modules() if n)[:500]}"
            )
        return found
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            raise ValueError(
                f"layer {layer!r} is not a submodule of {type(model).__name__}; known names: {', '.join(names)[:500]}"
            ) from None
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
        return layer
    raise TypeError(f"layer must be an nn.Module, a dotted module name or None, got {type(layer).__name__}")


class ActivationsAndGradients:
    """Context manager that records the output of ``layer`` and the gradient flowing into it.

    >>> with ActivationsAndGradients(model.feature_layer) as rec:
    ...     scores = target(model(x))
    ...     rec.backward(scores)
    >>> rec.activations.shape, rec.gradients.shape  # [B, C, h, w] each

    With ``start_graph_at_layer=True`` the forward pass is meant to run under
    ``torch.no_grad()``: the hook replaces the layer output by a fresh leaf that requires
    grad (recorded as ``activations``), passes a copy of it on, and switches gradient mode
    on for the rest of the forward pass. Autograd then records only what follows the layer,
    which is all a CAM needs (less autograd work), the model's parameters
    need not require grad, and in-place ops after the layer (``ReLU(inplace=True)``) leave
    the recorded activations intact. The caller's ``no_grad`` block restores the mode.

    Args:
        layer: module whose (single tensor) output is recorded; it must run once per forward.
        gradients: also record the gradient (needs the output to require grad).
        start_graph_at_layer: see above.
    """

    def __init__(self, layer: nn.Module, gradients: bool = True, start_graph_at_layer: bool = False) -> None:
        self.layer = layer
        self.record_gradients = gradients
        self.start_graph_at_layer = start_graph_at_layer
        self.activations: torch.Tensor | None = None
        self.gradients: torch.Tensor | None = None
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> "ActivationsAndGradients":
        self.activations = None
        self.gradients = None
        self._handles.append(self.layer.register_forward_hook(self._forward_hook))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        """Remove every hook this recorder installed (module and tensor hooks)."""
        while self._handles:
            self._handles.pop().remove()

    def _forward_hook(self, module: nn.Module, inputs: tuple, output: object) -> torch.Tensor | None:
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"explained layer {type(module).__name__} returned {type(output).__name__}; a single tensor is required"
            )
        if self.activations is not None:
            raise RuntimeError(
                f"explained layer {type(module).__name__} ran more than once in one forward pass; "
                "choose a layer that is called exactly once"
            )
        if self.start_graph_at_layer:
            leaf = output.detach().requires_grad_(True)
            self.activations = leaf
            if self.record_gradients:
                self._handles.append(leaf.register_hook(self._save_gradient))
            torch.set_grad_enabled(True)  # for the rest of the forward pass only
            return leaf.clone()
        self.activations = output
        if self.record_gradients and output.requires_grad:
            self._handles.append(output.register_hook(self._save_gradient))
        return None

    def _save_gradient(self, grad: torch.Tensor) -> None:
        self.gradients = grad

    def backward(self, scores: torch.Tensor) -> torch.Tensor:
        """Differentiate ``scores.sum()`` down to the recorded layer only.

        Gradients are taken with ``torch.autograd.grad`` w.r.t. the layer output, so nothing
        upstream of the layer is computed and no parameter ``.grad`` is touched; the tensor
        hook records the result.

        Args:
            scores: ``[B]`` target scores computed from this forward pass.

        Returns:
            ``[B, C, h, w]`` gradient of the scores w.r.t. the layer output.
        """
        if self.activations is None:
            raise RuntimeError(f"layer {type(self.layer).__name__} was not called during the forward pass")
        if not self.activations.requires_grad:
            raise RuntimeError(
                f"the output of layer {type(self.layer).__name__} does not require grad "
                "(the model runs it under no_grad or detaches it); gradient-based explainers cannot run"
            )
        if not scores.requires_grad:
            raise RuntimeError("the target scores do not depend on the explained layer's output")
        (grad,) = torch.autograd.grad(scores.sum(), self.activations, allow_unused=True)
        if grad is None:
            raise RuntimeError(f"the target scores do not depend on the output of layer {type(self.layer).__name__}")
        if self.gradients is None:  # tensor hook not installed (gradients=False)
            self.gradients = grad
        return self.gradients
