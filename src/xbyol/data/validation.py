"""``data.validation``: the end of a training set held out as the evaluation split.

Settings are chosen on a split the test set never informs (issue #31): with
``data.validation: true`` a dataset's ``"train"`` split is the start of its training
images and its ``"test"`` split (the evaluation split every command reads) the end; the
official test images are not read. The rule is fixed, so every run holds out the same
images: MNIST / Fashion-MNIST the last sixth (10,000 of 60,000, the size of their test
sets), digits the last 20% of its training split (287 of 1,437, its test fraction).
"""

from __future__ import annotations

IDX_FRACTION = 1 / 6
DIGITS_FRACTION = 0.2


def held_out_rows(n: int, fraction: float, split: str, name: str) -> slice:
    """The rows of ``n`` training images that ``split`` reads: the first ``n - k`` for ``"train"``, the last ``k``
    for ``"test"``, ``k = round(fraction * n)``.

    Raises:
        ValueError: naming ``name`` when either part would be empty.
    """
    k = round(fraction * n)
    if not 0 < k < n:
        raise ValueError(f"{name}: data.validation needs more than {n} training images to hold {fraction:.0%} of them out")
    return slice(0, n - k) if split == "train" else slice(n - k, n)
