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
"""

from __future__ import annotations

from typing import Any

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
    """

    class_names: list[str] = []
    concept_names: list[str] = []
    concept_groups: dict[str, list[int]] = {}
    mask_concepts: list[int] = []
    has_captions: bool = False
    image_size: int = 32

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.__class__.__name__


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


DATASETS: Registry[SampleDataset] = Registry("dataset")
