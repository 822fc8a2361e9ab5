"""shapes: masks equal the drawn pixels, captions and labels describe the image, determinism."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from xbyol.config import DataCfg
from xbyol.data import collate, create_dataset
from xbyol.data.shapes import (
    BACKGROUND_RANGE,
    COLOURS,
    CONCEPT_GROUPS,
    CONCEPT_NAMES,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapesDataset,
    shape_stencil,
)

_PHRASE = {
    "at the top left": "top left", "at the top": "top", "at the top right": "top right",
    "on the left": "left", "in the centre": "centre", "on the right": "right",
    "at the bottom left": "bottom left", "at the bottom": "bottom", "at the bottom right": "bottom right",
}
_OBJ = re.compile(
    r"a (small|large) (" + "|".join(COLOURS) + r") (" + "|".join(SHAPES) + r") ("
    + "|".join(sorted(map(re.escape, _PHRASE), key=len, reverse=True)) + r")$"
)


def parse_caption(caption: str) -> list[tuple[str, str, str, str]]:
    """Caption -> [(size, colour, shape, position)] in order (independent of the generator)."""
    head, _, last = caption.rpartition(" and ")
    parts = (head.split(", ") if head else []) + [last]
    out = []
    for p in parts:
        m = _OBJ.match(p)
        assert m, f"caption part {p!r} of {caption!r} does not follow 'a <size> <colour> <shape> <position>'"
        out.append((m[1], m[2], m[3], _PHRASE[m[4]]))
    return out


def cell_region(size: int, cell: int) -> np.ndarray:
    """[S, S] bool of grid cell ``cell`` (row-major 3x3), edges at round(k * S / 3)."""
    b = [round(k * size / 3) for k in range(4)]
    r, c = divmod(cell, 3)
    m = np.zeros((size, size), dtype=bool)
    m[b[r] : b[r + 1], b[c] : b[c + 1]] = True
    return m


@pytest.fixture(scope="module")
def ds32() -> ShapesDataset:
    return ShapesDataset("train", num=300, image_size=32, seed=3)


def test_sample_contract(ds32):
    s = ds32[0]
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 32, 32)
    assert s["masks"].dtype == torch.bool and s["masks"].shape == (24, 32, 32)
    assert s["concepts"].dtype == torch.bool and s["concepts"].shape == (24,)
    assert isinstance(s["label"], int) and isinstance(s["caption"], str) and s["index"] == 0
    assert ds32.concept_names == CONCEPT_NAMES and len(CONCEPT_NAMES) == 5 + 8 + 2 + 9
    assert ds32.mask_concepts == list(range(24)) and ds32.class_names == SHAPES and ds32.has_captions
    groups = ds32.concept_groups
    assert [CONCEPT_NAMES[k] for k in groups["shape"]] == SHAPES
    assert [CONCEPT_NAMES[k] for k in groups["colour"]] == list(COLOURS)
    assert [CONCEPT_NAMES[k] for k in groups["size"]] == SIZES
    assert [CONCEPT_NAMES[k] for k in groups["position"]] == POSITIONS
    assert sorted(sum(CONCEPT_GROUPS.values(), [])) == list(range(24))
    assert COLOURS["red"] == (173, 35, 35) and COLOURS["blue"] == (42, 75, 215)
    batch = collate([ds32[i] for i in range(4)])
    assert batch["masks"].shape == (4, 24, 32, 32) and batch["label"].shape == (4,)
    with pytest.raises(IndexError):
        ds32[300]


def test_stencils_match_hand_drawn_patterns():
    cross6 = ["..##..", "..##..", "######", "######", "..##..", "..##.."]
    circle6 = [".####.", "######", "######", "######", "######", ".####."]
    tri6 = ["......", "..##..", "..##..", ".####.", ".####.", "######"]
    for name, rows in (("cross", cross6), ("circle", circle6), ("triangle", tri6)):
        want = np.array([[ch == "#" for ch in r] for r in rows])
        np.testing.assert_array_equal(shape_stencil(name, 6), want, err_msg=name)
    assert shape_stencil("square", 5).all()
    star = shape_stencil("star", 12)
    assert star[1, 5:7].all() and not star[1, :5].any()  # a single upward point
    assert star[11].sum() <= 4 and not star[11, 4:8].any()  # two feet with a gap between
    with pytest.raises(ValueError, match="hexagon"):
        shape_stencil("hexagon", 6)


@pytest.mark.parametrize("size", [32, 64])
def test_masks_are_exactly_the_drawn_pixels(size):
    ds = ds32_cached(size)
    palette = {name: np.array(rgb, dtype=np.uint8) for name, rgb in COLOURS.items()}
    for i in range(len(ds)):
        s = ds[i]
        img = s["image"].numpy().transpose(1, 2, 0)  # (S, S, 3)
        masks = s["masks"].numpy()
        objects = parse_caption(s["caption"])
        drawn = np.zeros((size, size), dtype=bool)
        for name, rgb in palette.items():
            is_colour = (img == rgb).all(-1)
            np.testing.assert_array_equal(masks[CONCEPT_NAMES.index(name)], is_colour, err_msg=f"{i} {name}")
            drawn |= is_colour
        # every concept mask is the union of the pixels of the objects that have it
        expected = {c: np.zeros((size, size), dtype=bool) for c in CONCEPT_NAMES}
        for sz, colour, shape, pos in objects:
            region = cell_region(size, POSITIONS.index(pos))
            pixels = region & (img == palette[colour]).all(-1)
            assert pixels.any(), f"image {i}: no {colour} pixels {pos}"
            for c in (sz, colour, shape, pos):
                expected[c] |= pixels
        for k, c in enumerate(CONCEPT_NAMES):
            np.testing.assert_array_equal(masks[k], expected[c], err_msg=f"image {i} concept {c}")
        assert (masks.any((1, 2)) == s["concepts"].numpy()).all()
        assert s["concepts"].numpy()[[CONCEPT_NAMES.index(c) for o in objects for c in o]].all()
        assert s["concepts"].sum() == len({c for o in objects for c in o})
        bg = img[~drawn]
        assert bg.min() >= BACKGROUND_RANGE[0] and bg.max() <= BACKGROUND_RANGE[1]


_CACHE: dict[int, ShapesDataset] = {}


def ds32_cached(size: int) -> ShapesDataset:
    if size not in _CACHE:
        _CACHE[size] = ShapesDataset("train", num=120 if size == 32 else 40, image_size=size, seed=11)
    return _CACHE[size]


@pytest.mark.parametrize("size", [32, 64])
def test_objects_are_whole_stencils_of_their_size(size):
    ds = ds32_cached(size)
    # 0.55 and 0.9 of the smallest cell (10 px at 32, 21 px at 64), rounded
    sides = {32: {"small": 6, "large": 9}, 64: {"small": 12, "large": 19}}[size]
    for i in range(len(ds)):
        s = ds[i]
        for sz, _colour, shape, pos in parse_caption(s["caption"]):
            m = s["masks"][CONCEPT_NAMES.index(pos)].numpy()  # one object per position
            ys, xs = np.nonzero(m)
            crop = m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            k = sides[sz]
            st = shape_stencil(shape, k)
            sy, sx = np.nonzero(st)
            np.testing.assert_array_equal(crop, st[sy.min() : sy.max() + 1, sx.min() : sx.max() + 1])
            assert cell_region(size, POSITIONS.index(pos))[m].all()


def test_label_is_shape_of_largest_object(ds32):
    seen_small_only = seen_large_later = False
    for i in range(len(ds32)):
        objs = parse_caption(ds32.captions[i])
        large = [o for o in objs if o[0] == "large"]
        want = (large[0] if large else objs[0])[2]
        assert ds32[i]["label"] == SHAPES.index(want), ds32.captions[i]
        seen_small_only |= not large and len(objs) > 1
        seen_large_later |= bool(large) and objs[0][0] == "small"
    assert seen_small_only and seen_large_later  # both tie rules were exercised


def test_caption_format():
    ds = ShapesDataset("train", num=200, seed=0)
    counts = {len(parse_caption(c)) for c in ds.captions}
    assert counts == {1, 2, 3}
    three = next(c for c in ds.captions if len(parse_caption(c)) == 3)
    assert three.count(", ") == 1 and three.count(" and ") == 1
    # distinct positions per image, all attribute values used
    objs = [o for c in ds.captions for o in parse_caption(c)]
    for c in ds.captions:
        pos = [o[3] for o in parse_caption(c)]
        assert len(pos) == len(set(pos))
    assert {o[2] for o in objs} == set(SHAPES) and {o[1] for o in objs} == set(COLOURS)
    assert {o[0] for o in objs} == set(SIZES) and {o[3] for o in objs} == set(POSITIONS)


def test_determinism_and_split_seeds():
    a = ShapesDataset("train", num=64, seed=5)
    b = ShapesDataset("train", num=64, seed=5)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and torch.equal(a.id_maps, b.id_maps)
    c = ShapesDataset("train", num=64, seed=6)
    t = ShapesDataset("test", num=64, seed=5)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.images, t.images)
    assert a.captions != t.captions


def test_registry_factory_sizes_and_options():
    cfg = DataCfg(name="shapes", num_train=40, num_test=12, image_size=48, seed=1, strict=True)
    tr, te = create_dataset(cfg, "train"), create_dataset(cfg, "test")
    assert len(tr) == 40 and len(te) == 12 and tr[0]["image"].shape == (3, 48, 48)
    with pytest.raises(ValueError, match="image_size"):
        ShapesDataset("train", num=4, image_size=20)
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("val", num=4)


def test_generation_crosses_chunks():
    ds = ShapesDataset("train", num=2048 + 7, seed=2)  # two chunks
    assert len(ds) == 2055 and (ds.attributes[-1, 0] >= 0).all()
    assert ds.id_maps[-1].max() >= 1 and ds.labels.shape == (2055,)


def test_every_supported_size_has_distinct_fitting_shapes():
    from xbyol.data.shapes import _Layout

    for size in range(24, 97):
        layout = _Layout(size)
        small, large = layout.side
        assert 5 <= small < large <= layout.cell_len.min(), size
        for bank in layout.stencils:
            flat = bank.reshape(len(SHAPES), -1)
            assert flat.any(1).all() and len({row.tobytes() for row in flat}) == len(SHAPES), size
