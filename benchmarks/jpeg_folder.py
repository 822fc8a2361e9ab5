"""A synthetic folder of JPEGs for timing the data path at real resolutions (the content does not change the cost much).

``make_jpeg_folder(root, n, (width, height))`` writes ``n`` JPEGs in ``root/<class>/``
(the ``folder`` dataset's layout): ``shapes`` images upscaled to ``width x height`` with
mild per-pixel noise, so the files carry an entropy closer to a photograph's than the
flat shapes alone, saved at quality 90. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from xbyol.data.shapes import ShapesDataset


def make_jpeg_folder(root: str | Path, n: int, size: tuple[int, int], classes: int = 4, seed: int = 0,
                     quality: int = 90) -> Path:
    """Write ``n`` JPEGs of ``size = (width, height)`` into ``root/c<k>/<i>.jpg``; returns ``root``."""
    root = Path(root)
    shapes = ShapesDataset("train", num=n, image_size=64, seed=seed)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = Image.fromarray(shapes[i]["image"].permute(1, 2, 0).numpy()).resize(size, Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 6.0, (size[1], size[0], 3)).astype(np.float32)
        folder = root / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=quality)
    return root
