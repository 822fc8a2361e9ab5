"""Backbones (``create_backbone(name)``), projection/prediction heads and the EMA update."""

from __future__ import annotations

from xbyol.models.resnet import BACKBONES, ResNet


def create_backbone(name: str, **kwargs) -> ResNet:
    """Build a registered backbone; see :func:`names`."""
    return BACKBONES.create(name, **kwargs)


def names() -> list[str]:
    return BACKBONES.names()


__all__ = ["BACKBONES", "ResNet", "create_backbone", "names"]
