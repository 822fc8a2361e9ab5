"""Frozen features of a whole dataset: the input of the linear probe, kNN and embedding maps."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from xbyol.augment import preprocess
from xbyol.data.base import collate


@torch.no_grad()
def extract_features(
    encode_fn: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every image of ``dataset`` in order, without gradients.

    Each uint8 batch is moved to ``device`` and passed through
    :func:`xbyol.augment.preprocess` before ``encode_fn``. When ``encode_fn`` is an
    ``nn.Module`` it runs in eval mode (BatchNorm running statistics) and its mode is
    restored afterwards; for a plain function that is the caller's job.

    Args:
        encode_fn: preprocessed float images ``[B, 3, H, W]`` -> features ``[B, D]``.
        dataset: a dataset of Sample dicts (``image`` uint8 ``[3, H, W]``, ``label`` int).
        batch_size: images per forward pass.
        device: where ``encode_fn`` runs.
        progress: show a tqdm progress bar.

    Returns:
        ``(features, labels)``: float32 ``[N, D]`` on the CPU, not L2-normalised (the
        consumers normalise as they need), and int64 ``[N]`` in dataset order.
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("extract_features: the dataset is empty")
    if batch_size < 1:
        raise ValueError(f"extract_features: batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)
    was_training = isinstance(encode_fn, nn.Module) and encode_fn.training
    if isinstance(encode_fn, nn.Module):
        encode_fn.eval()
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        batches = loader
        if progress:
            batches = tqdm(loader, desc="features", unit="batch", leave=False, disable=None)  # off where stderr is no terminal
        for batch in batches:
            x = preprocess(batch["image"].to(device, non_blocking=True))  # (B, 3, H, W)
            f = encode_fn(x)  # (B, D)
            if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] != x.shape[0]:
                shape = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(f"extract_features: encode_fn must return [B, D] features for B={x.shape[0]}, got {shape}")
            feats.append(f.detach().float().cpu())
            labels.append(torch.as_tensor(batch["label"]).long().cpu())
    finally:
        if was_training:
            encode_fn.train()  # type: ignore[attr-defined]  # was_training: an nn.Module
    return torch.cat(feats), torch.cat(labels)  # (N, D), (N,)
