"""Image preprocessing and BYOL views on batched tensors.

Models always receive float images normalised with the ImageNet mean/std
(:mod:`xbyol.augment.preprocessing`):
``preprocess(uint8 [B,3,H,W]) -> float [B,3,H,W]``. Training views come from
:class:`ByolViews` (plain torch, whole batches on the images' device).
"""

from __future__ import annotations

from xbyol.augment.preprocessing import IMAGE_MEAN, IMAGE_STD, normalize, preprocess, to_unit_float, unnormalize
from xbyol.augment.views import ByolViews, blur_kernel_size, make_views

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "ByolViews",
    "blur_kernel_size",
    "make_views",
    "normalize",
    "preprocess",
    "to_unit_float",
    "unnormalize",
]
