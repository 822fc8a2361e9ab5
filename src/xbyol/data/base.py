"""The one sample contract shared by every dataset.

Every dataset returns, for index ``i``, a dict:

- ``image``: ``torch.uint8`` tensor ``[3, H, W]``.
- ``label``: ``int`` class index (``-1`` when the dataset has no labels).
- ``concepts`` (optional): ``torch.bool`` multi-hot ``[V]`` over the dataset's concept
  vocabulary ``concept_names``.
- ``masks`` (optional): ``torch.bool`` ``[V, H, W]``; row ``k`` is the pixel mask of
  concept ``k`` in this image (all False where the concept is absent). Only the rows
  listed in ``mask_concepts`` are annotated; other rows are all False.
- ``caption`` (optional): ``str``.
- ``index``: ``int`` position in the dataset (used to name images in outputs).

Datasets subclass :class:`SampleDataset` and fill the metadata attributes so that
downstream code (concept bank, SSCS, dissection, retrieval) can work on any of them.
Each is built by a factory ``fn(cfg: DataCfg, split: str)`` registered in :data:`DATASETS`.

Batches: ``dataset.get_batch(indices)`` returns what ``collate([dataset[i] for i in
indices])`` returns. Datasets held in memory override it with one vectorised gather
(measured: benchmarks/BENCHMARKS.md, section "Freed host memory kept vs glibc's defaults");
:func:`batch_loader` is the DataLoader that feeds whole batches from it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from xbyol.registry import Registry

Sample = dict[str, Any]


class SampleDataset(Dataset):
    """Base class: metadata every dataset provides.

    Attributes:
        class_names: names of the ``label`` classes.
        concept_names: concept vocabulary (``[]`` when the dataset has none).
        concept_groups: group name -> indices into ``concept_names`` (e.g. ``{"shape": [0..4], "colour": [5..10]}``).
        mask_concepts: indices of concepts whose masks are annotated (``[]`` when no masks).
        has_captions: whether samples carry ``caption``.
        image_size: side of the square images.
        reads_files: whether reading a batch decodes image files (worth loader workers on CUDA)
            rather than gathering from arrays in memory.
    """

    class_names: list[str] = []
    concept_names: list[str] = []
    concept_groups: dict[str, list[int]] = {}
    mask_concepts: list[int] = []
    has_captions: bool = False
    image_size: int = 32
    reads_files: bool = False

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.__class__.__name__

    def get_batch(self, indices: Sequence[int], masks: bool = True) -> dict[str, Any]:
        """The collated batch of ``indices``: exactly ``collate([self[i] for i in indices])``.

        ``masks=False`` leaves out the per-pixel concept masks ``[B, V, H, W]`` where a
        dataset has them: no training step reads them (they serve explanation metrics),
        and on ``shapes`` they are most of a batch's cost (measured: benchmarks/BENCHMARKS.md,
        section "Training throughput (CPU)", "Reading").
        In-memory datasets override this with one vectorised gather; the result must stay
        equal to the per-sample path (``tests/data/test_batches.py`` checks every dataset).
        """
        batch = collate([self[i] for i in indices])
        if not masks:
            batch.pop("masks", None)
        return batch


def collate(samples: list[Sample]) -> dict[str, Any]:
    """Stack a list of samples into a batch: tensors are stacked, strings and ints listed/stacked."""
    out: dict[str, Any] = {}
    keys = samples[0].keys()
    for k in keys:
        vals = [s[k] for s in samples]
        if isinstance(vals[0], torch.Tensor):
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], (int, bool)):
            out[k] = torch.tensor(vals)
        else:
            out[k] = vals
    return out


def checked_indices(indices: Sequence[int], n: int, name: str) -> np.ndarray:
    """``indices`` as an int64 array in ``[0, n)`` (negative ones counted from the end, as ``dataset[i]``).

    Raises:
        IndexError: naming the dataset and the first index outside ``[-n, n)``.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)  # (B,)
    bad = (idx < -n) | (idx >= n)
    if bad.any():
        raise IndexError(f"{name}: index {int(idx[bad][0])} out of range for {n} images")
    return idx % max(n, 1)


def one_hot_concepts(labels: torch.Tensor, n_concepts: int) -> torch.Tensor:
    """``[B]`` class indices -> ``[B, V]`` bool with the label's concept set (class-name concepts)."""
    out = torch.zeros(len(labels), n_concepts, dtype=torch.bool)
    out[torch.arange(len(labels)), labels] = True
    return out  # (B, V)


class GrayClassDataset(SampleDataset):
    """In-memory single-channel images, one class label each, read as 3 channels; the concepts are the class names.

    Subclasses set ``name`` (used in errors), ``images`` (``[N, 1, S, S]`` uint8), ``labels``
    (``[N]`` int64), ``concept_names`` and :meth:`caption`.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def caption(self, label: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: index {i} out of range for {len(self)} images")
        i = int(i) % len(self)
        y = int(self.labels[i])
        concepts = torch.zeros(len(self.concept_names), dtype=torch.bool)
        concepts[y] = True
        return {
            "image": self.images[i].expand(3, -1, -1).clone(),  # (3, S, S)
            "label": y,
            "concepts": concepts,
            "caption": self.caption(y),
            "index": i,
        }

    def get_batch(self, indices: Sequence[int], masks: bool = True) -> dict[str, Any]:
        """``collate([self[i] for i in indices])`` in one gather per key (see :meth:`SampleDataset.get_batch`;
        these images have no masks)."""
        idx = torch.from_numpy(checked_indices(indices, len(self), self.name))  # (B,)
        labels = self.labels[idx]  # (B,)
        return {
            "image": self.images[idx].expand(-1, 3, -1, -1).contiguous(),  # (B, 3, S, S)
            "label": labels,
            "concepts": one_hot_concepts(labels, len(self.concept_names)),  # (B, V)
            "caption": [self.caption(y) for y in labels.tolist()],
            "index": idx,
        }


class _BatchFetch(Dataset):
    """A dataset indexed by a whole list of indices: ``self[indices] = dataset.get_batch(indices, masks)``."""

    def __init__(self, dataset: SampleDataset, masks: bool) -> None:
        self.dataset, self.masks = dataset, masks

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: Sequence[int]) -> dict[str, Any]:  # type: ignore[override]
        return self.dataset.get_batch(indices, masks=self.masks)


def _as_is(batch: Any) -> Any:
    return batch


def resolve_num_workers(setting: int | str, device: torch.device, processes: int = 1, reads_files: bool = True) -> int:
    """``data.num_workers`` as a number: ``auto`` is the cores left to each process minus one on CUDA, else 0.

    On CUDA the host only queues kernels, so its other cores can decode the next batches
    (a folder of JPEGs at 224 px would otherwise starve the GPU); on the CPU the same
    cores run the step's arithmetic, and worker processes only compete with it. A dataset
    held in memory (``reads_files`` false: shapes, digits, CIFAR, MNIST) gathers a batch
    with one indexing operation, which a worker would only add a copy between processes to.

    Args:
        setting: a non-negative number of worker processes, or ``"auto"``.
        device: the run's device.
        processes: training processes on this machine (DDP's local world size); each
            one gets its own workers.
        reads_files: whether the dataset decodes files to read a batch
            (:attr:`SampleDataset.reads_files`).
    """
    if setting != "auto":
        return int(setting)
    if device.type != "cuda" or not reads_files:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(cores // max(processes, 1) - 1, 0)


def batch_loader(
    dataset: SampleDataset,
    batches: Iterable[Sequence[int]],
    num_workers: int = 0,
    generator: torch.Generator | None = None,
    masks: bool = True,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding ``dataset.get_batch(b, masks)`` for each index list ``b`` of ``batches``, in order.

    ``num_workers > 0`` prepares batches (decoding image files) in worker processes, kept
    alive for the whole loader, so nothing is rebuilt per epoch, each with
    ``prefetch_factor`` batches in flight; ``generator`` seeds the workers' base seed
    without drawing from the global torch RNG; ``masks=False`` leaves out per-pixel masks;
    ``pin_memory`` puts the batches in page-locked memory (for a CUDA run), so their
    copies to the GPU run asynchronously.
    """
    return torch.utils.data.DataLoader(
        _BatchFetch(dataset, masks),
        sampler=batches,  # type: ignore[arg-type]
        batch_size=None,
        collate_fn=_as_is,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        pin_memory=pin_memory,
        generator=generator,
    )


DATASETS: Registry[SampleDataset] = Registry("dataset")
