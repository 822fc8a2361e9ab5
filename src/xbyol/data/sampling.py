"""Pick a few images of a split that cover its labels: ``stratified_indices(labels, k)``.

Class-sorted datasets (image folders, many exports) put all of class 0 first, so "the
first N images" show one or two classes; sampling per label shows them all.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["dataset_labels", "stratified_indices"]


def dataset_labels(dataset: Any) -> list[int]:
    """Every sample's integer label: the dataset's ``labels`` attribute, else read sample by sample."""
    labels = getattr(dataset, "labels", None)
    if labels is not None and len(labels) == len(dataset):
        return [int(v) for v in (labels.tolist() if isinstance(labels, torch.Tensor) else labels)]
    return [int(dataset[i].get("label", -1)) for i in range(len(dataset))]


def stratified_indices(labels: Sequence[int], k: int) -> list[int]:
    """``k`` indices spread over the labels: as equal a number per label as the labels allow.

    Each label gets ``k // L`` (the first ``k % L`` labels in sorted order one more); a
    label with fewer images gives all it has and the rest goes to the others. Within a
    label the picks are spread evenly over its images in index order. Deterministic.

    Args:
        labels: ``N`` integer labels (``-1``, unlabelled, counts as one more label).
        k: how many indices.

    Returns:
        Sorted indices into ``labels`` (all of them when ``k >= N``).
    """
    if k < 0:
        raise ValueError(f"stratified_indices: k must be >= 0, got {k}")
    n = len(labels)
    if k >= n:
        return list(range(n))
    members: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        members.setdefault(int(y), []).append(i)
    order = sorted(members)
    quota = dict.fromkeys(order, 0)
    left = k
    while left:  # one more per label, in turn, while a label has images left
        for y in order:
            if left and quota[y] < len(members[y]):
                quota[y] += 1
                left -= 1
    picked = []
    for y in order:
        m, q = members[y], quota[y]
        picked += [m[int(j * len(m) / q)] for j in range(q)]
    return sorted(picked)
