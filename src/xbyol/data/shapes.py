"""``shapes``: procedural multi-object images with exact concept masks and captions.

Each image holds 1-3 flat-coloured objects on a light, textured background. Objects
sit in distinct cells of a 3x3 grid (with a small jitter inside the cell), so they
never overlap and every object stays fully visible. Every object has four attributes:

- shape: circle, square, triangle, cross, star
- colour: the eight CLEVR colours (gray, red, blue, green, brown, purple, cyan, yellow)
- size: small, large
- position: the grid cell (top left, top, top right, left, centre, right,
  bottom left, bottom, bottom right)

The concept vocabulary is the union of these values (24 concepts). ``masks[k]`` is the
set of pixels of the objects that have concept ``k``; it is exactly the set of pixels
drawn for them. Object pixels carry the exact CLEVR RGB value of their colour, while
every background channel lies in ``[150, 230]``, a box that contains no palette colour,
so a colour mask can be recovered from the image by comparing RGB values.

``label`` is the shape of the largest object: the first drawn *large* object, or the
first object when all are small. Captions list the objects in drawing order, CLEVR
style (size, colour, shape), e.g. "a large red circle at the top left and a small blue
star in the centre".

The whole split is generated in ``__init__`` with vectorised numpy (no per-image
drawing), as an object-id map ``[N, H, W]`` (0 = background, ``j + 1`` = object ``j``)
plus an attribute table ``[N, 3, 4]``; masks are built from them in ``__getitem__``.

Seeds: the train split uses ``numpy.random.SeedSequence([seed, 0])`` and the test
split ``SeedSequence([seed, 1])``, so the two splits are independent streams and each
is fully determined by ``seed``, the split and its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xbyol.config import DataCfg
from xbyol.data.base import DATASETS, Sample, SampleDataset, checked_indices

SHAPES = ["circle", "square", "triangle", "cross", "star"]
# CLEVR colours (facebookresearch/clevr-dataset-gen: image_generation/data/properties.json)
COLOURS: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
SIZES = ["small", "large"]
POSITIONS = ["top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"]
# how a position reads inside a caption
_POSITION_PHRASES = [
    "at the top left", "at the top", "at the top right",
    "on the left", "in the centre", "on the right",
    "at the bottom left", "at the bottom", "at the bottom right",
]
MAX_OBJECTS = 3
# every background channel is clipped to this range; no palette colour lies inside it
BACKGROUND_RANGE = (150, 230)
# object side as a fraction of the smallest grid cell, per size
_SIZE_FRACTION = (0.55, 0.9)
# below this the small shapes (5 px) no longer fit a cell beside a larger size
MIN_IMAGE_SIZE = 24
_CHUNK = 2048
_NUM_TEXTURES = 128

CONCEPT_NAMES = SHAPES + list(COLOURS) + SIZES + POSITIONS
CONCEPT_GROUPS = {
    "shape": list(range(0, 5)),
    "colour": list(range(5, 13)),
    "size": list(range(13, 15)),
    "position": list(range(15, 24)),
}
_PALETTE = np.array(list(COLOURS.values()), dtype=np.uint8)  # (8, 3)

if any(all(BACKGROUND_RANGE[0] <= v <= BACKGROUND_RANGE[1] for v in rgb) for rgb in COLOURS.values()):
    raise AssertionError("a palette colour lies inside the background range")  # pragma: no cover


# ----------------------------------------------------------------------------- stencils


def _inside_polygon(x: np.ndarray, y: np.ndarray, verts: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd point-in-polygon test for arrays of points ``x``, ``y``."""
    inside = np.zeros(x.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x1, y1 = verts[i]
        x2, y2 = verts[(i + 1) % n]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


def shape_stencil(shape: str, k: int) -> np.ndarray:
    """Boolean ``[k, k]`` stencil of ``shape``, sampled at pixel centres.

    Coordinates span ``[-1, 1]`` across the window, y pointing down.
    """
    c = (np.arange(k) + 0.5) / k * 2.0 - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")  # (k, k)
    if shape == "circle":
        return x**2 + y**2 <= 1.0
    if shape == "square":
        return np.ones((k, k), dtype=bool)
    if shape == "triangle":
        return _inside_polygon(x, y, [(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)])
    if shape == "cross":
        box = (np.abs(x) <= 0.95) & (np.abs(y) <= 0.95)
        return box & ((np.abs(x) <= 0.34) | (np.abs(y) <= 0.34))
    if shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.15, 0.55)
        verts = [(float(r * np.cos(a)), float(r * np.sin(a) + 0.15)) for r, a in zip(radii, angles)]
        return _inside_polygon(x, y, verts)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


class _Layout:
    """Grid cells and stencils for one image size."""

    def __init__(self, image_size: int) -> None:
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"shapes: image_size must be >= {MIN_IMAGE_SIZE} so that the five shapes stay distinct "
                f"at both sizes, got {image_size}"
            )
        s = image_size
        bounds = np.rint(np.arange(4) * s / 3).astype(np.int64)  # (4,) cell edges
        self.cell_start = bounds[:3]  # (3,)
        self.cell_len = np.diff(bounds)  # (3,)
        base = int(self.cell_len.min())
        small = max(5, int(_SIZE_FRACTION[0] * base + 0.5))
        large = max(small + 2, int(_SIZE_FRACTION[1] * base + 0.5))
        self.side = [small, large]  # object side per size, fits in every cell
        self.stencils = [np.stack([shape_stencil(sh, k) for sh in SHAPES]) for k in self.side]  # size -> (5, k, k)


# ----------------------------------------------------------------------------- generation


def _textures(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """Smooth texture bank ``[count, size, size]`` uint8 in ``[0, 32]``."""
    coarse = torch.from_numpy(rng.uniform(-1.0, 1.0, (count, 1, 5, 5)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (smooth[:, 0] * 16.0 + 16.0).round().clamp(0, 32).to(torch.uint8).numpy()


def _generate_chunk(
    rng: np.random.Generator,
    layout: _Layout,
    textures: np.ndarray,
    images: np.ndarray,
    ids: np.ndarray,
    attrs: np.ndarray,
) -> None:
    """Fill ``images [n,3,S,S]`` uint8, ``ids [n,S,S]`` uint8 and ``attrs [n,3,4]`` int8 in place."""
    n, size = len(images), images.shape[-1]
    n_obj = rng.integers(1, MAX_OBJECTS + 1, n)  # (n,)
    cells = np.argsort(rng.random((n, 9)), axis=1)[:, :MAX_OBJECTS]  # (n, 3) distinct cells
    shape = rng.integers(0, len(SHAPES), (n, MAX_OBJECTS))
    colour = rng.integers(0, len(COLOURS), (n, MAX_OBJECTS))
    sz = rng.integers(0, len(SIZES), (n, MAX_OBJECTS))
    jitter = rng.random((n, MAX_OBJECTS, 2))  # (n, 3, 2) fraction of the free room in the cell
    tint = rng.integers(150, 195, (n, 3)).astype(np.uint8)  # (n, 3) base colour of the background
    tex_id = rng.integers(0, len(textures), n)
    noise = np.frombuffer(rng.bytes(n * size * size), dtype=np.uint8).reshape(n, size, size) & 15  # (n, S, S)

    # background: tint + smooth texture + pixel noise, clipped into BACKGROUND_RANGE
    lo, hi = BACKGROUND_RANGE
    gray = textures[tex_id] + noise  # (n, S, S) uint8 in [0, 47]
    for ch in range(3):
        bg = images[:, ch]  # (n, S, S) view
        np.add(gray, tint[:, ch, None, None], out=bg)  # <= 194 + 47, no overflow
        np.minimum(bg, hi, out=bg)
        np.maximum(bg, lo, out=bg)

    # objects: paste each stencil window into its cell; windows never overlap
    row, col = cells // 3, cells % 3
    side = np.asarray(layout.side)[sz]  # (n, 3)
    y0 = layout.cell_start[row] + (jitter[..., 0] * (layout.cell_len[row] - side + 1)).astype(np.int64)
    x0 = layout.cell_start[col] + (jitter[..., 1] * (layout.cell_len[col] - side + 1)).astype(np.int64)
    ids[:] = 0
    chans = np.arange(3)[None, :, None, None]
    for j in range(MAX_OBJECTS):
        for si, k in enumerate(layout.side):
            sel = np.nonzero((n_obj > j) & (sz[:, j] == si))[0]  # (m,)
            if sel.size == 0:
                continue
            ar = np.arange(k)
            ys = y0[sel, j][:, None, None] + ar[None, :, None]  # (m, k, 1)
            xs = x0[sel, j][:, None, None] + ar[None, None, :]  # (m, 1, k)
            stencil = layout.stencils[si][shape[sel, j]]  # (m, k, k)
            ids[sel[:, None, None], ys, xs] = stencil.astype(np.uint8) * (j + 1)
            win_idx = (sel[:, None, None, None], chans, ys[:, None], xs[:, None])  # -> (m, 3, k, k)
            rgb = _PALETTE[colour[sel, j]][:, :, None, None]  # (m, 3, 1, 1)
            images[win_idx] = np.where(stencil[:, None], rgb, images[win_idx])

    present = np.arange(MAX_OBJECTS)[None, :] < n_obj[:, None]  # (n, 3)
    attrs[:] = np.stack([shape, colour, sz, cells], axis=-1)
    attrs[~present] = -1


def _phrases() -> list[str]:
    """Object phrase for every (size, colour, shape, position) code."""
    out = []
    for s in SIZES:
        for c in COLOURS:
            for sh in SHAPES:
                for p in _POSITION_PHRASES:
                    out.append(f"a {s} {c} {sh} {p}")
    return out


_PHRASES = _phrases()


def captions_from_attributes(attrs: np.ndarray) -> list[str]:
    """Captions for an attribute table ``[N, 3, 4]`` (shape, colour, size, cell; -1 = absent)."""
    a = attrs.astype(np.int64)
    code = ((a[..., 2] * len(COLOURS) + a[..., 1]) * len(SHAPES) + a[..., 0]) * len(POSITIONS) + a[..., 3]  # (N, 3)
    code[a[..., 0] < 0] = -1
    out = []
    for row in code.tolist():
        parts = [_PHRASES[c] for c in row if c >= 0]
        if len(parts) == 1:
            out.append(parts[0])
        else:
            out.append(", ".join(parts[:-1]) + " and " + parts[-1])
    return out


def labels_from_attributes(attrs: np.ndarray) -> np.ndarray:
    """Shape index of the largest object (first large one drawn, else the first object)."""
    large = attrs[..., 2] == 1  # (N, 3)
    first = np.where(large.any(1), large.argmax(1), 0)  # (N,)
    return attrs[np.arange(len(attrs)), first, 0].astype(np.int64)


def generate(num: int, image_size: int, seed_seq: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``num`` images with ids and attributes, in chunks (see module docstring)."""
    layout = _Layout(image_size)
    rng = np.random.default_rng(seed_seq)
    textures = _textures(rng, image_size, _NUM_TEXTURES)
    images = np.empty((num, 3, image_size, image_size), dtype=np.uint8)
    ids = np.empty((num, image_size, image_size), dtype=np.uint8)
    attrs = np.empty((num, MAX_OBJECTS, 4), dtype=np.int8)
    for start in range(0, num, _CHUNK):
        part = slice(start, min(num, start + _CHUNK))
        _generate_chunk(rng, layout, textures, images[part], ids[part], attrs[part])
    return images, ids, attrs


# ----------------------------------------------------------------------------- dataset


class ShapesDataset(SampleDataset):
    """Procedural shapes with concept masks and captions (see the module docstring).

    Args:
        split: ``"train"`` or ``"test"``.
        num: number of images.
        image_size: image side in pixels (>= 24).
        seed: generation seed; train and test use independent streams derived from it.

    Attributes:
        images: ``[N, 3, S, S]`` uint8.
        id_maps: ``[N, S, S]`` uint8, 0 = background, ``j + 1`` = object ``j``.
        attributes: ``[N, 3, 4]`` int8 per object (shape, colour, size, cell index); -1 = no object.
        labels: ``[N]`` int64 shape index of the largest object.
        captions: ``N`` strings.
    """

    class_names = list(SHAPES)
    concept_names = list(CONCEPT_NAMES)
    concept_groups = {k: list(v) for k, v in CONCEPT_GROUPS.items()}
    has_captions = True

    def __init__(self, split: str = "train", num: int = 10000, image_size: int = 32, seed: int = 0) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"shapes: split must be 'train' or 'test', got {split!r}")
        if num < 1:
            raise ValueError(f"shapes: number of images must be >= 1, got {num}")
        self.split = split
        self.image_size = image_size
        self.seed = seed
        self.mask_concepts = list(range(len(CONCEPT_NAMES)))
        seq = np.random.SeedSequence([seed, 0 if split == "train" else 1])
        images, ids, attrs = generate(num, image_size, seq)
        self.images = torch.from_numpy(images)
        self.id_maps = torch.from_numpy(ids)
        self.attributes = torch.from_numpy(attrs)
        self.labels = torch.from_numpy(labels_from_attributes(attrs))
        self.captions = captions_from_attributes(attrs)
        inc = _incidence(attrs)  # (N, V, 3) object j has concept k
        # (N, V, 4): id-map value -> concept membership; value 0 (background) is in no concept
        self._id_to_concepts = np.concatenate([np.zeros_like(inc[..., :1]), inc], axis=-1)
        self._concepts = np.asarray(inc.any(-1))  # (N, V)
        self._images, self._ids, self._labels = images, ids, self.labels.tolist()
        self._n = num

    def __len__(self) -> int:
        return self._n

    def object_masks(self, i: int) -> torch.Tensor:
        """``[3, S, S]`` bool: pixels of each object slot of image ``i`` (empty for absent slots)."""
        slots = torch.arange(1, MAX_OBJECTS + 1, dtype=torch.uint8)
        return self.id_maps[i][None] == slots[:, None, None]  # (3, S, S)

    def __getitem__(self, i: int) -> Sample:
        n = self._n
        if not -n <= i < n:
            raise IndexError(f"shapes: index {i} out of range for {n} images")
        i = int(i) % n
        return {
            "image": torch.from_numpy(self._images[i].copy()),  # (3, S, S)
            "label": self._labels[i],
            "concepts": torch.from_numpy(self._concepts[i].copy()),  # (V,)
            "masks": torch.from_numpy(np.take(self._id_to_concepts[i], self._ids[i], axis=1)),  # (V, S, S)
            "caption": self.captions[i],
            "index": i,
        }

    def get_batch(self, indices: Sequence[int], masks: bool = True) -> dict[str, Any]:
        """``collate([self[i] for i in indices])`` in one gather per key (see :meth:`SampleDataset.get_batch`)."""
        idx = checked_indices(indices, self._n, "shapes")  # (B,)
        return {
            "image": torch.from_numpy(self._images[idx]),  # (B, 3, S, S)
            "label": self.labels[torch.from_numpy(idx)],  # (B,)
            "concepts": torch.from_numpy(self._concepts[idx]),  # (B, V)
            **({"masks": self._batch_masks(idx)} if masks else {}),  # (B, V, S, S)
            "caption": [self.captions[i] for i in idx.tolist()],
            "index": torch.from_numpy(idx),  # (B,)
        }

    def _batch_masks(self, idx: np.ndarray) -> torch.Tensor:
        """``[B, V, S, S]`` bool: concept k's membership of the slot each pixel shows, for images ``idx [B]``.

        One table lookup: row ``J b + slot`` of a ``(J B, V)`` table, read as a ``(B, S, S, V)``
        array and viewed as ``(B, V, S, S)``.
        """
        to_concepts = self._id_to_concepts[idx]  # (B, V, J) slot -> concept membership, J = MAX_OBJECTS + 1
        b, v, j = to_concepts.shape
        table = to_concepts.transpose(0, 2, 1).reshape(j * b, v)  # (J B, V)
        rows = self._ids[idx].astype(np.intp) + j * np.arange(b)[:, None, None]  # (B, S, S)
        return torch.from_numpy(table[rows].transpose(0, 3, 1, 2))  # (B, V, S, S), a view

    def describe(self) -> str:
        return f"shapes[{self.split}]: {len(self)} images {self.image_size}px, seed {self.seed}"


def _incidence(attrs: np.ndarray) -> np.ndarray:
    """``[N, V, 3]`` bool: object ``j`` has concept ``k``."""
    n = len(attrs)
    inc = np.zeros((n, len(CONCEPT_NAMES), MAX_OBJECTS), dtype=bool)
    offsets = [CONCEPT_GROUPS[g][0] for g in ("shape", "colour", "size", "position")]
    rows = np.arange(n)
    for j in range(MAX_OBJECTS):
        present = attrs[:, j, 0] >= 0
        for a, off in enumerate(offsets):
            r = rows[present]
            inc[r, off + attrs[present, j, a].astype(np.int64), j] = True
    return inc


@DATASETS.register("shapes")
def shapes(cfg: DataCfg, split: str) -> ShapesDataset:
    """Procedural coloured shapes on a 3x3 grid with exact masks and captions (offline)."""
    num = cfg.num_train if split == "train" else cfg.num_test
    return ShapesDataset(split=split, num=num, image_size=cfg.image_size, seed=cfg.seed)
