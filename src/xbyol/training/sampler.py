"""The training data order: shuffled batches fixed by ``(seed, epoch, rank)``, resumable at any step."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from xbyol.config import Config
from xbyol.data.base import SampleDataset, batch_loader


def steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    """Optimiser steps in one pass over ``n`` images by ``world`` processes (incomplete batches dropped)."""
    return (n // world) // batch_size


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """Deterministic shuffled batches of one epoch for one rank (drop_last).

    The order depends only on ``(seed, epoch)``, so a resume mid-epoch skips the batches
    already seen and continues with exactly the same data.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    perm = perm[: (n // world) * world][rank::world]
    nb = len(perm) // batch_size
    return [perm[i * batch_size : (i + 1) * batch_size].tolist() for i in range(nb)]


class StepBatches:
    """Batch indices from global step ``start`` to ``end``, epoch after epoch (a batch sampler).

    The indices depend only on ``(seed, epoch, rank, world)``; nothing here draws from the
    global RNG, so where a run is resumed cannot shift the augmentations' random stream.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, end: int, rank: int, world: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world

    def __len__(self) -> int:
        return max(self.end - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        spe = steps_per_epoch(self.n, self.batch_size, self.world)
        step = self.start
        while step < self.end:
            epoch, offset = divmod(step, spe)
            for batch in batch_indices(self.n, self.batch_size, self.seed, epoch, self.rank, self.world)[offset:]:
                if step >= self.end:
                    return
                yield batch
                step += 1


def step_batches(
    dataset: SampleDataset, cfg: Config, start_step: int, total: int, rank: int, world: int,
    num_workers: int = 0, pin_memory: bool = False,
) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """``(indices, batch)`` from global step ``start_step`` up to ``total``: the indices the sampler
    asked for and their collated batch (``dataset.get_batch``), from one DataLoader.

    The loader gets a generator of its own (seeded by ``train.seed``): its base-seed draw
    for workers would otherwise consume the global torch RNG that the augmentations use.
    Batches come without per-pixel concept masks, which no method's training step reads;
    with ``pin_memory`` (on CUDA) in pinned memory, so the copy to the GPU does not hold up
    the host. ``num_workers``: the resolved ``data.num_workers``. A batch's ``"index"`` differs from ``indices`` where a file-backed dataset replaced an
    unreadable image by its neighbour (also inside DataLoader workers, where the dataset's
    own record of bad files stays in the worker).
    """
    sampler = StepBatches(len(dataset), cfg.data.batch_size, cfg.train.seed, start_step, total, rank, world)
    loader = batch_loader(dataset, sampler, num_workers, torch.Generator().manual_seed(cfg.train.seed), masks=False,
                          pin_memory=pin_memory)
    yield from zip(sampler, loader)
