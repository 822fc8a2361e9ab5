"""BYOL training steps of two peers, lightly 1.6.0 and byol-pytorch 0.9.1, on xbyol's backbones, timed per step.

Each peer is run as its own documentation shows (lightly: ``examples/pytorch/byol.py``
with its ``BYOLTransform`` on PIL images in DataLoader workers, one per core; byol-pytorch:
its README's ``BYOL(net, image_size)`` learner, whose views are made on the device by its
default torchvision augmentation, fed by a DataLoader of decoded images), with what xbyol
uses set alike: the same backbone (``xbyol.models.create_backbone``), projector and
predictor MLPs of 4096 hidden / 256 out units, SGD (momentum 0.9) and an EMA target
(byol-pytorch's simplicial embedding, on by default in 0.9.1, is turned off so the heads
match). Their precision is their default (fp32).

A step's time is the wall time between the ends of two consecutive optimiser steps, the
device synchronised at each end (as ``train_throughput.step_clock`` times xbyol's
trainer), so data waits count; the figure is ``batch / median step``.

Both peers import torchvision, so :func:`unavailable` says why a peer cannot run here
(``gpu_check.py`` then skips it with that reason).
"""

from __future__ import annotations

import copy
import importlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from xbyol.models import create_backbone

PEERS = {"lightly": ("lightly", "1.6.0"), "byol-pytorch": ("byol_pytorch", "0.9.1")}
PROJ_HIDDEN, PROJ_DIM = 4096, 256
LR, MOMENTUM, EMA = 0.06, 0.9, 0.99


def unavailable(peer: str) -> str | None:
    """``None`` when ``peer`` and torchvision import, else the one-line reason."""
    module, version = PEERS[peer]
    try:
        importlib.import_module("torchvision")
        mod = importlib.import_module(module)
    except Exception as exc:  # an ImportError, or torchvision's operator registration failing against this torch
        return f"{peer} {version} does not import here ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    found = getattr(mod, "__version__", None)
    if found is not None and found != version:
        return f"{peer}: version {found} found, {version} expected"
    return None


class ImageSource(torch.utils.data.Dataset):
    """The images of a benchmark as PIL RGB images: ``uint8 [N, 3, S, S]`` tensors, or JPEG file paths.

    ``transform`` is applied to each PIL image (a peer's per-sample augmentation or decoding).
    """

    def __init__(self, images: torch.Tensor | list[str], transform: Any) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        item = self.images[i]
        if isinstance(item, str):
            with Image.open(item) as im:
                img = im.convert("RGB")
        else:
            img = Image.fromarray(item.permute(1, 2, 0).numpy())
        return self.transform(img)


def jpeg_paths(root: str | Path) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob("*.jpg"))


def _loader(source: ImageSource, batch: int, workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(source, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                       persistent_workers=workers > 0, pin_memory=device.type == "cuda")


def _forever(loader: torch.utils.data.DataLoader):  # type: ignore[no-untyped-def]
    while True:
        yield from loader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, batches, steps: int, warmup: int, device: torch.device) -> list[float]:  # type: ignore[no-untyped-def]
    """Wall seconds between the ends of consecutive steps after ``warmup`` (the device synchronised at each end)."""
    ends = []
    for i, batch in zip(range(warmup + steps), batches):
        step(batch)
        _sync(device)
        if i >= warmup - 1:
            ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends[:-1], ends[1:])]


def lightly_step_times(backbone: str, images: torch.Tensor | list[str], size: int, batch: int, steps: int, warmup: int,
                       device: torch.device, workers: int) -> list[float]:
    """lightly's BYOL example on ``backbone``: BYOLTransform in DataLoader workers, two forwards per view."""
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms.byol_transform import BYOLTransform, BYOLView1Transform, BYOLView2Transform

    blur = {} if size >= 64 else {"gaussian_blur": 0.0}  # lightly's CIFAR example turns the blur off at 32 px
    transform = BYOLTransform(view_1_transform=BYOLView1Transform(input_size=size, **blur),
                              view_2_transform=BYOLView2Transform(input_size=size, **blur))

    class LightlyBYOL(nn.Module):
        def __init__(self, net: nn.Module, features: int) -> None:
            super().__init__()
            self.backbone = net
            self.projection_head = BYOLProjectionHead(features, PROJ_HIDDEN, PROJ_DIM)
            self.prediction_head = BYOLPredictionHead(PROJ_DIM, PROJ_HIDDEN, PROJ_DIM)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))

        def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

    net = create_backbone(backbone)
    model = LightlyBYOL(net, net.num_features).to(device)
    criterion = NegativeCosineSimilarity()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = _loader(ImageSource(images, transform), batch, workers, device)

    def step(views: list[torch.Tensor]) -> None:
        x0, x1 = views[0].to(device, non_blocking=True), views[1].to(device, non_blocking=True)
        update_momentum(model.backbone, model.backbone_momentum, m=EMA)
        update_momentum(model.projection_head, model.projection_head_momentum, m=EMA)
        p0, z0 = model(x0), model.forward_momentum(x0)
        p1, z1 = model(x1), model.forward_momentum(x1)
        loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return _timed(step, _forever(loader), steps, warmup, device)


def byol_pytorch_step_times(backbone: str, images: torch.Tensor | list[str], size: int, batch: int, steps: int, warmup: int,
                            device: torch.device, workers: int) -> list[float]:
    """byol-pytorch's ``BYOL`` learner on ``backbone``: decoded uint8 batches in, its own views on the device."""
    from byol_pytorch import BYOL
    from torchvision import transforms as T

    net = create_backbone(backbone).to(device)
    learner = BYOL(net, image_size=size, hidden_layer=-1, projection_size=PROJ_DIM, projection_hidden_size=PROJ_HIDDEN,
                   moving_average_decay=EMA, use_simplicial_embeddings=False)
    optimizer = torch.optim.SGD(learner.parameters(), lr=LR, momentum=MOMENTUM)
    decode = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
    loader = _loader(ImageSource(images, decode), batch, workers, device)

    def step(x: torch.Tensor) -> None:
        loss = learner(x.to(device, non_blocking=True).float().div_(255.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        learner.update_moving_average()

    return _timed(step, _forever(loader), steps, warmup, device)


STEP_TIMES = {"lightly": lightly_step_times, "byol-pytorch": byol_pytorch_step_times}


def peer_row(peer: str, backbone: str, images: torch.Tensor | list[str], size: int, batch: int, steps: int, warmup: int,
             device: torch.device, workers: int | None = None) -> dict[str, Any]:
    """images/s (``batch / median step``) and peak GPU memory of one peer at one setting."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    times = STEP_TIMES[peer](backbone, images, size, batch, steps, warmup, device, workers)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"library": peer, "version": PEERS[peer][1], "backbone": backbone, "size": size, "batch": batch,
            "workers": workers, "img_s": batch / statistics.median(times), "step_ms": [1000 * t for t in times],
            "peak_mib": peak}
