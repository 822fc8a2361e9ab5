"""folder: image modes, resize/crop, bad files, captions.jsonl, masks, split, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from data_fixtures import make_image_folder, save_rgb, truncated_bytes
from PIL import Image

from xbyol.config import DataCfg
from xbyol.data import create_dataset
from xbyol.data.folder import DatasetWarning, FolderDataset, split_per_class
from xbyol.data.io import UnreadableImageError


def by_key(ds: FolderDataset, key: str) -> dict:
    return ds[ds.keys.index(key)]


def dataset_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DatasetWarning)]


def test_image_modes_become_rgb(tmp_path):
    root = tmp_path / "modes"
    save_rgb(root / "apple" / "rgb.png", (200, 10, 30))
    (root / "apple").mkdir(exist_ok=True)
    Image.new("L", (8, 8), 77).save(root / "apple" / "gray.png")
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 0, 128, 255] + [0] * 762)
    (root / "box").mkdir()
    pal.save(root / "box" / "pal.gif")
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:, :4] = (10, 20, 30, 255)  # opaque left half
    rgba[:, 4:] = (10, 20, 30, 0)  # transparent right half -> white
    Image.fromarray(rgba, "RGBA").save(root / "box" / "rgba.png")
    (root / "cup").mkdir()
    Image.fromarray(np.full((8, 8), 257 * 100, dtype=np.uint16)).save(root / "cup" / "deep.png")  # 16-bit gray
    Image.new("RGB", (8, 8), (5, 6, 7)).save(root / "cup" / "photo.jpg", quality=100)

    ds = FolderDataset(root, "train", image_size=8)
    assert ds.class_names == ["apple", "box", "cup"] and len(ds) == 6  # <= 2 images per class: all train
    for key, rgb in (("apple/rgb.png", (200, 10, 30)), ("apple/gray.png", (77, 77, 77)),
                     ("box/pal.gif", (0, 128, 255)), ("cup/deep.png", (100, 100, 100))):
        img = by_key(ds, key)["image"]
        assert img.dtype == torch.uint8 and img.shape == (3, 8, 8)
        assert (img == torch.tensor(rgb, dtype=torch.uint8)[:, None, None]).all(), key
    img = by_key(ds, "box/rgba.png")["image"]
    assert (img[:, :, :4] == torch.tensor([10, 20, 30], dtype=torch.uint8)[:, None, None]).all()
    assert (img[:, :, 4:] == 255).all()
    jpg = by_key(ds, "cup/photo.jpg")["image"].int()
    assert (jpg - torch.tensor([5, 6, 7])[:, None, None]).abs().max() <= 3


def test_shorter_side_resize_and_centre_crop(tmp_path):
    root = tmp_path / "geom"
    wide = np.zeros((8, 16, 3), dtype=np.uint8)
    wide[..., 0] = (np.arange(16) * 10)[None, :]  # R encodes the column
    save_rgb(root / "a" / "wide.png", wide)
    tall = np.zeros((32, 16, 3), dtype=np.uint8)
    tall[:8] = (255, 0, 0)
    tall[8:24] = (0, 255, 0)  # the centre half rows
    tall[24:] = (0, 0, 255)
    save_rgb(root / "a" / "tall.png", tall)
    ds = FolderDataset(root, "train", image_size=8)
    img = by_key(ds, "a/wide.png")["image"]  # shorter side already 8: crop columns 4..11
    np.testing.assert_array_equal(img[0, 0].numpy(), np.arange(4, 12) * 10)
    img = by_key(ds, "a/tall.png")["image"]  # 16x32 -> 8x16 -> centre rows 4..11: all green
    assert img.shape == (3, 8, 8)
    assert (img[1, 1:7] == 255).all() and (img[0, 1:7] == 0).all() and (img[2, 1:7] == 0).all()


def test_bad_files_are_found_lazily_skipped_and_counted(tmp_path):
    root = tmp_path / "bad"
    save_rgb(root / "apple" / "good.png", (1, 2, 3))
    (root / "apple" / "broken.png").write_bytes(truncated_bytes("PNG"))  # fails even Image.verify
    save_rgb(root / "box" / "good.png", (4, 5, 6))
    (root / "box" / "late.jpg").write_bytes(truncated_bytes("JPEG", cut_from_end=10))  # fails only on decode
    (root / "box" / "notes.txt").write_text("not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # opening reads no image, so nothing to warn about yet
        ds = FolderDataset(root, "train", image_size=8)
    assert ds.keys == ["apple/broken.png", "apple/good.png", "box/good.png", "box/late.jpg"]
    late = ds.keys.index("box/late.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning: the trainer reports replaced files in one line
        s = ds[0]
        assert s["index"] == 1 and ds.load_failures == 1
        assert ds[late]["index"] == 1  # wraps around to the next readable image
        assert ds[0]["index"] == 1  # a known bad file is not read again
    assert ds.load_failures == 2
    assert [ds[i]["index"] for i in range(len(ds))] == [1, 1, 2, 1]  # a whole pass never raises

    strict = FolderDataset(root, "train", image_size=8, strict=True)
    with pytest.raises(UnreadableImageError, match="broken.png"):
        strict[0]
    with pytest.raises(UnreadableImageError, match="late.jpg"):
        strict[late]


def test_captions_jsonl(tmp_path):
    root = tmp_path / "caps"
    make_image_folder(root, {"apple": 2, "box": 2})
    lines = [
        json.dumps({"file": "apple/img0.png", "caption": "a red   apple"}),
        "{not json",
        json.dumps({"file": "./box/img1.png", "caption": "a box on a table"}),
        json.dumps({"file": "box/img0.png"}),
        "",
        json.dumps({"file": "apple/img1.png", "caption": ""}),
    ]
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = FolderDataset(root, "train", image_size=8)
    msgs = dataset_warnings(rec)
    assert len(msgs) == 1 and "3 malformed line(s)" in msgs[0] and "line 2" in msgs[0]
    assert [m.split()[1] for m in ds.malformed_caption_lines] == ["2", "4", "6"]
    assert by_key(ds, "apple/img0.png")["caption"] == "a red apple"
    assert by_key(ds, "box/img1.png")["caption"] == "a box on a table"
    assert by_key(ds, "apple/img1.png")["caption"] == "a photo of an apple"
    assert by_key(ds, "box/img0.png")["caption"] == "a photo of a box"
    with pytest.raises(ValueError, match=r"captions.jsonl:2: malformed"):
        FolderDataset(root, "train", image_size=8, strict=True)
    # an explicit captions file, relative to root
    (root / "other.jsonl").write_text(json.dumps({"file": "box/img0.png", "caption": "the other caption"}) + "\n")
    with pytest.warns(DatasetWarning, match="3 image.s. have no caption"):
        ds2 = FolderDataset(root, "train", image_size=8, captions_file="other.jsonl")
    assert by_key(ds2, "box/img0.png")["caption"] == "the other caption"
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        FolderDataset(root, "train", image_size=8, captions_file="nope.jsonl")


def test_masks_layout_and_vocabulary(tmp_path):
    root = tmp_path / "masks"
    save_rgb(root / "street" / "img1.png", (50, 50, 50))
    save_rgb(root / "street" / "img2.png", (60, 60, 60))
    save_rgb(root / "park" / "big.png", (70, 70, 70), size=(16, 16))
    patch = np.zeros((8, 8), dtype=np.uint8)
    patch[:3, :3] = 255
    (root / "masks" / "street").mkdir(parents=True)
    (root / "masks" / "park").mkdir(parents=True)
    Image.fromarray(patch).save(root / "masks" / "street" / "img1_red_car.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "masks" / "street" / "img1_sky.png")
    half = np.zeros((16, 16, 3), dtype=np.uint8)
    half[:, :8] = (0, 0, 9)  # nonzero in one colour channel only
    Image.fromarray(half).save(root / "masks" / "park" / "big_sky.png")
    Image.fromarray(patch).save(root / "masks" / "street" / "ghost_tree.png")  # no image 'ghost'
    with pytest.warns(DatasetWarning, match="ghost_tree.png"):
        ds = FolderDataset(root, "train", image_size=8)
    assert ds.concept_names == ["park", "street", "red car", "sky"]
    assert ds.concept_groups == {"class": [0, 1], "mask": [2, 3]} and ds.mask_concepts == [2, 3]
    s = by_key(ds, "street/img1.png")
    assert s["masks"].shape == (4, 8, 8) and s["masks"].dtype == torch.bool
    np.testing.assert_array_equal(s["masks"][2].numpy(), patch > 0)
    assert not s["masks"][3].any() and not s["masks"][:2].any()
    assert s["concepts"].tolist() == [False, True, True, False]
    s = by_key(ds, "street/img2.png")
    assert not s["masks"].any() and s["concepts"].tolist() == [False, True, False, False]
    s = by_key(ds, "park/big.png")  # 16x16 image and mask -> 8x8, left half
    assert s["masks"][3][:, :4].all() and not s["masks"][3][:, 4:].any()
    assert s["concepts"].tolist() == [True, False, False, True]


def test_split_is_deterministic_stratified_and_disjoint(tmp_path):
    root = tmp_path / "split"
    keys = make_image_folder(root, {"apple": 10, "box": 5})
    tr, te = FolderDataset(root, "train", seed=0), FolderDataset(root, "test", seed=0)
    assert not set(tr.keys) & set(te.keys) and sorted(tr.keys + te.keys) == sorted(keys)
    assert np.bincount(te.labels.numpy()).tolist() == [2, 1]  # 20% of each class
    assert FolderDataset(root, "test", seed=0).keys == te.keys
    others = [FolderDataset(root, "test", seed=s).keys for s in (1, 2, 3)]
    assert any(o != te.keys for o in others)
    assert [f.sum() for f in split_per_class([1, 2, 3, 7], seed=0)] == [0, 0, 1, 1]


def test_test_root(tmp_path, folder_root):
    test_root = tmp_path / "held_out"
    make_image_folder(test_root, {"box": 2})
    cfg = DataCfg(name="folder", root=str(folder_root), test_root=str(test_root), image_size=8)
    tr, te = create_dataset(cfg, "train"), create_dataset(cfg, "test")
    assert len(tr) == 10 and len(te) == 2 and te.class_names == ["apple", "box"]
    assert te.labels.tolist() == [1, 1]
    make_image_folder(test_root, {"cherry": 1})
    with pytest.raises(ValueError, match="cherry"):
        FolderDataset(folder_root, "test", test_root=test_root)


def test_clear_errors(tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        create_dataset(DataCfg(name="folder", root=str(missing)))
    with pytest.raises(ValueError, match="root is required"):
        create_dataset(DataCfg(name="folder"))
    empty = tmp_path / "empty"
    (empty / "apple").mkdir(parents=True)
    (empty / "apple" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images found under .*empty"):
        FolderDataset(empty)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="file.png"):
        FolderDataset(tmp_path / "file.png")
