"""Plain-torch ResNets with a CIFAR stem (3x3 conv, no max-pool) or an ImageNet stem.

Every backbone exposes:

- ``forward_features(x [B,3,H,W]) -> [B, C, h, w]``: the last spatial feature map, the
  layer explainers, dense concept maps and dissection read;
- ``forward_head(f [B,C,h,w]) -> [B, C]``: global average pooling;
- ``forward(x) -> [B, C]``: ``forward_head(forward_features(x))``;
- ``num_features``: ``C``; ``feature_layer``: the module whose output is the spatial map
  (the default target layer of CAM explainers); ``stages``: the residual stages in order.
"""

from __future__ import annotations

import torch
from torch import nn

from xbyol.registry import Registry

BACKBONES: Registry[ResNet] = Registry("backbone")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, ch, 1, stride, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = ch * self.expansion
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet backbone without a classifier.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        width: channels of the first stage (64 in the paper; 16 for the small CPU net).
        stem: ``"cifar"`` (3x3 conv stride 1, no max-pool) or ``"imagenet"`` (7x7 stride 2 + max-pool).
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], width: int = 64, stem: str = "cifar") -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        in_ch = width
        stages = []
        for i, n in enumerate(layers):
            ch = width * (2**i)
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_ch, ch, stride))
                in_ch = ch * block.expansion  # type: ignore[attr-defined]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.num_features = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def feature_layer(self) -> nn.Module:
        return self.stages[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x  # (B, C, h, w)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return f.mean(dim=(2, 3))  # (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _spec(block: type[nn.Module], layers: tuple[int, ...], width: int, stem: str):
    def make(**kw) -> ResNet:
        return ResNet(block, layers, width=kw.pop("width", width), stem=kw.pop("stem", stem), **kw)

    return make


for _name, _block, _layers, _width, _stem, _doc in [
    ("resnet10_16", BasicBlock, (1, 1, 1, 1), 16, "cifar", "small fast ResNet-10, 16 wide, CIFAR stem (CPU default)"),
    ("resnet10_32", BasicBlock, (1, 1, 1, 1), 32, "cifar", "ResNet-10, 32 wide, CIFAR stem"),
    ("resnet18_cifar", BasicBlock, (2, 2, 2, 2), 64, "cifar", "ResNet-18, CIFAR stem"),
    ("resnet34_cifar", BasicBlock, (3, 4, 6, 3), 64, "cifar", "ResNet-34, CIFAR stem"),
    ("resnet50_cifar", Bottleneck, (3, 4, 6, 3), 64, "cifar", "ResNet-50, CIFAR stem"),
    ("resnet18", BasicBlock, (2, 2, 2, 2), 64, "imagenet", "ResNet-18, ImageNet stem"),
    ("resnet34", BasicBlock, (3, 4, 6, 3), 64, "imagenet", "ResNet-34, ImageNet stem"),
    ("resnet50", Bottleneck, (3, 4, 6, 3), 64, "imagenet", "ResNet-50, ImageNet stem"),
]:
    BACKBONES.register(_name, doc=_doc)(_spec(_block, _layers, _width, _stem))
